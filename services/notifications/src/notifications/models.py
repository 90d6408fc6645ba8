"""Tables of the notifications service: recipients (a minimal read model), the platform roles of the
accounts whose roles changed (bounding operators' tokens) and the email outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import new_metadata
from shared.messaging.tables import define_messaging_tables
from shared.platform_roles import define_platform_roles_table


class Base(DeclarativeBase):
    metadata = new_metadata()


metadata = Base.metadata
messaging = define_messaging_tables(metadata, "notifications")
#: identity's platform roles of the accounts whose roles changed: a withdrawn national admin loses the
#: operator API at once (shared.platform_roles)
platform_roles = define_platform_roles_table(metadata)

EMAIL_CHANNEL = "emails_notifications"

#: waiting for the recipient's account.registered; rendered and made pending when it arrives,
#: failed (``recipient_unknown``) when it has not after ``awaiting_recipient_max_hours``
AWAITING_RECIPIENT = "awaiting_recipient"
PENDING = "pending"
SENT = "sent"
FAILED = "failed"
#: stopped by a per-recipient rate limit; kept with the reason, an operator may replay it
SUPPRESSED = "suppressed"
EMAIL_STATUSES = (AWAITING_RECIPIENT, PENDING, SENT, FAILED, SUPPRESSED)
#: the start of the failure reason of an email whose template could not be rendered with the
#: variables it waited with (queued by an older release, say, whose variables a newer template
#: lacks): ``render_failed: <the error's type>``. It has no subject or body, so it is never replayed
RENDER_FAILED = "render_failed"
#: the states an email leaves only by an operator's replay: what the retention may delete
FINAL_STATUSES = (SENT, FAILED, SUPPRESSED)
#: written into statements and the partial index's predicate (a bound list would not match it)
FINAL_STATUSES_SQL = "status IN (" + ", ".join(f"'{status}'" for status in FINAL_STATUSES) + ")"


class Recipient(Base):
    """What notifications knows of an account: address, display name, language. Nothing else."""

    __tablename__ = "recipients"

    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    display_name: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(8), server_default="zh")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))


class Email(Base):
    """One email to one recipient for one event and template; the unique key makes it once."""

    __tablename__ = "emails"
    __table_args__ = (
        Index("ix_emails_due", "next_attempt_at", "seq", postgresql_where=text("status = 'pending'")),
        Index("ix_emails_status_created", "status", "created_at"),
        Index("ix_emails_event_id", "event_id"),
        Index("ix_emails_created", "created_at", "id"),
        # the operator's list of one account's emails, newest first
        Index("ix_emails_account_created", "recipient_account_id", "created_at", "id"),
        Index("ix_emails_rate_key", "rate_key", "template", "created_at"),
        Index("ix_emails_unresolved", "recipient_account_id", postgresql_where=text("to_address = ''")),
        # an account's pending emails, re-addressed when its contact changes (few rows at any time)
        Index("ix_emails_pending_account", "recipient_account_id", postgresql_where=text("status = 'pending'")),
        # emails waiting for their recipient, longest first: the expiry sweep and its gauges
        Index("ix_emails_awaiting", "next_attempt_at", postgresql_where=text("status = 'awaiting_recipient'")),
        # emails in a final state by their last change: the retention's purge (notifications.retention)
        Index("ix_emails_final_age", "next_attempt_at", postgresql_where=text(FINAL_STATUSES_SQL)),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    #: queue order: emails due at the same moment (queued by one transaction) leave in the order
    #: they were queued
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(120))
    template: Mapped[str] = mapped_column(String(80))
    #: "account:<id>" for emails addressed to an account, else the lower-cased address: the
    #: recipient part of the dedupe key
    recipient_key: Mapped[str] = mapped_column(String(300))
    #: what the rate limits count by: the lower-cased address when known as the email is queued
    #: (accounts sharing one mailbox share its limit), else the recipient key; a template limited
    #: per subject appends it ("#<team id>" for review reminders). NULL on emails queued before
    #: migration 0009 outside its backfill (older than any window)
    rate_key: Mapped[str | None] = mapped_column(String(340))
    recipient_account_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    #: the template's variables, kept until the recipient is known (then the email is rendered)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: empty while the recipient is not yet in the read model
    to_address: Mapped[str] = mapped_column(String(254))
    to_name: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(200))
    #: awaiting_recipient → pending → sent | failed; or suppressed (rate limit); awaiting_recipient
    #: → failed when the recipient's address never came (``notifications.awaiting``)
    status: Mapped[str] = mapped_column(String(24), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    #: when a pending email is due; while an email awaits its recipient, when it began to wait
    #: (queued, or replayed by an operator): its longest wait is counted from there. In a final
    #: state, when it got there: queued (suppressed), addressed, replayed, given up on waiting, or
    #: the end of its last send's lease (sent, failed): the retention counts from it
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


#: templates whose body holds a secret only the recipient may see (a one-use link): withheld
#: from operators, and not kept once sent (``notifications.sender``)
WITHHELD_BODIES = frozenset({"password_reset"})
#: what is kept of such an email's body once it can no longer be sent (sent, finally failed,
#: suppressed): the link is not kept, and the email is not replayed (the person asks for a new one)
BODY_FORGOTTEN = "(its one-use link is not kept / 其中的一次性链接不予保存)"

# operators search by address, whatever its case
Index("ix_emails_to_address_lower", func.lower(Email.to_address))


class EmailReplay(Base):
    """Audit of an operator sending a failed (or suppressed) email again."""

    __tablename__ = "email_replays"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    #: deleted with its email (the retention's purge)
    email_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("emails.id", ondelete="CASCADE"), index=True
    )
    replayed_by_account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    previous_status: Mapped[str] = mapped_column(String(32))
    previous_error: Mapped[str | None] = mapped_column(Text)
    replayed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
