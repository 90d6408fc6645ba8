"""Test support shared by every service's suite: throw-away databases and RabbitMQ vhosts,
an in-process SMTP server (aiosmtpd) that can be stopped or made to refuse, and a harness
that runs a service app (migrations, relay, consumers) in the test's event loop.

Only tests import this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import cache
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from shared.auth import TokenSigner
from shared.contracts.base import Event
from shared.messaging.envelope import Envelope

PG_ADMIN_DSN = os.environ.get("VS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("VS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def envelope_for(
    event: Event,
    *,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    sequence: int | None = None,
) -> Envelope:
    """Another service's event as it arrives over the broker (``sequence``: its outbox's, when the
    test needs the order a relay would give it)."""
    return Envelope(
        event_id=event_id or uuid.uuid4(),
        event_type=event.event_type,
        schema_version=event.schema_version,
        occurred_at=occurred_at or datetime.now(UTC),
        producer=event.producer,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_key(),
        sequence=sequence,
        payload=event.model_dump(mode="json"),
    )


async def lock_waiters(engine: Any) -> int:
    """How many sessions of the engine's database wait for a lock now (a request a test holds back
    with a transaction of its own)."""
    from sqlalchemy import text

    async with engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(waiting or 0)


def sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


async def create_database(prefix: str) -> str:
    """Create an empty database; returns its SQLAlchemy URL."""
    name = f"vs_test_{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return sqlalchemy_url(f"{base}/{name}")


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?")[0]
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise RuntimeError("rabbitmqctl is needed to make a throw-away vhost")
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=60)  # noqa: S603 - fixed argv


def create_vhost() -> str:
    """A throw-away RabbitMQ vhost, so test runs never share queues; returns its AMQP URL."""
    vhost = f"vs_test_{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return AMQP_BASE.rstrip("/") + "/" + vhost


def delete_vhost(url: str) -> None:
    _rabbitmqctl("delete_vhost", url.rsplit("/", 1)[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ReceivedEmail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def to(self) -> str:
        return str(self.message["To"])

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


@dataclass
class SmtpServer:
    """aiosmtpd in this process. ``refuse_with`` makes it answer RCPT with that code; ``delay``
    makes it take that many seconds before accepting a message; ``reply_delay`` makes it take that
    long before each answer to EHLO, MAIL, RCPT and DATA (a tarpit: every answer inside a client's
    timeout, the whole exchange not); ``drop_after_accepting`` takes that many next messages in and
    then closes the connection instead of answering; ``on_accept`` is called (on the server's
    thread) for each message it accepts."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    received: list[ReceivedEmail] = field(default_factory=list)
    refuse_with: str | None = None
    delay: float = 0.0
    reply_delay: float = 0.0
    drop_after_accepting: int = 0
    on_accept: Callable[[], None] | None = None
    #: seconds between taking a message in (it is in ``received``) and answering, as a real
    #: server queues a message on arrival and answers once it is safely stored
    answer_delay: float = 0.0
    _controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        server = self

        class Handler:
            async def handle_EHLO(self, srv: Any, session: Any, envelope: Any, hostname: str, responses: Any) -> Any:
                await asyncio.sleep(server.reply_delay)
                session.host_name = hostname
                return responses

            async def handle_MAIL(self, srv: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
                await asyncio.sleep(server.reply_delay)
                envelope.mail_from = address
                envelope.mail_options.extend(options)
                return "250 OK"

            async def handle_RCPT(self, srv: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
                await asyncio.sleep(server.reply_delay)
                if server.refuse_with:
                    return server.refuse_with
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
                await asyncio.sleep(server.delay + server.reply_delay)
                msg = message_from_bytes(envelope.content, policy=policy.default)
                server.received.append(ReceivedEmail(envelope.mail_from, list(envelope.rcpt_tos), msg))
                if server.on_accept is not None:
                    server.on_accept()
                if server.drop_after_accepting > 0:
                    server.drop_after_accepting -= 1
                    srv.transport.close()  # the message is in; the client never hears so
                await asyncio.sleep(server.answer_delay)  # queued: a client gone now still had it sent
                return "250 Message accepted"

        self._controller = Controller(Handler(), hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[ReceivedEmail]:
        return [m for m in self.received if address in m.rcpt_tos]

    async def wait_for(
        self, predicate: Callable[[ReceivedEmail], bool], *, count: int = 1, timeout: float = 15
    ) -> list[ReceivedEmail]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [m for m in self.received if predicate(m)]
            if len(found) >= count:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} matching email(s), got {len(found)}")
            await asyncio.sleep(0.05)


def assert_valid_html(page: str) -> None:
    """``page`` parses as HTML5 without one parse error: html5lib runs the WHATWG parsing algorithm
    that current Chrome and Firefox both implement (X3), so a page without parse errors leaves
    neither browser any markup to guess at. Raises on the first error, naming it."""
    import html5lib  # a test dependency

    html5lib.HTMLParser(strict=True).parse(page)


async def eventually(check: Callable[[], Any], *, timeout: float = 15, interval: float = 0.05) -> Any:
    """Poll an (async or sync) check until it returns a truthy value; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)


@asynccontextmanager
async def running(app: FastAPI, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (migrate, start relay/consumers) and give a client to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@cache
def signing_key_pem() -> bytes:
    """One token-signing key (the default algorithm's) for a test process: an RSA key takes about
    30 ms to generate, and the suites start a service per test."""
    return TokenSigner.generate_pem()


TEST_OVERRIDES: dict[str, Any] = {
    "environment": "test",
    "relay_poll_interval": 0.2,
    "max_handler_attempts": 3,
    "log_format": "console",
}


class RawLogCapture(logging.Handler):
    """Keeps every log record's raw content (before any masking) for the privacy scan."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("mail.log"):
            return  # the aiosmtpd test server's own narration, not our code
        msg = record.msg
        text = json.dumps(msg, default=str, ensure_ascii=False) if isinstance(msg, dict) else record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        self.lines.append(text)


RAW_LOGS = RawLogCapture()


#: every ID number this process handed out: test users share one identity database per session,
#: and random serials alone collided (1,000 serials for a birth date), failing a sign-up as a duplicate
_ISSUED_IDS: set[str] = set()


def resident_id(birth: date = date(1990, 1, 1), region: str = "110105", serial: int | None = None) -> str:
    """A valid 18-digit resident ID number (GB 11643 check digit) for test users.

    ``serial`` defaults to a random one this process has not handed out before, so that tests
    running side by side get distinct numbers.
    """
    from stdnum.cn import ric

    def number(serial: int) -> str:
        body = f"{region}{birth:%Y%m%d}{serial:03d}"
        return body + str(ric.calc_check_digit(body + "0"))  # stdnum expects a placeholder check digit

    if serial is None:
        for _ in range(64):
            serial = secrets.randbelow(1000)
            if number(serial) not in _ISSUED_IDS:
                break
        else:
            free = [s for s in range(1000) if number(s) not in _ISSUED_IDS]
            if not free:
                raise RuntimeError(f"every test ID number for {birth} in {region} was handed out already")
            serial = secrets.choice(free)
    issued = number(serial)
    _ISSUED_IDS.add(issued)
    return issued


def sign_up_body(**overrides: Any) -> dict[str, Any]:
    """A complete, valid identity sign-up request with unique username, ID number, mobile and email."""
    tag = secrets.token_hex(5)
    body: dict[str, Any] = {
        "username": f"u{tag}",
        "password": "correct horse battery staple",
        "real_name": "张三",
        "id_number": resident_id(
            birth=date(1980 + secrets.randbelow(25), 1 + secrets.randbelow(12), 1 + secrets.randbelow(28))
        ),
        "mobile": f"139{secrets.randbelow(10**8):08d}",
        "email": f"{tag}@example.org",
        "region_code": "110105",
    }
    body.update(overrides)
    return body


# -- what a test sees of the database's work ---------------------------------------------------
@contextmanager
def recorded_statements(engine: Any) -> Iterator[list[str]]:
    """Every statement ``engine`` (an AsyncEngine) sends to its database meanwhile."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    from sqlalchemy import event

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def plan_rows_read(plan: dict[str, Any]) -> int:
    """Rows every scan node of an EXPLAIN ANALYZE (FORMAT JSON) plan read, returned and filtered
    out, over its loops: what a page costs, whatever the table's size."""
    total = 0
    if "Scan" in plan["Node Type"]:
        total += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * plan.get("Actual Loops", 1)
    for child in plan.get("Plans", []):
        total += plan_rows_read(child)
    return total


class ExplainingSession:
    """A stand-in AsyncSession for repository functions: every statement they execute is first run
    under EXPLAIN ANALYZE, its rows read (``plan_rows_read``), time and plan kept, then run for real."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.rows_read: list[int] = []
        self.ms: list[float] = []
        self.plans: list[str] = []

    async def execute(self, stmt: Any, params: Any = None) -> Any:
        conn = await self.session.connection()
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        values = compiled.construct_params(params)
        positional = tuple(values[name] for name in (compiled.positiontup or []))
        explained = "EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled)
        plan = (await conn.exec_driver_sql(explained, positional)).scalar_one()
        plan = json.loads(plan) if isinstance(plan, str) else plan
        self.rows_read.append(plan_rows_read(plan[0]["Plan"]))
        self.ms.append(plan[0]["Execution Time"])
        shown = (await conn.exec_driver_sql("EXPLAIN " + str(compiled), positional)).all()
        self.plans.append("\n".join(r[0] for r in shown))
        return await self.session.execute(stmt, params)


#: a request body as a client sends it: its pieces, each when the client gets to it
BodyPieces = Callable[[], AsyncIterator[bytes]]


@dataclass
class PacedAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    sent: list[dict[str, Any]]


async def paced_request(
    app: Any, method: str, path: str, pieces: BodyPieces, headers: dict[str, str] | None = None
) -> PacedAnswer:
    """Drive an ASGI app as uvicorn does for a client whose body (JSON unless ``headers`` give a
    content type) comes in ``pieces`` at their own pace (httpx's ASGI transport hands over the
    whole body at once), then nothing until the client goes. For tests of the body's pace limits.
    ``sent`` of the answer holds every message the app sent, in order."""
    sent: list[dict[str, Any]] = []
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def feed() -> None:
        async for piece in pieces():
            await queue.put({"type": "http.request", "body": piece, "more_body": True})
        await queue.put({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return await queue.get()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    given = {k.lower(): v for k, v in (headers or {}).items()}
    given.setdefault("content-type", "application/json")
    if "content-length" not in given:
        given["transfer-encoding"] = "chunked"  # a body of a length not told beforehand
    raw_headers = [(k.encode(), v.encode()) for k, v in given.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    feeder = asyncio.create_task(feed())
    started = asyncio.get_running_loop().time()
    try:
        await asyncio.wait_for(app(scope, receive, send), 10)
    finally:
        feeder.cancel()
        with suppress(asyncio.CancelledError):
            await feeder
    seconds = asyncio.get_running_loop().time() - started
    start = next(m for m in sent if m["type"] == "http.response.start")
    return PacedAnswer(
        status=start["status"],
        headers={k.decode(): v.decode() for k, v in start["headers"]},
        body=b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
        seconds=seconds,
        sent=sent,
    )


def paced_body(pieces: list[bytes], gap: float) -> BodyPieces:
    """Each piece ``gap`` seconds after the one before."""

    async def send() -> AsyncIterator[bytes]:
        for piece in pieces:
            await asyncio.sleep(gap)
            yield piece

    return send


def stalled_body(first: bytes) -> BodyPieces:
    """The first piece at once, then nothing more, ever (a phone that lost its network mid-upload)."""

    async def send() -> AsyncIterator[bytes]:
        yield first
        await asyncio.Event().wait()
        yield b""

    return send
