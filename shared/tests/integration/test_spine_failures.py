"""The spine under failure: a relay killed between publish and mark, the broker dropping the
consumers' connections, two relays on one outbox, an event no queue is bound for."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from shared.messaging.amqp import AmqpBroker
from shared.messaging.envelope import Envelope
from shared.testing import create_vhost, delete_vhost, eventually


class Killed(Exception):
    """The relay process dies right after the broker confirmed the batch."""


async def _die(published: list[Any]) -> None:
    raise Killed


async def _cancelled(published: list[Any]) -> None:
    raise asyncio.CancelledError


@pytest.mark.parametrize("death", [_die, _cancelled], ids=["crash", "cancelled"])
async def test_relay_killed_between_publish_and_mark_leads_to_a_duplicate_the_inbox_absorbs(
    spine: Any, death: Any
) -> None:
    event_ids = await spine.produce(spine.thing(n=1), spine.thing(n=2))
    doomed = spine.relay()
    doomed.after_publish_hook = death
    with pytest.raises((Killed, asyncio.CancelledError)):
        await doomed.publish_batch()

    # Published, but the mark rolled back with the dying transaction.
    rows = await spine.outbox_rows()
    assert [r.id for r in rows] == event_ids
    assert all(r.published_at is None for r in rows)
    await eventually(lambda: all(spine.deliveries[e] == 1 for e in event_ids))

    assert await spine.relay().publish_batch() == 2  # the replacement relay publishes them again

    await eventually(lambda: all(spine.deliveries[e] == 2 for e in event_ids))
    await asyncio.sleep(0.3)
    for event_id in event_ids:
        assert spine.deliveries[event_id] == 2  # the broker really delivered it twice
        assert await spine.effects(event_id) == 1  # ... and the inbox made the second a no-op
    assert all(r.published_at is not None for r in await spine.outbox_rows())


@pytest.fixture
def private_vhost() -> Any:
    # Closing every connection of a vhost must not disturb the other tests' brokers.
    url = create_vhost()
    yield url
    delete_vhost(url)


async def test_consumers_come_back_after_the_broker_drops_their_connection(
    spine_factory: Any, private_vhost: str
) -> None:
    spine = await spine_factory(amqp=private_vhost)
    await spine.relay().start()
    [before] = await spine.produce(spine.thing(n=1))
    await spine.wait_for_effects(1)
    reconnects = spine.broker.reconnects

    vhost = private_vhost.rsplit("/", 1)[1]
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test", stdout=asyncio.subprocess.DEVNULL
    )
    assert await proc.wait() == 0

    await eventually(lambda: spine.broker.reconnects > reconnects, timeout=30)
    await spine.broker.wait_ready(30)
    [after] = await spine.produce(spine.thing(n=2))
    await spine.wait_for_effects(2, timeout=30)
    assert await spine.effects(before) == 1
    assert await spine.effects(after) == 1


class SlowBroker:
    def __init__(self, broker: AmqpBroker, delay: float) -> None:
        self.broker, self.delay = broker, delay

    async def publish(self, envelope: Envelope) -> None:
        await asyncio.sleep(self.delay)
        await self.broker.publish(envelope)


async def test_two_relays_publish_every_event_once_and_keep_per_aggregate_order(spine: Any) -> None:
    aggregates = [uuid.uuid4() for _ in range(8)]
    per_aggregate = 15
    for n in range(per_aggregate):
        # Interleave aggregates across many transactions, as concurrent requests would.
        await spine.produce(*(spine.thing(a, n=n) for a in aggregates))
    total = len(aggregates) * per_aggregate

    # The first relay publishes slowly, so the second one would overtake it on a shared aggregate
    # unless it holds back events whose predecessors the first relay still has.
    first = spine.relay(batch_size=7, broker=SlowBroker(spine.broker, delay=0.01))
    second = spine.relay(batch_size=7)
    await asyncio.gather(first.start(), second.start())
    await spine.wait_for_effects(total, timeout=60)
    await asyncio.sleep(0.5)

    assert len(spine.deliveries) == total
    assert set(spine.deliveries.values()) == {1}, "an event was published twice"
    assert await spine.effects() == total
    for aggregate in aggregates:
        assert spine.order[str(aggregate)] == list(range(per_aggregate))
    assert all(r.published_at is not None for r in await spine.outbox_rows())


async def test_unroutable_event_is_not_marked_published(spine_factory: Any) -> None:
    spine = await spine_factory(subscribe=False)  # nobody bound a queue for spine.thing_happened
    [event_id] = await spine.produce(spine.thing(n=1))
    relay = spine.relay()

    assert await relay.publish_batch() == 0

    [row] = await spine.outbox_rows()
    assert row.id == event_id
    assert row.published_at is None
    assert row.attempts == 1
    assert "unroutable" in row.last_error
    assert row.backing_off
    assert await relay.publish_batch() == 0  # backing off: not retried at once
    assert (await spine.outbox_rows())[0].attempts == 1


async def test_unroutable_event_is_published_once_a_queue_is_bound(spine_factory: Any) -> None:
    spine = await spine_factory(subscribe=False)
    [event_id] = await spine.produce(spine.thing(n=1))
    relay = spine.relay()
    assert await relay.publish_batch() == 0

    # A consumer arrives (declares and binds its queue), and the row's backoff ends.
    consumer = AmqpBroker(spine.amqp_url, exchange=spine.exchange, topology=(spine.subscription,))
    try:
        await consumer._publisher()
    finally:
        await consumer.close()
    async with spine.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE outbox SET available_at = now()")
    assert await relay.publish_batch() == 1
    [row] = await spine.outbox_rows()
    assert row.id == event_id
    assert row.published_at is not None
