"""The AsyncAPI 3.0 document of every event, generated from the contracts and the topology.

``vs-asyncapi [--output PATH]`` (``make asyncapi`` writes ``docs/asyncapi.yaml``). One channel per
event type on the topic exchange ``events`` (routing key = event type), one channel per consuming
queue ``<service>.<handler>``; a ``send`` operation per event by its producing service (listing the
versions it still produces) and a ``receive`` operation per subscription. A message's payload is
the envelope as it travels, with the event's own schema under ``payload``.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from shared.contracts.base import Event, all_events
from shared.messaging.envelope import CONTENT_TYPE
from shared.messaging.topology import (
    DEFAULT_DELIVERY_LIMIT,
    SUBSCRIPTIONS,
    Subscription,
    dlq_arguments,
    queue_arguments,
    topic_matches,
)

EXCHANGE = "events"
AMQP_BINDING_VERSION = "0.3.0"
SCHEMA_REF = "#/components/schemas/{model}"


def _version() -> str:
    try:
        return version("vs-shared")
    except PackageNotFoundError:
        return "0.0.0"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def message_id(cls: type[Event]) -> str:
    return f"{cls.event_type}.v{cls.schema_version}"


def _event_schema(cls: type[Event], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = cls.model_json_schema(ref_template=SCHEMA_REF)
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    return schema


def _envelope_schema(cls: type[Event], payload_ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The envelope every event travels in; the event itself is under `payload`.",
        "required": ["event_id", "event_type", "schema_version", "occurred_at", "producer", "payload"],
        "properties": {
            "event_id": {
                "type": "string",
                "format": "uuid",
                "description": "Outbox row id of the producer; also the AMQP message_id. Consumers deduplicate on it.",
            },
            "event_type": {"type": "string", "const": cls.event_type, "description": "Also the routing key."},
            "schema_version": {"type": "integer", "const": cls.schema_version},
            "occurred_at": {"type": "string", "format": "date-time"},
            "producer": {"type": "string", "const": cls.producer},
            "correlation_id": {"type": ["string", "null"], "description": "The request or flow this belongs to."},
            "causation_id": {"type": ["string", "null"], "description": "event_id of the event that caused it."},
            "aggregate_type": {"type": ["string", "null"], "const": cls.aggregate_type},
            "aggregate_id": {
                "type": ["string", "null"],
                "description": f"Value of `payload.{cls.aggregate_field}`; events of one aggregate keep their order.",
            },
            "sequence": {"type": ["integer", "null"], "description": "Producer's outbox sequence."},
            "payload": {"$ref": payload_ref},
        },
    }


HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "AMQP headers copied from the envelope, for routing and tracing without parsing the body.",
    "properties": {
        "schema_version": {"type": "integer"},
        "producer": {"type": "string"},
        "correlation_id": {"type": "string"},
        "causation_id": {"type": "string"},
    },
}


def _exchange_binding() -> dict[str, Any]:
    return {
        "is": "routingKey",
        "exchange": {"name": EXCHANGE, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"},
        "bindingVersion": AMQP_BINDING_VERSION,
    }


def _queue_binding(sub: Subscription) -> dict[str, Any]:
    return {
        "is": "queue",
        "queue": {"name": sub.queue, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"},
        "bindingVersion": AMQP_BINDING_VERSION,
    }


def is_produced(cls: type[Event]) -> bool:
    """Whether the producer still sends this version: a superseded one kept for consumers to read
    old messages sets ``produced = False`` and gets no ``send`` operation (it stays receivable)."""
    return bool(getattr(cls, "produced", True))


def build_document(
    events: list[type[Event]] | None = None, subscriptions: tuple[Subscription, ...] = SUBSCRIPTIONS
) -> dict[str, Any]:
    events = all_events() if events is None else events
    schemas: dict[str, Any] = {"EnvelopeHeaders": HEADERS_SCHEMA}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    by_type: dict[str, list[type[Event]]] = {}
    for cls in events:
        by_type.setdefault(cls.event_type, []).append(cls)

    for event_type, classes in sorted(by_type.items()):
        channel_messages: dict[str, Any] = {}
        for cls in sorted(classes, key=lambda c: c.schema_version):
            mid = message_id(cls)
            schemas[mid] = _event_schema(cls, schemas)
            messages[mid] = {
                "name": cls.__name__,
                "title": f"{cls.event_type} v{cls.schema_version}",
                "summary": cls.summary or _first_line(cls.__doc__),
                "description": (cls.__doc__ or "").strip(),
                "contentType": CONTENT_TYPE,
                "headers": {"$ref": "#/components/schemas/EnvelopeHeaders"},
                "payload": _envelope_schema(cls, f"#/components/schemas/{mid}"),
                "correlationId": {"location": "$message.header#/correlation_id"},
                "bindings": {
                    "amqp": {"messageType": cls.event_type, "bindingVersion": AMQP_BINDING_VERSION},
                },
                "tags": [{"name": cls.producer}],
            }
            channel_messages[mid] = {"$ref": f"#/components/messages/{mid}"}
        producer = classes[0].producer
        channels[event_type] = {
            "address": event_type,
            "title": event_type,
            "description": f"Routing key `{event_type}` on the topic exchange `{EXCHANGE}`.",
            "messages": channel_messages,
            "bindings": {"amqp": _exchange_binding()},
        }
        sent = sorted((c for c in classes if is_produced(c)), key=lambda c: c.schema_version)
        if not sent:
            continue
        operations[f"{producer}.send.{event_type}"] = {
            "action": "send",
            "title": f"{producer} publishes {event_type}",
            "summary": sent[-1].summary or f"{producer} publishes {event_type}",
            "description": (
                "Written to the producer's outbox in the transaction of the state change; the relay "
                "publishes it persistent and mandatory with publisher confirms."
            ),
            "channel": {"$ref": f"#/channels/{event_type}"},
            "messages": [{"$ref": f"#/channels/{event_type}/messages/{message_id(c)}"} for c in sent],
            "tags": [{"name": producer}],
            "x-service": producer,
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING_VERSION}},
        }

    for sub in subscriptions:
        matched = sorted(
            (cls for cls in events if any(topic_matches(key, cls.event_type) for key in sub.routing_keys)),
            key=lambda c: (c.event_type, c.schema_version),
        )
        channel_id = f"queue.{sub.queue}"
        channels[channel_id] = {
            "address": sub.queue,
            "title": sub.queue,
            "description": (
                f"Quorum queue of handler `{sub.handler}` of {sub.service}, bound to `{EXCHANGE}` with "
                f"{', '.join(f'`{k}`' for k in sub.routing_keys)}; dead-letters to `{sub.dlq}`."
            ),
            "messages": {message_id(cls): {"$ref": f"#/components/messages/{message_id(cls)}"} for cls in matched},
            "bindings": {"amqp": _queue_binding(sub)},
            "x-routing-keys": list(sub.routing_keys),
            "x-queue-arguments": queue_arguments(sub, DEFAULT_DELIVERY_LIMIT),
            "x-dead-letter-queue": {"name": sub.dlq, "arguments": dlq_arguments()},
        }
        operations[f"{sub.queue}.receive"] = {
            "action": "receive",
            "title": f"{sub.service} handles in {sub.handler}",
            "summary": sub.summary or f"{sub.service}.{sub.handler}",
            "description": (
                "Manual ack after the handler's transaction commits; the inbox row (event_id, handler) "
                "in that transaction makes a redelivery a no-op."
            ),
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id(cls)}"} for cls in matched],
            "tags": [{"name": sub.service}],
            "x-service": sub.service,
            "x-handler": sub.handler,
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Volunteer service system events",
            "version": _version(),
            "description": (
                "Every event the services exchange over RabbitMQ. Events are facts (`aggregate.verb`), "
                "published from each producer's outbox to the topic exchange `events`; each consuming "
                "handler has its own queue `<service>.<handler>` with a `.dlq`. Contract changes are "
                "additive; a breaking change is a new schema_version. Generated by `vs-asyncapi`."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "rabbitmq": {
                "host": "rabbitmq:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "The broker of a distributed deployment (vhost `/`).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True  # plain YAML: no &anchors for repeated sub-objects


def render(document: dict[str, Any]) -> str:
    return str(yaml.dump(document, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=110))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vs-asyncapi", description="Write the AsyncAPI document of every event.")
    parser.add_argument("--output", "-o", type=Path, default=None, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    text = render(build_document())
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
