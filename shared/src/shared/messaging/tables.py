"""The outbox and inbox tables every service carries in its own database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID


@dataclass(frozen=True)
class MessagingTables:
    outbox: Table
    inbox: Table
    #: LISTEN/NOTIFY channel the unit of work pokes on commit
    channel: str


def define_messaging_tables(metadata: MetaData, service: str) -> MessagingTables:
    outbox = Table(
        "outbox",
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        # Commit-ish order for the relay and per-aggregate ordering.
        Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
        Column("event_type", String(120), nullable=False),
        Column("schema_version", Integer, nullable=False, server_default="1"),
        Column("aggregate_type", String(60), nullable=False),
        Column("aggregate_id", String(120), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("producer", String(60), nullable=False),
        Column("correlation_id", String(120)),
        Column("causation_id", String(120)),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("available_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("published_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
        Index("ix_outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
        Index(
            "ix_outbox_unpublished_aggregate",
            "aggregate_type",
            "aggregate_id",
            "seq",
            postgresql_where=text("published_at IS NULL"),
        ),
        Index("ix_outbox_published_at", "published_at", postgresql_where=text("published_at IS NOT NULL")),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("message_id", UUID(as_uuid=True), nullable=False),
        Column("handler", String(120), nullable=False),
        Column("event_type", String(120), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("message_id", "handler", name="pk_inbox"),
        # the relay's purge finds the marks past the retention by it
        Index("ix_inbox_processed_at", "processed_at"),
    )
    return MessagingTables(outbox=outbox, inbox=inbox, channel=f"outbox_{service}")
