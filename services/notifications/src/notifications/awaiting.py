"""Emails waiting for their recipient's address: given up on after the longest wait, and gauged.

An email to an account the recipients read model does not know yet waits as
``awaiting_recipient`` for the account's ``account.registered`` (see ``outbox``). Should that
event never come (dead-lettered, lost), the email would wait forever, unseen. A periodic sweep,
run by every replica, marks the emails that have waited longer than
``awaiting_recipient_max_hours`` failed with :data:`RECIPIENT_UNKNOWN`, where operators list and
replay them like any failed email. The wait is counted from ``next_attempt_at``, which for such an
email is when it began to wait: queued, or replayed by an operator while the account was still
unknown (so a replayed email waits afresh). Given up on, it holds that moment instead, from which
the retention counts (``notifications.retention``). Each pass also sets two gauges, the number of
emails waiting and the longest wait, so an alert can fire long before anything is given up on.

Replicas are safe: each pass takes batches with ``SKIP LOCKED`` and changes only rows still
awaiting, so no email is given up on twice, and a row that a registration or a replay holds at
that moment is left to them. Times come from the service's clock.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import cast

from prometheus_client import Gauge
from sqlalchemy import DateTime, Table, bindparam, case, func, literal_column, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifications.config import NotificationsSettings
from notifications.models import AWAITING_RECIPIENT, FAILED, WITHHELD_BODIES, Email
from notifications.sender import FAILED as FAILED_TOTAL
from shared.clock import Clock
from shared.logging import get_logger

log = get_logger("notifications.awaiting")

#: the failure reason of an email whose recipient never became known (stable: operators and
#: alerts may match on its ``recipient_unknown:`` prefix)
RECIPIENT_UNKNOWN = (
    "recipient_unknown: the account's address never reached notifications (no account.registered "
    "or account.contact_changed within NOTIFICATIONS_AWAITING_RECIPIENT_MAX_HOURS); replay the email "
    "once it has arrived, or it waits again"
)

AWAITING = Gauge("vs_emails_awaiting_recipient", "Emails waiting for their recipient's address")
AWAITING_OLDEST = Gauge(
    "vs_emails_awaiting_recipient_oldest_seconds", "How long the longest-waiting email has waited for its recipient"
)

#: emails given up on per statement (and per log line of their ids)
EXPIRE_BATCH = 200

_EMAILS = cast(Table, Email.__table__)
#: written into the statements, not bound: a prepared statement's generic plan can use the partial
#: index ix_emails_awaiting only when its condition is in the statement's text
_IS_AWAITING = _EMAILS.c.status == literal_column(f"'{AWAITING_RECIPIENT}'")
_GIVEN_UP_AT = bindparam("now", type_=DateTime(timezone=True))
_EXPIRED = (
    select(_EMAILS.c.id)
    .where(_IS_AWAITING, _EMAILS.c.next_attempt_at < bindparam("waiting_since"))
    .order_by(_EMAILS.c.next_attempt_at)
    .limit(EXPIRE_BATCH)
    .with_for_update(skip_locked=True)
)
_EXPIRE = (
    update(_EMAILS)
    .where(_EMAILS.c.id.in_(_EXPIRED.scalar_subquery()), _IS_AWAITING)
    # from now on the moment it was given up on: the retention counts from there
    .values(
        status=FAILED,
        last_error=RECIPIENT_UNKNOWN,
        next_attempt_at=_GIVEN_UP_AT,
        # a one-use link given up on is kept nowhere (nor replayed)
        context=case((_EMAILS.c.template.in_(WITHHELD_BODIES), null()), else_=_EMAILS.c.context),
    )
    .returning(_EMAILS.c.id, _EMAILS.c.template)
)
_WAITING = select(func.count(), func.min(_EMAILS.c.next_attempt_at)).where(_IS_AWAITING)


async def expire_awaiting(
    session_factory: async_sessionmaker[AsyncSession], clock: Clock, settings: NotificationsSettings
) -> int:
    """Mark failed every email that waited for its recipient longer than the longest wait, a batch
    per transaction; returns how many. Only counts and ids are logged (there is no address yet)."""
    now = clock.now()
    waiting_since = now - timedelta(hours=settings.awaiting_recipient_max_hours)
    total = 0
    while True:
        async with session_factory() as session, session.begin():
            rows = (await session.execute(_EXPIRE, {"waiting_since": waiting_since, "now": now})).all()
        if not rows:
            return total
        total += len(rows)
        templates = Counter(template for _, template in rows)
        for template, count in templates.items():
            FAILED_TOTAL.labels(template).inc(count)
        log.warning(
            "emails_awaiting_recipient_expired",
            count=len(rows),
            max_hours=settings.awaiting_recipient_max_hours,
            templates=dict(templates),
            email_ids=[str(email_id) for email_id, _ in rows],
        )
        if len(rows) < EXPIRE_BATCH:
            return total


async def measure_awaiting(session_factory: async_sessionmaker[AsyncSession], clock: Clock) -> tuple[int, float]:
    """Set the gauges: how many emails wait for their recipient, and the longest wait in seconds."""
    async with session_factory() as session:
        count, oldest = (await session.execute(_WAITING)).one()
    longest = max((clock.now() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    AWAITING.set(count)
    AWAITING_OLDEST.set(longest)
    return int(count), longest


async def sweep(
    session_factory: async_sessionmaker[AsyncSession], clock: Clock, settings: NotificationsSettings
) -> int:
    """One pass: give up on the emails past the longest wait, then measure those still waiting."""
    expired = await expire_awaiting(session_factory, clock, settings)
    await measure_awaiting(session_factory, clock)
    return expired
