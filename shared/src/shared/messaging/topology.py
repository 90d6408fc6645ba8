"""The whole broker topology, declared identically (and idempotently) by every service.

* one durable topic exchange ``events``; routing key = event type;
* one quorum queue per consuming handler, ``<service>.<handler>``, dead-lettering to
  ``<queue>.dlq`` (at-least-once) once the broker has delivered it ``delivery_limit`` times
  (crash loops) or when the consumer rejects it (permanent failure, retries used up);
* delayed retry: fixed tiers, each a fanout exchange and a quorum queue with a message TTL
  whose dead-letter target is the default exchange, so an expired message goes back to the
  queue named by its routing key, i.e. the handler's own queue.

Every consumer's queue is declared by every service, so an event raised before its consumer
ever started still finds its queue: an unroutable event is an error, never a silent loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: delays of the retry tiers, milliseconds; a handler's n-th retry uses tier min(n, last)
RETRY_TIERS_MS: tuple[int, ...] = (200, 1_000, 5_000, 15_000)
DEFAULT_DELIVERY_LIMIT = 10


@dataclass(frozen=True)
class Subscription:
    service: str
    handler: str
    routing_keys: tuple[str, ...]
    #: why this handler exists (goes into the AsyncAPI document)
    summary: str = ""

    @property
    def queue(self) -> str:
        return f"{self.service}.{self.handler}"

    @property
    def dlq(self) -> str:
        return f"{self.queue}.dlq"


#: Every consuming handler in the system. Add a line here when a service adds a handler.
SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription("notifications", "welcome_email", ("account.registered",), "Greets a new account by email"),
    Subscription(
        "notifications",
        "recipients",
        ("account.registered",),
        "Keeps the recipients read model (address, display name, language)",
    ),
)


def subscriptions_for(service: str) -> list[Subscription]:
    return [s for s in SUBSCRIPTIONS if s.service == service]


def retry_exchange(tier_ms: int) -> str:
    return f"events.retry.{tier_ms}ms"


def retry_tier_for(attempt: int) -> int:
    """Tier (ms) of the delay before retry number ``attempt`` (1-based)."""
    index = min(max(attempt, 1), len(RETRY_TIERS_MS)) - 1
    return RETRY_TIERS_MS[index]


def queue_arguments(sub: Subscription, delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": sub.dlq,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def dlq_arguments() -> dict[str, Any]:
    return {"x-queue-type": "quorum"}


def retry_queue_arguments(tier_ms: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": tier_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pat: list[str], key: list[str]) -> bool:
    if not pat:
        return not key
    head, rest = pat[0], pat[1:]
    if head == "#":
        return any(_match(rest, key[i:]) for i in range(len(key) + 1))
    if not key:
        return False
    return (head == "*" or head == key[0]) and _match(rest, key[1:])
