"""Sends queued emails: claims due rows with SKIP LOCKED (replicas are safe), sends, records.

``mail_senders`` loops run side by side, each claiming its own batch (and, in the SMTP
transport, using its own kept-open connection). A temporary failure (server down, 4xx)
schedules another attempt with exponential back-off and jitter; a permanent one (5xx) or the
last attempt marks the email failed with the reason, where operators see and replay it.

A batch is claimed with a lease, not held in a transaction: the claim moves the rows'
``next_attempt_at`` to the end of the lease (``mail_send_lease_seconds``) and commits, so no other
loop or replica takes them meanwhile. Each email's outcome is then recorded (and committed) as soon
as the server answered. A crash mid-batch therefore loses nothing: the rows it had not recorded are
due again when the lease ends. At most the one email the server accepted just before the crash is
sent a second time, with the same Message-ID (derived from its unique key), which mail systems fold
into one; SMTP offers nothing stronger. A loop stopped on purpose gives its unsent emails back at
once; one that is close to the end of its lease (a very slow server) stops and gives back the rest.

Failpoints for crash tests: ``sender_before_send`` (batch claimed, nothing sent) and
``sender_after_send`` (sent, not yet recorded).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import deque
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from notifications.config import SMTP_TIMEOUTS_PER_SEND, NotificationsSettings
from notifications.models import BODY_FORGOTTEN, PENDING, WITHHELD_BODIES, Email
from notifications.models import FAILED as FAILED_STATUS
from notifications.models import SENT as SENT_STATUS
from notifications.transport import LEASE_RUNS_OUT, PermanentSendError, TemporarySendError, Transport
from shared.clock import Clock
from shared.failpoints import failpoint
from shared.logging import get_logger

log = get_logger("notifications.sender")

SENT = Counter("vs_emails_sent_total", "Emails accepted by the mail server", ["template"])
FAILED = Counter("vs_emails_failed_total", "Emails given up on", ["template"])
DEFERRED = Counter("vs_emails_deferred_total", "Temporary send failures", ["template"])


class Outcome(NamedTuple):
    """What one try did to an email (``status`` stays pending for a deferral)."""

    status: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None


#: One outcome, committed on its own (the connection is outside any transaction); a fixed
#: statement, so the driver prepares it once per connection. Its commit does not wait for the
#: disk (``synchronous_commit`` off for this statement's transaction only): were the database to
#: crash and lose it, the email would be due again when the lease ends, so a duplicate at worst,
#: never a loss (the email itself was queued by a durable commit).
#: an outcome is recorded only under the lease it was sent under ($7, the claim's lease end): a
#: send loop that somehow outlived its lease never overwrites what the next claimer recorded
_RECORD = """
    WITH no_flush_wait AS (SELECT set_config('synchronous_commit', 'off', true))
    UPDATE emails SET status = $2, attempts = $3, last_error = $4,
                      sent_at = coalesce($5, sent_at), next_attempt_at = coalesce($6, next_attempt_at),
                      body_text = CASE WHEN $8 THEN $9 ELSE body_text END,
                      body_html = CASE WHEN $8 THEN $9 ELSE body_html END
    WHERE id = $1 AND next_attempt_at = $7 AND EXISTS (SELECT 1 FROM no_flush_wait)
"""


class EmailSender:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        transport: Transport,
        settings: NotificationsSettings,
        clock: Clock,
    ) -> None:
        self.session_factory = session_factory
        self._engine: AsyncEngine = session_factory.kw["bind"] if session_factory is not None else None
        self.transport = transport
        self._forget_sent_bodies = settings.mail_transport != "mailbox"
        self.settings = settings
        self.clock = clock
        self._loops = max(1, settings.mail_senders)
        #: wake events of the loops waiting for work, longest-waiting first
        self._idle: deque[asyncio.Event] = deque()
        #: a notification came while every loop was busy
        self._missed = False

    def wake(self) -> None:
        """New emails are due (LISTEN/NOTIFY from the queueing transaction): wake one idle loop,
        not all of them (the others would only run empty claims), or tell a busy one to look
        again before it rests."""
        while self._idle:
            event = self._idle.popleft()
            if not event.is_set():
                event.set()
                return
        self._missed = True

    def retry_delay(self, attempts: int) -> float:
        """Exponential back-off with "equal jitter": the nominal delay (base doubling per attempt,
        capped at ``mail_retry_max_seconds``) times a random factor in [0.5, 1]. Jittered even at
        the cap, so a fleet of deferred emails never hits a recovering server in one wave."""
        nominal = min(
            self.settings.mail_retry_max_seconds,
            self.settings.mail_retry_base_seconds * (2 ** min(max(attempts - 1, 0), 30)),
        )
        return float(nominal * random.uniform(0.5, 1.0))

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._loop() for _ in range(self._loops)))
        finally:
            await self.transport.close()

    async def _loop(self) -> None:
        wake = asyncio.Event()
        backoff = 0.5
        while True:
            try:
                # whoever clears the flag claims afterwards, so it sees what was notified
                self._missed = False
                handled = await self.send_due()
                backoff = 0.5
                if handled >= self.settings.mail_send_batch:
                    self.wake()  # more are due: bring another loop in
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # the type only: a database error's text can carry the statement's parameters
                cause = getattr(exc, "orig", None) or exc.__cause__
                log.warning("sender_failed", error=type(exc).__name__, cause=type(cause).__name__ if cause else None)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            if self._missed:
                continue
            wake.clear()
            self._idle.append(wake)
            try:
                await asyncio.wait_for(wake.wait(), timeout=self.settings.mail_poll_interval)
            except TimeoutError:
                pass
            finally:
                if wake in self._idle:
                    self._idle.remove(wake)

    async def send_due(self) -> int:
        """Claim and send one batch of due emails. Returns how many were claimed."""
        now = self.clock.now()
        lease_ends = now + timedelta(seconds=self.settings.mail_send_lease_seconds)
        due = (
            select(Email.id)
            .where(Email.status == PENDING, Email.next_attempt_at <= now)
            .order_by(Email.next_attempt_at, Email.seq)
            .limit(self.settings.mail_send_batch)
            .with_for_update(skip_locked=True)
        )
        async with self.session_factory() as session, session.begin():
            claimed = await session.execute(
                update(Email)
                .where(Email.id.in_(due.scalar_subquery()))
                .values(next_attempt_at=lease_ends)
                .returning(Email),
                execution_options={"synchronize_session": False},
            )
            # in queue order (RETURNING keeps none): the claim moved every row's next attempt alike
            emails = sorted(claimed.scalars().all(), key=lambda e: e.seq)
        if not emails:
            return 0
        failpoint("sender_before_send")
        # no send starts that could outlive the lease
        last_start = lease_ends - timedelta(seconds=SMTP_TIMEOUTS_PER_SEND * self.settings.smtp_timeout)
        # and no message goes out that could still be on its way when the lease ends (its DATA, the
        # message and the final answer: two timeouts): a server answering each of a send's round
        # trips just inside the timeout took longer than the timeouts counted above, and another
        # loop claimed and sent the email beside it. Before the message, a send is cut and deferred;
        # once the message is out, only the server's answer (or its timeout) ends it
        left = (lease_ends - self.clock.now()).total_seconds()
        start_data_by = asyncio.get_running_loop().time() + left - 2 * self.settings.smtp_timeout
        unsent = {email.id for email in emails}
        server_down: TemporarySendError | None = None
        try:
            async with self._engine.connect() as conn:
                # the driver's connection, outside any transaction: each statement commits itself
                recorder: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
                for email in emails:
                    if self.clock.now() > last_start:
                        log.warning("sender_lease_running_out", unsent=len(unsent))
                        break
                    outcome, server_down, stopping = await self._send_to_its_end(email, server_down, start_data_by)
                    if stopping and outcome.status == PENDING and outcome.last_error == LEASE_RUNS_OUT:
                        raise asyncio.CancelledError  # cut before its message: given back, no attempt counted
                    # tried: never given back, which would make it due at once and, sent, send it
                    # again; its outcome is recorded, on another connection if this one was lost
                    unsent.discard(email.id)
                    # a one-use link is not kept once sent or finally failed (the local mailbox,
                    # read on the machine itself, keeps it: how a newcomer follows the link)
                    forget = self._forget_sent_bodies and outcome.status in (SENT_STATUS, FAILED_STATUS)
                    forget = forget and email.template in WITHHELD_BODIES
                    args = (email.id, *outcome, lease_ends, forget, BODY_FORGOTTEN)
                    try:
                        # committed before the next send: a crash resends at most this one email
                        recorded = await recorder.execute(_RECORD, *args)
                    except Exception:
                        await self._record_again(args, lease_ends)
                        if stopping:
                            raise asyncio.CancelledError from None  # the stop goes on
                        raise  # this connection is gone: the rest of the batch is given back
                    if recorded == "UPDATE 0":
                        # the lease had ended and another loop claimed it: its outcome stands
                        log.warning("sender_outcome_dropped", email_id=str(email.id), status=outcome.status)
                    if stopping:
                        raise asyncio.CancelledError  # the stop goes on; the rest is given back
        finally:
            if unsent:
                # stopped, failed or out of time: what was not sent is due again now, not at the
                # lease's end (shielded: a stopping loop still gives them back)
                await asyncio.shield(self._give_back(unsent, lease_ends))
        return len(emails)

    async def _send_to_its_end(
        self, email: Email, server_down: TemporarySendError | None, start_data_by: float
    ) -> tuple[Outcome, TemporarySendError | None, bool]:
        """:meth:`_send_one`, which a stop does not cut once its message is out: given back then,
        the email went again (SMTP cannot take back a message it is accepting; with eight loops,
        a stop during a slow server's answers sent eight twice). Stopping, sends not yet at their
        message give up at once, and one whose message is out waits for the answer (at most two
        ``SMTP_TIMEOUT``s: the DATA command's and the message's), is recorded by
        the caller, and the stop goes on (the third value: stopping)."""
        send = asyncio.ensure_future(self._send_one(email, server_down, start_data_by))
        try:
            outcome, server_down = await asyncio.shield(send)
            return outcome, server_down, False
        except asyncio.CancelledError:
            self.transport.send_no_more()
            try:
                outcome, server_down = await asyncio.wait_for(asyncio.shield(send), 2 * self.settings.smtp_timeout + 1)
            except BaseException:
                send.cancel()  # a server past its timeouts: given back, the stop goes on
                raise asyncio.CancelledError from None
            return outcome, server_down, True

    async def _record_again(self, args: tuple[Any, ...], lease_ends: datetime) -> None:
        """Record an outcome whose connection was lost (a database restart, a failover), on new
        connections, backing off, until shortly before the lease ends. Given up, the email is
        claimed again when the lease ends: sent, it would go once more (logged)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (lease_ends - self.clock.now()).total_seconds() - self.settings.smtp_timeout
        delay = 0.1
        while loop.time() < deadline:
            await asyncio.sleep(delay)
            try:
                async with self._engine.connect() as conn:
                    recorder: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
                    await recorder.execute(_RECORD, *args)
                return
            except Exception as exc:
                log.warning("sender_record_retry", email_id=str(args[0]), error=type(exc).__name__)
                delay = min(delay * 2, 5.0)
        log.error("sender_outcome_lost", email_id=str(args[0]), status=args[1])

    async def _give_back(self, ids: set[uuid.UUID], lease_ends: datetime) -> None:
        try:
            async with self.session_factory() as session, session.begin():
                await session.execute(
                    update(Email)
                    .where(Email.id.in_(ids), Email.status == PENDING, Email.next_attempt_at == lease_ends)
                    .values(next_attempt_at=self.clock.now()),
                    execution_options={"synchronize_session": False},
                )
        except Exception as exc:  # the database is gone too: they are due again when the lease ends
            log.warning("sender_give_back_failed", emails=len(ids), error=type(exc).__name__)

    async def _send_one(
        self, email: Email, server_down: TemporarySendError | None, start_data_by: float
    ) -> tuple[Outcome, TemporarySendError | None]:
        """Send one email; returns the outcome to record. Once the server could not be reached, the rest
        of the batch is deferred with that reason without trying: a dead server would otherwise
        cost a connection timeout per email while the batch's lease runs."""
        attempts = email.attempts + 1
        now = self.clock.now()
        outcome: Outcome
        try:
            if server_down is not None:
                raise server_down
            await self.transport.send(email, start_data_by)
        except PermanentSendError as exc:
            FAILED.labels(email.template).inc()
            # the reason goes to the row (operators read it there): servers often echo the address
            log.error("email_failed", email_id=str(email.id), template=email.template)
            outcome = Outcome(FAILED_STATUS, attempts, str(exc)[:1000])
        except Exception as exc:
            outcome = self._deferred(email, attempts, now, exc)
            if isinstance(exc, TemporarySendError) and exc.unreachable:
                server_down = exc
        else:
            failpoint("sender_after_send")
            SENT.labels(email.template).inc()
            log.debug("email_sent", email_id=str(email.id), template=email.template)
            outcome = Outcome(SENT_STATUS, attempts, None, sent_at=now)
        return outcome, server_down

    def _deferred(self, email: Email, attempts: int, now: datetime, exc: Exception) -> Outcome:
        # TemporarySendError (server down, timeout, 4xx) or an unexpected error (a message that
        # cannot be built is already permanent, see transport.send): a poison email must not block
        # the queue, so it too ends as failed after the last attempt.
        reason = str(exc)[:1000] if isinstance(exc, TemporarySendError) else f"unexpected: {type(exc).__name__}"
        if attempts >= self.settings.mail_max_attempts:
            FAILED.labels(email.template).inc()
            log.error("email_gave_up", email_id=str(email.id), template=email.template, attempts=attempts)
            return Outcome(FAILED_STATUS, attempts, reason)
        DEFERRED.labels(email.template).inc()
        delay = self.retry_delay(attempts)
        log.info("email_deferred", email_id=str(email.id), attempts=attempts, retry_in=round(delay, 2))
        return Outcome(PENDING, attempts, reason, next_attempt_at=now + timedelta(seconds=delay))
