"""The envelope: what travels, and how it maps onto an AMQP message."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import aio_pika
import pytest

from shared.messaging.amqp import to_message
from shared.messaging.consumer import Dispatcher, PermanentError
from shared.messaging.envelope import CONTENT_TYPE, Envelope


def _envelope(**overrides: object) -> Envelope:
    fields: dict[str, object] = {
        "event_id": uuid.uuid4(),
        "event_type": "account.registered",
        "schema_version": 2,
        "occurred_at": datetime(2026, 3, 1, 8, 30, tzinfo=UTC),
        "producer": "identity",
        "correlation_id": "corr-1",
        "causation_id": "cause-1",
        "aggregate_type": "account",
        "aggregate_id": "a-1",
        "sequence": 42,
        "payload": {"account_id": "a-1", "display_name": "张三"},
    }
    fields.update(overrides)
    return Envelope.model_validate(fields)


def test_envelope_survives_a_round_trip_through_bytes() -> None:
    envelope = _envelope()
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope


def test_envelope_bytes_are_json_with_every_spine_field() -> None:
    body = json.loads(_envelope().to_bytes())
    for name in (
        "event_id",
        "event_type",
        "schema_version",
        "occurred_at",
        "producer",
        "correlation_id",
        "causation_id",
        "payload",
    ):
        assert name in body
    assert body["payload"]["display_name"] == "张三"


def test_envelope_ignores_unknown_fields_from_a_newer_producer() -> None:
    body = json.loads(_envelope().to_bytes())
    body["added_later"] = True
    assert Envelope.from_bytes(json.dumps(body).encode()).event_type == "account.registered"


def test_envelope_from_outbox_row_keeps_the_row_id_and_sequence() -> None:
    row = SimpleNamespace(
        id=uuid.uuid4(),
        seq=7,
        event_type="team.approved",
        schema_version=1,
        aggregate_type="team",
        aggregate_id="t-1",
        payload={"team_id": "t-1"},
        producer="teams",
        correlation_id=None,
        causation_id="c",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    envelope = Envelope.from_outbox_row(row)
    assert envelope.event_id == row.id
    assert envelope.sequence == 7
    assert envelope.routing_key == "team.approved"
    assert (envelope.aggregate_type, envelope.aggregate_id) == ("team", "t-1")
    assert envelope.payload == {"team_id": "t-1"}


def test_amqp_message_id_is_the_event_id() -> None:
    envelope = _envelope()
    message = to_message(envelope)
    assert message.message_id == str(envelope.event_id)
    assert message.type == envelope.event_type
    assert message.app_id == "identity"
    assert message.correlation_id == "corr-1"
    assert message.content_type == CONTENT_TYPE
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert Envelope.from_bytes(message.body) == envelope


def test_amqp_message_headers_carry_only_what_the_envelope_has() -> None:
    # Retries happen in the consumer's lane, so a message never carries retry state of its own.
    bare = to_message(_envelope(correlation_id=None, causation_id=None)).headers or {}
    assert bare == {"schema_version": 2, "producer": "identity"}
    full = to_message(_envelope()).headers or {}
    assert full["correlation_id"] == "corr-1"


def test_an_unreadable_payload_is_refused_without_quoting_its_values() -> None:
    """The refusal ends in logs and the dead-letter reason: it names the fields, not what they held."""
    payload = {"account_id": "not-a-uuid", "username": "u", "display_name": "欧阳娜娜", "email": 7}
    envelope = _envelope(event_type="account.registered", schema_version=1, payload=payload)
    with pytest.raises(PermanentError) as refused:
        Dispatcher._read(envelope)
    message = str(refused.value)
    assert "cannot read account.registered v1" in message
    assert "account_id" in message
    assert "not-a-uuid" not in message
    assert "欧阳娜娜" not in message
