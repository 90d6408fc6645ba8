"""Crash points (issue 7): a process dies at the worst moment and the system still ends with
exactly one effect. The processes are real service workers; they die at failpoints with
``os._exit`` (no cleanup, as SIGKILL) and are started again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from shared.failpoints import EXIT_CODE
from shared.testing import SmtpServer
from tests.faults.procs import ServiceProcess, fetchval, insert_account_registered, service_env, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
async def system(
    amqp_url: str, database_factory: Callable[[str], Awaitable[str]], smtp_server: SmtpServer, tmp_path: object
) -> AsyncIterator[dict[str, object]]:
    identity_db = await database_factory("fault_identity")
    notifications_db = await database_factory("fault_notifications")
    identity = ServiceProcess(
        "identity",
        service_env("IDENTITY", identity_db, amqp_url),
        log_dir=tmp_path,  # type: ignore[arg-type]
    )
    notifications = ServiceProcess(
        "notifications",
        service_env("NOTIFICATIONS", notifications_db, amqp_url, smtp_port=smtp_server.port, mail_poll_interval=0.2),
        log_dir=tmp_path,  # type: ignore[arg-type]
    )
    # Migrate both and let the consumers declare their queues before anything is produced.
    identity.start()
    notifications.start()
    await wait_until(
        lambda: fetchval(identity_db, "SELECT to_regclass('outbox') IS NOT NULL"), what="identity migrated"
    )
    await wait_until(
        lambda: fetchval(notifications_db, "SELECT to_regclass('emails') IS NOT NULL"), what="notifications migrated"
    )
    yield {
        "identity": identity,
        "notifications": notifications,
        "identity_db": identity_db,
        "notifications_db": notifications_db,
    }
    identity.stop()
    notifications.stop()


async def _emails_for(db: str, address: str) -> int:
    return int(await fetchval(db, "SELECT count(*) FROM emails WHERE to_address = $1", address))


async def test_producer_killed_after_commit_before_publish_delivers_once(
    system: dict[str, object], smtp_server: SmtpServer
) -> None:
    identity: ServiceProcess = system["identity"]  # type: ignore[assignment]
    identity_db: str = system["identity_db"]  # type: ignore[assignment]
    identity.stop()
    identity.start(failpoints="relay_before_publish")
    [(event_id, address)] = await insert_account_registered(identity_db, tag="p1")
    assert await identity.wait_exit() == EXIT_CODE
    assert await fetchval(identity_db, "SELECT published_at IS NULL FROM outbox WHERE id = $1", event_id)

    identity.start()
    await smtp_server.wait_for(lambda m: address in m.rcpt_tos, timeout=30)
    await wait_until(
        lambda: fetchval(identity_db, "SELECT published_at IS NOT NULL FROM outbox WHERE id = $1", event_id),
        what="event marked published",
    )
    await _settle()
    received = len(smtp_server.to(address))
    print(f"producer crash before publish: events=1 emails_received={received}")
    assert received == 1


async def test_relay_killed_after_publish_before_mark_gives_one_effect(
    system: dict[str, object], smtp_server: SmtpServer
) -> None:
    identity: ServiceProcess = system["identity"]  # type: ignore[assignment]
    notifications: ServiceProcess = system["notifications"]  # type: ignore[assignment]
    identity_db: str = system["identity_db"]  # type: ignore[assignment]
    notifications_db: str = system["notifications_db"]  # type: ignore[assignment]
    identity.stop()
    identity.start(failpoints="relay_after_publish")
    [(event_id, address)] = await insert_account_registered(identity_db, tag="p2")
    assert await identity.wait_exit() == EXIT_CODE
    # Published but not marked: the restarted relay publishes it again.
    assert await fetchval(identity_db, "SELECT published_at IS NULL FROM outbox WHERE id = $1", event_id)

    identity.start()
    await wait_until(
        lambda: fetchval(identity_db, "SELECT published_at IS NOT NULL FROM outbox WHERE id = $1", event_id),
        what="event marked published",
    )
    await smtp_server.wait_for(lambda m: address in m.rcpt_tos, timeout=30)
    await wait_until(lambda: _duplicates_seen(notifications, str(event_id)), what="the duplicate delivery")
    await _settle()
    inbox = await fetchval(notifications_db, "SELECT count(*) FROM inbox WHERE message_id = $1", event_id)
    received = len(smtp_server.to(address))
    print(f"relay crash after publish: deliveries>=2 inbox_rows={inbox} emails_received={received}")
    assert received == 1
    assert await _emails_for(notifications_db, address) == 1


async def test_consumer_killed_after_effect_before_ack_gives_one_effect(
    system: dict[str, object], smtp_server: SmtpServer
) -> None:
    notifications: ServiceProcess = system["notifications"]  # type: ignore[assignment]
    identity_db: str = system["identity_db"]  # type: ignore[assignment]
    notifications_db: str = system["notifications_db"]  # type: ignore[assignment]
    notifications.stop()
    notifications.start(failpoints="consumer_after_commit")
    [(_event_id, address)] = await insert_account_registered(identity_db, tag="p3")
    assert await notifications.wait_exit() == EXIT_CODE

    notifications.start()
    await smtp_server.wait_for(lambda m: address in m.rcpt_tos, timeout=30)
    await wait_until(lambda: _duplicates_seen(notifications, None), what="the redelivery absorbed by the inbox")
    await _settle()
    received = len(smtp_server.to(address))
    print(f"consumer crash after commit: emails_received={received}")
    assert received == 1
    assert await _emails_for(notifications_db, address) == 1


async def _duplicates_seen(proc: ServiceProcess, event_id: str | None) -> bool:
    logs = proc.all_logs()
    return any("duplicate_ignored" in line and (event_id is None or event_id in line) for line in logs.splitlines())


async def _settle() -> None:
    # Give a would-be second email time to show up before counting.
    import asyncio

    await asyncio.sleep(1.5)
