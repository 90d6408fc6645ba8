"""Database plumbing: naming convention, engine, sessions, and the unit of work.

The unit of work is the only thing that commits. On commit it writes the outbox rows of
every event the aggregates raised (and any raised on the unit of work itself) in the same
transaction as the state change, and pokes the relay with ``pg_notify``; a rollback
publishes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, insert, text
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, object_session

from shared.clock import Clock, SystemClock

if TYPE_CHECKING:
    from shared.contracts.base import Event
    from shared.messaging.tables import MessagingTables

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


#: how long opening a connection to PostgreSQL may take
CONNECT_TIMEOUT_SECONDS = 10.0


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, pre_ping: bool = False, echo: bool = False
) -> AsyncEngine:
    """The service's pool. Connections the server closed (a restart, a failover, an idle timeout on
    the server) are swapped for new ones at checkout for free: the driver saw the close, so no round
    trip is needed to find out (:func:`_closed_by_server`). ``pre_ping`` adds a ``SELECT 1`` round
    trip on every checkout, for connections cut without a close reaching the client (a proxy or a
    firewall dropping idle connections); a connection cut that way, or cut in the middle of a
    request, fails that request with 503 and Retry-After (``shared.web``)."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        echo=echo,
        # a database error's message (logged with the failed request) names the statement but not
        # its values: they are people's names, addresses, documents
        hide_parameters=True,
        # a server that does not answer a new connection within this (a frozen host, a partition)
        # fails the request with 503 after 10 s, not asyncpg's default 60
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
    )
    sa_event.listen(engine.sync_engine.pool, "checkout", _closed_by_server)
    return engine


def _closed_by_server(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
    # DisconnectionError at checkout: the pool discards the connection and checks out another
    # (SQLAlchemy tries up to three times before giving up with the error)
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


async def delete_in_batches(
    engine: AsyncEngine, table: str, condition: str, params: dict[str, Any], *, batch: int
) -> int:
    """Delete the rows of ``table`` matching ``condition`` (SQL, its binds in ``params``), ``batch``
    rows per transaction, so a large purge neither holds locks long nor bloats one transaction;
    returns how many went. ``table`` and ``condition`` come from code, never from input."""
    statement = text(
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {condition} LIMIT :batch))"  # noqa: S608
    )
    total = 0
    while True:
        async with engine.begin() as conn:
            deleted = int((await conn.execute(statement, {**params, "batch": batch})).rowcount or 0)
        total += deleted
        if deleted < batch:
            return total


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


def asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg wants, from a SQLAlchemy URL."""
    u = make_url(url).set(drivername="postgresql")
    return u.render_as_string(hide_password=False)


_PINNED = "vs_event_sources"


class EventSource:
    """Mixin for aggregates: ``raise_event`` collects events the unit of work writes on commit.

    ORM-loaded instances skip ``__init__``, so the list is created lazily.

    The session's identity map holds loaded objects weakly: an aggregate that raised an event
    without changing a column, and that the caller stopped referencing, would be garbage
    collected with its events before the commit. Raising an event therefore pins the aggregate
    in its session (``session.info``) until the unit of work collects it.
    """

    def raise_event(self, event: Event) -> None:
        pending: list[Event] | None = self.__dict__.get("_vs_events")
        if pending is None:
            pending = []
            self.__dict__["_vs_events"] = pending
        pending.append(event)
        session = object_session(self)
        if session is not None:
            session.info.setdefault(_PINNED, []).append(self)

    def take_events(self) -> list[Event]:
        pending: list[Event] = self.__dict__.pop("_vs_events", None) or []
        return pending


@sa_event.listens_for(Session, "before_flush")
def _pin_new_event_sources(session: Session, flush_context: Any, instances: Any) -> None:
    """A new aggregate that raised events before joining the session is pinned at its flush,
    when the session is about to stop holding it strongly."""
    for obj in session.new:
        if isinstance(obj, EventSource) and obj.__dict__.get("_vs_events"):
            session.info.setdefault(_PINNED, []).append(obj)


class UnitOfWork:
    """One transaction: state plus the outbox rows of the events raised in it.

    ``async with uow:`` commits on a clean exit and rolls back on an exception.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        messaging: MessagingTables,
        *,
        producer: str,
        clock: Clock | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._messaging = messaging
        self.producer = producer
        self.clock = clock or SystemClock()
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self._session: AsyncSession | None = None
        self._events: list[Event] = []
        #: id(event) -> (correlation_id, causation_id) of events raised for an earlier message of
        #: a batch (see :meth:`next_message`); the others carry the unit of work's own
        self._origins: dict[int, tuple[str | None, str | None]] = {}
        self._sealed: list[Event] = []
        self.committed_event_ids: list[uuid.UUID] = []

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open: use 'async with uow:'")
        return self._session

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._session_factory()
        self._events = []
        self._sealed = []
        self._origins = {}
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            if exc_type is None:
                await self.commit()
            else:
                await session.rollback()
        finally:
            await session.close()
            self._session = None

    def raise_event(self, event: Event) -> None:
        self._events.append(event)

    def next_message(self, correlation_id: str | None, causation_id: str | None) -> None:
        """Batch consumption runs several messages' handlers in this one transaction: the events
        raised so far keep the ids of the message that raised them; later ones get these."""
        for event in self._collect_events(include_sealed=False):
            self._origins[id(event)] = (self.correlation_id, self.causation_id)
            self._sealed.append(event)
        self.correlation_id = correlation_id
        self.causation_id = causation_id

    def has_pending_events(self) -> bool:
        """Whether events were raised (on the unit of work or an aggregate) and not yet written."""
        if self._events or self._sealed or self.session.info.get(_PINNED):
            return True
        return any(isinstance(o, EventSource) and o.__dict__.get("_vs_events") for o in self.session.new)

    def origin(self, event: Event) -> tuple[str | None, str | None]:
        """(correlation id, causation id) an event's outbox row carries."""
        return self._origins.get(id(event), (self.correlation_id, self.causation_id))

    def _collect_events(self, *, include_sealed: bool = True) -> list[Event]:
        events = [*self._sealed, *self._events] if include_sealed else list(self._events)
        if include_sealed:
            self._sealed = []
        self._events = []
        seen: set[int] = set()
        pinned: list[Any] = self.session.info.pop(_PINNED, [])
        candidates: Iterable[Any] = [
            *pinned,
            *self.session.new,
            *self.session.identity_map.values(),
        ]
        for obj in candidates:
            if id(obj) in seen or not isinstance(obj, EventSource):
                continue
            seen.add(id(obj))
            events.extend(obj.take_events())
        return events

    async def flush(self) -> None:
        await self.session.flush()

    async def commit(self) -> None:
        session = self.session
        # Collect before flushing: a flush turns pending objects into persistent ones, which the
        # identity map holds only weakly, so an aggregate nobody references could vanish with
        # its events between the flush and the collection.
        events = self._collect_events()
        await session.flush()
        if events:
            rows = [self._outbox_row(event, self.clock.now()) for event in events]
            await session.execute(insert(self._messaging.outbox), rows)
            await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": self._messaging.channel})
        await session.commit()
        self.committed_event_ids = [row["id"] for row in rows] if events else []

    async def rollback(self) -> None:
        await self.session.rollback()
        self._events = []
        self._sealed = []
        self._origins = {}

    def _outbox_row(self, event: Event, now: datetime) -> dict[str, Any]:
        correlation_id, causation_id = self.origin(event)
        return {
            "id": uuid.uuid4(),
            "event_type": event.event_type,
            "schema_version": event.schema_version,
            "aggregate_type": event.aggregate_type,
            "aggregate_id": event.aggregate_key(),
            "payload": event.model_dump(mode="json"),
            "producer": self.producer,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            # available_at keeps the database's default now(): the relay compares it with the
            # database clock, never with the (possibly moved) business clock.
            "occurred_at": now,
        }
