"""The projects service's unit of work: the shared one, with the outbox rows and the relay's poke
written in one round trip, and outbox rows that a hot path can write inside its own statement.

The shared :class:`~shared.db.UnitOfWork` inserts the outbox rows (one statement) and then sends
``pg_notify`` (another). Here one ``INSERT ... SELECT FROM unnest`` in a CTE writes every row, in the
order the events were raised (the relay publishes by ``seq``), and the same statement notifies. Rows
are the ones the shared unit of work writes: same columns, payload ``event.model_dump_json()``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.util.concurrency import greenlet_spawn

from shared.contracts.base import Event
from shared.db import UnitOfWork


def event_row_params(uow: UnitOfWork, event_class: type[Event]) -> dict[str, Any]:
    """The columns of outbox rows a statement builds itself (payload included) for ``event_class``."""
    return {
        "ob_event_type": event_class.event_type,
        "ob_schema_version": event_class.schema_version,
        "ob_aggregate_type": event_class.aggregate_type,
        "ob_producer": uow.producer,
        "ob_correlation_id": uow.correlation_id,
        "ob_causation_id": uow.causation_id,
        "ob_occurred_at": uow.clock.now(),
    }


#: the events of :func:`outbox_params` in one ``INSERT ... SELECT FROM unnest``, in the order they
#: were raised (the relay publishes by ``seq``), and the relay's poke, in one statement
_WRITE_EVENTS = text(
    """
    WITH written AS (
        INSERT INTO outbox (id, event_type, schema_version, aggregate_type, aggregate_id, payload,
                            producer, correlation_id, causation_id, occurred_at)
        SELECT t.id, t.event_type, t.schema_version, t.aggregate_type, t.aggregate_id, t.payload::jsonb,
               :ob_producer, :ob_correlation_id, :ob_causation_id, :ob_occurred_at
        FROM unnest(CAST(:ob_ids AS uuid[]), CAST(:ob_event_types AS text[]), CAST(:ob_versions AS int[]),
                    CAST(:ob_aggregate_types AS text[]), CAST(:ob_aggregate_ids AS text[]),
                    CAST(:ob_payloads AS text[]))
             WITH ORDINALITY AS t(id, event_type, schema_version, aggregate_type, aggregate_id, payload, n)
        ORDER BY t.n
        RETURNING 1
    )
    SELECT pg_notify(:channel, '')
    """
)


def outbox_params(uow: UnitOfWork, events: Sequence[Event]) -> dict[str, Any]:
    return {
        "ob_ids": [uuid.uuid4() for _ in events],
        "ob_event_types": [e.event_type for e in events],
        "ob_versions": [e.schema_version for e in events],
        "ob_aggregate_types": [e.aggregate_type for e in events],
        "ob_aggregate_ids": [e.aggregate_key() for e in events],
        "ob_payloads": [e.model_dump_json() for e in events],
        "ob_producer": uow.producer,
        "ob_correlation_id": uow.correlation_id,
        "ob_causation_id": uow.causation_id,
        "ob_occurred_at": uow.clock.now(),
    }


class ProjectsUnitOfWork(UnitOfWork):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._after_commit: list[Callable[[], Awaitable[object]]] = []

    async def __aenter__(self) -> ProjectsUnitOfWork:
        await super().__aenter__()
        self._after_commit = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        steps, self._after_commit = self._after_commit, []
        await super().__aexit__(exc_type, exc, tb)  # a commit that fails raises here: no step runs
        if exc_type is None:
            for step in steps:
                await step()

    def after_commit(self, step: Callable[[], Awaitable[object]]) -> None:
        """Run ``step`` once this transaction has committed and its connection is back in the pool,
        in order of registration; dropped if the transaction rolls back. For work that must see this
        transaction's commit and that others' concurrent commits must see too: a handler of a
        consumed message (the transaction is the inbox's, entered by the dispatcher) frees places
        here and gives them to those waiting there (``services.admit_waiting``). The commit stands
        whatever a step does: one that raises fails the caller, and a consumed message redelivered
        for it is a no-op (its inbox row is committed), so no step runs again; a step opens its own
        transaction and handles its failures (``services.admit_waiting_after_commit`` logs them)."""
        self._after_commit.append(step)

    async def rollback(self) -> None:
        await super().rollback()
        self._after_commit = []

    @asynccontextmanager
    async def single_statements(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection outside any transaction, for a use case whose every write (state and
        outbox rows) is one statement: PostgreSQL runs each statement as its own transaction, so there
        is no BEGIN and no COMMIT round trip, and a row the statement locks is released when the
        statement ends, not one client round trip later. Reads before the write see committed data,
        as they would in a READ COMMITTED transaction. The statements go straight to asyncpg (see
        :func:`fetchrow_plain`).

        The connection is checked out of the engine's pool itself, not through an engine
        ``Connection``: nothing here executes through SQLAlchemy, and the two wrappers ``engine.connect()``
        builds and closes again cost 62-70 us against 23-25 us for the pool's own checkout and
        return (the hot path of a surge runs this once per application). The pool's rules apply as
        for any checkout: its checkout event (``shared.db``: connections the server closed are
        swapped), ``pre_ping`` when configured, overflow, waiting for a free connection. Its return
        runs no statement (the connection never began a transaction on SQLAlchemy's side, so the
        reset has nothing to roll back) and so cannot be interrupted half way."""
        engine: AsyncEngine = self._session_factory.kw["bind"]
        pooled = await greenlet_spawn(engine.sync_engine.pool.connect)
        try:
            driver: asyncpg.Connection = pooled.driver_connection
            try:
                yield driver
            except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
                if not driver.is_closed():
                    raise
                # Cut under this request (SQLAlchemy, bypassed here, would have done the same): the
                # pool drops the connection instead of lending it again, and the request is refused
                # as retryable (503), not as a bug
                await greenlet_spawn(pooled.invalidate, exc)
                raise asyncpg.ConnectionDoesNotExistError("the connection was closed by the server") from exc
        finally:
            await greenlet_spawn(pooled.close)

    async def commit(self) -> None:
        if self._origins:
            # events of several consumed messages (batch consumption): their rows carry different
            # correlation ids, which the shared unit of work writes row by row
            await super().commit()
            return
        session = self.session
        # collected before the flush, as the shared unit of work does (see its comment)
        events = self._collect_events()
        if not events and not session.in_transaction() and not (session.new or session.dirty or session.deleted):
            # nothing was read or written through the session (the apply path uses single statements)
            self.committed_event_ids = []
            return
        await session.flush()
        ids: list[uuid.UUID] = []
        if events:
            params = outbox_params(self, events)
            ids = params["ob_ids"]
            await fetch_on_driver(session, _WRITE_EVENTS, {**params, "channel": self._messaging.channel})
        await session.commit()
        self.committed_event_ids = ids


# -- statements with large array parameters, straight on the driver --------------------------------
# SQLAlchemy's execution path costs about 20 ms more than asyncpg itself for a statement carrying
# 500-element arrays (measured on the bulk hours path: 30 ms against 8.7 ms for the same statement).
# The bulk statements therefore run on the asyncpg connection under the session, inside the
# transaction the session already opened; the SQL is SQLAlchemy's own compilation of the statement.
_DIALECT = PGDialect_asyncpg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
#: compiled statements by ``id``; each entry keeps its statement alive, so while it is cached no other
#: object can be given its id (a statement collected and its id reused would otherwise run another's SQL)
_COMPILED: dict[int, tuple[TextClause, str, list[str]]] = {}


def positional_sql(stmt: TextClause) -> tuple[str, list[str]]:
    """``stmt`` as asyncpg runs it: SQL with ``$n`` placeholders and the parameter names in order.
    Compiled once per statement; the statements are the repository's module-level constants."""
    entry = _COMPILED.get(id(stmt))
    if entry is None:
        c = stmt.compile(dialect=_DIALECT)
        entry = _COMPILED[id(stmt)] = (stmt, str(c), list(c.positiontup or []))
    return entry[1], entry[2]


async def fetch_on_driver(session: AsyncSession, stmt: TextClause, params: dict[str, Any]) -> list[Any]:
    """Rows (mappings) of ``stmt`` run by asyncpg in the session's transaction; through SQLAlchemy when
    the transaction has not begun on the server yet (the driver alone would run outside it)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapted = raw.dbapi_connection
    if getattr(adapted, "_transaction", None) is None:
        return list((await session.execute(stmt, params)).mappings())
    sql, names = positional_sql(stmt)
    driver: asyncpg.Connection = raw.driver_connection
    return list(await driver.fetch(sql, *(params[n] for n in names)))


async def fetchrow_plain(conn: asyncpg.Connection, stmt: TextClause, params: dict[str, Any]) -> Any:
    """One row of ``stmt`` on a connection from :meth:`ProjectsUnitOfWork.single_statements` (no
    transaction: the statement is its own)."""
    sql, names = positional_sql(stmt)
    return await conn.fetchrow(sql, *(params[n] for n in names))
