"""The publish/subscribe contract both brokers (RabbitMQ and in-process) implement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from shared.messaging.envelope import Envelope
from shared.messaging.topology import Subscription


class PublishError(Exception):
    """The broker did not take the message (down, nacked, or unroutable)."""


class BrokerUnavailable(PublishError):
    """No connection to the broker: the relay backs off as a whole, rows stay untouched."""


class PermanentError(Exception):
    """A handler failure that retrying cannot fix: the message goes to the dead-letter queue."""


#: The dispatcher's entry point: handle one delivery of ``envelope`` for one subscription.
MessageHandler = Callable[[Subscription, Envelope], Awaitable[None]]


class Broker(Protocol):
    async def publish(self, envelope: Envelope) -> None:
        """Publish durably; return only once the broker has taken it. Raises PublishError."""
        ...

    def subscribe(self, subscription: Subscription, handler: MessageHandler) -> None:
        """Register a handler; consumption starts with :meth:`start`."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
