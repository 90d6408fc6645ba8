"""Benchmark of the notifications service (issue 6).

1. Latency: a producing service commits ``account.registered`` events (one transaction each, as
   sign-ups do) at a steady rate (default 500/s); its OutboxRelay publishes them to RabbitMQ; a
   real ``python -m notifications worker`` process consumes them, queues and sends the welcome
   email to an aiosmtpd server. Latency = producer commit → SMTP server accepted the message
   (DATA answered). p50/p90/p99/max printed (target p99 < 200 ms).
2. Throughput: a burst of events committed as fast as the producer can; sustained events/s
   (first commit → last email accepted), printed as a ratio to a raw aio-pika loop on the same
   broker in the same run: persistent messages, publisher confirms, a quorum queue, acked
   consumption (target ≥ 50 %).

Nothing is asserted; the figures are printed.

Run: ``.venv/bin/python tests/bench/notifications_latency.py [--rate 500] [--seconds 10] [--burst 3000]
[--workers 1]`` (``BENCH_PROFILE=<file>`` runs the worker under cProfile)
(or ``.venv/bin/pytest tests/bench/notifications_latency.py -s``). Needs PostgreSQL and RabbitMQ
as the test suite does; uses a throw-away vhost and databases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

from shared.contracts.identity import AccountRegistered
from shared.db import UnitOfWork, asyncpg_dsn, make_engine, make_session_factory, new_metadata
from shared.messaging.amqp import AmqpBroker
from shared.messaging.relay import OutboxRelay
from shared.messaging.tables import define_messaging_tables
from shared.testing import create_database, create_vhost, delete_vhost, drop_database, free_port

SMTP_SINK = """
import asyncio, sys, time
from aiosmtpd.controller import Controller

class Handler:
    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        sys.stdout.write("".join(f"{rcpt} {now}\\n" for rcpt in envelope.rcpt_tos))
        sys.stdout.flush()
        return "250 Message accepted"

controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.read()
controller.stop()
"""


class TimedSmtp:
    """aiosmtpd in a process of its own (so it never waits for this process's GIL), reporting
    when it accepted each recipient's message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted: dict[str, float] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SMTP_SINK,
            str(self.port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        assert (await self._proc.stdout.readline()).strip() == b"ready"
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        async for line in self._proc.stdout:
            address, _, moment = line.decode().strip().partition(" ")
            self.accepted.setdefault(address, float(moment))

    async def stop(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
            await self._proc.wait()
        if self._reader is not None:
            await self._reader


class Producer:
    def __init__(self, database_url: str, amqp_url: str) -> None:
        self.metadata = new_metadata()
        self.messaging = define_messaging_tables(self.metadata, "benchproducer")
        self.engine = make_engine(database_url, pool_size=8, max_overflow=4)
        self.session_factory = make_session_factory(self.engine)
        self.broker = AmqpBroker(amqp_url)
        self.relay = OutboxRelay(
            self.engine,
            self.messaging,
            self.broker,
            service="benchproducer",
            listen_dsn=asyncpg_dsn(database_url),
            poll_interval=0.5,
        )
        self.committed: dict[str, float] = {}

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.create_all)
        await self.relay.start()

    async def stop(self) -> None:
        await self.relay.stop()
        await self.broker.close()
        await self.engine.dispose()

    async def sign_up(self, tag: str) -> str:
        account_id = uuid.uuid4()
        address = f"{tag}-{account_id.hex[:16]}@example.org"
        uow = UnitOfWork(self.session_factory, self.messaging, producer="identity")
        async with uow:
            uow.raise_event(
                AccountRegistered(
                    account_id=account_id, username=f"b{account_id.hex[:12]}", display_name="压测", email=address
                )
            )
        self.committed[address] = time.time()
        return address


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.05)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def steady(producer: Producer, smtp: TimedSmtp, rate: float, seconds: float) -> dict[str, float]:
    total = int(rate * seconds)
    addresses: list[str] = []
    start = time.monotonic() + 0.2
    lag: list[float] = []

    async def one(i: int) -> None:
        target = start + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.append(time.monotonic() - target)
        addresses.append(await producer.sign_up("steady"))

    await asyncio.gather(*(one(i) for i in range(total)))
    produced_in = time.monotonic() - start
    await wait_for(lambda: all(a in smtp.accepted for a in addresses), 300, "every steady email accepted")
    latencies = [(smtp.accepted[a] - producer.committed[a]) * 1000 for a in addresses]
    return {
        "events": total,
        "offered_rate": total / produced_in,
        "p50_ms": statistics.median(latencies),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "producer_late_p99_ms": percentile(lag, 99) * 1000,
    }


async def burst(producer: Producer, smtp: TimedSmtp, count: int, concurrency: int = 8) -> float:
    addresses: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    first = time.time()

    async def worker() -> None:
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            addresses.append(await producer.sign_up("burst"))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await wait_for(lambda: all(a in smtp.accepted for a in addresses), 600, "every burst email accepted")
    last = max(smtp.accepted[a] for a in addresses)
    return count / (last - first)


async def raw_aio_pika(amqp_url: str, count: int, window: int = 64) -> float:
    """Persistent messages with publisher confirms (``window`` in flight) into a quorum queue,
    consumed with prefetch 32 and one ack each: the broker's own pace for this pattern."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue_name = f"bench.raw.{uuid.uuid4().hex[:6]}"
        queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=32)
        consume_queue = await consume_channel.get_queue(queue_name)
        received = 0
        done = asyncio.Event()
        last = 0.0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received, last
            await message.ack()
            received += 1
            if received >= count:
                last = time.time()
                done.set()

        await consume_queue.consume(on_message)
        body = b'{"account_id": "00000000-0000-0000-0000-000000000000", "email": "raw@example.org"}'
        first = time.time()
        semaphore = asyncio.Semaphore(window)

        async def publish() -> None:
            async with semaphore:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue_name
                )

        await asyncio.gather(*(publish() for _ in range(count)))
        await asyncio.wait_for(done.wait(), 300)
        await queue.delete(if_unused=False, if_empty=False)
        return count / (last - first)
    finally:
        await connection.close()


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time of a process so far (Linux /proc); with ``children``, plus that of
    its children that have exited (PostgreSQL's backends of closed connections)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_process_group(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of the named pids, plus every PostgreSQL and RabbitMQ process."""
    totals = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
    servers = {"postgres": 0.0, "rabbitmq": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if command.startswith("postgres"):
            servers["postgres"] += cpu_seconds(int(entry.name), children=True)
        elif command.startswith(("beam", "erl_child", "epmd")):
            servers["rabbitmq"] += cpu_seconds(int(entry.name))
    return {**totals, **servers}


def start_worker(database_url: str, amqp_url: str, smtp_port: int, log_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NOTIFICATIONS_DATABASE_URL": database_url,
        "NOTIFICATIONS_AMQP_URL": amqp_url,
        "NOTIFICATIONS_SMTP_PORT": str(smtp_port),
        "NOTIFICATIONS_LOG_LEVEL": "WARNING",
        "NOTIFICATIONS_LOG_FORMAT": "json",
        "NOTIFICATIONS_ENVIRONMENT": "test",
        # the PostgreSQL server may be shared: a modest pool
        "NOTIFICATIONS_DATABASE_POOL_SIZE": "10",
        "NOTIFICATIONS_DATABASE_MAX_OVERFLOW": "5",
    }
    log = (log_dir / "notifications-worker.log").open("wb")
    # BENCH_PROFILE=<file>: the worker runs under cProfile (for finding where its time goes)
    profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    return subprocess.Popen(
        [sys.executable, *profile, "-m", "notifications", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


async def migrated(database_url: str) -> bool:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return bool(await conn.fetchval("SELECT to_regclass('emails') IS NOT NULL"))
    finally:
        await conn.close()


async def stages(producer_db: str, notifications_db: str) -> None:
    """Where the time went, per stage (medians and p99 over every event of the run)."""
    conn = await asyncpg.connect(asyncpg_dsn(producer_db))
    try:
        rows = await conn.fetch("SELECT id, created_at, published_at FROM outbox")
    finally:
        await conn.close()
    produced = {r["id"]: r for r in rows}
    conn = await asyncpg.connect(asyncpg_dsn(notifications_db))
    try:
        emails = await conn.fetch("SELECT event_id, created_at, sent_at FROM emails WHERE sent_at IS NOT NULL")
    finally:
        await conn.close()
    relay, consume, send = [], [], []
    for e in emails:
        p = produced.get(e["event_id"])
        if p is None or p["published_at"] is None:
            continue
        relay.append((p["published_at"] - p["created_at"]).total_seconds() * 1000)
        consume.append((e["created_at"] - p["published_at"]).total_seconds() * 1000)
        send.append((e["sent_at"] - e["created_at"]).total_seconds() * 1000)
    for name, values in (("outbox → published", relay), ("published → queued", consume), ("queued → sent", send)):
        if values:
            print(f"  {name:20s} p50 {statistics.median(values):8.1f} ms  p99 {percentile(values, 99):8.1f} ms")


async def main(rate: float, seconds: float, burst_count: int, workers: int = 1) -> dict[str, Any]:
    amqp_url = create_vhost()
    producer_db = await create_database("bench_nproducer")
    notifications_db = await create_database("bench_notifications")
    smtp = TimedSmtp()
    await smtp.start()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-notifications-"))
    # replicas compete for the queues and claim emails with SKIP LOCKED; the first one migrates
    worker = start_worker(notifications_db, amqp_url, smtp.port, log_dir)
    replicas = [worker]
    producer = Producer(producer_db, amqp_url)
    try:
        deadline = time.monotonic() + 60
        while not await migrated(notifications_db):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"the worker did not start; see {log_dir}")
            await asyncio.sleep(0.2)
        replicas += [start_worker(notifications_db, amqp_url, smtp.port, log_dir) for _ in range(workers - 1)]
        await producer.start()
        warm = [await producer.sign_up("warm") for _ in range(50)]
        await wait_for(lambda: all(a in smtp.accepted for a in warm), 120, "warm-up emails")

        load_before = os.getloadavg()[0]
        latency = await steady(producer, smtp, rate, seconds)
        groups = {
            "notifications worker": [w.pid for w in replicas],
            "bench (producer, relay)": [os.getpid()],
            "SMTP sink": [smtp.pid],
        }
        cpu_before = cpu_by_process_group(groups)
        sustained = await burst(producer, smtp, burst_count)
        cpu_after = cpu_by_process_group(groups)
        cpu_ms = {name: (cpu_after[name] - cpu_before[name]) / burst_count * 1000 for name in cpu_after}
        worker_cpu_ms = cpu_ms["notifications worker"]
        raw_before = cpu_by_process_group({"bench": [os.getpid()]})
        raw = await raw_aio_pika(amqp_url, burst_count)
        raw_after = cpu_by_process_group({"bench": [os.getpid()]})
        raw_cpu_ms = sum(raw_after[k] - raw_before[k] for k in ("bench", "rabbitmq")) / burst_count * 1000
        # what the machine allows: were the worker free, every event would still cost the others'
        # CPU (producer, relay, SMTP server, PostgreSQL, RabbitMQ) on os.cpu_count() cores
        others_ms = sum(ms for name, ms in cpu_ms.items() if name != "notifications worker")
        ceiling = (os.cpu_count() or 1) * 1000 / others_ms if others_ms > 0 else float("inf")
        figures = {**latency, "sustained_events_per_s": sustained, "raw_aio_pika_per_s": raw}
        figures["sustained_vs_raw"] = sustained / raw
        figures["worker_cpu_ms_per_event"] = worker_cpu_ms
        figures["ceiling_vs_raw"] = ceiling / raw
        print()
        print(f"notifications worker processes: {workers}")
        print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} → {os.getloadavg()[0]:.1f}")
        print(f"notifications latency, producer commit → SMTP accepted, {latency['events']:.0f} events")
        print(f"  offered rate      {latency['offered_rate']:8.1f} events/s (target {rate:.0f})")
        print(f"  producer lag p99  {latency['producer_late_p99_ms']:8.1f} ms behind schedule")
        print(f"  p50               {latency['p50_ms']:8.1f} ms")
        print(f"  p90               {latency['p90_ms']:8.1f} ms")
        print(f"  p99               {latency['p99_ms']:8.1f} ms   (target < 200 ms)")
        print(f"  max               {latency['max_ms']:8.1f} ms")
        print(f"throughput, burst of {burst_count} events")
        print(f"  notifications     {sustained:8.1f} events/s (commit → email accepted)")
        print(f"  raw aio-pika      {raw:8.1f} messages/s (confirmed publish → acked consume)")
        print(f"  ratio             {figures['sustained_vs_raw']:8.1%}   (target ≥ 50 %)")
        print(f"  worker CPU        {worker_cpu_ms:8.2f} ms per event (both handlers, rendering, SMTP)")
        print(f"  raw loop CPU      {raw_cpu_ms:8.2f} ms per message (client and RabbitMQ)")
        print(
            f"  ceiling           {ceiling:8.1f} events/s = {figures['ceiling_vs_raw']:.1%} of raw: a worker costing"
            f" nothing, the other processes' {others_ms:.2f} ms per event on {os.cpu_count()} CPUs"
        )
        print("CPU per event during the burst, by process (machine-wide servers included)")
        for name, ms in cpu_ms.items():
            print(f"  {name:24s} {ms:6.2f} ms")
        print("stages (database clocks)")
        await stages(producer_db, notifications_db)
        shutil.rmtree(log_dir, ignore_errors=True)  # kept only when the run failed, for its log
        return figures
    finally:
        await producer.stop()
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            try:
                replica.wait(timeout=20)
            except subprocess.TimeoutExpired:
                replica.kill()
        await smtp.stop()
        await drop_database(producer_db)
        await drop_database(notifications_db)
        delete_vhost(amqp_url)


async def test_notifications_latency_and_throughput() -> None:
    """``pytest tests/bench/notifications_latency.py -s``: prints the figures, asserts nothing."""
    await main(float(os.environ.get("BENCH_RATE", 500)), float(os.environ.get("BENCH_SECONDS", 10)), 3000)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="steady events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the steady phase")
    parser.add_argument("--burst", type=int, default=3000, help="events in the throughput burst")
    parser.add_argument("--workers", type=int, default=1, help="notifications worker processes (replicas)")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.burst, args.workers))
