"""The in-process broker: the same contract as RabbitMQ, for standalone mode only.

All four services run in one process; the outbox relays publish here and the handlers of
every subscription whose routing keys match run in per-aggregate lanes with the same in-lane
retries as the RabbitMQ consumer (:mod:`.lanes`): one aggregate's events in publish order, a
transient failure retried in its lane, infrastructure outages waited out, and a dead-letter
list instead of a ``.dlq`` queue. Nothing survives a restart of the process except what the
outboxes still hold, which is the point of them.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from shared.logging import get_logger
from shared.messaging.broker import MessageHandler
from shared.messaging.envelope import Envelope
from shared.messaging.lanes import KeyedLanes, Outcome, RetryPolicy, lane_key, run_with_retries
from shared.messaging.topology import RETRY_TIERS_MS, Subscription, topic_matches

log = get_logger("shared.messaging.inprocess")


@dataclass
class _Queue:
    """What a declared queue is in RabbitMQ: it holds messages until its consumer starts."""

    subscription: Subscription
    handler: MessageHandler
    slot: asyncio.Semaphore
    lanes: KeyedLanes[Envelope] | None = None
    waiting: list[Envelope] | None = None


class InProcessBroker:
    def __init__(self, *, lanes: int = 4, max_attempts: int = 5, retry_scale: float = 1.0) -> None:
        self.lane_count = max(1, lanes)
        self.max_attempts = max_attempts
        self.retry_scale = retry_scale
        self.retry_policy = RetryPolicy(max_attempts=max_attempts, scale=retry_scale)
        self._queues: list[_Queue] = []
        self.dead_letters: dict[str, list[Envelope]] = defaultdict(list)
        self._started = False
        self.consumers_ready = asyncio.Event()

    def subscribe(self, subscription: Subscription, handler: MessageHandler) -> None:
        queue = _Queue(subscription, handler, asyncio.Semaphore(self.lane_count), waiting=[])
        self._queues.append(queue)
        if self._started:
            self._start_queue(queue)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for queue in self._queues:
            self._start_queue(queue)
        self.consumers_ready.set()

    def _start_queue(self, queue: _Queue) -> None:
        async def work(envelope: Envelope) -> None:
            await self._handle(queue, envelope)

        queue.lanes = KeyedLanes(work, name=queue.subscription.queue)
        # Messages published before this consumer started, in the order they arrived.
        waiting, queue.waiting = queue.waiting or [], None
        for envelope in waiting:
            queue.lanes.submit(lane_key(envelope, str(envelope.event_id)), envelope)

    async def publish(self, envelope: Envelope) -> None:
        # Matching is against every subscription registered so far, started or not,
        # as a declared RabbitMQ queue holds messages for a consumer that has not started.
        for queue in self._queues:
            if any(topic_matches(key, envelope.routing_key) for key in queue.subscription.routing_keys):
                if queue.lanes is None:
                    assert queue.waiting is not None
                    queue.waiting.append(envelope)
                else:
                    queue.lanes.submit(lane_key(envelope, str(envelope.event_id)), envelope)

    async def _handle(self, queue: _Queue, envelope: Envelope) -> None:
        outcome = await run_with_retries(
            queue.handler, queue.subscription, envelope, self.retry_policy, slot=queue.slot
        )
        if outcome is Outcome.DEAD:
            self.dead_letters[queue.subscription.queue].append(envelope)

    async def close(self) -> None:
        for queue in self._queues:
            if queue.lanes is not None:
                await queue.lanes.close()
                queue.lanes = None
                queue.waiting = []
        self._started = False
        self.consumers_ready.clear()


__all__ = ["RETRY_TIERS_MS", "InProcessBroker"]
