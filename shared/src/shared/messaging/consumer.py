"""Handlers for other services' events, made idempotent by the inbox.

A handler runs inside a unit of work that first inserts ``(message_id, handler)`` into the
inbox; if the row exists the message was handled before and nothing else happens. The
effect, the inbox row and any events the handler raises commit together; only then does
the broker ack the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.contracts.base import Event, event_class
from shared.db import UnitOfWork
from shared.failpoints import failpoint
from shared.logging import get_logger
from shared.messaging.broker import Broker, PermanentError
from shared.messaging.envelope import Envelope
from shared.messaging.tables import MessagingTables
from shared.messaging.topology import SUBSCRIPTIONS, Subscription

log = get_logger("shared.messaging.consumer")

E = TypeVar("E", bound=Event)
#: ``async def handler(event, envelope, uow, context)``; context is the service runtime.
HandlerFn = Callable[[Any, Envelope, UnitOfWork, Any], Awaitable[None]]


@dataclass(frozen=True)
class HandlerSpec:
    subscription: Subscription
    fn: HandlerFn


class Handlers:
    """A service's handlers, each bound to its line in the shared topology."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.specs: dict[str, HandlerSpec] = {}

    def __call__(self, name: str, subscription: Subscription | None = None) -> Callable[[HandlerFn], HandlerFn]:
        """Register ``name`` for its line in SUBSCRIPTIONS (tests may pass a subscription of their own)."""
        if subscription is None:
            subscription = next((s for s in SUBSCRIPTIONS if s.service == self.service and s.handler == name), None)
        if subscription is None:
            raise LookupError(f"{self.service}.{name} is not in shared.messaging.topology.SUBSCRIPTIONS")

        def register(fn: HandlerFn) -> HandlerFn:
            self.specs[name] = HandlerSpec(subscription, fn)
            return fn

        return register


class Dispatcher:
    """Turns a delivery into one idempotent transaction."""

    def __init__(
        self,
        handlers: Handlers,
        uow_factory: Callable[..., UnitOfWork],
        messaging: MessagingTables,
        context: Any = None,
    ) -> None:
        self.handlers = handlers
        self.uow_factory = uow_factory
        self.messaging = messaging
        self.context = context

    def attach(self, broker: Broker) -> None:
        for spec in self.handlers.specs.values():
            broker.subscribe(spec.subscription, self.handle)

    async def handle(self, subscription: Subscription, envelope: Envelope) -> None:
        spec = self.handlers.specs[subscription.handler]
        try:
            event = event_class(envelope.event_type, envelope.schema_version).model_validate(envelope.payload)
        except (LookupError, ValidationError) as exc:
            raise PermanentError(f"cannot read {envelope.event_type} v{envelope.schema_version}: {exc}") from exc
        with structlog.contextvars.bound_contextvars(
            event_id=str(envelope.event_id),
            event_type=envelope.event_type,
            correlation_id=envelope.correlation_id or str(envelope.event_id),
            handler=subscription.queue,
        ):
            uow = self.uow_factory(
                correlation_id=envelope.correlation_id or str(envelope.event_id),
                causation_id=str(envelope.event_id),
            )
            async with uow:
                first_time = await self._claim(uow, envelope, subscription.handler)
                if not first_time:
                    log.info("duplicate_ignored")
                    return
                await spec.fn(event, envelope, uow, self.context)
            failpoint("consumer_after_commit")
            log.debug("event_handled")

    async def _claim(self, uow: UnitOfWork, envelope: Envelope, handler: str) -> bool:
        inbox = self.messaging.inbox
        result = await uow.session.execute(
            pg_insert(inbox)
            .values(message_id=envelope.event_id, handler=handler, event_type=envelope.event_type)
            .on_conflict_do_nothing(index_elements=[inbox.c.message_id, inbox.c.handler])
            .returning(inbox.c.message_id)
        )
        return result.first() is not None
