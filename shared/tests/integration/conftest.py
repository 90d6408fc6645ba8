"""A tiny test service ("spine") wired like a real one: its own database with outbox, inbox and a
ledger of effects, a unit of work, an outbox relay, the AMQP broker, a dispatcher with one
handler. Every test gets its own database and its own exchange, so tests never see each
other's messages.

The test event is defined inside a fixture and removed from the contract registry afterwards,
so ``all_events()`` (the AsyncAPI document, the contract tests, other suites) never sees it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar

import aio_pika
import pytest
from sqlalchemy import BigInteger, Column, Identity, Integer, String, Table, func, insert, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.contracts import base as contracts_base
from shared.contracts.base import Event
from shared.db import UnitOfWork, asyncpg_dsn, make_engine, make_session_factory, new_metadata
from shared.messaging.amqp import AmqpBroker
from shared.messaging.broker import PermanentError
from shared.messaging.consumer import Dispatcher, Handlers
from shared.messaging.envelope import Envelope
from shared.messaging.relay import OutboxRelay
from shared.messaging.tables import define_messaging_tables
from shared.messaging.topology import Subscription
from shared.testing import eventually

EVENT_TYPE = "spine.thing_happened"


@pytest.fixture(scope="module")
def thing_happened() -> Iterator[type[Event]]:
    class ThingHappened(Event):
        event_type: ClassVar[str] = EVENT_TYPE
        producer: ClassVar[str] = "spine"
        aggregate_type: ClassVar[str] = "thing"
        aggregate_field: ClassVar[str] = "thing_id"

        thing_id: uuid.UUID
        n: int = 0
        #: what the test handler does: None = its effect, "always" = transient failure, "permanent"
        fail: str | None = None

    yield ThingHappened
    contracts_base._REGISTRY.pop((EVENT_TYPE, 1), None)


class Spine:
    """The test service. ``deliveries`` counts every delivery the broker made, before the inbox."""

    def __init__(
        self,
        database_url: str,
        amqp_url: str,
        event: type[Event],
        *,
        subscribe: bool = True,
        batch_size: int = 1,
        lanes: int = 4,
    ) -> None:
        self.database_url = database_url
        self.amqp_url = amqp_url
        self.event = event
        self.exchange = f"spine_{uuid.uuid4().hex[:8]}"
        self.metadata = new_metadata()
        self.messaging = define_messaging_tables(self.metadata, "spine")
        self.ledger = Table(
            "ledger",
            self.metadata,
            # Not unique on event_id on purpose: a doubled effect must show as two rows.
            Column("id", BigInteger, Identity(), primary_key=True),
            Column("event_id", UUID(as_uuid=True), nullable=False),
            Column("thing_id", UUID(as_uuid=True), nullable=False),
            Column("n", Integer, nullable=False),
        )
        self.things = Table(
            "things",
            self.metadata,
            Column("id", UUID(as_uuid=True), primary_key=True),
            Column("name", String(60), nullable=False),
        )
        self.engine: AsyncEngine = make_engine(database_url, pool_size=5, max_overflow=5)
        self.session_factory = make_session_factory(self.engine)
        self.subscription = Subscription(f"spine_{uuid.uuid4().hex[:6]}", "ledger", (EVENT_TYPE,))
        self.broker = AmqpBroker(amqp_url, exchange=self.exchange, topology=(), max_attempts=3, lanes=lanes)
        self.deliveries: dict[uuid.UUID, int] = defaultdict(int)
        self.order: dict[str, list[int]] = defaultdict(list)
        self.handlers = Handlers("spine")
        self.handlers("ledger", self.subscription)(self._apply)
        self.dispatcher = Dispatcher(self.handlers, self.uow, self.messaging, batch_size=batch_size)
        self.subscribed = subscribe
        if subscribe:
            self.broker.subscribe(self.subscription, self._count_then_dispatch)
        self.relays: list[OutboxRelay] = []

    # -- wiring -------------------------------------------------------------------------------
    def uow(self, correlation_id: str | None = None, causation_id: str | None = None) -> UnitOfWork:
        return UnitOfWork(
            self.session_factory,
            self.messaging,
            producer="spine",
            correlation_id=correlation_id,
            causation_id=causation_id,
        )

    def relay(self, **kwargs: Any) -> OutboxRelay:
        kwargs.setdefault("poll_interval", 0.2)
        broker = kwargs.pop("broker", self.broker)
        relay = OutboxRelay(
            self.engine,
            self.messaging,
            broker,
            service="spine",
            listen_dsn=asyncpg_dsn(self.database_url),
            **kwargs,
        )
        self.relays.append(relay)
        return relay

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.create_all)
        await self.broker.start()
        if self.subscribed:
            await self.broker.wait_ready(30)

    async def stop(self) -> None:
        for relay in self.relays:
            await relay.stop()
        await self.broker.close()
        await self.engine.dispose()

    async def _count_then_dispatch(self, subscription: Subscription, envelope: Envelope) -> None:
        self.deliveries[envelope.event_id] += 1
        self.order[str(envelope.aggregate_id)].append(int(envelope.payload.get("n", 0)))
        await self.dispatcher.handle(subscription, envelope)

    async def _apply(self, event: Any, envelope: Envelope, uow: UnitOfWork, context: Any) -> None:
        if event.fail == "always":
            raise RuntimeError("this handler never succeeds for this message")
        if event.fail == "permanent":
            raise PermanentError("this message can never be handled")
        await uow.session.execute(
            insert(self.ledger).values(event_id=envelope.event_id, thing_id=event.thing_id, n=event.n)
        )

    # -- producing ----------------------------------------------------------------------------
    async def produce(self, *events: Event) -> list[uuid.UUID]:
        """Commit a state change together with its events; returns their event ids."""
        uow = self.uow()
        async with uow:
            await uow.session.execute(insert(self.things).values(id=uuid.uuid4(), name="thing"))
            for event in events:
                uow.raise_event(event)
        return list(uow.committed_event_ids)

    def thing(self, thing_id: uuid.UUID | None = None, n: int = 0, fail: str | None = None) -> Event:
        return self.event(thing_id=thing_id or uuid.uuid4(), n=n, fail=fail)

    # -- observing ----------------------------------------------------------------------------
    async def scalar(self, statement: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(statement)).scalar_one()

    async def effects(self, event_id: uuid.UUID | None = None) -> int:
        statement = select(func.count()).select_from(self.ledger)
        if event_id is not None:
            statement = statement.where(self.ledger.c.event_id == event_id)
        return int(await self.scalar(statement))

    async def outbox_rows(self) -> list[Any]:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT id, seq, published_at, attempts, last_error, available_at > now() AS backing_off "
                    "FROM outbox ORDER BY seq"
                )
            )
            return list(result.all())

    async def wait_for_effects(self, count: int, timeout: float = 20) -> None:
        async def reached() -> bool:
            return await self.effects() >= count

        await eventually(reached, timeout=timeout)


@pytest.fixture(params=[1, 16], ids=["one-per-transaction", "batched"])
def batch_size(request: pytest.FixtureRequest) -> int:
    """Every spine test runs with each message in its own transaction and with batches."""
    return int(request.param)


@pytest.fixture
async def spine_factory(
    amqp_url: str, database_factory: Callable[[str], Awaitable[str]], thing_happened: type[Event], batch_size: int
) -> AsyncIterator[Callable[..., Awaitable[Spine]]]:
    made: list[Spine] = []

    async def make(*, subscribe: bool = True, amqp: str | None = None, lanes: int = 4) -> Spine:
        spine = Spine(
            await database_factory("spine"),
            amqp or amqp_url,
            thing_happened,
            subscribe=subscribe,
            batch_size=batch_size,
            lanes=lanes,
        )
        made.append(spine)
        await spine.start()
        return spine

    yield make
    await asyncio.gather(*(s.stop() for s in made), return_exceptions=True)


@pytest.fixture
async def spine(spine_factory: Callable[..., Awaitable[Spine]]) -> Spine:
    return await spine_factory()


async def take_from_queue(amqp_url: str, queue_name: str, timeout: float = 15) -> list[aio_pika.IncomingMessage]:
    """Drain a queue (e.g. a ``.dlq``) once something is in it; messages are acked."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        taken: list[aio_pika.IncomingMessage] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                if taken:
                    break
                await asyncio.sleep(0.1)
                continue
            taken.append(message)
        return taken
    finally:
        await connection.close()


@pytest.fixture
def dlq_reader() -> Callable[..., Awaitable[list[aio_pika.IncomingMessage]]]:
    return take_from_queue
