"""The in-process broker: the same contract as RabbitMQ, for standalone mode only.

All four services run in one process; the outbox relays publish here and the handlers of
every subscription whose routing keys match run in lanes (one aggregate, one lane), with
the same retry tiers and a dead-letter list instead of a ``.dlq`` queue. Nothing survives a
restart of the process except what the outboxes still hold, which is the point of them.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict

from shared.logging import get_logger
from shared.messaging.broker import MessageHandler, PermanentError
from shared.messaging.envelope import Envelope
from shared.messaging.topology import RETRY_TIERS_MS, Subscription, retry_tier_for, topic_matches

log = get_logger("shared.messaging.inprocess")


class InProcessBroker:
    def __init__(self, *, lanes: int = 4, max_attempts: int = 5, retry_scale: float = 1.0) -> None:
        self.lane_count = max(1, lanes)
        self.max_attempts = max_attempts
        self.retry_scale = retry_scale
        self._subs: list[tuple[Subscription, MessageHandler]] = []
        self._lanes: dict[str, list[asyncio.Queue[tuple[Envelope, int]]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.dead_letters: dict[str, list[Envelope]] = defaultdict(list)
        self._started = False
        self.consumers_ready = asyncio.Event()

    def subscribe(self, subscription: Subscription, handler: MessageHandler) -> None:
        self._subs.append((subscription, handler))
        if self._started:
            self._start_lanes(subscription, handler)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for sub, handler in self._subs:
            self._start_lanes(sub, handler)
        self.consumers_ready.set()

    def _start_lanes(self, sub: Subscription, handler: MessageHandler) -> None:
        # Lanes may already hold messages published before this handler started.
        lanes = self._lanes.setdefault(sub.queue, [asyncio.Queue() for _ in range(self.lane_count)])
        for lane in lanes:
            self._tasks.append(asyncio.create_task(self._run_lane(sub, lane, handler)))

    async def publish(self, envelope: Envelope) -> None:
        # Matching is against every subscription registered so far, started or not,
        # as a declared RabbitMQ queue holds messages for a consumer that has not started.
        for sub, _ in self._subs:
            if any(topic_matches(key, envelope.routing_key) for key in sub.routing_keys):
                self._enqueue(sub, envelope, 0)

    def _enqueue(self, sub: Subscription, envelope: Envelope, attempt: int) -> None:
        lanes = self._lanes.get(sub.queue)
        if lanes is None:
            lanes = [asyncio.Queue() for _ in range(self.lane_count)]
            self._lanes[sub.queue] = lanes
        key = f"{envelope.aggregate_type}:{envelope.aggregate_id}"
        lanes[zlib.crc32(key.encode()) % len(lanes)].put_nowait((envelope, attempt))

    async def _run_lane(
        self, sub: Subscription, lane: asyncio.Queue[tuple[Envelope, int]], handler: MessageHandler
    ) -> None:
        while True:
            envelope, attempt = await lane.get()
            try:
                await handler(sub, envelope)
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                log.error(
                    "handler_failed_permanently",
                    queue=sub.queue,
                    event_id=str(envelope.event_id),
                    error=repr(exc)[:300],
                )
                self.dead_letters[sub.queue].append(envelope)
            except Exception as exc:
                next_attempt = attempt + 1
                if next_attempt >= self.max_attempts:
                    log.error(
                        "handler_gave_up", queue=sub.queue, event_id=str(envelope.event_id), error=repr(exc)[:300]
                    )
                    self.dead_letters[sub.queue].append(envelope)
                    continue
                delay = retry_tier_for(next_attempt) / 1000 * self.retry_scale
                log.warning(
                    "handler_retry",
                    queue=sub.queue,
                    event_id=str(envelope.event_id),
                    attempt=next_attempt,
                    error=repr(exc)[:300],
                )
                asyncio.get_running_loop().call_later(delay, self._enqueue, sub, envelope, next_attempt)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._started = False
        self.consumers_ready.clear()


__all__ = ["RETRY_TIERS_MS", "InProcessBroker"]
