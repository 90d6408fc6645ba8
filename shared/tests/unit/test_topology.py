"""Pure topology logic: routing-key patterns, retry tiers, queue naming and arguments."""

from __future__ import annotations

import pytest

from shared.messaging.topology import (
    RETRY_TIERS_MS,
    SUBSCRIPTIONS,
    Subscription,
    queue_arguments,
    retry_tier_for,
    topic_matches,
)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("account.registered", "account.registered", True),
        ("account.registered", "account.contact_changed", False),
        ("account.*", "account.registered", True),
        ("account.*", "account.registered.v2", False),
        ("*.registered", "team.registered", True),
        ("#", "team.member_joined", True),
        ("team.#", "team", True),
        ("team.#", "team.member.joined", True),
        ("#.joined", "team.member.joined", True),
        ("team.#.joined", "team.joined", True),
        ("team.#.joined", "team.left", False),
        ("team.*", "account.registered", False),
    ],
)
def test_topic_matching_follows_amqp_rules(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_retry_tiers_grow_then_stay_at_the_last_tier() -> None:
    assert retry_tier_for(1) == RETRY_TIERS_MS[0]
    assert retry_tier_for(2) == RETRY_TIERS_MS[1]
    assert retry_tier_for(len(RETRY_TIERS_MS)) == RETRY_TIERS_MS[-1]
    assert retry_tier_for(99) == RETRY_TIERS_MS[-1]
    assert retry_tier_for(0) == RETRY_TIERS_MS[0]  # a first failure never retries without delay
    assert list(RETRY_TIERS_MS) == sorted(RETRY_TIERS_MS)


def test_queue_is_named_after_service_and_handler_and_dead_letters_to_its_dlq() -> None:
    sub = Subscription("notifications", "welcome_email", ("account.registered",))
    assert sub.queue == "notifications.welcome_email"
    assert sub.dlq == "notifications.welcome_email.dlq"
    args = queue_arguments(sub, delivery_limit=4)
    assert args["x-queue-type"] == "quorum"
    assert args["x-delivery-limit"] == 4
    assert args["x-dead-letter-routing-key"] == sub.dlq


def test_every_queue_has_a_single_active_consumer_so_replicas_cannot_reorder_an_aggregate() -> None:
    for sub in SUBSCRIPTIONS:
        assert queue_arguments(sub)["x-single-active-consumer"] is True


def test_central_subscriptions_have_unique_queue_names() -> None:
    queues = [s.queue for s in SUBSCRIPTIONS]
    assert len(queues) == len(set(queues))
