"""N2: the sender claims a batch with a lease instead of holding it in a transaction while it
talks to the mail server. Each email's outcome is committed as soon as the server answers, a
stopped loop gives back what it did not send, and a loop near the end of its lease stops instead
of sending what another loop may already have claimed. (A killed worker: ``test_restart``.)"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from notifications.bootstrap import SERVICE_ROOT
from notifications.config import NotificationsSettings
from notifications.models import Email
from notifications.sender import EmailSender
from notifications.transport import SmtpTransport
from shared.clock import ManualClock
from shared.db import make_engine, make_session_factory
from shared.migrations import upgrade_head
from shared.testing import TEST_OVERRIDES, SmtpServer, eventually

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


class Outbox:
    """A migrated notifications database with its sender, no service around it: nothing else claims."""

    def __init__(self, sender: EmailSender, clock: ManualClock) -> None:
        self.sender, self.clock = sender, clock

    async def queue(self, n: int) -> list[uuid.UUID]:
        """``n`` emails due now, queued in one transaction (so one claim can take them all)."""
        rows = []
        for i in range(n):
            key = f"lease:{uuid.uuid4()}"
            rows.append(
                Email(
                    dedupe_key=key,
                    event_id=uuid.uuid4(),
                    event_type="account.registered",
                    template="welcome",
                    recipient_key=f"lease-{i}@example.org",
                    to_address=f"lease-{i}-{key[-6:]}@example.org",
                    to_name="测试",
                    language="zh",
                    subject="欢迎",
                    body_text="欢迎注册",
                    body_html="<p>欢迎注册</p>",
                    message_id=f"<{key[6:]}@volunteer.example.org>",
                    status="pending",
                    next_attempt_at=self.clock.now(),
                    created_at=self.clock.now(),
                )
            )
        async with self.sender.session_factory() as session, session.begin():
            session.add_all(rows)
        return [r.id for r in rows]

    async def rows(self) -> list[Email]:
        async with self.sender.session_factory() as session:
            return list((await session.execute(select(Email).order_by(Email.seq))).scalars())


@pytest.fixture
async def outbox(database_factory: Callable[[str], Awaitable[str]], own_smtp: SmtpServer) -> AsyncIterator[Outbox]:
    url = await database_factory("sender_lease")
    settings = NotificationsSettings(
        **{
            **TEST_OVERRIDES,
            "database_url": url,
            "smtp_port": own_smtp.port,
            "smtp_timeout": 10.0,
            "mail_send_lease_seconds": 120.0,
            "mail_send_batch": 10,
        }
    )
    engine = make_engine(url, pool_size=2, max_overflow=0)
    await upgrade_head(engine, SERVICE_ROOT)
    clock = ManualClock(T0)
    sender = EmailSender(make_session_factory(engine), SmtpTransport(settings), settings, clock)
    yield Outbox(sender, clock)
    await sender.transport.close()
    await engine.dispose()


async def test_emails_queued_together_leave_in_the_order_they_were_queued(outbox: Outbox, own_smtp: SmtpServer) -> None:
    """One transaction queues them (same created_at, same next attempt); the queue order decides."""
    await outbox.queue(10)  # the batch size
    assert await outbox.sender.send_due() == 10
    queued = [r.to_address for r in await outbox.rows()]
    assert [m.rcpt_tos[0] for m in own_smtp.received] == queued


async def test_each_accepted_email_is_recorded_at_once_not_when_the_batch_ends(
    outbox: Outbox, own_smtp: SmtpServer
) -> None:
    own_smtp.delay = 0.3
    ids = await outbox.queue(5)
    batch = asyncio.create_task(outbox.sender.send_due())
    await eventually(lambda: len(own_smtp.received) >= 2, timeout=10)
    await asyncio.sleep(0.1)  # the second answer reaches the sender, which commits its outcome
    sent = [r for r in await outbox.rows() if r.status == "sent"]
    assert not batch.done()
    assert len(sent) >= 2  # while the batch is still going
    assert await batch == 5
    assert [r.status for r in await outbox.rows()] == ["sent"] * len(ids)


async def test_a_stopped_sender_gives_back_what_it_had_not_sent(outbox: Outbox, own_smtp: SmtpServer) -> None:
    own_smtp.delay = 0.3
    await outbox.queue(6)
    batch = asyncio.create_task(outbox.sender.send_due())
    await eventually(lambda: len(own_smtp.received) >= 2, timeout=10)
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    rows = await outbox.rows()
    pending = [r for r in rows if r.status == "pending"]
    assert pending, "the batch was stopped before its end"
    # due again now, not when the 120 s lease ends: another loop or a restarted worker sends them
    assert all(r.next_attempt_at == outbox.clock.now() for r in pending)
    assert all(r.attempts == 0 for r in pending)
    own_smtp.delay = 0.0
    assert await outbox.sender.send_due() == len(pending)
    assert {r.status for r in await outbox.rows()} == {"sent"}
    # those accepted before the stop were recorded, and the one the server was accepting when the
    # stop came was waited for and recorded too: none arrives twice
    received = Counter(rcpt for m in own_smtp.received for rcpt in m.rcpt_tos)
    assert len(received) == 6
    assert set(received.values()) == {1}


async def test_a_stop_while_several_loops_wait_for_a_slow_servers_answers_sends_nothing_twice(
    outbox: Outbox, own_smtp: SmtpServer
) -> None:
    """Loops with a message out to a server that answers after a second, when the service stops:
    each waits for its answer and records it, and what had not started is given back without an
    attempt counted."""
    own_smtp.answer_delay = 1.0  # each message is in at once, answered a second later
    await outbox.queue(10)
    outbox.sender.settings.mail_send_batch = 2
    loops = [asyncio.create_task(outbox.sender.send_due()) for _ in range(4)]
    await asyncio.sleep(0.5)  # every loop's first message is out, its answer not yet in
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    rows = await outbox.rows()
    assert all(r.attempts == 0 for r in rows if r.status == "pending")
    assert own_smtp.received  # messages were out when the stop came
    own_smtp.answer_delay = 0.0
    while await outbox.sender.send_due():
        pass
    received = Counter(rcpt for m in own_smtp.received for rcpt in m.rcpt_tos)
    assert len(received) == 10
    assert set(received.values()) == {1}


async def test_a_sender_near_the_end_of_its_lease_stops_and_gives_the_rest_back(
    outbox: Outbox, own_smtp: SmtpServer
) -> None:
    """A very slow mail server: each email takes 50 s of the 120 s lease. No send starts in the last
    three SMTP timeouts (30 s) of the lease, when it could still be going after the lease ended and
    another loop had claimed the email."""
    own_smtp.on_accept = lambda: outbox.clock.advance(timedelta(seconds=50))
    await outbox.queue(4)
    assert await outbox.sender.send_due() == 4
    rows = await outbox.rows()
    assert [r.status for r in rows] == ["sent", "sent", "pending", "pending"]
    assert len(own_smtp.received) == 2
    assert all(r.next_attempt_at == T0 + timedelta(seconds=100) for r in rows[2:])  # given back when it stopped
    assert await outbox.sender.send_due() == 2  # a new lease from now
    assert {r.status for r in await outbox.rows()} == {"sent"}
    assert len(own_smtp.received) == 4


async def test_an_outcome_whose_connection_is_lost_is_recorded_on_another_not_sent_again(
    outbox: Outbox, own_smtp: SmtpServer
) -> None:
    """The database drops the sender's connection (a restart, a failover) as the server accepts a
    message: the outcome is recorded on a new connection, and the email is not given back to be
    sent again at once. The rest of the batch is given back and sent once."""
    engine = outbox.sender._engine
    database = engine.url.database

    async def drop_connections() -> None:
        other = make_engine(str(engine.url))
        async with other.connect() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :d AND pid <> pg_backend_pid()"
                ),
                {"d": database},
            )
        await other.dispose()

    def on_accept() -> None:  # on the SMTP server's thread, whose loop is busy with the message
        if len(own_smtp.received) == 2:
            worker = threading.Thread(target=lambda: asyncio.run(drop_connections()))
            worker.start()
            worker.join()

    own_smtp.on_accept = on_accept
    await outbox.queue(5)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the lost connection ends the batch, whatever the driver calls it
        await outbox.sender.send_due()
    own_smtp.on_accept = None
    while await outbox.sender.send_due():
        pass
    assert {r.status for r in await outbox.rows()} == {"sent"}
    received = Counter(rcpt for m in own_smtp.received for rcpt in m.rcpt_tos)
    assert len(received) == 5
    assert set(received.values()) == {1}  # none twice
