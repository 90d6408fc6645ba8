"""Emails are not kept forever: past ``NOTIFICATIONS_EMAIL_RETENTION_DAYS`` the sent, failed and
suppressed ones go with their replay history, counted from their last change; pending and awaiting
ones stay however old; a retention that would let a redelivered event or a rate limit miss its
emails is refused at start; a purge batch reads the batch, not the table. Real PostgreSQL; time
moves on the service's clock, nothing sleeps for it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifications import awaiting, retention
from notifications.bootstrap import SERVICE_ROOT
from notifications.config import NotificationsSettings
from shared.clock import ManualClock
from shared.db import make_engine, make_session_factory
from shared.migrations import upgrade_head
from shared.testing import RAW_LOGS, TEST_OVERRIDES, SmtpServer, eventually, plan_rows_read

from .conftest import StartService

T0 = datetime(2027, 6, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
RETENTION = 365
LEASE = timedelta(seconds=120)


def settings(**overrides: Any) -> NotificationsSettings:
    return NotificationsSettings(**{**TEST_OVERRIDES, "email_retention_days": RETENTION, **overrides})


@pytest.fixture
async def engine(database_factory: Callable[[str], Awaitable[str]]) -> AsyncIterator[AsyncEngine]:
    made = make_engine(await database_factory("notifications_retention"), pool_size=2, max_overflow=0)
    try:
        await upgrade_head(made, SERVICE_ROOT)
        yield made
    finally:
        await made.dispose()


async def email(
    engine: AsyncEngine,
    status: str,
    created: datetime,
    *,
    changed: datetime | None = None,
    sent: datetime | None = None,
    replays: tuple[datetime, ...] = (),
) -> uuid.UUID:
    """An email as the service leaves it: queued at ``created``, its ``next_attempt_at`` moved to
    its last change (a send's lease end, a replay, ...), with an audit row per replay."""
    email_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                """
                INSERT INTO emails (id, dedupe_key, event_id, event_type, template, recipient_key,
                                    recipient_account_id, to_address, to_name, language, subject, body_text,
                                    body_html, message_id, status, created_at, next_attempt_at, sent_at)
                VALUES (:id, :key, gen_random_uuid(), 'account.registered', 'welcome', :recipient, :id,
                        :address, '张三', 'zh', '欢迎', 'text', '<p>html</p>', :message_id, :status, :created,
                        :changed, :sent)
                """
            ),
            {
                "id": email_id,
                "key": f"{email_id}:welcome",
                "recipient": f"account:{email_id}",
                "address": f"r-{email_id.hex[:12]}@example.org",
                "message_id": f"<{email_id.hex}@example.org>",
                "status": status,
                "created": created,
                "changed": changed or created,
                "sent": sent,
            },
        )
        for replayed_at in replays:
            await conn.execute(
                text(
                    """
                    INSERT INTO email_replays (id, email_id, replayed_by_account_id, previous_status, replayed_at)
                    VALUES (gen_random_uuid(), :email_id, gen_random_uuid(), 'failed', :at)
                    """
                ),
                {"email_id": email_id, "at": replayed_at},
            )
    return email_id


async def kept(engine: AsyncEngine) -> set[uuid.UUID]:
    async with engine.connect() as conn:
        return set((await conn.execute(text("SELECT id FROM emails"))).scalars())


async def replays_of(engine: AsyncEngine) -> dict[uuid.UUID, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT email_id, count(*) FROM email_replays GROUP BY email_id"))
        return {email_id: count for email_id, count in rows}


def sent_at(when: datetime, **kwargs: Any) -> dict[str, Any]:
    """A sent email's times: sent at ``when``, its last claim's lease ending just after."""
    return {"sent": when, "changed": when + LEASE, **kwargs}


async def test_final_emails_past_the_retention_go_with_their_replay_history(engine: AsyncEngine) -> None:
    clock = ManualClock(T0)
    year = RETENTION * DAY
    sent = await email(engine, "sent", T0 - year - 3 * DAY, **sent_at(T0 - year - 3 * DAY))
    # failed long ago, replayed, failed again for good a day past the retention
    failed = await email(engine, "failed", T0 - 2 * year, changed=T0 - year - DAY, replays=(T0 - year - DAY - LEASE,))
    suppressed = await email(engine, "suppressed", T0 - year - DAY)
    # inside the retention: sent a day ago; queued long ago but replayed (and sent) 100 days ago;
    # failed long ago but replayed 100 days ago and failed again then; suppressed 364 days ago
    recent_sent = await email(engine, "sent", T0 - DAY, **sent_at(T0 - DAY))
    replayed_sent = await email(engine, "sent", T0 - 2 * year, replays=(T0 - 100 * DAY,), **sent_at(T0 - 100 * DAY))
    replayed_failed = await email(
        engine, "failed", T0 - 2 * year, changed=T0 - 100 * DAY, replays=(T0 - 500 * DAY, T0 - 100 * DAY)
    )
    young_suppressed = await email(engine, "suppressed", T0 - year + DAY)

    assert await retention.purge_expired(engine, clock, settings()) == 3

    assert await kept(engine) == {recent_sent, replayed_sent, replayed_failed, young_suppressed}
    assert not {sent, failed, suppressed} & await kept(engine)
    # the replay history went with its email; the kept emails' stays
    assert await replays_of(engine) == {replayed_sent: 1, replayed_failed: 2}
    assert await retention.purge_expired(engine, clock, settings()) == 0

    # a year later the rest has gone too
    clock.advance(year + DAY)
    assert await retention.purge_expired(engine, clock, settings(), batch=2) == 4
    assert await kept(engine) == set()
    assert await replays_of(engine) == {}


async def test_emails_pending_or_awaiting_their_recipient_are_never_deleted_however_old(
    engine: AsyncEngine,
) -> None:
    clock = ManualClock(T0)
    ancient = T0 - 10 * RETENTION * DAY
    pending = await email(engine, "pending", ancient)
    retrying = await email(engine, "pending", ancient, changed=ancient + DAY, replays=(ancient + DAY,))
    waiting = await email(engine, "awaiting_recipient", ancient)
    old_sent = await email(engine, "sent", ancient, **sent_at(ancient))

    assert await retention.purge_expired(engine, clock, settings(), batch=1) == 1
    assert await kept(engine) == {pending, retrying, waiting}
    assert await replays_of(engine) == {retrying: 1}
    assert old_sent not in await kept(engine)


async def test_an_email_given_up_on_waiting_for_its_recipient_counts_from_when_it_was_given_up_on(
    engine: AsyncEngine,
) -> None:
    clock = ManualClock(T0)
    # it waited 400 days because no sweep ran (the service was down); the sweep gives up on it now
    waited_since = T0 - 400 * DAY
    email_id = await email(engine, "awaiting_recipient", waited_since)
    assert await awaiting.expire_awaiting(make_session_factory(engine), clock, settings()) == 1

    assert await retention.purge_expired(engine, clock, settings()) == 0
    assert await kept(engine) == {email_id}
    clock.advance(RETENTION * DAY - DAY)
    assert await retention.purge_expired(engine, clock, settings()) == 0
    clock.advance(2 * DAY)
    assert await retention.purge_expired(engine, clock, settings()) == 1
    assert await kept(engine) == set()


async def test_a_retention_of_0_keeps_every_email(engine: AsyncEngine) -> None:
    clock = ManualClock(T0)
    ancient = T0 - 10 * RETENTION * DAY
    ids = {
        await email(engine, "sent", ancient, **sent_at(ancient)),
        await email(engine, "failed", ancient, replays=(ancient,)),
        await email(engine, "suppressed", ancient),
    }
    assert await retention.purge_expired(engine, clock, settings(email_retention_days=0)) == 0
    assert await kept(engine) == ids
    assert len(await replays_of(engine)) == 1


def test_a_retention_the_inbox_marks_or_the_rate_window_outlast_is_refused_at_settings_load() -> None:
    assert settings().email_retention_days == 365
    assert NotificationsSettings(**TEST_OVERRIDES).email_retention_days == 365  # the default
    assert settings(email_retention_days=0).email_retention_days == 0  # forever
    # the inbox marks are kept outbox_retention_days (7): a redelivery is recognised by them that long
    assert settings(email_retention_days=8).minimum_email_retention_days() == 8
    for days in (1, 7):
        with pytest.raises(ValidationError, match=r"email_retention_days must be 0 \(keep forever\) or at least 8"):
            settings(email_retention_days=days)
    with pytest.raises(ValidationError, match="at least 31"):
        settings(email_retention_days=30, outbox_retention_days=30)
    assert settings(email_retention_days=31, outbox_retention_days=30).email_retention_days == 31
    # a rate window of 10 days: emails created in the last 10 days are counted
    with pytest.raises(ValidationError, match=r"at least 11.*mail_rate_window_seconds"):
        settings(email_retention_days=10, mail_rate_window_seconds=10 * 86400)
    assert settings(email_retention_days=11, mail_rate_window_seconds=10 * 86400).email_retention_days == 11
    with pytest.raises(ValidationError):
        settings(email_retention_days=-1)


async def test_the_service_purges_on_its_own_and_logs_counts_only(
    start_service: StartService,
    smtp_server: SmtpServer,
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    url = await database_factory("notifications_retention_service")
    clock = ManualClock(datetime.now(UTC))
    days = 400  # this test's own, to find its log line
    old = clock.now() - (days + 1) * DAY
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        await upgrade_head(engine, SERVICE_ROOT)
        gone = {await email(engine, "sent", old, **sent_at(old)), await email(engine, "failed", old, replays=(old,))}
        stays = await email(engine, "pending", old)
    finally:
        await engine.dispose()

    # the job runs when the service starts, then hourly
    async with start_service(smtp_server, database_url=url, clock=clock, email_retention_days=days) as service:

        async def purged() -> bool:
            return await kept(service.runtime.engine) == {stays}

        await eventually(purged, timeout=20, interval=0.1)
        assert gone.isdisjoint(await kept(service.runtime.engine))
        assert await replays_of(service.runtime.engine) == {}
    [line] = [json.loads(x) for x in RAW_LOGS.lines if "emails_purged" in x and f'"retention_days": {days}' in x]
    assert line["count"] == 2
    assert set(line) - {"event", "level", "logger", "timestamp", "service"} == {"count", "retention_days"}


async def test_a_purge_batch_reads_the_batch_not_the_table(engine: AsyncEngine) -> None:
    """30,000 emails, one in ten final and past the retention, spread through the table among
    recent ones and old pending ones: a batch of 500 reads about 2 x 500 rows (the index, then the
    rows by their addresses), not the table; the whole purge leaves exactly the others."""
    n, batch = 30_000, 500
    async with engine.begin() as conn:
        await conn.execute(
            text(
                """
                INSERT INTO emails (id, dedupe_key, event_id, event_type, template, recipient_key,
                                    recipient_account_id, to_address, to_name, language, subject, body_text,
                                    body_html, message_id, status, created_at, next_attempt_at, sent_at)
                SELECT gen_random_uuid(), 'k' || g, gen_random_uuid(), 'account.registered', 'welcome',
                       'account:' || g, gen_random_uuid(), 'v' || g || '@example.org', '张三', 'zh', '欢迎',
                       'text', '<p>html</p>', '<m' || g || '>',
                       CASE WHEN g % 10 = 0 THEN (ARRAY['sent', 'failed', 'suppressed'])[g % 3 + 1]
                            WHEN g % 10 = 1 THEN 'pending'
                            ELSE (ARRAY['sent', 'failed', 'suppressed'])[g % 3 + 1] END,
                       t, t, NULL
                  FROM generate_series(1, :n) AS g,
                       LATERAL (SELECT CASE WHEN g % 10 IN (0, 1) THEN CAST(:old AS timestamptz)
                                            ELSE CAST(:recent AS timestamptz) END - g * interval '1 second' AS t) AS at
                """
            ),
            {"n": n, "old": T0 - (RETENTION + 30) * DAY, "recent": T0 - DAY},
        )
        await conn.execute(text("ANALYZE emails"))
    clock = ManualClock(T0)
    cutoff = T0 - RETENTION * DAY
    # the statement shared.db.delete_in_batches runs for each batch, explained and rolled back
    statement = (
        "EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM emails WHERE ctid = ANY(ARRAY("
        f"SELECT ctid FROM emails WHERE {retention.CONDITION} LIMIT :batch))"
    )
    async with engine.connect() as conn, conn.begin():
        plan = (await conn.execute(text(statement), {"cutoff": cutoff, "batch": batch})).scalar_one()
        await conn.rollback()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    read = plan_rows_read(plan[0]["Plan"])
    assert batch <= read <= 2 * batch + 50, (read, plan)
    assert "ix_emails_final_age" in json.dumps(plan)

    started = time.perf_counter()
    purged = await retention.purge_expired(engine, clock, settings(), batch=batch)
    elapsed = time.perf_counter() - started
    assert purged == n // 10
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT status, count(*) FROM emails GROUP BY status"))).all()
        left: dict[str, int] = {status: count for status, count in rows}
    assert left["pending"] == n // 10  # the old pending ones
    assert sum(left.values()) == n - n // 10
    assert elapsed < 30, elapsed
