"""RabbitMQ broker over aio-pika.

Connections are supervised by our own loop instead of aio-pika's robust reconnection:
after a broker restart the loop reconnects, re-declares the topology and re-subscribes
every consumer (aio-pika issue #231: robust connections that come back without their
consumers). ``consumers_ready`` tells tests and ``/readyz`` whether consumption is live.

Each queue is consumed by lanes: messages of one aggregate always go to the same lane and
are handled one after another, so per-aggregate order holds while different aggregates are
handled in parallel. A message is acked only after its handler's transaction committed.
"""

from __future__ import annotations

import asyncio
import random
import zlib
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

from shared.logging import get_logger
from shared.messaging.broker import BrokerUnavailable, MessageHandler, PermanentError, PublishError
from shared.messaging.envelope import CONTENT_TYPE, Envelope
from shared.messaging.topology import (
    RETRY_TIERS_MS,
    SUBSCRIPTIONS,
    Subscription,
    dlq_arguments,
    queue_arguments,
    retry_exchange,
    retry_queue_arguments,
    retry_tier_for,
)

log = get_logger("shared.messaging.amqp")

ATTEMPT_HEADER = "x-vs-attempt"


def to_message(envelope: Envelope, *, attempt: int = 0) -> aio_pika.Message:
    headers: dict[str, Any] = {
        "schema_version": envelope.schema_version,
        "producer": envelope.producer,
    }
    if envelope.correlation_id:
        headers["correlation_id"] = envelope.correlation_id
    if envelope.causation_id:
        headers["causation_id"] = envelope.causation_id
    if attempt:
        headers[ATTEMPT_HEADER] = attempt
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
    for tier in RETRY_TIERS_MS:
        rx = await channel.declare_exchange(retry_exchange(tier), aio_pika.ExchangeType.FANOUT, durable=True)
        rq = await channel.declare_queue(retry_exchange(tier), durable=True, arguments=retry_queue_arguments(tier))
        await rq.bind(rx, routing_key="")
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
        self.lane_count = max(1, lanes)
        self.max_attempts = max_attempts
        self.delivery_limit = delivery_limit
        self.declare = declare
        self._subs: list[tuple[Subscription, MessageHandler]] = []
        self._pub_conn: AbstractConnection | None = None
        self._pub_channel: AbstractChannel | None = None
        self._pub_exchange: AbstractExchange | None = None
        self._pub_lock = asyncio.Lock()
        self._consume_task: asyncio.Task[None] | None = None
        self._lane_tasks: list[asyncio.Task[None]] = []
        self._lanes: dict[str, list[asyncio.Queue[_Delivery]]] = {}
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
        handlers = {sub.queue: handler for sub, handler in self._subs}
        for sub, _ in self._subs:
            lanes: list[asyncio.Queue[_Delivery]] = []
            for _ in range(self.lane_count):
                lane: asyncio.Queue[_Delivery] = asyncio.Queue()
                lanes.append(lane)
                self._lane_tasks.append(asyncio.create_task(self._run_lane(lane, handlers[sub.queue])))
            self._lanes[sub.queue] = lanes
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
                for sub, _ in self._subs:
                    queue = await channel.get_queue(sub.queue, ensure=True)
                    await queue.consume(self._make_callback(sub, generation), no_ack=False)
                self.consumers_ready.set()
                log.info("consumers_started", queues=[s.queue for s, _ in self._subs], generation=generation)
                backoff = 0.2
                await _wait_closed(conn, channel)
                log.warning("broker_connection_lost", generation=generation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer_connect_failed", error=repr(exc))
            finally:
                self.consumers_ready.clear()
                self._consume_channel = None
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
            key = _lane_key(message)
            lane = lanes[zlib.crc32(key.encode()) % len(lanes)]
            lane.put_nowait(_Delivery(generation, sub, message))

        return on_message

    async def _run_lane(self, lane: asyncio.Queue[_Delivery], handler: MessageHandler) -> None:
        while True:
            delivery = await lane.get()
            if delivery.generation != self._generation:
                continue  # its channel is gone; the broker redelivers it on the new one
            try:
                await self._handle(delivery, handler)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("lane_failure", error=repr(exc), queue=delivery.subscription.queue)

    async def _handle(self, delivery: _Delivery, handler: MessageHandler) -> None:
        message, sub = delivery.message, delivery.subscription
        try:
            envelope = Envelope.from_bytes(message.body)
        except ValidationError as exc:
            log.error("message_unreadable", queue=sub.queue, message_id=message.message_id, error=str(exc)[:300])
            await _settle(message.reject(requeue=False))
            return
        attempt = int(str((message.headers or {}).get(ATTEMPT_HEADER, 0) or 0))
        try:
            await handler(sub, envelope)
        except PermanentError as exc:
            log.error(
                "handler_failed_permanently",
                queue=sub.queue,
                event_id=str(envelope.event_id),
                event_type=envelope.event_type,
                error=repr(exc)[:300],
            )
            await _settle(message.reject(requeue=False))
            return
        except Exception as exc:
            await self._retry_or_dead_letter(delivery, envelope, attempt, exc)
            return
        await _settle(message.ack())

    async def _retry_or_dead_letter(
        self, delivery: _Delivery, envelope: Envelope, attempt: int, exc: Exception
    ) -> None:
        message, sub = delivery.message, delivery.subscription
        next_attempt = attempt + 1
        if next_attempt >= self.max_attempts:
            log.error(
                "handler_gave_up",
                queue=sub.queue,
                event_id=str(envelope.event_id),
                event_type=envelope.event_type,
                attempts=next_attempt,
                error=repr(exc)[:300],
            )
            await _settle(message.reject(requeue=False))
            return
        tier = retry_tier_for(next_attempt)
        log.warning(
            "handler_retry",
            queue=sub.queue,
            event_id=str(envelope.event_id),
            event_type=envelope.event_type,
            attempt=next_attempt,
            delay_ms=tier,
            error=repr(exc)[:300],
        )
        channel = self._consume_channel
        try:
            if channel is None or channel.is_closed:
                raise RuntimeError("consumer channel closed")
            retry_x = await channel.get_exchange(retry_exchange(tier), ensure=False)
            await retry_x.publish(to_message(envelope, attempt=next_attempt), routing_key=sub.queue, timeout=10)
        except Exception as pub_exc:
            log.warning("retry_publish_failed", queue=sub.queue, error=repr(pub_exc))
            await _settle(message.nack(requeue=True))
            return
        await _settle(message.ack())

    async def close(self) -> None:
        self._stopping = True
        if self._consume_task is not None:
            self._consume_task.cancel()
            await asyncio.gather(self._consume_task, return_exceptions=True)
            self._consume_task = None
        for task in self._lane_tasks:
            task.cancel()
        await asyncio.gather(*self._lane_tasks, return_exceptions=True)
        self._lane_tasks = []
        self._lanes = {}
        await self._drop_publisher()


def _lane_key(message: AbstractIncomingMessage) -> str:
    # The aggregate id is inside the body; avoid parsing twice by peeking at a cheap prefix.
    try:
        envelope = Envelope.from_bytes(message.body)
    except ValidationError:
        return message.message_id or ""
    return f"{envelope.aggregate_type}:{envelope.aggregate_id}"


async def _settle(operation: Any) -> None:
    """Ack/nack/reject; on a dead channel the broker redelivers anyway, so a failure is logged only."""
    try:
        await operation
    except Exception as exc:
        log.warning("settle_failed", error=repr(exc))


async def _wait_closed(conn: AbstractConnection, channel: AbstractChannel) -> None:
    waiters = [asyncio.ensure_future(conn.closed()), asyncio.ensure_future(channel.closed())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
