"""N2: the notifications worker dies mid-send (``os._exit`` at a failpoint, as SIGKILL) and is
started again: no email is lost, and none is doubled except the one the server had already
accepted, which goes again under the same Message-ID."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from shared.db import asyncpg_dsn
from shared.failpoints import EXIT_CODE
from shared.testing import SmtpServer, eventually

from .conftest import Producer
from .test_delivery import registration

pytestmark = pytest.mark.slow


class Worker:
    """``python -m notifications worker`` as a child process."""

    def __init__(self, database_url: str, amqp_url: str, smtp: SmtpServer, log_dir: Path) -> None:
        self.database_url = database_url
        self.env = {
            **os.environ,
            "NOTIFICATIONS_DATABASE_URL": database_url,
            "NOTIFICATIONS_AMQP_URL": amqp_url,
            "NOTIFICATIONS_ENVIRONMENT": "test",
            "NOTIFICATIONS_LOG_FORMAT": "json",
            "NOTIFICATIONS_SMTP_PORT": str(smtp.port),
            "NOTIFICATIONS_MAIL_POLL_INTERVAL": "0.2",
            "NOTIFICATIONS_MAIL_SEND_BATCH": "5",
            "NOTIFICATIONS_MAIL_SENDERS": "1",
            # a killed worker's claimed, unsent emails are due again when the lease ends
            "NOTIFICATIONS_MAIL_SEND_LEASE_SECONDS": "4",
            "NOTIFICATIONS_SMTP_TIMEOUT": "1",
        }
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, failpoints: str = "") -> None:
        self.starts += 1
        log = (self.log_dir / f"notifications-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "notifications", "worker"],
            env={**self.env, "VS_FAILPOINTS": failpoints},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def exited(self, timeout: float = 60) -> int:
        assert self.proc is not None
        proc = self.proc

        def done() -> bool:
            return proc.poll() is not None

        await eventually(done, timeout=timeout, interval=0.1)
        return int(proc.returncode)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    async def scalar(self, sql: str) -> object:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        except OSError:
            return None
        try:
            return await conn.fetchval(sql)
        except asyncpg.UndefinedTableError:
            return None
        finally:
            await conn.close()


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(database_url: str, amqp_url: str, smtp: SmtpServer) -> Worker:
        worker = Worker(database_url, amqp_url, smtp, tmp_path)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


@pytest.mark.parametrize("failpoint", ["sender_before_send", "sender_after_send", "sender_after_send@3"])
async def test_worker_killed_mid_send_loses_no_email(
    failpoint: str,
    amqp_url: str,
    database_factory: Callable[[str], Awaitable[str]],
    producer: Producer,
    own_smtp: SmtpServer,
    worker_factory: Callable[..., Worker],
) -> None:
    worker = worker_factory(await database_factory("n_restart"), amqp_url, own_smtp)
    worker.start(failpoints=failpoint)
    events = [registration("k") for _ in range(12)]
    await producer.produce(*events)
    assert await worker.exited() == EXIT_CODE, "the worker should have died at the failpoint"
    # every event was consumed into an email row before the sender died on the first batch
    # or, if not, is still in the broker: either way the next start finishes the job
    worker.start()

    async def all_sent() -> bool:
        count = await worker.scalar("SELECT count(*) FROM emails WHERE status = 'sent'")
        return count == len(events)

    await eventually(all_sent, timeout=90, interval=0.3)
    received = Counter(rcpt for m in own_smtp.received for rcpt in m.rcpt_tos)
    assert set(received) == {e.email for e in events}  # none lost
    doubled = [address for address, n in received.items() if n > 1]
    if failpoint == "sender_before_send":
        assert doubled == []  # nothing had been sent: exactly once
    else:
        # the one email accepted just before the crash goes again, under the same Message-ID; those
        # accepted before it in the same batch (@3) were recorded as each was accepted
        assert len(doubled) == 1
        ids = {m.message["Message-ID"] for m in own_smtp.to(doubled[0])}
        assert len(ids) == 1
