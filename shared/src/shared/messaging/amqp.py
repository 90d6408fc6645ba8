"""RabbitMQ broker over aio-pika.

Connections are supervised by our own loop instead of aio-pika's robust reconnection:
after a broker restart the loop reconnects, re-declares the topology and re-subscribes
every consumer (aio-pika issue #231: robust connections that come back without their
consumers). ``consumers_ready`` tells tests and ``/readyz`` whether consumption is live.

Every main queue is a single-active-consumer quorum queue: however many replicas consume it,
the broker feeds one of them, in queue order, and fails over to another when it goes away.
Inside that consumer a queue's deliveries run in per-aggregate lanes (:mod:`.lanes`): one
aggregate's events one after another, different aggregates concurrently; a transient failure
is retried in its lane (never through a retry queue, which would let later events overtake
it), then rejected into ``<queue>.dlq``. A message is acked only after its handler's
transaction committed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from pydantic import ValidationError

from shared.aio import cancel_and_wait
from shared.logging import get_logger
from shared.messaging.broker import BrokerUnavailable, MessageHandler, PublishError
from shared.messaging.envelope import CONTENT_TYPE, Envelope
from shared.messaging.lanes import KeyedLanes, Outcome, RetryPolicy, lane_key, run_with_retries
from shared.messaging.topology import (
    SUBSCRIPTIONS,
    Subscription,
    dlq_arguments,
    queue_arguments,
)

log = get_logger("shared.messaging.amqp")


def to_message(envelope: Envelope) -> aio_pika.Message:
    headers: dict[str, Any] = {
        "schema_version": envelope.schema_version,
        "producer": envelope.producer,
    }
    if envelope.correlation_id:
        headers["correlation_id"] = envelope.correlation_id
    if envelope.causation_id:
        headers["causation_id"] = envelope.causation_id
    return aio_pika.Message(
        body=envelope.to_bytes(),
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.event_id),
        type=envelope.event_type,
        timestamp=envelope.occurred_at,
        app_id=envelope.producer,
        correlation_id=envelope.correlation_id,
        headers=headers,
    )


async def declare_topology(
    channel: AbstractChannel,
    exchange_name: str,
    subscriptions: tuple[Subscription, ...] = SUBSCRIPTIONS,
    delivery_limit: int = 10,
) -> AbstractExchange:
    exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
    for sub in subscriptions:
        await channel.declare_queue(sub.dlq, durable=True, arguments=dlq_arguments())
        queue = await channel.declare_queue(sub.queue, durable=True, arguments=queue_arguments(sub, delivery_limit))
        for key in sub.routing_keys:
            await queue.bind(exchange, routing_key=key)
    return exchange


@dataclass
class _Delivery:
    generation: int
    subscription: Subscription
    message: AbstractIncomingMessage
    #: None when the body is not an envelope (it is dead-lettered unread)
    envelope: Envelope | None


class AmqpBroker:
    def __init__(
        self,
        url: str,
        *,
        exchange: str = "events",
        prefetch: int = 32,
        lanes: int = 8,
        max_attempts: int = 5,
        delivery_limit: int = 10,
        declare: bool = True,
        topology: tuple[Subscription, ...] | None = None,
    ) -> None:
        self.url = url
        #: queues declared besides the subscribed ones (default: every consumer of the system, so
        #: an event raised before its consumer ever ran still finds its queue)
        self.topology = SUBSCRIPTIONS if topology is None else topology
        self.exchange_name = exchange
        self.prefetch = prefetch
        #: handlers running at once per queue (one aggregate never runs two at once)
        self.lane_count = max(1, lanes)
        self.max_attempts = max_attempts
        self.retry_policy = RetryPolicy(max_attempts=max_attempts)
        self.delivery_limit = delivery_limit
        self.declare = declare
        self._subs: list[tuple[Subscription, MessageHandler]] = []
        self._pub_conn: AbstractConnection | None = None
        self._pub_channel: AbstractChannel | None = None
        self._pub_exchange: AbstractExchange | None = None
        self._pub_lock = asyncio.Lock()
        self._consume_task: asyncio.Task[None] | None = None
        self._lanes: dict[str, KeyedLanes[_Delivery]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._generation = 0
        self._consume_channel: AbstractChannel | None = None
        self._stopping = False
        self.consumers_ready = asyncio.Event()
        self.reconnects = 0

    # -- publishing -------------------------------------------------------------------------
    async def _publisher(self) -> AbstractExchange:
        if self._pub_exchange is not None and self._pub_channel is not None and not self._pub_channel.is_closed:
            return self._pub_exchange
        async with self._pub_lock:
            if self._pub_exchange is not None and self._pub_channel is not None and not self._pub_channel.is_closed:
                return self._pub_exchange
            await self._drop_publisher()
            try:
                self._pub_conn = await aio_pika.connect(self.url, timeout=10)
                self._pub_channel = await self._pub_conn.channel(publisher_confirms=True, on_return_raises=True)
                if self.declare:
                    self._pub_exchange = await declare_topology(
                        self._pub_channel, self.exchange_name, self._declared(), delivery_limit=self.delivery_limit
                    )
                else:
                    self._pub_exchange = await self._pub_channel.get_exchange(self.exchange_name)
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                await self._drop_publisher()
                raise BrokerUnavailable(f"cannot connect to the broker: {exc!r}") from exc
            return self._pub_exchange

    async def _drop_publisher(self) -> None:
        conn, self._pub_conn, self._pub_channel, self._pub_exchange = self._pub_conn, None, None, None
        if conn is not None and not conn.is_closed:
            try:
                await conn.close()
            except Exception:
                log.debug("publisher_close_failed")

    async def publish(self, envelope: Envelope) -> None:
        exchange = await self._publisher()
        try:
            await exchange.publish(to_message(envelope), routing_key=envelope.routing_key, mandatory=True, timeout=10)
        except aio_pika.exceptions.PublishError as exc:
            raise PublishError(f"unroutable: no queue is bound for {envelope.event_type}") from exc
        except aio_pika.exceptions.DeliveryError as exc:
            raise PublishError(f"the broker refused the message: {exc!r}") from exc
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
            await self._drop_publisher()
            raise BrokerUnavailable(f"publish failed: {exc!r}") from exc

    def _declared(self) -> tuple[Subscription, ...]:
        subs = list(self.topology)
        subs.extend(sub for sub, _ in self._subs if sub not in subs)
        return tuple(subs)

    # -- consuming --------------------------------------------------------------------------
    def subscribe(self, subscription: Subscription, handler: MessageHandler) -> None:
        self._subs.append((subscription, handler))

    async def start(self) -> None:
        self._stopping = False
        if not self._subs:
            return
        for sub, handler in self._subs:
            self._slots[sub.queue] = asyncio.Semaphore(self.lane_count)
            self._lanes[sub.queue] = KeyedLanes(self._worker(handler), name=sub.queue)
        self._consume_task = asyncio.create_task(self._supervise_consumers(), name="amqp-consumers")

    async def wait_ready(self, timeout: float = 30) -> None:
        await asyncio.wait_for(self.consumers_ready.wait(), timeout)

    async def _supervise_consumers(self) -> None:
        backoff = 0.2
        while not self._stopping:
            conn: AbstractConnection | None = None
            try:
                conn = await aio_pika.connect(self.url, timeout=10)
                channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
                await channel.set_qos(prefetch_count=self.prefetch)
                if self.declare:
                    await declare_topology(
                        channel, self.exchange_name, self._declared(), delivery_limit=self.delivery_limit
                    )
                self._generation += 1
                generation = self._generation
                self._consume_channel = channel
                # a consumer the broker cancels (its queue deleted, say to re-declare it with other
                # arguments) leaves the channel open: without this it was never consumed again
                cancelled = asyncio.Event()
                underlay = await channel.get_underlay_channel()
                underlay.on_consumer_cancel_callbacks.add(_setter(cancelled))
                for sub, _ in self._subs:
                    queue = await channel.get_queue(sub.queue, ensure=True)
                    await queue.consume(self._make_callback(sub, generation), no_ack=False)
                self.consumers_ready.set()
                log.info("consumers_started", queues=[s.queue for s, _ in self._subs], generation=generation)
                backoff = 0.2
                await _wait_closed(conn, channel, cancelled)
                if cancelled.is_set():
                    log.warning("consumer_cancelled_by_broker", generation=generation)  # connect again
                else:
                    log.warning("broker_connection_lost", generation=generation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer_connect_failed", error=repr(exc))
            finally:
                self.consumers_ready.clear()
                self._consume_channel = None
                self._generation += 1  # deliveries of the lost channel are stale: the broker redelivers them
                if conn is not None and not conn.is_closed:
                    try:
                        await conn.close()
                    except Exception:
                        log.debug("consumer_close_failed")
            if self._stopping:
                break
            self.reconnects += 1
            await asyncio.sleep(backoff + random.uniform(0, backoff / 2))
            backoff = min(backoff * 2, 5.0)

    def _make_callback(self, sub: Subscription, generation: int) -> Any:
        lanes = self._lanes[sub.queue]

        async def on_message(message: AbstractIncomingMessage) -> None:
            if self._stopping:
                return  # left unacked: returned to the queue when the channel closes
            try:
                envelope: Envelope | None = Envelope.from_bytes(message.body)
            except ValidationError:
                envelope = None
            lanes.submit(lane_key(envelope, message.message_id or ""), _Delivery(generation, sub, message, envelope))

        return on_message

    def _worker(self, handler: MessageHandler) -> Any:
        async def work(delivery: _Delivery) -> None:
            await self._handle(delivery, handler)

        return work

    async def _handle(self, delivery: _Delivery, handler: MessageHandler) -> None:
        message, sub, envelope = delivery.message, delivery.subscription, delivery.envelope
        if delivery.generation != self._generation:
            return  # its channel is gone; the broker redelivers it on the new one
        if envelope is None:
            log.error("message_unreadable", queue=sub.queue, message_id=message.message_id)
            await _settle(message.reject(requeue=False))
            return
        outcome = await run_with_retries(
            handler,
            sub,
            envelope,
            self.retry_policy,
            slot=self._slots[sub.queue],
            stale=lambda: delivery.generation != self._generation,
        )
        if outcome is Outcome.DONE:
            await _settle(message.ack())
        elif outcome is Outcome.DEAD:
            await _settle(message.reject(requeue=False))  # the queue dead-letters it into <queue>.dlq

    async def close(self) -> None:
        # Handlers first (their transactions roll back), then the channel: when the broker hands
        # the unacked messages to the next consumer, none of ours is still running beside it.
        self._stopping = True
        await asyncio.gather(*(lanes.close() for lanes in self._lanes.values()), return_exceptions=True)
        if self._consume_task is not None:
            await cancel_and_wait(self._consume_task)
            self._consume_task = None
        self._lanes = {}
        self._slots = {}
        await self._drop_publisher()


async def _settle(operation: Any) -> None:
    """Ack/nack/reject; on a dead channel the broker redelivers anyway, so a failure is logged only."""
    try:
        await operation
    except Exception as exc:
        log.warning("settle_failed", error=repr(exc))


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    def on_cancel(_frame: Any) -> None:
        event.set()

    return on_cancel


async def _wait_closed(conn: AbstractConnection, channel: AbstractChannel, cancelled: asyncio.Event) -> None:
    waiters = [
        asyncio.ensure_future(conn.closed()),
        asyncio.ensure_future(channel.closed()),
        asyncio.ensure_future(cancelled.wait()),
    ]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
