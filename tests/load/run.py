"""Open-loop load test of the big-event flow against all four services (issue 7, Load).

The four services run as real processes (``python -m <service> serve``) on throw-away PostgreSQL
databases and a throw-away RabbitMQ vhost, emails go to an SMTP sink. Volunteers *arrive* at a fixed
rate, each on its own task launched on a timer whatever the services answer (open loop), and walk
the flow: sign up, log in, get verified (identity's development provider; projects learns it over
RabbitMQ), read the event, apply (auto-admitting, or admitted by the lead), have the day's hours
recorded; the lead also records an earlier day in bulk at a fixed interval. Latency counts from
when a request was due, so queueing shows (no coordinated omission).

Reported: achieved vs offered rate, p50/p99 per endpoint, errors by status and code, outbox lag
(published_at - occurred_at) per producing service, delivery lag to each consuming service, the
``vs_outbox_lag_seconds`` gauge sampled from /metrics, emails, and CPU seconds per service.

    make load                                   # defaults: --rate 4 --duration 60
    .venv/bin/python tests/load/run.py --rate 8 --duration 90 --output load.json
    .venv/bin/python tests/load/run.py --volunteers 200 --rate 5   # duration = 200 / 5 s
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import asyncio
import json
import logging
import os
import re
import resource
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.load.cluster import SERVICES, Cluster, cluster, fetch, process_cpu_seconds
from tests.load.flow import ENDPOINTS, SIGN_UP, BulkQueue, Clients, Flow, Identities, VerifiedWatcher, set_up_event
from tests.load.recorder import Recorder, percentile, summary, table

GAUGE = re.compile(r'^vs_outbox_lag_seconds\{service="(?P<service>[^"]+)"\}\s+(?P<value>\S+)', re.M)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=4.0, help="volunteers arriving per second (default 4)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals (default 60)")
    p.add_argument("--volunteers", type=int, default=None, help="volunteers in all (default rate x duration)")
    p.add_argument("--bulk-interval", type=float, default=5.0, help="seconds between bulk hour recordings")
    p.add_argument("--bulk-max-rows", type=int, default=500, help="rows per bulk request at most")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to let the last flows finish")
    p.add_argument("--log-level", default="INFO", help="services' log level (default INFO, as deployed)")
    p.add_argument("--pool-size", type=int, default=5, help="each service's database pool (+ as much overflow)")
    p.add_argument("--output", type=Path, default=None, help="write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the databases and vhost afterwards")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be positive")
    if args.volunteers is not None:
        args.duration = args.volunteers / args.rate
    else:
        args.volunteers = max(1, round(args.rate * args.duration))
    return args


async def sample_gauges(cl: Cluster, samples: dict[str, list[float]], interval: float = 1.0) -> None:
    """Sample every service's ``vs_outbox_lag_seconds`` (age of its oldest unpublished event)."""
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            for service in SERVICES:
                try:
                    text = (await client.get(cl.url(service, "/metrics"))).text
                except httpx.HTTPError:
                    continue
                for m in GAUGE.finditer(text):
                    samples[m["service"]].append(float(m["value"]))
            await asyncio.sleep(interval)


async def wait_outboxes_drained(cl: Cluster, timeout: float = 60) -> dict[str, int]:
    """Unpublished outbox rows per service once they reach 0 (or what is left at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        left = {}
        for service in SERVICES:
            rows = await fetch(cl.dsn(service), "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
            left[service] = int(rows[0]["n"])
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.5)


async def event_lags(cl: Cluster, since: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Outbox lag per producing service, and delivery lag (occurred → consumer committed its
    effect) per consuming service, for the events that occurred during the load."""
    occurred: dict[uuid.UUID, datetime] = {}
    outbox_rows = []
    for service in SERVICES:
        rows = await fetch(
            cl.dsn(service),
            "SELECT id, event_type, occurred_at, published_at FROM outbox WHERE occurred_at >= $1",
            since,
        )
        lags = [(r["published_at"] - r["occurred_at"]).total_seconds() for r in rows if r["published_at"] is not None]
        by_type: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            occurred[r["id"]] = r["occurred_at"]
            if r["published_at"] is not None:
                by_type[r["event_type"]].append((r["published_at"] - r["occurred_at"]).total_seconds())
        if rows:
            outbox_rows.append(
                {
                    "service": service,
                    "events": len(rows),
                    "unpublished": len(rows) - len(lags),
                    **summary(lags),
                    "by_event_type": {t: summary(v) for t, v in sorted(by_type.items())},
                }
            )
    delivery_rows = []
    for service in SERVICES:
        rows = await fetch(cl.dsn(service), "SELECT message_id, processed_at FROM inbox")
        lags = [
            (r["processed_at"] - occurred[r["message_id"]]).total_seconds() for r in rows if r["message_id"] in occurred
        ]
        if lags:
            delivery_rows.append({"service": service, "deliveries": len(lags), **summary(lags)})
    return outbox_rows, delivery_rows


async def email_figures(cl: Cluster, since: datetime) -> dict[str, Any]:
    rows = await fetch(
        cl.dsn("notifications"), "SELECT status, created_at, sent_at FROM emails WHERE created_at >= $1", since
    )
    by_status: dict[str, int] = defaultdict(int)
    for r in rows:
        by_status[r["status"]] += 1
    lags = [(r["sent_at"] - r["created_at"]).total_seconds() for r in rows if r["sent_at"] is not None]
    return {"by_status": dict(by_status), "queued_to_sent": summary(lags)}


async def consistency(cl: Cluster, flow: Flow, signed_up: int, unanswered: int) -> dict[str, Any]:
    """What the load left behind agrees with what was answered: every answered recording stored
    once, no position over its quota or off its counter, every signed-up volunteer verified in
    projects' read model (a sign-up the client gave up on may still have been committed)."""
    project = uuid.UUID(flow.event.project_id)
    [hours] = await fetch(
        cl.dsn("projects"),
        "SELECT count(*) FILTER (WHERE source = 'single') AS single, count(*) FILTER (WHERE source = 'bulk') AS bulk "
        "FROM hours_records WHERE project_id = $1",
        project,
    )
    [positions] = await fetch(
        cl.dsn("projects"),
        """SELECT count(*) FILTER (WHERE a.n > p.quota OR a.n <> p.admitted) AS off, coalesce(sum(a.n), 0) AS admitted
           FROM positions p LEFT JOIN LATERAL (
               SELECT count(*) AS n FROM applications x
               WHERE x.position_id = p.id AND x.stage IN ('admitted', 'training', 'serving', 'completed')) a ON true
           WHERE p.project_id = $1""",
        project,
    )
    [volunteers] = await fetch(cl.dsn("projects"), "SELECT count(*) AS n FROM volunteers")
    checks = {
        "single_hours_stored": int(hours["single"]),
        "single_hours_answered": flow.completed,
        "bulk_rows_stored": int(hours["bulk"]),
        "bulk_rows_answered": flow.bulk.recorded,
        "admitted_applications": int(positions["admitted"]),
        "positions_over_quota_or_off_counter": int(positions["off"]),
        "volunteers_known_to_projects": int(volunteers["n"]) - 2,  # less the federation admin and lead
        "volunteers_signed_up": signed_up,
        "sign_ups_unanswered": unanswered,
    }
    checks["ok"] = (
        checks["single_hours_stored"] == checks["single_hours_answered"]
        and checks["bulk_rows_stored"] == checks["bulk_rows_answered"]
        and checks["positions_over_quota_or_off_counter"] == 0
        and signed_up <= checks["volunteers_known_to_projects"] <= signed_up + unanswered
    )
    return checks


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    print(f"starting the four services (logs and databases are throw-away; log level {args.log_level}) ...")
    async with cluster(
        log_level=args.log_level, pool_size=args.pool_size, max_overflow=args.pool_size, keep=args.keep
    ) as cl:
        print(f"  logs: {cl.log_dir}")
        clients = Clients.open(cl)
        recorder = Recorder()
        identities = Identities()
        watcher = VerifiedWatcher(cl.dsn("projects"))
        await watcher.start()
        gauges: dict[str, list[float]] = defaultdict(list)
        sampler: asyncio.Task[None] | None = None
        try:
            print("setting up the event (national admin, federation, approved team, published project) ...")
            event = await set_up_event(cl, clients, identities, quota=args.volunteers + 10)
            flow = Flow(
                clients=clients,
                event=event,
                recorder=recorder,
                watcher=watcher,
                identities=identities,
                bulk=BulkQueue(),
            )
            n = args.volunteers
            print(
                f"load: {n} volunteers at {args.rate:g}/s over {args.duration:.0f} s, "
                f"bulk hours every {args.bulk_interval:g} s"
            )
            since = datetime.now(UTC)
            pids = cl.pids()
            cpu_before = {s: process_cpu_seconds(p) for s, p in pids.items()}
            self_before = resource.getrusage(resource.RUSAGE_SELF)
            load_before = os.getloadavg()
            sampler = asyncio.create_task(sample_gauges(cl, gauges))
            start = loop.time() + 0.5
            journeys: list[asyncio.Task[None]] = []
            bulks: list[asyncio.Task[None]] = []

            async def bulk_stream() -> None:
                k = 1
                while True:
                    due = start + k * args.bulk_interval
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    bulks.append(asyncio.create_task(flow.record_bulk(due, args.bulk_max_rows)))
                    k += 1

            bulker = asyncio.create_task(bulk_stream())
            for i in range(n):
                due = start + i / args.rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                journeys.append(asyncio.create_task(flow.journey(i, due)))
            arrivals_end = loop.time()
            cl.check_alive()
            _, unfinished = await asyncio.wait(journeys, timeout=args.drain_timeout)
            for task in unfinished:
                task.cancel()
            bulker.cancel()
            await asyncio.gather(bulker, *bulks, return_exceptions=True)
            await flow.record_bulk(loop.time(), 10**9)  # the last admitted ones
            finished = loop.time()
            cpu_after = {s: process_cpu_seconds(p) for s, p in pids.items()}
            self_after = resource.getrusage(resource.RUSAGE_SELF)
            load_after = os.getloadavg()
            cl.check_alive()
            left = await wait_outboxes_drained(cl)
            await asyncio.sleep(3)  # let the consumers and the mail sender finish what was published
            outbox_rows, delivery_rows = await event_lags(cl, since)
            emails = await email_figures(cl, since)
            [sign_ups] = [row for row in recorder.endpoint_rows(1.0) if row["endpoint"] == SIGN_UP]
            unanswered = sum(n for (e, status, _), n in recorder.outcomes.items() if e == SIGN_UP and status == 0)
            checks = await consistency(cl, flow, sign_ups["ok"], unanswered)
        finally:
            if sampler is not None:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
            await watcher.stop()
            await clients.close()

    arrival_window = arrivals_end - start
    busy_window = finished - start
    requests = recorder.total_requests()
    offered_requests = sum(len(v) for v in recorder.latencies.values())
    cpu = {s: round(cpu_after[s] - cpu_before[s], 1) for s in SERVICES}
    generator_cpu = (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime)
    return {
        "started_at": since.isoformat(),
        "settings": {
            "rate_per_second": args.rate,
            "duration_seconds": round(args.duration, 1),
            "volunteers": n,
            "bulk_interval_seconds": args.bulk_interval,
            "service_log_level": args.log_level,
            "db_pool_per_service": f"{args.pool_size}+{args.pool_size}",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
        },
        "throughput": {
            "offered_volunteers_per_second": args.rate,
            "launched_volunteers_per_second": round(n / arrival_window, 2) if arrival_window > 0 else None,
            "completed_flows": flow.completed,
            "unfinished_flows": len(unfinished),
            "completed_flows_per_second": round(flow.completed / busy_window, 2),
            "requests": requests,
            "requests_per_second": round(offered_requests / busy_window, 2),
            "bulk_rows_recorded": flow.bulk.recorded,
            "busy_seconds": round(busy_window, 1),
            "generator_launch_lag_p99_ms": summary(recorder.launch_lag)["p99_ms"],
        },
        "endpoints": recorder.endpoint_rows(busy_window, ENDPOINTS),
        "flows": {name: summary(values) for name, values in recorder.flows.items()},
        "errors": recorder.error_rows(),
        "outbox_lag": outbox_rows,
        "outbox_left_unpublished": left,
        "delivery_lag": delivery_rows,
        "outbox_lag_gauge": {
            s: {"samples": len(v), "p99_s": percentile(v, 99), "max_s": max(v) if v else None}
            for s, v in gauges.items()
        },
        "emails": emails,
        "consistency": checks,
        "cpu_seconds": {**cpu, "load generator": round(generator_cpu, 1)},
    }


def report(result: dict[str, Any]) -> str:
    s, t = result["settings"], result["throughput"]
    out = [
        "",
        f"== big-event load: {s['volunteers']} volunteers offered at {s['rate_per_second']:g}/s "
        f"over {s['duration_seconds']:g} s (machine: {result['machine']['cpus']} CPUs, load "
        f"{result['machine']['loadavg_before'][0]} -> {result['machine']['loadavg_after'][0]})",
        f"launched {t['launched_volunteers_per_second']}/s (target {t['offered_volunteers_per_second']:g}/s), "
        f"generator launch lag p99 {t['generator_launch_lag_p99_ms']} ms",
        f"completed flows {t['completed_flows']} ({t['completed_flows_per_second']}/s over {t['busy_seconds']} s), "
        f"unfinished {t['unfinished_flows']}; {t['requests']} requests ({t['requests_per_second']}/s); "
        f"bulk rows recorded {t['bulk_rows_recorded']}",
        "",
        table(
            result["endpoints"],
            [
                ("endpoint", "endpoint"),
                ("count", "n"),
                ("ok", "ok"),
                ("errors", "err"),
                ("per_second", "req/s"),
                ("p50_ms", "p50 ms"),
                ("p99_ms", "p99 ms"),
                ("max_ms", "max ms"),
            ],
        ),
        "",
        table(
            [{"flow": k, **v} for k, v in result["flows"].items()],
            [("flow", "flow"), ("count", "n"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms")],
        ),
        "",
        "errors: " + ("none" if not result["errors"] else ""),
    ]
    if result["errors"]:
        out.append(
            table(result["errors"], [("endpoint", "endpoint"), ("status", "status"), ("code", "code"), ("count", "n")])
        )
    out += [
        "",
        "outbox lag (published_at - occurred_at) per producing service:",
        table(
            result["outbox_lag"],
            [
                ("service", "service"),
                ("events", "events"),
                ("unpublished", "unpublished"),
                ("p50_ms", "p50 ms"),
                ("p99_ms", "p99 ms"),
                ("max_ms", "max ms"),
            ],
        ),
        *(
            f"  {row['service']} p99 by event type: "
            + ", ".join(f"{t} {v['p99_ms']} ms" for t, v in row["by_event_type"].items())
            for row in result["outbox_lag"]
        ),
        "",
        "delivery lag (occurred_at -> consumer's effect committed) per consuming service:",
        table(
            result["delivery_lag"],
            [
                ("service", "service"),
                ("deliveries", "n"),
                ("p50_ms", "p50 ms"),
                ("p99_ms", "p99 ms"),
                ("max_ms", "max ms"),
            ],
        ),
        "",
        "vs_outbox_lag_seconds sampled from /metrics: "
        + ", ".join(
            f"{k} p99 {v['p99_s']} s (max {v['max_s']})" for k, v in sorted(result["outbox_lag_gauge"].items())
        ),
        f"emails: {result['emails']['by_status']}, "
        f"queued -> sent p99 {result['emails']['queued_to_sent']['p99_ms']} ms",
        "consistency: " + ", ".join(f"{k} {v}" for k, v in result["consistency"].items()),
        "CPU seconds during the load: " + ", ".join(f"{k} {v}" for k, v in result["cpu_seconds"].items()),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from shared.logging import configure_logging

    configure_logging("load", "console", "WARNING")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    result = asyncio.run(run(args))
    print(report(result))
    if args.output is not None:
        args.output.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        print(f"\nresults written to {args.output}")
    lost = result["throughput"]["unfinished_flows"] + sum(result["outbox_left_unpublished"].values())
    return 1 if lost or result["errors"] or not result["consistency"]["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
