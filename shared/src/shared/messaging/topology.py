"""The whole broker topology, declared identically (and idempotently) by every service.

* one durable topic exchange ``events``; routing key = event type;
* one quorum queue per consuming handler, ``<service>.<handler>``, with a **single active
  consumer**: any number of replicas may consume it, the broker delivers to one of them at a
  time, in queue order, and hands over to another when it goes away, so one aggregate's events
  are never handled by two replicas at once or out of order;
* each queue dead-letters to ``<queue>.dlq`` (at-least-once) when its consumer rejects a
  message (permanent failure, or retries used up) or once the broker has delivered it
  ``delivery_limit`` times (a message that crashes its consumer over and over);
* retries of transient handler errors happen in the consumer's per-aggregate lane, waiting
  :data:`RETRY_TIERS_MS` between runs (see :mod:`shared.messaging.lanes`), not through retry
  queues: a message that went round a retry queue would come back behind later events of its
  aggregate.

Queue arguments are fixed when a queue is first declared; declaring it again with different
arguments fails with ``PRECONDITION_FAILED``. A broker that still has queues from a topology with
other arguments (e.g. before ``x-single-active-consumer``) needs them deleted (once drained) or
migrated before the services start; the ``events.retry.*`` exchanges and queues of the old
retry-queue design are no longer used and can be deleted.

Every consumer's queue is declared by every service, so an event raised before its consumer
ever started still finds its queue: an unroutable event is an error, never a silent loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: delays of the in-lane retry tiers, milliseconds; a handler's n-th retry waits tier min(n, last)
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
        "team_member_added_email",
        ("team.member_joined",),
        "Tells a volunteer that a team admin brought them into a team without their answer (FAQ V1)",
    ),
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
    Subscription(
        "notifications",
        "platform_roles",
        ("account.roles_changed",),
        "Keeps each account's platform roles as last changed, so a withdrawn national admin loses the "
        "operator API at once",
    ),
    Subscription(
        "projects",
        "volunteers",
        ("volunteer.verified", "volunteer.merged"),
        "Keeps the verified volunteers read model; a merge moves applications and hours to the kept id",
    ),
    Subscription(
        "projects",
        "team_roles",
        (
            "team.approved",
            "team.admin_appointed",
            "team.admin_removed",
            "team.project_lead_appointed",
            "team.project_lead_removed",
        ),
        "Keeps the teams, team admins and project leads read model (who may run projects)",
    ),
    Subscription(
        "projects",
        "platform_roles",
        ("account.roles_changed",),
        "Keeps each account's platform roles as last changed, so a withdrawn role (a national admin's late "
        "extension) stops working at once",
    ),
    Subscription(
        "projects",
        "project_activity",
        ("project.#", "application.#", "hours.#"),
        "Keeps each project's activity log (publishing, closing, every application stage, hours and their "
        "corrections) for its lead and team admins; also makes sure every projects event has a queue",
    ),
    Subscription(
        "teams",
        "volunteers",
        ("volunteer.verified", "volunteer.merged"),
        "Keeps teams' read model of verified volunteers (masked name, number); merges move memberships",
    ),
    Subscription(
        "teams",
        "team_history",
        ("team.#",),
        "Keeps each team's history of facts (registration, review, reminders, liaison rights, membership) "
        "for its admins and region admins; also makes sure every team event has a queue",
    ),
    Subscription(
        "teams",
        "region_admins",
        ("account.roles_changed",),
        "Keeps teams' read model of regional and national admins (reviewers, escalation recipients) and of "
        "every account's roles as last changed, so a withdrawn role stops working at once",
    ),
    Subscription(
        "identity",
        "team_memberships",
        (
            "team.member_joined",
            "team.member_left",
            "team.admin_appointed",
            "team.admin_removed",
            "team.project_lead_appointed",
            "team.project_lead_removed",
        ),
        "Keeps identity's read model of team members, admins and project leads (T7: lookups, team admin "
        "password resets, which spare no admin or project lead of any team)",
    ),
)


def subscriptions_for(service: str) -> list[Subscription]:
    return [s for s in SUBSCRIPTIONS if s.service == service]


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
        "x-single-active-consumer": True,
    }


def dlq_arguments() -> dict[str, Any]:
    return {"x-queue-type": "quorum"}


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
