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
        ("account.registered", "account.contact_changed"),
        "Keeps the recipients read model (address, display name, language)",
    ),
    Subscription(
        "notifications",
        "verification_email",
        ("volunteer.verified", "volunteer.verification_changed"),
        "Emails the verification outcome (verified with the number, or failed), manual review included",
    ),
    Subscription(
        "notifications",
        "password_reset_email",
        ("account.password_reset_requested",),
        "Emails the password reset link",
    ),
    Subscription(
        "notifications",
        "temporary_password_email",
        ("account.temporary_password_set",),
        "Tells an account a temporary password was set (never the password)",
    ),
    Subscription(
        "notifications",
        "team_review_email",
        ("team.approved", "team.rejected"),
        "Emails the team review outcome to the applicant",
    ),
    Subscription(
        "notifications",
        "review_reminder_email",
        ("team.review_reminder_requested",),
        "Emails a 'remind review' to every reviewer (T5)",
    ),
    Subscription(
        "notifications",
        "review_escalation_email",
        ("team.review_overdue",),
        "Emails the 7-day escalation to the reviewers and the region's admins (T5)",
    ),
    Subscription(
        "notifications",
        "application_email",
        ("application.admitted", "application.rejected"),
        "Emails the admission or rejection to the volunteer",
    ),
    Subscription(
        "notifications",
        "leave_email",
        ("application.left",),
        "Emails the project leads at once when an admitted volunteer leaves (P6)",
    ),
    Subscription(
        "notifications",
        "project_email",
        ("project.closed", "project.extended"),
        "Emails the project leads when their project closes or is extended",
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
