"""Tables of the teams service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, Table, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import EventSource, new_metadata
from shared.messaging.tables import define_messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


metadata = Base.metadata
messaging = define_messaging_tables(metadata, "teams")

# team status; WITHDRAWN: a registration its applicant withdrew while under review
PENDING, APPROVED, REJECTED, WITHDRAWN = "pending", "approved", "rejected", "withdrawn"
#: the teams that hold their name and credit code: a rejected or withdrawn registration frees both
LIVE_STATUSES = (PENDING, APPROVED)
_LIVE = "status IN ('pending', 'approved')"
# join modes (T6)
REJECT_ANYONE, ANYONE, APPROVAL = "reject_anyone", "anyone", "approval"
# join request / invitation status; CLOSED: the account joined the team by another route (an
# application, an invitation or a first-admin appointment), so its other open ones lapse;
# REVOKED: an invitation the team's admins withdrew
ACCEPTED, DECLINED, CLOSED, REVOKED = "accepted", "declined", "closed", "revoked"


class Team(Base, EventSource):
    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(60))
    #: what must be unique per region (``teams.domain.naming.name_key``: spaces removed, NFKC, case
    #: folded); a live twin of an earlier team's key kept from before migration 0011 has ``#2``,
    #: ``#3`` ... appended, in the order they were submitted
    name_key: Mapped[str] = mapped_column(Text)
    region_code: Mapped[str] = mapped_column(String(12))
    level: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    uscc: Mapped[str | None] = mapped_column(String(18))
    registration_authority_region: Mapped[str | None] = mapped_column(String(12))
    liaison_team_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teams.id"))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    is_root: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    liaison_authorised: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    join_mode: Mapped[str] = mapped_column(String(16), default=REJECT_ANYONE, server_default=REJECT_ANYONE)
    contact_person: Mapped[str] = mapped_column(String(60))
    contact_phone: Mapped[str] = mapped_column(String(40))
    contact_email: Mapped[str] = mapped_column(String(254))
    contact_address: Mapped[str] = mapped_column(String(200))
    applicant_account_id: Mapped[uuid.UUID] = mapped_column(index=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[uuid.UUID | None]
    decision_reason: Mapped[str | None] = mapped_column(Text)
    last_reminder_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    overdue_raised_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        # Names (by their key) are unique within a region among live teams; a rejected or withdrawn
        # applicant may try again.
        Index("uq_teams_region_name_key", "region_code", "name_key", unique=True, postgresql_where=text(_LIVE)),
        Index("uq_teams_uscc", "uscc", unique=True, postgresql_where=text(f"uscc IS NOT NULL AND {_LIVE}")),
        # the directory of a region, in name order
        Index("ix_teams_region_name", "region_code", "name", postgresql_where=text("status = 'approved'")),
        Index("ix_teams_liaison_candidates", "region_code", postgresql_where=text("liaison_authorised")),
        # the review queue in its order (the overdue sweep, reviews of region admins) and per
        # liaison team (reviews of its admins); the public directory in its order
        Index("ix_teams_pending_submitted_id", "submitted_at", "id", postgresql_where=text("status = 'pending'")),
        # the registrations the overdue sweep has still to escalate (those escalated and undecided
        # pile up in the queue, and every pass read them all again)
        Index(
            "ix_teams_overdue_due",
            "submitted_at",
            postgresql_where=text("status = 'pending' AND overdue_raised_at IS NULL"),
        ),
        Index(
            "ix_teams_pending_liaison",
            "liaison_team_id",
            "submitted_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_teams_approved_name", "name", "id", postgresql_where=text("status = 'approved'")),
        Index("ix_teams_liaison_team_id", "liaison_team_id"),
        # reviews of a regional admin: the social organisations registered in their region, and
        # their region's teams (the liaisons whose sub-teams they may decide)
        Index(
            "ix_teams_pending_authority",
            "registration_authority_region",
            "submitted_at",
            "id",
            postgresql_where=text("status = 'pending' AND registration_authority_region IS NOT NULL"),
        ),
        Index("ix_teams_region_code", "region_code"),
    )


class Membership(Base):
    __tablename__ = "memberships"

    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, index=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    is_project_lead: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # a team's member list in its order (a page, not the whole team, then sorted)
        Index("ix_memberships_team_joined", "team_id", "joined_at", "account_id"),
        # a team's admins (whether it has one besides an applicant), not a walk of its members
        Index("ix_memberships_team_admins", "team_id", "account_id", postgresql_where=text("is_admin")),
    )


class JoinRequest(Base):
    __tablename__ = "join_requests"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    message: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[uuid.UUID | None]
    reason: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        Index(
            "uq_join_requests_pending",
            "team_id",
            "account_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_join_requests_team_status", "team_id", "status", "created_at"),
    )


class Invitation(Base):
    __tablename__ = "invitations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(index=True)
    invited_by: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: an invitation accepted when made (FAQ V1): the ``jti`` of the identity match token that brought
    #: the member in, also in identity's audit row of the lookup that issued it
    match_jti: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # a match token brings its volunteer in once (migration 0008)
        Index("uq_invitations_match_jti", "match_jti", unique=True, postgresql_where=text("match_jti IS NOT NULL")),
        Index(
            "uq_invitations_pending",
            "team_id",
            "account_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        # a team's open invitations in their order (a page, not all the team's, then sorted)
        Index(
            "ix_invitations_pending_team_created",
            "team_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )


class Volunteer(Base):
    """Read model of identity's verified volunteers (masked name and number only)."""

    __tablename__ = "volunteers"

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    volunteer_number: Mapped[str] = mapped_column(String(40))
    masked_name: Mapped[str] = mapped_column(String(100))  # as long as identity's real names
    region_code: Mapped[str] = mapped_column(String(12))
    verified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MergedVolunteer(Base):
    """A record identity merged into another (V3): its own volunteer.verified, delivered after the
    merge (it comes in its account's lane, the merge in the kept one's), must not make it a
    volunteer again."""

    __tablename__ = "merged_volunteers"

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    merged_into: Mapped[uuid.UUID] = mapped_column()
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RegionAdmin(Base):
    """Read model of identity's ``account.roles_changed``: the regional and national admins, for
    reviewers and escalations, and every account whose roles changed (an admin whose roles were
    withdrawn stays, with neither region nor ``is_national``), for bounding the roles of tokens
    issued before the change (``shared.platform_roles``)."""

    __tablename__ = "region_admins"

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    region_code: Mapped[str | None] = mapped_column(String(12), index=True)
    is_national: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: every role the account holds now
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default=text("'{}'"))
    #: the event's occurred_at (null: kept before roles were, never bounds a token)
    changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


#: the same table, as ``shared.platform_roles`` reads and writes it
REGION_ADMINS = cast(Table, RegionAdmin.__table__)


class TeamHistory(Base):
    """A team's facts in order, from its own events as published (ids and names only)."""

    __tablename__ = "team_history"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    team_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(120))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)

    __table_args__ = (Index("ix_team_history_team_occurred", "team_id", "occurred_at", "event_id"),)
