"""The relay after an outage: a large backlog must not make every batch slower (the gauges read it
whole after each batch, so draining a million events took minutes longer per hundred thousand)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import make_engine, new_metadata
from shared.messaging.envelope import Envelope
from shared.messaging.relay import PENDING_COUNT_CAP, OutboxRelay
from shared.messaging.tables import MessagingTables, define_messaging_tables
from shared.testing import plan_rows_read

BACKLOG = 120_000
BATCH = 200


class InstantBroker:
    async def publish(self, envelope: Envelope) -> None:
        return None


@pytest.fixture(scope="module")
async def backlog(
    database_factory: Callable[[str], Awaitable[str]],
) -> AsyncIterator[tuple[AsyncEngine, MessagingTables]]:
    """An outbox holding BACKLOG unpublished events, the first of them an hour old."""
    metadata = new_metadata()
    messaging = define_messaging_tables(metadata, "scale")
    engine = make_engine(await database_factory("relay_scale"), pool_size=2, max_overflow=0)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            text(
                "INSERT INTO outbox (id, event_type, aggregate_type, aggregate_id, payload, producer, occurred_at) "
                "SELECT gen_random_uuid(), 'account.registered', 'account', gen_random_uuid()::text, "
                "       jsonb_build_object('n', g), 'identity', now() - CASE WHEN g = 1 THEN interval '1 hour' "
                "       ELSE interval '1 minute' END FROM generate_series(1, :n) AS g"
            ),
            {"n": BACKLOG},
        )
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE outbox"))
    yield engine, messaging
    await engine.dispose()


async def _explained_rows(engine: AsyncEngine, statements: list[tuple[str, Any]]) -> list[tuple[int, str]]:
    read: list[tuple[int, str]] = []
    async with engine.connect() as conn:
        for statement, parameters in statements:
            if statement.lstrip().upper().startswith("SELECT"):
                plan = (
                    await conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
                ).scalar_one()
                plan = json.loads(plan) if isinstance(plan, str) else plan
                read.append((plan_rows_read(plan[0]["Plan"]), " ".join(statement.split())[:90]))
        await conn.rollback()
    return read


async def test_the_gauges_show_the_oldest_events_age_and_the_backlog_counted_up_to_the_cap(backlog: Any) -> None:
    engine, messaging = backlog
    relay = OutboxRelay(engine, messaging, InstantBroker(), service="scale", batch_size=BATCH, measure_interval=0)  # type: ignore[arg-type]
    async with engine.connect() as conn:
        await relay._measure(conn)
    lag = REGISTRY.get_sample_value("vs_outbox_lag_seconds", {"service": "scale"})
    pending = REGISTRY.get_sample_value("vs_outbox_pending", {"service": "scale"})
    assert lag is not None
    assert 3500 < lag < 3700  # the first event, an hour old (this test runs before any batch)
    assert pending == PENDING_COUNT_CAP


async def test_a_relay_batch_reads_about_its_batch_whatever_the_backlog(backlog: Any) -> None:
    """Every statement a batch runs, the gauges' measure included (measure_interval=0: measured
    after every batch, the worst case), reads a bounded number of rows: about the batch, plus
    the pending count's cap, not the 120 000 events waiting."""
    engine, messaging = backlog
    relay = OutboxRelay(engine, messaging, InstantBroker(), service="scale", batch_size=BATCH, measure_interval=0)  # type: ignore[arg-type]
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        assert await relay.publish_batch() == BATCH
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    read = await _explained_rows(engine, statements)
    total = sum(n for n, _ in read)
    assert total <= PENDING_COUNT_CAP + 20 * BATCH, read
    without_count = [n for n, sql in read if "LIMIT" not in sql or "count" not in sql]
    assert sum(without_count) <= 20 * BATCH, read


async def test_the_gauges_are_measured_once_per_interval_not_after_every_batch(backlog: Any) -> None:
    engine, messaging = backlog
    relay = OutboxRelay(engine, messaging, InstantBroker(), service="scale", batch_size=BATCH, measure_interval=60)  # type: ignore[arg-type]
    measures: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "count(*)" in statement:
            measures.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        for _ in range(5):
            assert await relay.publish_batch() == BATCH
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(measures) == 1


async def test_the_purge_removes_published_events_and_processed_marks_past_the_retention(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    """The inbox grew by a row per message and handler forever; the purge now keeps it to the
    retention, like the outbox, in batches, and leaves what is recent or unpublished."""
    metadata = new_metadata()
    messaging = define_messaging_tables(metadata, "purge")
    engine = make_engine(await database_factory("relay_purge"), pool_size=2, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(
                text(
                    "INSERT INTO inbox (message_id, handler, event_type, processed_at) "
                    "SELECT gen_random_uuid(), 'welcome_email', 'account.registered', "
                    "       now() - CASE WHEN g <= 25 THEN interval '30 days' ELSE interval '1 day' END "
                    "FROM generate_series(1, 30) AS g"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO outbox (id, event_type, aggregate_type, aggregate_id, payload, producer, "
                    "occurred_at, published_at) SELECT gen_random_uuid(), 'x', 'x', 'x', '{}', 'purge', now(), "
                    "       CASE g WHEN 1 THEN now() - interval '30 days' WHEN 2 THEN now() END "
                    "FROM generate_series(1, 3) AS g"
                )
            )
        relay = OutboxRelay(engine, messaging, InstantBroker(), service="purge", retention_days=7)  # type: ignore[arg-type]
        assert await relay.purge(batch=10) == 26
        async with engine.connect() as conn:
            inbox_left = (await conn.execute(text("SELECT count(*) FROM inbox"))).scalar_one()
            outbox_left = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        assert (inbox_left, outbox_left) == (5, 2)  # a day old kept; published now and unpublished kept
    finally:
        await engine.dispose()
