"""Soak (issue 7, `make soak`): 10 000 events through identity's own outbox to notifications while
RabbitMQ is restarted twice and one relay process and one consumer process are SIGKILLed.

Afterwards: every event consumed, 0 lost, 0 duplicate effects (ledger of event ids vs email
rows), dead-letter queues empty, and every queue had its consumers back within 30 s of each
restart. Prints its figures. Restarts the machine's RabbitMQ: never run it beside other tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from notifications.consumers import handlers as notification_handlers
from shared.testing import SmtpServer
from tests.faults.procs import ServiceProcess, fetchval, insert_account_registered, service_env, wait_until

EVENTS = int(os.environ.get("VS_SOAK_EVENTS", "10000"))
BATCH = 250


def _ctl(*args: str, timeout: float = 120) -> str:
    exe = shutil.which("rabbitmqctl")
    assert exe, "rabbitmqctl is needed for the soak test"
    return subprocess.run([exe, "-q", *args], check=True, capture_output=True, text=True, timeout=timeout).stdout


def _queues(vhost: str) -> dict[str, tuple[int, int]]:
    """name → (messages, consumers)"""
    out: dict[str, tuple[int, int]] = {}
    for line in _ctl("list_queues", "-p", vhost, "name", "messages", "consumers", "--no-table-headers").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            out[parts[0]] = (int(parts[1]), int(parts[2]))
    return out


async def _restart_broker(vhost: str, consumer_queues: list[str], full: bool) -> float:
    """Restart RabbitMQ; return seconds until every consumer queue has a consumer again."""
    if full:
        await asyncio.to_thread(_ctl, "stop")
        await asyncio.to_thread(subprocess.run, ["rabbitmq-server", "-detached"], check=True)
        await asyncio.sleep(2)
        await asyncio.to_thread(_ctl, "await_startup", "--timeout", "120")
    else:
        await asyncio.to_thread(_ctl, "stop_app")
        await asyncio.sleep(3)
        await asyncio.to_thread(_ctl, "start_app")
    back = time.monotonic()
    deadline = back + 60
    while time.monotonic() < deadline:
        try:
            queues = await asyncio.to_thread(_queues, vhost)
        except subprocess.CalledProcessError:
            queues = {}
        if queues and all(queues.get(q, (0, 0))[1] > 0 for q in consumer_queues):
            return time.monotonic() - back
        await asyncio.sleep(0.5)
    return float("inf")


@pytest.mark.slow
async def test_soak_nothing_lost_nothing_doubled(
    amqp_url: str, database_factory: Callable[[str], Awaitable[str]], smtp_server: SmtpServer, tmp_path: Path
) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    identity_db = await database_factory("soak_identity")
    notifications_db = await database_factory("soak_notifications")
    id_env = service_env("IDENTITY", identity_db, amqp_url, relay_batch_size=500)
    n_env = service_env(
        "NOTIFICATIONS",
        notifications_db,
        amqp_url,
        smtp_port=smtp_server.port,
        mail_poll_interval=0.2,
        mail_send_batch=100,
        # the killed consumer's claimed, unsent emails are due again when its lease ends
        mail_send_lease_seconds=5,
        smtp_timeout=1,
        mail_retry_base_seconds=0.5,
        mail_max_attempts=30,
    )
    relays = [ServiceProcess("identity", id_env, log_dir=tmp_path) for _ in range(2)]
    consumers = [ServiceProcess("notifications", n_env, log_dir=tmp_path) for _ in range(2)]
    for p in [*relays, *consumers]:
        p.start()
    # The queues the notifications process really consumes (a line in SUBSCRIPTIONS whose handler
    # is not written yet has a queue but no consumer). With single-active-consumer queues the
    # broker still lists both replicas as consumers; one of them is fed at a time.
    consumer_queues = [spec.subscription.queue for spec in notification_handlers.specs.values()]
    try:
        await wait_until(lambda: fetchval(identity_db, "SELECT to_regclass('outbox') IS NOT NULL"), what="migrated")
        await wait_until(
            lambda: fetchval(notifications_db, "SELECT to_regclass('emails') IS NOT NULL"), what="migrated"
        )
        produced: list[tuple[object, str]] = []
        started = time.monotonic()
        recoveries: list[float] = []

        async def produce() -> None:
            for i in range(0, EVENTS, BATCH):
                produced.extend(await insert_account_registered(identity_db, min(BATCH, EVENTS - i), tag=f"s{i}-"))
                await asyncio.sleep(0.4)

        async def chaos() -> None:
            await asyncio.sleep(4)
            recoveries.append(await _restart_broker(vhost, consumer_queues, full=False))
            await asyncio.sleep(2)
            relays[0].kill()
            consumers[0].kill()
            await asyncio.sleep(3)
            recoveries.append(await _restart_broker(vhost, consumer_queues, full=True))
            relays[0].start()
            consumers[0].start()

        await asyncio.gather(produce(), chaos())
        await wait_until(
            lambda: fetchval(identity_db, "SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"),
            timeout=300,
            what="every event published",
        )
        await wait_until(
            lambda: fetchval(notifications_db, "SELECT count(*) >= $1 FROM emails", EVENTS),
            timeout=300,
            what="every event consumed",
        )
        await wait_until(
            lambda: fetchval(notifications_db, "SELECT count(*) = 0 FROM emails WHERE status = 'pending'"),
            timeout=600,
            what="every email sent",
        )
        elapsed = time.monotonic() - started
        email_rows = await fetchval(notifications_db, "SELECT count(*) FROM emails")
        distinct_events = await fetchval(notifications_db, "SELECT count(DISTINCT event_id) FROM emails")
        failed = await fetchval(notifications_db, "SELECT count(*) FROM emails WHERE status = 'failed'")
        produced_ids = {str(e) for e, _ in produced}
        consumed_ids = {
            str(r) for r in (await fetchval(notifications_db, "SELECT array_agg(event_id) FROM emails") or [])
        }
        lost = len(produced_ids - consumed_ids)
        duplicate_effects = int(email_rows) - int(distinct_events)
        smtp_ids = Counter(str(m.message["Message-ID"]) for m in smtp_server.received)
        smtp_duplicates = sum(c - 1 for c in smtp_ids.values() if c > 1)
        queues = await asyncio.to_thread(_queues, vhost)
        dlq_messages = {q: v[0] for q, v in queues.items() if q.endswith(".dlq") and v[0]}
        print(
            f"\nsoak: produced={len(produced)} consumed={len(consumed_ids)} lost={lost} "
            f"duplicate_effects={duplicate_effects} failed_emails={failed} smtp_received={len(smtp_server.received)} "
            f"smtp_duplicate_deliveries={smtp_duplicates} dlq={dlq_messages} "
            f"consumers_back_after_restart_s={[round(r, 1) for r in recoveries]} elapsed_s={elapsed:.1f}"
        )
        assert len(produced) == EVENTS
        assert lost == 0
        assert duplicate_effects == 0
        assert failed == 0
        assert not dlq_messages
        assert all(r <= 30 for r in recoveries), recoveries
    finally:
        for p in [*relays, *consumers]:
            p.stop()
