"""A notifications service running over the real RabbitMQ, PostgreSQL and an aiosmtpd server,
and a producer that sends other services' events to it the way they do: committed into a
producer database's outbox, published by an OutboxRelay."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_string, policy
from typing import Any

import aio_pika
import httpx
import pytest
from fastapi import FastAPI

from notifications.bootstrap import NotificationsRuntime, build_runtime
from notifications.config import NotificationsSettings
from notifications.main import create_app
from shared.auth import ROLE_NATIONAL_ADMIN, TokenSigner, TokenVerifier
from shared.clock import Clock
from shared.contracts.base import Event
from shared.contracts.identity import AccountRegistered
from shared.db import UnitOfWork, asyncpg_dsn, make_engine, make_session_factory, new_metadata
from shared.messaging.amqp import AmqpBroker
from shared.messaging.envelope import Envelope
from shared.messaging.relay import OutboxRelay
from shared.messaging.tables import define_messaging_tables
from shared.messaging.topology import subscriptions_for
from shared.testing import TEST_OVERRIDES, ReceivedEmail, SmtpServer, envelope_for, eventually, running

#: short back-off so retries happen within a test
FAST_RETRIES: dict[str, Any] = {
    "mail_poll_interval": 0.1,
    "mail_retry_base_seconds": 0.05,
    "mail_retry_max_seconds": 0.4,
    "mail_max_attempts": 200,
    # the PostgreSQL server is shared by every suite running on the machine: stay small
    "database_pool_size": 3,
    "database_max_overflow": 5,
}


class Producer:
    """A producing service reduced to its outbox: ``produce`` commits events in one transaction
    (as identity, teams or projects do with their state), an OutboxRelay publishes them."""

    def __init__(self, database_url: str, amqp_url: str) -> None:
        self.database_url = database_url
        self.metadata = new_metadata()
        self.messaging = define_messaging_tables(self.metadata, "producer")
        self.engine = make_engine(database_url, pool_size=2, max_overflow=3)
        self.session_factory = make_session_factory(self.engine)
        self.broker = AmqpBroker(amqp_url)
        self.relay = OutboxRelay(
            self.engine,
            self.messaging,
            self.broker,
            service="producer",
            listen_dsn=asyncpg_dsn(database_url),
            poll_interval=0.2,
        )

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.create_all)
        await self.relay.start()

    async def stop(self) -> None:
        await self.relay.stop()
        await self.broker.close()
        await self.engine.dispose()

    async def produce(self, *events: Event) -> list[uuid.UUID]:
        """Commit the events (one transaction); returns their event ids."""
        uow = UnitOfWork(self.session_factory, self.messaging, producer=events[0].producer)
        async with uow:
            for event in events:
                uow.raise_event(event)
        return list(uow.committed_event_ids)

    async def redeliver(self, event_id: uuid.UUID) -> None:
        """Publish an already published event again, as a relay that died between publishing
        and marking does."""
        async with self.engine.begin() as conn:
            await conn.execute(
                self.messaging.outbox.update().where(self.messaging.outbox.c.id == event_id).values(published_at=None)
            )
        self.relay.wake()

    async def published(self, event_id: uuid.UUID) -> bool:
        async with self.engine.connect() as conn:
            row = await conn.execute(
                self.messaging.outbox.select().where(
                    self.messaging.outbox.c.id == event_id, self.messaging.outbox.c.published_at.is_not(None)
                )
            )
            return row.first() is not None


@dataclass
class Service:
    """One running notifications service, as a test sees it."""

    client: httpx.AsyncClient
    runtime: NotificationsRuntime
    producer: Producer
    publisher: AmqpBroker
    smtp: SmtpServer
    admin_token: str
    database_url: str
    signer: TokenSigner
    app: FastAPI
    registered: dict[uuid.UUID, str] = field(default_factory=dict)

    def client_from(self, host: str, base_url: str = "http://test") -> httpx.AsyncClient:
        """A client whose requests come from ``host`` to ``base_url`` (the app's lifespan already runs)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, client=(host, 50000)), base_url=base_url)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def bearer(self, *roles: str, region: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.signer.issue(uuid.uuid4(), roles=roles, region=region)}"}

    async def produce(self, *events: Event) -> list[uuid.UUID]:
        """Events committed by their producing service, delivered through its relay."""
        return await self.producer.produce(*events)

    async def publish(self, event: Event, **kwargs: Any) -> Envelope:
        """An envelope put on the broker directly (to deliver the very same event again)."""
        envelope = envelope_for(event, **kwargs)
        await self.publisher.publish(envelope)
        return envelope

    async def register(self, *, language: str = "zh", name: str = "李四", wait: bool = True) -> tuple[uuid.UUID, str]:
        """An account known to the recipients read model (its welcome email consumed)."""
        account_id = uuid.uuid4()
        address = f"u-{account_id.hex[:12]}@example.org"
        await self.produce(
            AccountRegistered(
                account_id=account_id,
                username=f"u{account_id.hex[:10]}",
                display_name=name,
                email=address,
                language=language,
            )
        )
        if wait:
            await self.smtp.wait_for(lambda m: address in m.rcpt_tos, timeout=20)
        self.registered[account_id] = address
        return account_id, address

    async def emails(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/emails", params=params, headers=self.admin)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def handled(self, event_id: uuid.UUID, handler: str) -> None:
        """Wait until the handler consumed the event (its inbox row is committed)."""
        inbox = self.runtime.messaging.inbox

        async def check() -> bool:
            async with self.runtime.engine.connect() as conn:
                row = await conn.execute(
                    inbox.select().where(inbox.c.message_id == event_id, inbox.c.handler == handler)
                )
                return row.first() is not None

        await eventually(check, timeout=20, interval=0.1)

    async def settled(self, event_id: uuid.UUID, count: int = 1, status: str = "sent") -> list[dict[str, Any]]:
        """Wait until the event's ``count`` emails reached ``status``."""

        async def check() -> list[dict[str, Any]] | None:
            items = await self.emails(event_id=str(event_id))
            return items if len(items) == count and all(i["status"] == status for i in items) else None

        result: list[dict[str, Any]] = await eventually(check, timeout=20, interval=0.1)
        return result


StartService = Callable[..., AbstractAsyncContextManager[Service]]


@pytest.fixture(scope="session")
async def publisher(amqp_url: str) -> AsyncIterator[AmqpBroker]:
    broker = AmqpBroker(amqp_url)
    yield broker
    await broker.close()


@dataclass
class Utf8SmtpServer(SmtpServer):
    """An aiosmtpd server that offers SMTPUTF8 (RFC 6531: UTF-8 addresses in the envelope, raw
    UTF-8 headers, read back here as text) or, with ``smtputf8=False``, explicitly does not
    (aiosmtpd's Controller offers it unless told otherwise)."""

    smtputf8: bool = True

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        server = self

        class Handler:
            async def handle_RCPT(self, srv: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
                msg = message_from_string(envelope.content.decode("utf-8"), policy=policy.default)
                server.received.append(ReceivedEmail(envelope.mail_from, list(envelope.rcpt_tos), msg))
                return "250 Message accepted"

        self._controller = Controller(Handler(), hostname=self.host, port=self.port, enable_SMTPUTF8=self.smtputf8)
        self._controller.start()


@pytest.fixture
def utf8_smtp() -> Iterator[Utf8SmtpServer]:
    server = Utf8SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ascii_smtp() -> Iterator[Utf8SmtpServer]:
    """A server without SMTPUTF8."""
    server = Utf8SmtpServer(smtputf8=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_smtp() -> Iterator[SmtpServer]:
    """An SMTP server of the test's own, to stop or make refuse."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def producer(amqp_url: str, database_factory: Callable[[str], Awaitable[str]]) -> AsyncIterator[Producer]:
    made = Producer(await database_factory("producer"), amqp_url)
    await made.start()
    yield made
    await made.stop()


async def _drain_queues(amqp_url: str) -> None:
    """Empty notifications' queues before a service starts on a fresh database. The whole session
    shares one vhost and every service declares every queue: events the other services' tests
    raised (thousands, from projects' scale and race tests) would otherwise be consumed here as
    emails no test asked for."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for sub in subscriptions_for("notifications"):
            with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                queue = await channel.declare_queue(sub.queue, passive=True)
                await queue.purge()
            if channel.is_closed:
                channel = await connection.channel()
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def start_service(
    amqp_url: str,
    database_factory: Callable[[str], Awaitable[str]],
    signer: TokenSigner,
    verifier_for: Callable[..., TokenVerifier],
    publisher: AmqpBroker,
    producer: Producer,
) -> StartService:
    @asynccontextmanager
    async def start(
        smtp: SmtpServer,
        *,
        database_url: str | None = None,
        clock: Clock | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Service]:
        if database_url is None:  # a restart on its database keeps what queued meanwhile
            await _drain_queues(amqp_url)
        url = database_url or await database_factory("notifications")
        settings = NotificationsSettings(
            database_url=url,
            amqp_url=amqp_url,
            smtp_port=smtp.port,
            jwt_issuer=signer.issuer,
            **{**TEST_OVERRIDES, **FAST_RETRIES, **overrides},
        )
        # tokens are signed on the system clock; the business clock only moves the service's own rules
        runtime = build_runtime(settings, clock=clock, verifier=verifier_for(None))
        app = create_app(settings, runtime)
        async with running(app) as client:
            token = signer.issue(uuid.uuid4(), roles=[ROLE_NATIONAL_ADMIN])
            yield Service(client, runtime, producer, publisher, smtp, token, url, signer, app)

    return start
