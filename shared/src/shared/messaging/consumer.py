"""Handlers for other services' events, made idempotent by the inbox.

A handler runs inside a unit of work that first inserts ``(message_id, handler)`` into the
inbox; if the row exists the message was handled before and nothing else happens. The
effect, the inbox row and any events the handler raises commit together; only then does
the broker ack the message.

Batches (``batch_size`` > 1): under load, the messages of one queue that are ready at the same
moment are handled in one transaction (group commit): one inbox insert for all of them, each
handler run in turn, one commit, then every message is acked. The broker's lanes hand over at
most one message per aggregate at a time, so a batch never holds two events of one aggregate and
order is kept. If anything in a batch fails, the transaction rolls back and each of its messages
is run again on its own, where the usual retries, outage waits and dead-lettering apply: a batch
never costs a message an attempt, and one bad message never fails the others. A message that
arrives while no batch is running is handled at once, so batching adds no latency when idle.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from prometheus_client import Histogram
from pydantic import ValidationError
from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.contracts.base import Event, event_class
from shared.db import UnitOfWork
from shared.failpoints import failpoint
from shared.logging import describe_error, get_logger
from shared.messaging.broker import Broker, PermanentError
from shared.messaging.envelope import Envelope
from shared.messaging.tables import MessagingTables
from shared.messaging.topology import SUBSCRIPTIONS, Subscription

log = get_logger("shared.messaging.consumer")

BATCH_MESSAGES = Histogram(
    "vs_consumer_batch_messages",
    "Messages handled in one transaction (batches that committed)",
    ["queue"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)

E = TypeVar("E", bound=Event)
#: ``async def handler(event, envelope, uow, context)``; context is the service runtime.
HandlerFn = Callable[[Any, Envelope, UnitOfWork, Any], Awaitable[None]]
#: ``async def handler(items, uow, context)`` with ``items`` a list of ``(event, envelope)``: a
#: handler registered with ``batch=True`` takes a batch's messages in one call (a single message
#: comes as a list of one), so it can write them in one statement. It raises no events (the
#: dispatcher refuses a batch that did, and reruns its messages one by one).
BatchHandlerFn = Callable[[list[tuple[Any, Envelope]], UnitOfWork, Any], Awaitable[None]]


@dataclass(frozen=True)
class HandlerSpec:
    subscription: Subscription
    fn: Any  # HandlerFn, or BatchHandlerFn when ``batch``
    batch: bool = False


class Handlers:
    """A service's handlers, each bound to its line in the shared topology."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.specs: dict[str, HandlerSpec] = {}

    def __call__(
        self, name: str, subscription: Subscription | None = None, *, batch: bool = False
    ) -> Callable[[Any], Any]:
        """Register ``name`` for its line in SUBSCRIPTIONS (tests may pass a subscription of their own);
        ``batch=True`` for a :data:`BatchHandlerFn`."""
        if subscription is None:
            subscription = next((s for s in SUBSCRIPTIONS if s.service == self.service and s.handler == name), None)
        if subscription is None:
            raise LookupError(f"{self.service}.{name} is not in shared.messaging.topology.SUBSCRIPTIONS")

        def register(fn: Any) -> Any:
            self.specs[name] = HandlerSpec(subscription, fn, batch)
            return fn

        return register


class _RunAlone(Exception):
    """The batch this message was in failed and rolled back: run it on its own."""


class _Batcher:
    """Group commit for one queue. Callers take turns (a FIFO lock); whoever gets the turn while
    its own message is still unhandled runs every waiting message (up to ``max_size``) in one
    batch, and again until its own is done. The others find theirs done when their turn comes."""

    def __init__(self, run: Callable[[list[Any]], Awaitable[None]], max_size: int) -> None:
        self._run = run
        self._max = max_size
        self._waiting: list[tuple[Any, asyncio.Future[None]]] = []
        self._turn = asyncio.Lock()

    async def submit(self, item: Any) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        try:
            async with self._turn:
                while not future.done():
                    batch = [(i, f) for i, f in self._waiting[: self._max] if not f.done()]
                    del self._waiting[: self._max]
                    await self._run_batch(batch)
        except BaseException:
            future.cancel()  # a cancelled caller's message is left to the broker's redelivery
            raise
        future.result()  # raises _RunAlone when its batch failed, or a lone message's own error

    async def _run_batch(self, batch: list[tuple[Any, asyncio.Future[None]]]) -> None:
        try:
            await self._run([i for i, _ in batch])
        except asyncio.CancelledError:
            for _, f in batch:
                if not f.done():
                    f.set_exception(_RunAlone("cancelled"))
            raise
        except Exception as exc:
            # a lone message failed for itself: its caller gets the real error
            failure = exc if len(batch) == 1 else _RunAlone(describe_error(exc))
            for _, f in batch:
                if not f.done():
                    f.set_exception(failure)
        else:
            for _, f in batch:
                if not f.done():
                    f.set_result(None)


class Dispatcher:
    """Turns a delivery into one idempotent transaction."""

    def __init__(
        self,
        handlers: Handlers,
        uow_factory: Callable[..., UnitOfWork],
        messaging: MessagingTables,
        context: Any = None,
        *,
        batch_size: int = 1,
        concurrency: int = 8,
    ) -> None:
        self.handlers = handlers
        self.uow_factory = uow_factory
        self.messaging = messaging
        self.context = context
        self.batch_size = max(1, batch_size)
        #: messages handled on their own at once (each holds a database connection)
        self._alone = asyncio.Semaphore(max(1, concurrency))
        self._batchers: dict[str, _Batcher] = {}
        self._claim_many_sql: dict[str, TextClause] = {}

    def attach(self, broker: Broker) -> None:
        for spec in self.handlers.specs.values():
            broker.subscribe(spec.subscription, self.handle)

    async def handle(self, subscription: Subscription, envelope: Envelope) -> None:
        event = self._read(envelope)
        if self.batch_size > 1:
            batcher = self._batchers.get(subscription.queue)
            if batcher is None:
                batcher = self._batchers[subscription.queue] = _Batcher(
                    functools.partial(self._handle_batch, subscription), self.batch_size
                )
            try:
                await batcher.submit((envelope, event))
                return
            except _RunAlone as exc:
                log.debug("batch_failed_running_alone", event_id=str(envelope.event_id), cause=str(exc))
        async with self._alone:
            await self._handle_one(subscription, envelope, event)

    @staticmethod
    def _read(envelope: Envelope) -> Event:
        try:
            return event_class(envelope.event_type, envelope.schema_version).model_validate(envelope.payload)
        except (LookupError, ValidationError) as exc:
            # described without the values pydantic quotes (a name or an address in the payload)
            raise PermanentError(
                f"cannot read {envelope.event_type} v{envelope.schema_version}: {describe_error(exc, limit=1000)}"
            ) from exc

    async def _handle_one(self, subscription: Subscription, envelope: Envelope, event: Event) -> None:
        spec = self.handlers.specs[subscription.handler]
        with _bound(envelope, subscription):
            uow = self.uow_factory(
                correlation_id=envelope.correlation_id or str(envelope.event_id),
                causation_id=str(envelope.event_id),
            )
            async with uow:
                first_time = await self._claim(uow, envelope, subscription.handler)
                if not first_time:
                    log.info("duplicate_ignored")
                    return
                if spec.batch:
                    await spec.fn([(event, envelope)], uow, self.context)
                else:
                    await spec.fn(event, envelope, uow, self.context)
            BATCH_MESSAGES.labels(subscription.queue).observe(1)
            failpoint("consumer_after_commit")
            log.debug("event_handled")

    async def _handle_batch(self, subscription: Subscription, items: list[tuple[Envelope, Event]]) -> None:
        if len(items) == 1:
            async with self._alone:
                await self._handle_one(subscription, *items[0])
            return
        spec = self.handlers.specs[subscription.handler]
        count = len(items)
        uow = self.uow_factory()
        async with uow:
            fresh = await self._claim_many(uow, [envelope for envelope, _ in items], subscription.handler)
            for envelope, _ in items:
                if envelope.event_id not in fresh:
                    with _bound(envelope, subscription):
                        log.info("duplicate_ignored")
            todo = [(envelope, event) for envelope, event in items if envelope.event_id in fresh]
            if spec.batch:
                if todo:
                    await spec.fn([(event, envelope) for envelope, event in todo], uow, self.context)
                if uow.has_pending_events():
                    raise RuntimeError(f"batch handler {subscription.handler} raised events")
            else:
                for envelope, event in todo:
                    with _bound(envelope, subscription):
                        uow.next_message(envelope.correlation_id or str(envelope.event_id), str(envelope.event_id))
                        await spec.fn(event, envelope, uow, self.context)
        BATCH_MESSAGES.labels(subscription.queue).observe(count)
        for _ in range(count):
            failpoint("consumer_after_commit")
        log.debug("batch_handled", queue=subscription.queue, messages=count)

    async def _claim_many(self, uow: UnitOfWork, envelopes: list[Envelope], handler: str) -> set[Any]:
        """Inbox rows for every message of a batch in one statement; the ids seen for the first time.
        (Arrays, not a multi-row VALUES: the statement is the same for every batch size, so it is
        compiled once.)"""
        statement = self._claim_many_sql.get(self.messaging.inbox.name)
        if statement is None:
            statement = self._claim_many_sql[self.messaging.inbox.name] = text(
                f"INSERT INTO {self.messaging.inbox.name} (message_id, handler, event_type) "  # noqa: S608
                "SELECT t.message_id, :handler, t.event_type "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[])) AS t(message_id, event_type) "
                "ON CONFLICT (message_id, handler) DO NOTHING RETURNING message_id"
            )
        result = await uow.session.execute(
            statement,
            {"handler": handler, "ids": [e.event_id for e in envelopes], "types": [e.event_type for e in envelopes]},
        )
        return set(result.scalars())

    async def _claim(self, uow: UnitOfWork, envelope: Envelope, handler: str) -> bool:
        inbox = self.messaging.inbox
        result = await uow.session.execute(
            pg_insert(inbox)
            .values(message_id=envelope.event_id, handler=handler, event_type=envelope.event_type)
            .on_conflict_do_nothing(index_elements=[inbox.c.message_id, inbox.c.handler])
            .returning(inbox.c.message_id)
        )
        return result.first() is not None


def _bound(envelope: Envelope, subscription: Subscription) -> Any:
    return structlog.contextvars.bound_contextvars(
        event_id=str(envelope.event_id),
        event_type=envelope.event_type,
        correlation_id=envelope.correlation_id or str(envelope.event_id),
        handler=subscription.queue,
    )
