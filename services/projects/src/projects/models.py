"""Tables of the projects service.

Plain SQLAlchemy Core tables: the hot paths (apply, admit, bulk hours) are single statements
whose shape matters (conditional update, ``INSERT ... SELECT FROM unnest``), so the repository
writes them directly rather than through an ORM identity map.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase

from shared.db import new_metadata
from shared.messaging.tables import define_messaging_tables
from shared.platform_roles import define_platform_roles_table


class Base(DeclarativeBase):
    metadata = new_metadata()


metadata = Base.metadata
messaging = define_messaging_tables(metadata, "projects")

# -- read models fed by other services' events ---------------------------------------------------
volunteers = Table(
    "volunteers",
    metadata,
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    Column("volunteer_number", String(40), nullable=False),
    Column("masked_name", String(100), nullable=False),  # as long as identity's real names
    Column("region_code", String(12), nullable=False),
    Column("verified_at", DateTime(timezone=True), nullable=False),
    #: set when identity merged this record into another (the kept one)
    Column("merged_into", UUID(as_uuid=True), nullable=True),
)

teams = Table(
    "teams",
    metadata,
    Column("team_id", UUID(as_uuid=True), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region_code", String(12), nullable=False),
    Column("approved", Boolean, nullable=False, server_default=text("false")),
)

team_roles = Table(
    "team_roles",
    metadata,
    Column("team_id", UUID(as_uuid=True), primary_key=True),
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    #: "admin" or "lead"
    Column("role", String(10), primary_key=True),
)
#: an account's roles (我的项目 reads the teams the caller administers or leads in)
Index("ix_team_roles_account", team_roles.c.account_id, team_roles.c.role, team_roles.c.team_id)

#: the teams event each (team, account, role) was last set by (its outbox sequence), so an older
#: event delivered late (an operator replaying a dead letter) does not undo a newer one: a removed
#: admin's appointment replayed after the removal would have made them an admin again
team_role_versions = Table(
    "team_role_versions",
    metadata,
    Column("team_id", UUID(as_uuid=True), primary_key=True),
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    Column("role", String(10), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
)

#: identity's platform roles of the accounts whose roles changed (a national admin's withdrawn role
#: stops working at once: shared.platform_roles)
platform_roles = define_platform_roles_table(metadata)

# -- projects and positions (P1-P5) --------------------------------------------------------------
projects = Table(
    "projects",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("team_id", UUID(as_uuid=True), nullable=False),
    Column("lead_account_id", UUID(as_uuid=True), nullable=False),
    Column("created_by", UUID(as_uuid=True), nullable=False),
    Column("copied_from", UUID(as_uuid=True), nullable=True),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("category", String(60), nullable=False),
    Column("region_code", String(12), nullable=False),
    Column("address", String(300), nullable=False),
    Column("contact_name", String(60), nullable=False),
    Column("contact_phone", String(30), nullable=False),
    Column("contact_email", String(254), nullable=True),
    Column("requirements", Text, nullable=False, server_default=""),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("recruit_starts_on", Date, nullable=False),
    Column("recruit_ends_on", Date, nullable=False),
    #: draft, published, closed
    Column("status", String(12), nullable=False, server_default="draft"),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("closed_automatically", Boolean, nullable=False, server_default=text("false")),
    Column("team_admin_extensions", SmallInteger, nullable=False, server_default="0"),
    Column("extensions", SmallInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("recruit_starts_on <= recruit_ends_on", name="recruit_order"),
    CheckConstraint("starts_on <= ends_on", name="date_order"),
    #: listed projects are those that were published (the public list is in order of publication)
    CheckConstraint("status = 'draft' OR published_at IS NOT NULL", name="published_when_listed"),
)
Index("ix_projects_due", projects.c.ends_on, postgresql_where=text("status = 'published'"))
# The public list (published and closed, newest publication first) reads a page in the order of one
# of these: every listed project; a team's; those of a region prefix (``LIKE '33%'``; a few hundred
# rows sorted rather than a scan of the country). 我的项目 (any status, drafts included) reads a
# team's projects newest created first.
_LISTED = text("status IN ('published', 'closed')")
Index("ix_projects_published", projects.c.published_at.desc(), projects.c.id.desc(), postgresql_where=_LISTED)
Index(
    "ix_projects_team_published",
    projects.c.team_id,
    projects.c.published_at.desc(),
    projects.c.id.desc(),
    postgresql_where=_LISTED,
)
Index(
    "ix_projects_published_region",
    projects.c.region_code,
    projects.c.published_at.desc(),
    projects.c.id.desc(),
    postgresql_ops={"region_code": "varchar_pattern_ops"},
    postgresql_where=_LISTED,
)
Index("ix_projects_team", projects.c.team_id, projects.c.created_at.desc(), projects.c.id.desc())
# a lead's projects, newest created first (我的项目; also who leads what)
Index("ix_projects_lead", projects.c.lead_account_id, projects.c.created_at.desc(), projects.c.id.desc())

positions = Table(
    "positions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("project_id", UUID(as_uuid=True), ForeignKey("projects.id"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("quota", Integer, nullable=False),
    Column("admitted", Integer, nullable=False, server_default="0"),
    #: "manual" (review) or "auto" (in order of application)
    Column("admission_mode", String(10), nullable=False),
    #: the order the team gave its positions in (组长 before 组员), kept in every view and copy
    Column("seq", BigInteger, Identity(always=False), nullable=False),
    CheckConstraint("admitted >= 0 AND admitted <= quota", name="within_quota"),
)

# -- applications (P5, P6, P8) -------------------------------------------------------------------
applications = Table(
    "applications",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    #: order of application: who is next in line when a place frees up
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
    Column("position_id", UUID(as_uuid=True), ForeignKey("positions.id"), nullable=False),
    Column("project_id", UUID(as_uuid=True), nullable=False),
    Column("account_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("stage", String(12), nullable=False),
    Column("motivation", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("team_rating", SmallInteger, nullable=True),
    Column("team_comment", Text, nullable=True),
    Column("volunteer_rating", SmallInteger, nullable=True),
    Column("volunteer_comment", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
# One live application per volunteer and position; a withdrawn one may be followed by a new one.
Index(
    "uq_applications_live",
    applications.c.position_id,
    applications.c.account_id,
    unique=True,
    postgresql_where=text("stage <> 'withdrawn'"),
)
# a project's applicants in order of application (a page of them, not the whole project)
Index("ix_applications_project_seq", applications.c.project_id, applications.c.seq)
# a page of a project's applicants at one stage, in order of application
Index("ix_applications_project_stage", applications.c.project_id, applications.c.stage, applications.c.seq)
Index(
    "ix_applications_waiting",
    applications.c.position_id,
    applications.c.seq,
    postgresql_where=text("stage = 'applied'"),
)

# -- service hours (P7) --------------------------------------------------------------------------
hours_records = Table(
    "hours_records",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("application_id", UUID(as_uuid=True), ForeignKey("applications.id"), nullable=False),
    Column("project_id", UUID(as_uuid=True), nullable=False),
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("service_date", Date, nullable=False),
    Column("minutes", Integer, nullable=False),
    #: 补录: recorded after the session's date or after the project closed
    Column("late", Boolean, nullable=False, server_default=text("false")),
    #: single, bulk or sign (sign-in/sign-out)
    Column("source", String(10), nullable=False),
    Column("note", Text, nullable=True),
    Column("recorded_by", UUID(as_uuid=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("corrected", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint("minutes >= 0", name="minutes_positive"),
)
# an application's records (and its days); a volunteer's records (their hours page)
Index("ix_hours_records_day", hours_records.c.application_id, hours_records.c.service_date)
Index("ix_hours_records_account_day", hours_records.c.account_id, hours_records.c.service_date)
# a project's records as listed (a page in recording order; its total too). Every index here is
# paid by each bulk recording: this one replaces the one on project_id alone, and a page of
# volunteer totals goes through the project's applications instead of an index of its own
Index("ix_hours_records_project_recorded", hours_records.c.project_id, hours_records.c.recorded_at, hours_records.c.id)

#: a volunteer's minutes on a day over every position and project, kept with the records in the
#: same transactions: the daily cap is checked against it, and its row is where recordings of one
#: volunteer's day take turns (a row lock: none of PostgreSQL's shared lock table)
volunteer_days = Table(
    "volunteer_days",
    metadata,
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    Column("service_date", Date, primary_key=True),
    Column("minutes", Integer, nullable=False),
)

#: automatic positions where places were freed (a leave, a raised quota, a merge) for those waiting:
#: written in the freeing transaction, cleared by the admission that follows its commit
#: (``services.admit_waiting``). One left behind (that admission failed, or its process stopped
#: first) is taken up by the admission sweep, so nobody waits beside a free place for good.
#: ``mark`` grows with every freeing: an admission clears only what it saw.
places_to_give = Table(
    "places_to_give",
    metadata,
    Column("position_id", UUID(as_uuid=True), primary_key=True),
    Column("mark", BigInteger, Identity(always=False), nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
)

hours_corrections = Table(
    "hours_corrections",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("record_id", UUID(as_uuid=True), ForeignKey("hours_records.id"), nullable=False, index=True),
    Column("previous_minutes", Integer, nullable=False),
    Column("new_minutes", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("corrected_by", UUID(as_uuid=True), nullable=False),
    Column("corrected_at", DateTime(timezone=True), nullable=False),
)

attendances = Table(
    "attendances",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("application_id", UUID(as_uuid=True), ForeignKey("applications.id"), nullable=False),
    #: the application's volunteer (moved with it by a merge): one open session per volunteer
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("service_date", Date, nullable=False),
    Column("signed_in_at", DateTime(timezone=True), nullable=False),
    Column("signed_out_at", DateTime(timezone=True), nullable=True),
    Column("record_id", UUID(as_uuid=True), nullable=True),
    #: closed without a recording: the volunteer forgot to sign out (see sign_session_max_minutes)
    Column("abandoned", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("application_id", "service_date", "signed_in_at", name="uq_attendances_session"),
)
# At most one open session per application: a second sign-in before signing out is refused.
Index(
    "uq_attendances_open",
    attendances.c.application_id,
    unique=True,
    postgresql_where=text("signed_out_at IS NULL"),
)
# And per volunteer, over every project (migration 0016): on site in one place at a time, so no
# minute is counted twice. Signed in at A, a sign-in at B is refused (signed_in_elsewhere); two at
# once cannot both commit.
Index(
    "uq_attendances_open_account",
    attendances.c.account_id,
    unique=True,
    postgresql_where=text("signed_out_at IS NULL"),
)

#: facts about each project as they were published (the project_activity consumer writes it)
project_activity = Table(
    "project_activity",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("project_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", String(60), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSONB, nullable=False),
)
Index("ix_project_activity_project", project_activity.c.project_id, project_activity.c.occurred_at)

#: requests a client may send again (a recording whose answer a lost connection swallowed) under
#: an ``Idempotency-Key``: the first one's answer, given again to the retries (``projects.idempotency``)
idempotent_requests = Table(
    "idempotent_requests",
    metadata,
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    Column("key", String(100), primary_key=True),
    #: the route and its path parameters, and a hash of the body: a key used again for another
    #: request is refused rather than answered with the first one's result
    Column("scope", String(200), nullable=False),
    Column("fingerprint", LargeBinary, nullable=False),
    Column("status_code", SmallInteger, nullable=True),
    Column("response", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_idempotent_requests_created", idempotent_requests.c.created_at)
