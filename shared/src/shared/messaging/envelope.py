"""The envelope every event travels in. ``event_id`` is the outbox row id and the AMQP message_id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CONTENT_TYPE = "application/json"


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: uuid.UUID
    event_type: str
    schema_version: int = 1
    occurred_at: datetime
    producer: str
    correlation_id: str | None = None
    causation_id: str | None = None
    aggregate_type: str | None = None
    aggregate_id: str | None = None
    #: the producer's outbox sequence: increases with each event of one aggregate
    sequence: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        return self.event_type

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Envelope:
        return cls.model_validate_json(body)

    @classmethod
    def from_outbox_row(cls, row: Any) -> Envelope:
        return cls(
            event_id=row.id,
            event_type=row.event_type,
            schema_version=row.schema_version,
            occurred_at=row.occurred_at,
            producer=row.producer,
            correlation_id=row.correlation_id,
            causation_id=row.causation_id,
            aggregate_type=row.aggregate_type,
            aggregate_id=row.aggregate_id,
            sequence=row.seq,
            payload=row.payload,
        )
