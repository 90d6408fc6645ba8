"""Tables of the identity service.

A *volunteer record* is a person as some source knows them (a sign-up, a legacy import);
several records may carry one ID number (legacy duplicates, V3). An *account* is what a
person logs in with; at most one account per ID number (a unique index on the blind index),
which is what makes concurrent sign-ups with one number give exactly one account. A
volunteer's account id is the id of the record it registered or claimed.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Sequence,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import EventSource, new_metadata
from shared.messaging.tables import define_messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


metadata = Base.metadata
messaging = define_messaging_tables(metadata, "identity")

#: the national volunteer numbers' counter (rendered with a check digit, see identity.domain.numbers)
volunteer_number_seq = Sequence("volunteer_number_seq", metadata=metadata, start=1)

RECORD_ACTIVE = "active"
RECORD_INACTIVE = "inactive"  # imported, not claimed yet (V4)
RECORD_MERGED = "merged"  # a duplicate folded into another record (V3)

SOURCE_REGISTRATION = "registration"
SOURCE_IMPORT = "import"


class VolunteerRecord(Base):
    __tablename__ = "volunteer_records"
    __table_args__ = (
        Index("ix_volunteer_records_live_blind_index", "id_blind_index", postgresql_where=text("status <> 'merged'")),
        # empty until a blind-index key rotation: probing it costs an import next to nothing
        Index(
            "ux_volunteer_records_import_key",
            "import_key",
            unique=True,
            postgresql_where=text("import_key IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    document_type: Mapped[str] = mapped_column(String(20))
    id_blind_index: Mapped[bytes] = mapped_column(LargeBinary(32))
    #: which blind-index key made ``id_blind_index`` (identity.crypto.blind_key_fingerprint);
    #: None: written before key ids were kept (under the key of that time)
    id_blind_key_id: Mapped[str | None] = mapped_column(String(16))
    id_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    id_key_id: Mapped[str] = mapped_column(String(32))
    id_masked: Mapped[str] = mapped_column(String(32))
    real_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), ForeignKey("volunteer_records.id"))
    #: what a legacy system knew (hours, teams, ...), kept when the record is claimed or merged
    history: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: an imported record's id is its row's fingerprint under the blind-index key of the time
    #: (``identity.import_models.record_id``); once ``reindex`` moves the record to another key, its
    #: fingerprint under that key, by which loading the same row again still finds it. None: the
    #: id is the fingerprint under the current key, or the record was not imported
    import_key: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def rename(self, name: str) -> None:
        """A new real name (V8, before verification). An imported record first keeps the name it
        was loaded under, as the legacy system knew it (``history.legacy.name``): ``reindex``
        computes the row's fingerprint under a new blind-index key from it, so loading that row
        again after a rotation still finds this record."""
        if self.source == SOURCE_IMPORT:
            history = dict(self.history or {})
            legacy = dict(history.get("legacy") or {})
            legacy.setdefault("name", self.real_name)
            # a new dict: the JSONB column is not tracked for changes in place
            self.history = {**history, "legacy": legacy}
        self.real_name = name


class Account(EventSource, Base):
    """A person's account. Never deleted (V7); the username never changes."""

    __tablename__ = "accounts"
    __table_args__ = (
        # One account per ID number: the arbiter of concurrent sign-ups (no check-then-insert).
        Index("ux_accounts_id_blind_index", "id_blind_index", unique=True),
        # One account per username ignoring case (V1): ``ZhangSan`` is refused once ``zhangsan``
        # exists, also when both sign up at once. Case-twins registered before (migration 0014)
        # stay, as usernames never change and accounts are never deleted (V7): all but the oldest
        # of each are marked ``username_case_twin`` and left out of this index.
        Index(
            "ux_accounts_username_lower",
            text("lower(username)"),
            unique=True,
            postgresql_where=text("NOT username_case_twin"),
        ),
        # those twins, found by the same lookup (``Accounts.by_username``) without reading the table
        Index("ix_accounts_username_lower_twins", text("lower(username)"), postgresql_where=text("username_case_twin")),
        Index(
            "ix_accounts_verification_due",
            "verification_due_at",
            postgresql_where=text("verification_status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    #: a username that an older account's equals ignoring case, both registered before usernames
    #: were unique ignoring case (set by migration 0014 only; never on a new account)
    username_case_twin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    mobile: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(200))
    region_code: Mapped[str | None] = mapped_column(String(12))
    language: Mapped[str] = mapped_column(String(8), server_default="zh")
    #: the volunteer record this account registered or claimed; staff accounts have none
    record_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("volunteer_records.id"), unique=True
    )
    id_blind_index: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    id_blind_key_id: Mapped[str | None] = mapped_column(String(16))
    guardian_name: Mapped[str | None] = mapped_column(String(100))
    guardian_relation: Mapped[str | None] = mapped_column(String(20))
    guardian_phone: Mapped[str | None] = mapped_column(String(20))
    guardian_consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default=text("'{volunteer}'"))
    admin_region: Mapped[str | None] = mapped_column(String(12))
    must_change_password: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: pending, verified, failed, manual_review; staff accounts have none
    verification_status: Mapped[str | None] = mapped_column(String(16))
    #: the day the current verification began: expected dates count working days from it
    verification_requested_on: Mapped[date | None] = mapped_column(Date)
    verification_reason: Mapped[str | None] = mapped_column(String(500))
    #: when the background verifier next asks the provider (None: nothing to ask)
    verification_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verification_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    volunteer_number: Mapped[str | None] = mapped_column(String(20), unique=True)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))

    record: Mapped[VolunteerRecord | None] = relationship(lazy="joined")


class RefreshToken(Base):
    """Rotating refresh tokens, stored as SHA-256 hashes. A family is one login's chain."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_expires_at", "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("accounts.id"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PasswordResetToken(Base):
    __tablename__ = "password_reset_tokens"
    __table_args__ = (Index("ix_password_reset_tokens_expires_at", "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Failed logins per key (``account:<hash>``, ``address:<ip>``), shared by all replicas."""

    __tablename__ = "login_throttle"
    __table_args__ = (Index("ix_login_throttle_last_failure_at", "last_failure_at"),)

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DuplicateCase(Base):
    """Two or more live records with one ID number (V3), waiting for the national admin."""

    __tablename__ = "duplicate_cases"
    __table_args__ = (
        Index("ux_duplicate_cases_open", "id_blind_index", unique=True, postgresql_where=text("status = 'open'")),
        # the national admin's pages of cases, by status or all, oldest first
        Index("ix_duplicate_cases_status_opened", "status", "opened_at", "id"),
        Index("ix_duplicate_cases_opened", "opened_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    #: always the index of one of its records (identity.reindex moves it along with them), which is
    #: how the case's records are found under either key during a rotation
    id_blind_index: Mapped[bytes] = mapped_column(LargeBinary(32))
    id_blind_key_id: Mapped[str | None] = mapped_column(String(16))
    id_masked: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    opened_by: Mapped[str] = mapped_column(String(16))  # registration | import
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    kept_record_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


class AuditEntry(Base):
    """Who did what to whose personal data or rights: unmasked reads, lookups, role grants, resets."""

    __tablename__ = "audit_log"
    #: a page of one kind of entry, newest first (an action that is rare read the whole log)
    __table_args__ = (Index("ix_audit_log_action_at", "action", "at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    action: Mapped[str] = mapped_column(String(40))
    subject_account_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class IdCardUpload(Base):
    """The front of an ID card a volunteer uploaded after a failed verification (V6), encrypted.
    The image is kept only while it waits for review: a decision or a withdrawal (a name change,
    a newer upload) deletes it, and who decided what stays here and in the audit."""

    __tablename__ = "id_card_uploads"
    __table_args__ = (
        # the queue in its order: the country's (a national admin) and a region's (its codes a range)
        Index("ix_id_card_uploads_pending_order", "uploaded_at", "id", postgresql_where=text("status = 'pending'")),
        Index(
            "ix_id_card_uploads_pending_region",
            "region_code",
            "uploaded_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("accounts.id"), index=True)
    #: the volunteer's region when uploaded: whose regional admins review it
    region_code: Mapped[str] = mapped_column(String(12))
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    image_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected | superseded
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reviewed_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(String(500))


class TeamMembership(Base):
    """Read model of teams' events (T7): who belongs to which team, who administers it, and who
    leads its projects."""

    __tablename__ = "team_memberships"

    team_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, index=True)
    member: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    admin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    #: may lead the team's projects (record hours, admit): such an account is not a plain member
    project_lead: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    #: the outbox sequence of the teams event that last set each flag (an older one changes nothing)
    member_sequence: Mapped[int | None] = mapped_column(BigInteger)
    admin_sequence: Mapped[int | None] = mapped_column(BigInteger)
    project_lead_sequence: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VolunteerCard(Base):
    """An issued volunteer card (V9); its QR carries only this id, signed."""

    __tablename__ = "volunteer_cards"
    __table_args__ = (
        # One current card per volunteer (V9): a replaced card's QR code must not verify as current.
        Index("ux_volunteer_cards_current", "account_id", unique=True, postgresql_where=text("revoked_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("accounts.id"), index=True)
    issued_on: Mapped[date] = mapped_column(Date)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: set when a newer card replaces it or the volunteer's identity changes
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
