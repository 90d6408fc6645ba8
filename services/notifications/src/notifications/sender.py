"""Sends queued emails: claims due rows with SKIP LOCKED (replicas are safe), sends, records.

``mail_senders`` loops run side by side, each claiming its own batch (and, in the SMTP
transport, using its own kept-open connection). A temporary failure (server down, 4xx)
schedules another attempt with exponential back-off and jitter; a permanent one (5xx) or the
last attempt marks the email failed with the reason, where operators see and replay it.

A crash mid-send leaves the claimed rows pending (their transaction never commits), so they
are sent again after the restart: nothing is lost. An email the server accepted just before
the crash is sent a second time with the same Message-ID (derived from its unique key), which
mail systems fold into one; SMTP offers nothing stronger.

Failpoints for crash tests: ``sender_before_send`` (batch claimed, nothing sent) and
``sender_after_send`` (sent, not yet recorded).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifications.config import NotificationsSettings
from notifications.models import FAILED as FAILED_STATUS
from notifications.models import PENDING, Email
from notifications.models import SENT as SENT_STATUS
from notifications.transport import PermanentSendError, TemporarySendError, Transport
from shared.clock import Clock
from shared.failpoints import failpoint
from shared.logging import get_logger

log = get_logger("notifications.sender")

SENT = Counter("vs_emails_sent_total", "Emails accepted by the mail server", ["template"])
FAILED = Counter("vs_emails_failed_total", "Emails given up on", ["template"])
DEFERRED = Counter("vs_emails_deferred_total", "Temporary send failures", ["template"])


class EmailSender:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        transport: Transport,
        settings: NotificationsSettings,
        clock: Clock,
    ) -> None:
        self.session_factory = session_factory
        self.transport = transport
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
        """Send one batch of due emails. Returns how many were tried."""
        async with self.session_factory() as session, session.begin():
            now = self.clock.now()
            emails = (
                (
                    await session.execute(
                        select(Email)
                        .where(Email.status == PENDING, Email.next_attempt_at <= now)
                        .order_by(Email.next_attempt_at)
                        .limit(self.settings.mail_send_batch)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            if emails:
                failpoint("sender_before_send")
            server_down: TemporarySendError | None = None
            outcomes: list[dict[str, object]] = []
            for email in emails:
                outcome, server_down = await self._send_one(email, server_down)
                outcomes.append({"id": email.id, **outcome})
            if outcomes:
                # one executemany for the batch (grouped by the columns each outcome sets)
                await session.execute(update(Email), outcomes)
            return len(emails)

    async def _send_one(
        self, email: Email, server_down: TemporarySendError | None
    ) -> tuple[dict[str, object], TemporarySendError | None]:
        """Send one email and record the outcome. Once the server could not be reached, the rest
        of the batch is deferred with that reason without trying: a dead server would otherwise
        cost a connection timeout per email while the batch's rows stay locked."""
        attempts = email.attempts + 1
        now = self.clock.now()
        values: dict[str, object]
        try:
            if server_down is not None:
                raise server_down
            await self.transport.send(email)
        except PermanentSendError as exc:
            FAILED.labels(email.template).inc()
            # the reason goes to the row (operators read it there): servers often echo the address
            log.error("email_failed", email_id=str(email.id), template=email.template)
            values = {"status": FAILED_STATUS, "attempts": attempts, "last_error": str(exc)[:1000]}
        except Exception as exc:
            values = self._deferred(email, attempts, now, exc)
            if isinstance(exc, TemporarySendError) and exc.unreachable:
                server_down = exc
        else:
            failpoint("sender_after_send")
            SENT.labels(email.template).inc()
            log.debug("email_sent", email_id=str(email.id), template=email.template)
            values = {"status": SENT_STATUS, "attempts": attempts, "sent_at": now, "last_error": None}
        return values, server_down

    def _deferred(self, email: Email, attempts: int, now: datetime, exc: Exception) -> dict[str, object]:
        # TemporarySendError (server down, timeout, 4xx) or a bug building the message: a poison
        # email must not block the queue, so it too ends as failed after the last attempt.
        reason = str(exc)[:1000] if isinstance(exc, TemporarySendError) else f"unexpected: {type(exc).__name__}"
        if attempts >= self.settings.mail_max_attempts:
            FAILED.labels(email.template).inc()
            log.error("email_gave_up", email_id=str(email.id), template=email.template, attempts=attempts)
            return {"status": FAILED_STATUS, "attempts": attempts, "last_error": reason}
        DEFERRED.labels(email.template).inc()
        delay = self.retry_delay(attempts)
        log.info("email_deferred", email_id=str(email.id), attempts=attempts, retry_in=round(delay, 2))
        return {"attempts": attempts, "last_error": reason, "next_attempt_at": now + timedelta(seconds=delay)}
