"""The spine under failure: a relay killed between publish and mark, the broker dropping the
consumers' connections or refusing them for a while, two relays on one outbox, an event no queue is
bound for."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from shared.messaging.amqp import AmqpBroker
from shared.messaging.envelope import Envelope
from shared.messaging.lanes import RetryPolicy
from shared.messaging.topology import Subscription
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


@pytest.mark.parametrize(
    "drop",
    [
        # the broker drops their connection
        lambda vhost, spine: ("close_all_connections", "-p", vhost, "test"),
        # an operator deletes their queue to declare it again (another delivery limit, say): the
        # broker cancels the consumers and leaves their channel open; they used to stay gone while
        # /readyz said ready
        lambda vhost, spine: ("delete_queue", "-p", vhost, spine.subscription.queue),
    ],
    ids=["connection_dropped", "queue_deleted"],
)
async def test_consumers_come_back_after_the_broker_drops_them(
    spine_factory: Any, private_vhost: str, drop: Any
) -> None:
    spine = await spine_factory(amqp=private_vhost)
    await spine.relay().start()
    [before] = await spine.produce(spine.thing(n=1))
    await spine.wait_for_effects(1)
    reconnects = spine.broker.reconnects

    await _rabbitmqctl(*drop(private_vhost.rsplit("/", 1)[1], spine))

    await eventually(lambda: spine.broker.reconnects > reconnects, timeout=30)
    await spine.broker.wait_ready(30)
    [after] = await spine.produce(spine.thing(n=2))
    await spine.wait_for_effects(2, timeout=30)
    assert await spine.effects(before) == 1
    assert await spine.effects(after) == 1


async def _rabbitmqctl(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0


def _outbox_lag(service: str) -> float | None:
    return REGISTRY.get_sample_value("vs_outbox_lag_seconds", {"service": service})


async def test_outbox_lag_grows_while_the_broker_is_unreachable_and_drops_when_it_is_back(
    spine_factory: Any, private_vhost: str
) -> None:
    """The lag gauge is what an operator's alert watches: during an outage it must show the age of
    the oldest event left behind, not the value measured before the outage."""
    spine = await spine_factory(amqp=private_vhost)
    await spine.relay(poll_interval=0.05).start()
    [before] = await spine.produce(spine.thing(n=1))
    await spine.wait_for_effects(1)
    await eventually(lambda: _outbox_lag("spine") == 0.0)

    vhost = private_vhost.rsplit("/", 1)[1]
    await _rabbitmqctl("clear_permissions", "-p", vhost, "guest")  # reconnecting is refused from now on
    await _rabbitmqctl("close_all_connections", "-p", vhost, "outage")
    try:
        [during] = await spine.produce(spine.thing(n=2))
        await eventually(lambda: (_outbox_lag("spine") or 0.0) >= 1.0, timeout=30)
        assert await spine.effects(during) == 0
    finally:
        await _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    await spine.wait_for_effects(2, timeout=60)
    await eventually(lambda: _outbox_lag("spine") == 0.0, timeout=30)
    assert await spine.effects(before) == 1
    assert await spine.effects(during) == 1


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


async def test_relay_holds_back_an_aggregates_next_event_while_another_relay_holds_its_earlier_one(
    spine: Any,
) -> None:
    aggregate = uuid.uuid4()
    first, second = [await spine.produce(spine.thing(aggregate, n=n)) for n in range(2)]
    relay = spine.relay()

    # Another relay has claimed (locked) the earlier event and not published it yet.
    async with spine.engine.connect() as other_relay, other_relay.begin():
        await other_relay.execute(text("SELECT id FROM outbox WHERE id = :id FOR UPDATE"), {"id": first[0]})
        assert await relay.publish_batch() == 0  # the later event must not overtake it
        rows = await spine.outbox_rows()
        assert [r.published_at for r in rows] == [None, None]

    assert await relay.publish_batch() == 2
    await eventually(lambda: spine.order[str(aggregate)] == [0, 1])
    assert spine.deliveries[second[0]] == 1


def _own_consumer(spine: Any, handler: Any, **policy: Any) -> AmqpBroker:
    broker = AmqpBroker(spine.amqp_url, exchange=spine.exchange, topology=(), max_attempts=3, lanes=4)
    broker.retry_policy = RetryPolicy(max_attempts=3, **policy)
    broker.subscribe(spine.subscription, handler)
    return broker


async def test_database_outage_in_a_handler_is_waited_out_without_dead_lettering(
    spine_factory: Any, dlq_reader: Any
) -> None:
    spine = await spine_factory(subscribe=False)
    runs: dict[uuid.UUID, int] = defaultdict(int)

    async def database_away_for_a_while(sub: Subscription, envelope: Envelope) -> None:
        runs[envelope.event_id] += 1
        if runs[envelope.event_id] <= 6:  # twice max_attempts: these must not count as attempts
            raise OSError(111, "Connection refused")
        await spine._count_then_dispatch(sub, envelope)

    consumer = _own_consumer(spine, database_away_for_a_while, outage_backoff_min=0.05, outage_backoff_max=0.2)
    try:
        await consumer.start()
        await consumer.wait_ready(30)
        await spine.relay().start()
        [event_id] = await spine.produce(spine.thing(n=1))
        await spine.wait_for_effects(1, timeout=30)
    finally:
        await consumer.close()

    assert runs[event_id] == 7
    assert await spine.effects(event_id) == 1
    assert await dlq_reader(spine.amqp_url, spine.subscription.dlq, timeout=1) == []


async def test_retry_in_a_lane_whose_channel_was_lost_is_abandoned_and_the_redelivery_handles_it_once(
    spine_factory: Any, private_vhost: str
) -> None:
    spine = await spine_factory(subscribe=False, amqp=private_vhost)
    runs: dict[uuid.UUID, int] = defaultdict(int)

    async def fails_once(sub: Subscription, envelope: Envelope) -> None:
        runs[envelope.event_id] += 1
        if runs[envelope.event_id] == 1:
            raise RuntimeError("transient")
        await spine._count_then_dispatch(sub, envelope)

    consumer = _own_consumer(spine, fails_once, scale=15)  # first retry waits 3 s
    try:
        await consumer.start()
        await consumer.wait_ready(30)
        await spine.relay().start()
        [event_id] = await spine.produce(spine.thing(n=1))
        await eventually(lambda: runs[event_id] == 1, timeout=30)

        vhost = private_vhost.rsplit("/", 1)[1]
        proc = await asyncio.create_subprocess_exec(
            "rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test", stdout=asyncio.subprocess.DEVNULL
        )
        assert await proc.wait() == 0
        await spine.wait_for_effects(1, timeout=30)  # redelivered on the new channel
        await asyncio.sleep(3.5)  # the old lane's retry timer has run out by now
    finally:
        await consumer.close()

    assert runs[event_id] == 2  # the failure, then the redelivery; the stale retry never ran
    assert await spine.effects(event_id) == 1
