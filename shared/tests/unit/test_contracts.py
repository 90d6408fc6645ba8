"""Every event contract is complete enough to be routed, ordered and documented."""

from __future__ import annotations

import pytest

from shared.contracts import Event, all_events, event_class
from shared.messaging.topology import SUBSCRIPTIONS, topic_matches

EVENTS = all_events()


def test_there_are_event_contracts() -> None:
    assert EVENTS


@pytest.mark.parametrize("cls", EVENTS, ids=lambda c: f"{c.event_type}.v{c.schema_version}")
def test_event_declares_type_producer_and_an_existing_aggregate_field(cls: type[Event]) -> None:
    assert cls.event_type
    assert cls.event_type == cls.event_type.lower()
    assert "." in cls.event_type, "routing keys are aggregate.verb"
    assert cls.producer
    assert cls.aggregate_type
    assert cls.aggregate_field in cls.model_fields, f"{cls.__name__}.{cls.aggregate_field} is not a field"
    assert cls.schema_version >= 1
    assert event_class(cls.event_type, cls.schema_version) is cls


def test_event_types_are_unique_per_schema_version() -> None:
    keys = [(c.event_type, c.schema_version) for c in EVENTS]
    assert len(keys) == len(set(keys))


def test_every_event_type_is_bound_by_a_subscription() -> None:
    unroutable = sorted(
        {
            c.event_type
            for c in EVENTS
            if not any(topic_matches(key, c.event_type) for s in SUBSCRIPTIONS for key in s.routing_keys)
        }
    )
    assert unroutable == [], "unroutable events are refused by the broker: bind a consumer"


def test_unknown_event_type_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        event_class("nothing.happened")
