# ruff: noqa: E501 - report lines and SQL scripts read better unbroken
"""Benchmark of the projects service under a big-event surge (issue 5). Prints ratios, asserts nothing
about time; checks zero overbooking after every phase.

1. Apply throughput: thousands of verified volunteers apply to the auto-admitting positions of one
   event through the HTTP API (token check, validation, use case, outbox), as a ratio to raw asyncpg
   running the same transaction (context query, conditional update, insert, two outbox rows, notify)
   at the same concurrency (target >= 60 %). Each volunteer's token is used for the first time, so
   every request checks a signature.
2. Hot position: 64 concurrent clients apply to one position, as a ratio to pgbench running the
   same conditional update with 64 clients (target >= 70 %); pgbench running the whole apply
   transaction is printed too, for an apples-to-apples figure. The volunteers' tokens are the ones
   phase 1 used, which the service remembers having verified (as it would for a volunteer who
   browsed before applying); the same surge with tokens it has never seen is printed too, and the
   surge through the service's default pool (``database_pool_size`` + ``database_max_overflow``:
   more connections waiting on the one row) against pgbench with as many clients.
3. Bulk hours: 500 rows per request through the API, as a ratio to a raw ``unnest`` insert of the
   same rows (target >= 60 %); also to the same insert plus its ``hours.recorded`` outbox row (one
   per request, listing the 500 records) and the notify, which is the transaction the service has to
   run; and the service's own statement on raw asyncpg (what the rules cost in PostgreSQL: the
   applications held, the volunteers' day totals for the cap, the records, the outbox row). Each path
   first runs a few untimed requests (statement preparation on each connection). The request bodies are encoded
   before the clock starts: that is the client's work, done on another machine in deployment.

Phase 1 also prints raw asyncpg running the service's own statement (context read, rules, place,
row and events in one, in autocommit): the gap between that and the API is Python (HTTP stack,
token check, use case), not SQL.

The app runs in this process; measured requests enter its ASGI interface directly (see ``asgi_post``);
relay and consumers are off so only the request path is measured (the outbox rows are still written in
every transaction). The service and the raw asyncpg baselines use the same number of pooled
connections (``--pool``, default twice this machine's cores: the database is on it) in phases 1 and 3;
the 64 clients of phase 2 are HTTP clients, multiplexed over the pool as a deployed replica multiplexes
its requests.
The machine is shared: compare the ratios, not the absolute figures. The service and its baselines
take turns in every phase (``ROUNDS`` rounds in phases 1 and 2: a third of the surge, or of
pgbench's time, each; three rounds in phase 3), so a slower spell of the machine weighs on both
sides of a ratio rather than on whichever ran then.

Run: ``.venv/bin/python tests/bench/projects_surge.py [--volunteers 3000] [--concurrency 32] [--pool 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from httpx._transports import asgi as httpx_asgi

from projects import repository as repo
from projects import services
from projects.bootstrap import build_runtime
from projects.config import ProjectsSettings
from projects.main import create_app
from projects.unit_of_work import positional_sql
from shared.auth import JwksSource, Principal, TokenSigner, TokenVerifier
from shared.clock import CHINA_TZ, ManualClock
from shared.db import asyncpg_dsn
from shared.logging import configure_logging
from shared.testing import create_database, drop_database, running

# Set-up calls go through httpx; its ASGI transport tries to import sniffio (absent) on every request.
httpx_asgi.is_running_trio = lambda: False


async def asgi_post(app: Any, path: str, headers: dict[str, str], body: bytes = b"{}") -> tuple[int, bytes]:
    """One request straight into the app's ASGI interface: the whole HTTP stack of the service
    (middleware, token check, validation, route, serialisation) without an HTTP client's own cost,
    which in this single process would be charged to the service (httpx in-process costs about as
    much CPU per request as the service itself; in deployment the client is another machine)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("bench", 80),
    }
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status, chunks = 0, []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
ISSUER, AUDIENCE = "https://identity.bench", "vs-api"
START = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
#: phases 1 and 2 run the service and its baselines in turns, this many rounds each
ROUNDS = 3


def offset(job: Callable[[int], Awaitable[None]], base: int) -> Callable[[int], Awaitable[None]]:
    """``job`` over ``base + i``: one round's share of a path's work."""
    return lambda i: job(base + i)


async def pool_run(n: int, concurrency: int, job: Callable[[int], Awaitable[None]]) -> float:
    """Run ``job(i)`` for i < n with ``concurrency`` workers; returns seconds."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await job(i)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began


async def seed_people(conn: asyncpg.Connection, n: int) -> tuple[list[uuid.UUID], uuid.UUID, uuid.UUID]:
    volunteers = [uuid.uuid4() for _ in range(n)]
    await conn.copy_records_to_table(
        "volunteers",
        records=[(v, f"11{i:014d}", "张*", "110105", START) for i, v in enumerate(volunteers)],
        columns=["account_id", "volunteer_number", "masked_name", "region_code", "verified_at"],
    )
    team_id, lead_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO teams (team_id, name, region_code, approved) VALUES ($1, '大型赛会志愿服务队', '110105', true)",
        team_id,
    )
    await conn.execute("INSERT INTO team_roles VALUES ($1, $2, 'admin')", team_id, lead_id)
    return volunteers, team_id, lead_id


async def create_event(
    client: httpx.AsyncClient, lead: dict[str, str], team_id: uuid.UUID, positions: int, quota: int
) -> dict[str, Any]:
    body = {
        "team_id": str(team_id),
        "title": "马拉松赛会志愿服务",
        "description": "赛道补给与引导",
        "category": "大型赛会",
        "region_code": "110105",
        "address": "北京市朝阳区",
        "contact": {"name": "赛会志愿者部", "phone": "010-66666666"},
        "starts_on": "2026-01-05",
        "ends_on": "2026-03-31",
        "recruit_starts_on": "2026-01-05",
        "recruit_ends_on": "2026-01-31",
        "positions": [{"name": f"岗位{i:02d}", "quota": quota, "admission_mode": "auto"} for i in range(positions)],
    }
    created = await client.post("/api/v1/projects", json=body, headers=lead)
    assert created.status_code == 201, created.text
    project = created.json()
    published = await client.post(f"/api/v1/projects/{project['id']}/publication", headers=lead)
    assert published.status_code == 200, published.text
    return dict(published.json())


RAW_APPLY_CONTEXT = """
    SELECT pos.id, pos.name, pos.admission_mode, p.id AS project_id, p.title, p.status,
           p.recruit_starts_on, p.recruit_ends_on,
           EXISTS (SELECT 1 FROM volunteers v WHERE v.account_id = $2 AND v.merged_into IS NULL FOR KEY SHARE)
               AS verified
    FROM positions pos JOIN projects p ON p.id = pos.project_id WHERE pos.id = $1
"""
RAW_TAKE = """
    UPDATE positions SET admitted = admitted + 1
    WHERE id = $1 AND admitted < quota
      AND NOT EXISTS (SELECT 1 FROM applications w WHERE w.position_id = $1 AND w.stage = 'applied')
    RETURNING admitted
"""
RAW_INSERT = """
    INSERT INTO applications (id, position_id, project_id, account_id, stage, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $6)
    ON CONFLICT (position_id, account_id) WHERE stage <> 'withdrawn' DO NOTHING RETURNING id
"""
RAW_OUTBOX = """
    INSERT INTO outbox (id, event_type, schema_version, aggregate_type, aggregate_id, payload, producer, occurred_at)
    VALUES ($1, $2, 1, 'application', $3, $4, 'projects', $5)
"""


async def raw_apply(pool: asyncpg.Pool, position_id: uuid.UUID, account_id: uuid.UUID) -> None:
    """The apply transaction, hand-written on asyncpg: the baseline of phase 1."""
    async with pool.acquire() as conn, conn.transaction():
        ctx = await conn.fetchrow(RAW_APPLY_CONTEXT, position_id, account_id)
        assert ctx is not None
        assert ctx["verified"]
        admitted = await conn.fetchval(RAW_TAKE, position_id) is not None
        application_id = uuid.uuid4()
        await conn.fetchval(
            RAW_INSERT,
            application_id,
            position_id,
            ctx["project_id"],
            account_id,
            "admitted" if admitted else "applied",
            START,
        )
        payload = json.dumps(
            {
                "application_id": str(application_id),
                "project_id": str(ctx["project_id"]),
                "position_id": str(position_id),
                "account_id": str(account_id),
                "project_title": ctx["title"],
                "position_name": ctx["name"],
            }
        )
        events = ["application.submitted"] + (["application.admitted"] if admitted else [])
        await conn.executemany(RAW_OUTBOX, [(uuid.uuid4(), e, str(application_id), payload, START) for e in events])
        await conn.execute("SELECT pg_notify('outbox_projects', '')")


APPLY_SQL, APPLY_NAMES = positional_sql(repo._APPLY)


async def raw_apply_service_sql(pool: asyncpg.Pool, position_id: uuid.UUID, account_id: uuid.UUID) -> None:
    """The service's own statement (context read, rules, place, row and events in one, in autocommit)
    on asyncpg: what is left between the service and this is Python (HTTP stack, token check, use case)."""
    application_id = uuid.uuid4()
    params = {
        "id": application_id,
        "position_id": position_id,
        "account_id": account_id,
        "motivation": None,
        "today": START.astimezone(CHINA_TZ).date(),
        "now": START,
        "channel": "outbox_projects",
        "submitted_id": uuid.uuid4(),
        "submitted_type": "application.submitted",
        "submitted_version": 1,
        "admitted_id": uuid.uuid4(),
        "admitted_type": "application.admitted",
        "admitted_version": 1,
        "ob_aggregate_type": "application",
        "ob_producer": "projects",
        "ob_correlation_id": None,
        "ob_causation_id": None,
        "ob_occurred_at": START,
    }
    async with pool.acquire() as conn:
        row = await conn.fetchrow(APPLY_SQL, *(params[n] for n in APPLY_NAMES))
        assert row is not None
        assert row["stage"] is not None


async def overbooked(conn: asyncpg.Connection, ignore: uuid.UUID | None = None) -> int:
    """Positions whose admitted applications exceed the quota or disagree with the counter."""
    return int(
        await conn.fetchval(
            """
            SELECT count(*) FROM positions pos
            LEFT JOIN (SELECT position_id, count(*) AS n FROM applications
                       WHERE stage IN ('admitted', 'training', 'serving', 'completed') GROUP BY position_id) a
                   ON a.position_id = pos.id
            WHERE (coalesce(a.n, 0) > pos.quota OR coalesce(a.n, 0) <> pos.admitted) AND pos.id IS DISTINCT FROM $1
            """,
            ignore,
        )
    )


def pgbench(dsn: str, script: str, clients: int, seconds: int, variables: dict[str, str]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        args = [PGBENCH, "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-M", "prepared", "-f", path]
        for key, value in variables.items():
            args += ["-D", f"{key}={value}"]
        for attempt in range(5):
            done = subprocess.run([*args, dsn], capture_output=True, text=True, timeout=seconds + 120, check=False)
            if done.returncode == 0:
                break
            # the server is shared: other suites may hold most of max_connections for a while
            print(f"    pgbench failed (attempt {attempt + 1}): {done.stderr.strip().splitlines()[-1:]}")
            time.sleep(5)
        else:
            raise RuntimeError("pgbench kept failing")
    finally:
        os.unlink(path)
    line = next(line for line in done.stdout.splitlines() if line.startswith("tps"))
    return float(line.split("=")[1].split()[0])


async def main(volunteers_n: int, concurrency: int, pgbench_seconds: int, pool_size: int) -> None:
    configure_logging("bench", "json", "WARNING")
    url = await create_database("bench_projects")
    clock = ManualClock(START)
    signer = TokenSigner(TokenSigner.generate_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    verifier = TokenVerifier(JwksSource(keys=signer.jwks()), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    settings = ProjectsSettings(
        database_url=url,
        environment="test",
        bus="inprocess",
        run_relay=False,
        run_consumers=False,
        run_close_sweep=False,
        log_level="WARNING",
        database_pool_size=pool_size,
        database_max_overflow=0,
        hours_bulk_max_rows=1000,
    )
    app = create_app(settings, build_runtime(settings, clock=clock, verifier=verifier))
    dsn = asyncpg_dsn(url)
    try:
        async with running(app) as client:
            client.timeout = httpx.Timeout(120)
            conn = await asyncpg.connect(dsn)
            pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
            volunteers, team_id, lead_id = await seed_people(conn, volunteers_n)
            lead = {"Authorization": f"Bearer {signer.issue(lead_id, ttl=timedelta(days=30))}"}
            tokens = [{"Authorization": f"Bearer {signer.issue(v, ttl=timedelta(days=30))}"} for v in volunteers]
            positions, quota = 20, max(1, volunteers_n * 2 // 3 // 20)  # a third of the surge waits in line

            # -- 1. apply throughput ---------------------------------------------------------------
            # each path applies the whole surge to an event of its own; the paths take turns in
            # ROUNDS rounds (a third of the volunteers each), so a slower spell of the shared machine
            # weighs on every path, not on the one that happened to run then
            runtime = app.state.runtime
            event, case_event, raw_event, same_event = [
                await create_event(client, lead, team_id, positions, quota) for _ in range(4)
            ]
            pos_ids = [p["id"] for p in event["positions"]]
            case_pos = [uuid.UUID(p["id"]) for p in case_event["positions"]]
            raw_pos = [uuid.UUID(p["id"]) for p in raw_event["positions"]]
            same_pos = [uuid.UUID(p["id"]) for p in same_event["positions"]]
            principals = [Principal(account_id=v, roles=frozenset({"volunteer"})) for v in volunteers]

            async def api_apply(i: int) -> None:
                status, body = await asgi_post(
                    app, f"/api/v1/positions/{pos_ids[i % positions]}/applications", tokens[i]
                )
                assert status == 201, body

            async def case_apply(i: int) -> None:
                async with runtime.uow() as uow:
                    await services.apply(uow, principals[i], case_pos[i % positions], None)

            apply_paths: dict[str, Callable[[int], Awaitable[None]]] = {
                "api": api_apply,
                "case": case_apply,
                "raw": lambda i: raw_apply(pool, raw_pos[i % positions], volunteers[i]),
                "same": lambda i: raw_apply_service_sql(pool, same_pos[i % positions], volunteers[i]),
            }
            took = dict.fromkeys(apply_paths, 0.0)
            for r in range(ROUNDS):
                share = range(r * volunteers_n // ROUNDS, (r + 1) * volunteers_n // ROUNDS)
                for name, job in apply_paths.items():
                    took[name] += await pool_run(len(share), concurrency, offset(job, share.start))
            api_s, case_s, raw_s, same_s = took["api"], took["case"], took["raw"], took["same"]
            api_rate, raw_rate = volunteers_n / api_s, volunteers_n / raw_s
            over = await overbooked(conn)
            admitted = await conn.fetchval(
                "SELECT sum(admitted) FROM positions WHERE project_id = $1", uuid.UUID(event["id"])
            )
            print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")
            print(
                f"[1] apply surge: {volunteers_n} volunteers, {positions} positions x {quota} places, {concurrency} clients, the paths taking turns in {ROUNDS} rounds"
            )
            print(
                f"    API {api_rate:8.0f} applications/s   raw asyncpg {raw_rate:8.0f}/s   ratio {api_rate / raw_rate:6.1%} (target >= 60%)"
            )
            print(
                f"    use case alone (no HTTP) {volunteers_n / case_s:8.0f}/s   ratio {volunteers_n / case_s / raw_rate:6.1%}"
            )
            print(
                f"    raw asyncpg running the service's own statement {volunteers_n / same_s:8.0f}/s   API ratio to it {api_rate * same_s / volunteers_n:6.1%}"
            )
            print(f"    admitted {admitted} of {positions * quota} places; overbooked positions: {over}")

            # -- 2. hot position, 64 clients ---------------------------------------------------------
            hot_n = min(volunteers_n, 3000)
            update_sql = "UPDATE positions SET admitted = admitted + 1 WHERE id = :pos AND admitted < quota RETURNING admitted;\n"

            async def hot_position() -> str:
                hot = await create_event(client, lead, team_id, 1, hot_n)
                return str(hot["positions"][0]["id"])

            async def hot_apply(target: Any, position: str, headers: dict[str, str]) -> None:
                status, body = await asgi_post(target, f"/api/v1/positions/{position}/applications", headers)
                assert status == 201, body

            async def hot_run(target: Any, headers: list[dict[str, str]]) -> float:
                position = await hot_position()
                return hot_n / await pool_run(hot_n, 64, lambda i: hot_apply(target, position, headers[i]))

            # Also through the service's default pool (database_pool_size + database_max_overflow):
            # more connections wait on the one row, as pgbench's 64 do (printed with as many clients too).
            served_pool = {
                name: ProjectsSettings.model_fields[name].default
                for name in ("database_pool_size", "database_max_overflow")
            }
            bench_event = await create_event(client, lead, team_id, 1, 100_000)
            await conn.execute(
                "UPDATE positions SET quota = 2000000000 WHERE id = $1", uuid.UUID(bench_event["positions"][0]["id"])
            )
            bench_pos = bench_event["positions"][0]["id"]
            # pgbench's 64 connections need room under max_connections (the server is shared): the raw
            # pool is not used in this phase
            await pool.close()
            # The surge and pgbench take turns: a third of the applications, then pgbench for a third
            # of its time, three times over
            hot_target = await hot_position()
            hot_s, update_runs = 0.0, []
            for r in range(ROUNDS):
                share = range(r * hot_n // ROUNDS, (r + 1) * hot_n // ROUNDS)
                hot_s += await pool_run(
                    len(share), 64, offset(lambda i: hot_apply(app, hot_target, tokens[i]), share.start)
                )
                update_runs.append(pgbench(dsn, update_sql, 64, max(2, pgbench_seconds // ROUNDS), {"pos": bench_pos}))
            hot_rate, update_tps = hot_n / hot_s, sum(update_runs) / len(update_runs)
            # The same surge with tokens the service has not seen: each is checked in full (signature
            # and claims) instead of being found among the tokens it verified before (phase 1 used these).
            cold_tokens = [
                {"Authorization": f"Bearer {signer.issue(v, ttl=timedelta(days=30))}"} for v in volunteers[:hot_n]
            ]
            cold_rate = await hot_run(app, cold_tokens)
            served_settings = settings.model_copy(update=served_pool)
            served = create_app(served_settings, build_runtime(served_settings, clock=clock, verifier=verifier))
            async with running(served):
                served_rate = await hot_run(served, tokens)
                await served.state.runtime.engine.dispose()
            await app.state.runtime.engine.dispose()
            same_connections = served_pool["database_pool_size"] + served_pool["database_max_overflow"]
            update_tps_same = pgbench(
                dsn,
                update_sql,
                same_connections,
                pgbench_seconds,
                {"pos": bench_pos},
            )
            full_script = (
                "\\set acct random(1, 2000000000)\n"
                "BEGIN;\n"
                "UPDATE positions SET admitted = admitted + 1 WHERE id = :pos AND admitted < quota RETURNING admitted;\n"
                "INSERT INTO applications (id, position_id, project_id, account_id, stage, created_at, updated_at) "
                "VALUES (gen_random_uuid(), :pos, :proj, gen_random_uuid(), 'admitted', now(), now());\n"
                "INSERT INTO outbox (id, event_type, aggregate_type, aggregate_id, payload, producer, occurred_at) "
                "VALUES (gen_random_uuid(), 'application.admitted', 'application', 'x', '{}', 'projects', now()), "
                "(gen_random_uuid(), 'application.submitted', 'application', 'x', '{}', 'projects', now());\n"
                "END;\n"
            )
            full_tps = pgbench(dsn, full_script, 64, pgbench_seconds, {"pos": bench_pos, "proj": bench_event["id"]})
            pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
            over = await overbooked(conn, ignore=uuid.UUID(bench_pos))  # pgbench bumps its counter without rows
            print(
                f"[2] hot position: {hot_n} applications, 64 clients, the pool of phase 1 ({pool_size}); the surge and pgbench taking turns in {ROUNDS} rounds"
            )
            print(
                f"    API {hot_rate:8.0f} applications/s   pgbench conditional update {update_tps:8.0f} tps   ratio {hot_rate / update_tps:6.1%} (target >= 70%)"
            )
            print(
                f"    API with the service's default pool ({served_pool['database_pool_size']} + {served_pool['database_max_overflow']} overflow) {served_rate:8.0f} applications/s   ratio {served_rate / update_tps:6.1%}"
            )
            print(
                f"    pgbench conditional update with {same_connections} clients (as many as that pool) {update_tps_same:8.0f} tps   ratio {served_rate / update_tps_same:6.1%}"
            )
            print(
                f"    pgbench whole apply transaction {full_tps:8.0f} tps   ratio {hot_rate / full_tps:6.1%}; overbooked positions: {over}"
            )
            print(
                f"    API with tokens it has not seen before {cold_rate:8.0f} applications/s   ratio {cold_rate / update_tps:6.1%} (the line above reuses phase 1's tokens)"
            )

            # -- 3. bulk hours, 500 rows per request --------------------------------------------------
            apps = await conn.fetch(
                "SELECT id, account_id FROM applications WHERE project_id = $1 AND stage = 'admitted' LIMIT 500",
                uuid.UUID(event["id"]),
            )
            rows_n = len(apps)
            requests, warmup = 60, 4
            clock.set(START + timedelta(days=20))
            # three sheets a day over 20 days: 3 x 60 minutes stays under the daily cap
            days = [date(2026, 1, 5) + timedelta(days=d % 20) for d in range(requests + warmup)]

            # The request bodies are the client's work (done on another machine in deployment, like the
            # HTTP client's own cost: see ``asgi_post``), so they are encoded before the clock starts.
            payloads = [
                json.dumps(
                    {
                        "rows": [
                            {"application_id": str(a["id"]), "service_date": day.isoformat(), "minutes": 60}
                            for a in apps
                        ]
                    }
                ).encode()
                for day in days
            ]

            async def bulk(i: int) -> None:
                status, body = await asgi_post(app, f"/api/v1/projects/{event['id']}/hours/bulk", lead, payloads[i])
                assert status == 201, body

            raw_ids = [a["id"] for a in apps]
            raw_accounts = [a["account_id"] for a in apps]

            project_uuid = uuid.UUID(event["id"])

            async def raw_bulk(i: int, *, with_events: bool) -> None:
                """The bare ``unnest`` insert (the baseline the issue names), or the same transaction the service
                runs: the insert returning the rows, the recording's ``hours.recorded`` outbox row listing them
                (built by the client), the notify."""
                day = days[i] + timedelta(days=40 if with_events else 60)
                async with pool.acquire() as c, c.transaction():
                    rows = await c.fetch(
                        """
                        INSERT INTO hours_records (id, application_id, project_id, account_id, service_date, minutes,
                                                   late, source, recorded_by, recorded_at)
                        SELECT gen_random_uuid(), t.a, $3, t.acc, $4, 60, false, 'bulk', $5, now()
                        FROM unnest($1::uuid[], $2::uuid[]) AS t(a, acc)
                        RETURNING id, application_id, account_id
                        """,
                        raw_ids,
                        raw_accounts,
                        project_uuid,
                        day,
                        lead_id,
                    )
                    if not with_events:
                        return
                    payload = {
                        "project_id": str(project_uuid),
                        "source": "bulk",
                        "recorded_by": str(lead_id),
                        "records": [
                            {
                                "record_id": str(r["id"]),
                                "application_id": str(r["application_id"]),
                                "account_id": str(r["account_id"]),
                                "service_date": day.isoformat(),
                                "minutes": 60,
                                "late": False,
                            }
                            for r in rows
                        ],
                    }
                    await c.execute(
                        """
                        INSERT INTO outbox (id, event_type, schema_version, aggregate_type, aggregate_id, payload,
                                            producer, occurred_at)
                        VALUES (gen_random_uuid(), 'hours.recorded', 2, 'project', $1, $2::jsonb, 'projects', now())
                        """,
                        str(project_uuid),
                        json.dumps(payload),
                    )
                    await c.execute("SELECT pg_notify('outbox_projects', '')")

            record_sql, record_names = positional_sql(repo._RECORD_HOURS)

            async def statement_bulk(i: int) -> None:
                """The service's own statement (applications held, days' totals, records, outbox row)
                on raw asyncpg, with the custom plan the service asks for: what the rules cost in
                PostgreSQL, without the HTTP stack and the use case."""
                day = days[i] + timedelta(days=80)
                params = {
                    "application_ids": raw_ids,
                    "service_dates": [day] * rows_n,
                    "minutes": [60] * rows_n,
                    "late": [False] * rows_n,
                    "notes": [None] * rows_n,
                    "project_id": project_uuid,
                    "source": "bulk",
                    "recorded_by": lead_id,
                    "now": clock.now(),
                    "channel": "outbox_projects",
                    "ob_event_type": "hours.recorded",
                    "ob_schema_version": 2,
                    "ob_aggregate_type": "project",
                    "ob_producer": "projects",
                    "ob_correlation_id": None,
                    "ob_causation_id": None,
                    "ob_occurred_at": clock.now(),
                }
                async with pool.acquire() as c, c.transaction():
                    await c.execute("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")
                    rows = await c.fetch(record_sql, *(params[n] for n in record_names))
                    assert len(rows) == rows_n

            paths: dict[str, Callable[[int], Awaitable[None]]] = {
                "api": bulk,
                "bare": lambda i: raw_bulk(i, with_events=False),
                "raw": lambda i: raw_bulk(i, with_events=True),
                "statement": statement_bulk,
            }
            for job in paths.values():  # untimed: statement preparation on each connection
                await pool_run(warmup, 4, offset(job, requests))
            # the three paths take turns, so background work the earlier ones leave behind (autovacuum
            # of the rows they wrote) does not weigh on one path only
            spent = dict.fromkeys(paths, 0.0)
            rounds = 3
            for r in range(rounds):
                share = range(r * requests // rounds, (r + 1) * requests // rounds)
                for name, job in paths.items():
                    spent[name] += await pool_run(len(share), 4, offset(job, share.start))
            api_bulk_s, bare_bulk_s, raw_bulk_s = spent["api"], spent["bare"], spent["raw"]
            statement_rows = rows_n * requests / spent["statement"]
            api_rows = rows_n * requests / api_bulk_s
            raw_rows, bare_rows = rows_n * requests / raw_bulk_s, rows_n * requests / bare_bulk_s
            print(f"[3] bulk hours: {requests} requests x {rows_n} rows, 4 clients")
            print(
                f"    API {api_rows:8.0f} rows/s   raw unnest insert {bare_rows:8.0f} rows/s   ratio {api_rows / bare_rows:6.1%} (target >= 60%)"
            )
            print(
                f"    raw unnest insert + outbox row + notify (the service's transaction) {raw_rows:8.0f} rows/s   ratio {api_rows / raw_rows:6.1%}"
            )
            print(
                f"    the service's statement on raw asyncpg (held, days, records, outbox) {statement_rows:8.0f} rows/s   {statement_rows / bare_rows:6.1%} of the bare insert; API ratio to it {api_rows / statement_rows:6.1%}"
            )
            await pool.close()
            await conn.close()
    finally:
        await drop_database(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--volunteers", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--pool", type=int, default=2 * (os.cpu_count() or 2))
    args = parser.parse_args()
    asyncio.run(main(args.volunteers, args.concurrency, args.pgbench_seconds, args.pool))
