"""The AsyncAPI document covers every event contract and every subscription."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.asyncapi import build_document, is_produced, main, message_id, render
from shared.contracts import all_events
from shared.messaging.topology import SUBSCRIPTIONS, Subscription


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(render(build_document()))
    return parsed


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_document_is_asyncapi_3(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"]
    assert document["defaultContentType"] == "application/json"


def test_every_event_has_a_channel_a_message_and_a_send_operation_by_its_producer(document: dict[str, Any]) -> None:
    for cls in all_events():
        channel = document["channels"][cls.event_type]
        assert channel["address"] == cls.event_type
        assert channel["bindings"]["amqp"]["exchange"]["name"] == "events"
        assert message_id(cls) in channel["messages"]
        message = document["components"]["messages"][message_id(cls)]
        envelope = message["payload"]
        assert envelope["properties"]["producer"]["const"] == cls.producer
        payload_schema = _resolve(document, envelope["properties"]["payload"]["$ref"])
        assert set(payload_schema["properties"]) == set(cls.model_fields)
        operation = document["operations"][f"{cls.producer}.send.{cls.event_type}"]
        assert operation["action"] == "send"
        assert operation["x-service"] == cls.producer


def test_every_subscription_has_a_receive_operation_on_its_queue(document: dict[str, Any]) -> None:
    for sub in SUBSCRIPTIONS:
        operation = document["operations"][f"{sub.queue}.receive"]
        assert operation["action"] == "receive"
        channel = _resolve(document, operation["channel"]["$ref"])
        assert channel["address"] == sub.queue
        assert channel["bindings"]["amqp"]["queue"]["name"] == sub.queue
        assert operation["messages"], f"{sub.queue} binds no known event"


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    refs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    assert refs
    for ref in refs:
        _resolve(document, ref)


def test_subscription_with_a_pattern_receives_every_matching_event() -> None:
    events = all_events()
    sub = Subscription("audit", "everything", ("#",))
    document = build_document(events, (sub,))
    assert len(document["operations"]["audit.everything.receive"]["messages"]) == len(events)


def test_command_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "docs" / "asyncapi.yaml"
    assert main(["--output", str(target)]) == 0
    written = yaml.safe_load(target.read_text(encoding="utf-8"))
    assert set(written["channels"]) >= {cls.event_type for cls in all_events()}


def test_checked_in_document_is_up_to_date() -> None:
    checked_in = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.yaml"
    if not checked_in.exists():
        pytest.fail("docs/asyncapi.yaml is missing: run `make asyncapi`")
    assert checked_in.read_text(encoding="utf-8") == render(build_document()), "run `make asyncapi`"


def test_a_version_no_longer_produced_is_received_but_not_sent(document: dict[str, Any]) -> None:
    """hours.recorded v1 is declared for consumers reading old messages; projects sends only v2."""
    send = document["operations"]["projects.send.hours.recorded"]
    sent = {ref["$ref"].rsplit("/", 1)[-1] for ref in send["messages"]}
    assert sent == {"hours.recorded.v2"}
    assert "Superseded" not in send["summary"]
    assert "hours.recorded.v1" in document["channels"]["hours.recorded"]["messages"]
    received = {
        ref["$ref"].rsplit("/", 1)[-1]
        for op in document["operations"].values()
        if op["action"] == "receive"
        for ref in op["messages"]
    }
    assert {"hours.recorded.v1", "hours.recorded.v2"} <= received


def test_every_send_operation_lists_only_versions_still_produced(document: dict[str, Any]) -> None:
    retired = {message_id(cls) for cls in all_events() if not is_produced(cls)}
    assert retired  # hours.recorded v1 at least
    for operation in document["operations"].values():
        if operation["action"] == "send":
            assert operation["messages"]
            assert not {ref["$ref"].rsplit("/", 1)[-1] for ref in operation["messages"]} & retired
