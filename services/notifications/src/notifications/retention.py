"""Emails are not kept forever: past ``email_retention_days`` (365; 0 keeps them) an email in a final
state is deleted, with its replay history, so a national deployment does not hold every recipient's
address, name and mail for good.

*Which emails.* Only ``sent``, ``failed`` and ``suppressed`` ones (``models.FINAL_STATUSES``): an email
``pending`` or ``awaiting_recipient`` still has work to do and is never deleted, however old.

*Counted from when.* Its last change: the latest of ``created_at``, ``next_attempt_at`` and
``sent_at``. ``next_attempt_at`` moves with everything that happens to an email: it is set when the
email is queued (a suppressed one ends there), addressed once its recipient arrives, replayed (so an
email an operator replayed a month ago counts from the replay, not from its first queueing), claimed
by a send loop (the lease's end, at most ``mail_send_lease_seconds`` after the last attempt that
sent it or gave up on it) and given up on waiting for its recipient (``notifications.awaiting``).
The other two only make the rule hold by construction: no email is deleted before it is
``email_retention_days`` old, nor one sent since.

*What the key's disappearance means.* The row's unique key (event, recipient, template) goes with
it, so the same event delivered again would queue the email again. That cannot happen past the
retention: an event already handled comes again only as a broker redelivery after a lost
acknowledgement or a relay's republish after a crash (seconds to minutes; a dead-lettered event
was never handled: its transaction rolled back, no email was queued). Such a redelivery is
recognised first by the inbox mark, kept ``outbox_retention_days`` (7), and the settings refuse an
email retention that does not outlast the marks (``NotificationsSettings.minimum_email_retention_days``).

*Rate limits.* They count the emails of a recipient and template created within
``mail_rate_window_seconds``; the settings also refuse a retention not longer than that window,
and an email counted by it was created inside it, so it is never old enough to go.

Every replica runs the purge hourly (the worker's, or the API process's, background jobs); the
emails go ``BATCH`` per transaction (``shared.db.delete_in_batches``), their replays with them (the
foreign key cascades), found by the partial index ``ix_emails_final_age``, so a batch reads about
the batch whatever the table's size. Two replicas purging at once wait on each other's rows and
delete each row once. A row an operator is replaying at that moment is locked by the replay: the
purge waits, finds it pending and leaves it. Only counts are logged. Times come from the service's
clock.
"""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from notifications.config import NotificationsSettings
from notifications.models import FINAL_STATUSES_SQL
from shared.clock import Clock
from shared.db import delete_in_batches
from shared.logging import get_logger

log = get_logger("notifications.retention")

PURGED = Counter("vs_emails_purged_total", "Emails in a final state deleted past the retention, with their replays")

BATCH = 5_000
INTERVAL_SECONDS = 3600

#: the emails past the retention (:cutoff is the clock's now minus the retention), oldest first. The
#: statuses are written into the statement, not bound, so the planner can use the partial index
#: ix_emails_final_age; the order (delete_in_batches puts its LIMIT after the condition) makes it
#: walk the index and stop after the batch, where a bitmap scan would read every old entry of the
#: index for each batch (a backlog of millions, when the retention is first turned on)
CONDITION = (
    f"{FINAL_STATUSES_SQL} AND next_attempt_at < CAST(:cutoff AS timestamptz)"
    " AND created_at < CAST(:cutoff AS timestamptz)"
    " AND (sent_at IS NULL OR sent_at < CAST(:cutoff AS timestamptz))"
    " ORDER BY next_attempt_at"
)


async def purge_expired(
    engine: AsyncEngine, clock: Clock, settings: NotificationsSettings, *, batch: int = BATCH
) -> int:
    """Delete the final emails whose last change is older than the retention (and their replays), a
    batch per transaction; returns how many emails went. Nothing with a retention of 0."""
    days = settings.email_retention_days
    if not days:
        return 0
    cutoff = clock.now() - timedelta(days=days)
    total = await delete_in_batches(engine, "emails", CONDITION, {"cutoff": cutoff}, batch=batch)
    if total:
        PURGED.inc(total)
        log.info("emails_purged", count=total, retention_days=days)
    return total
