"""Request and response models of the teams API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field

from shared.inputs import INPUT_CONFIG, Line
from teams.domain.kinds import TeamKind

JoinMode = Literal["reject_anyone", "anyone", "approval"]
Outcome = Literal["approved", "rejected"]
REGION_CODE = r"^\d{6}(\d{3})?$"


class Input(BaseModel):
    model_config = INPUT_CONFIG


# -- regions ------------------------------------------------------------------------------------
class RegionOut(BaseModel):
    code: str
    name: str
    level: str
    parent_code: str | None


class RegionDetail(RegionOut):
    children: list[RegionOut]


# -- teams --------------------------------------------------------------------------------------
class TeamContact(Input):
    """Published contact details of a team (shown to pending applicants, T8)."""

    person: Line = Field(min_length=1, max_length=60)
    phone: str = Field(pattern=r"^[0-9+\-() ]{5,30}$")
    email: EmailStr
    address: Line = Field(min_length=1, max_length=200)


class TeamRegistration(Input):
    name: Line = Field(min_length=1, max_length=80)
    region_code: str = Field(pattern=REGION_CODE)
    kind: TeamKind
    uscc: Line | None = Field(None, max_length=40, description="unified social credit code (social organisations)")
    registration_authority_region: str | None = Field(
        None, pattern=r"^\d{6}$", description="region of the civil-affairs bureau it is registered with"
    )
    liaison_team_id: uuid.UUID | None = None
    contact: TeamContact


class RootTeamCreate(Input):
    name: Line = Field(min_length=1, max_length=80)
    region_code: str = Field(pattern=REGION_CODE)
    kind: TeamKind = TeamKind.OTHER
    uscc: Line | None = Field(None, max_length=40)
    registration_authority_region: str | None = Field(None, pattern=r"^\d{6}$")
    contact: TeamContact
    #: a verified volunteer who becomes the team's first admin
    admin_account_id: uuid.UUID | None = None
    liaison_authorised: bool = True


class TeamSettingsUpdate(Input):
    join_mode: JoinMode | None = None
    contact: TeamContact | None = None


class ContactOut(BaseModel):
    person: str
    phone: str
    email: str
    address: str


class ApplicantOut(BaseModel):
    """Who applied, as teams shows volunteers: masked name and volunteer number."""

    account_id: uuid.UUID
    masked_name: str
    volunteer_number: str


class TeamOut(BaseModel):
    id: uuid.UUID
    name: str
    region_code: str
    region_name: str | None
    level: str
    kind: str
    status: str
    is_root: bool
    liaison_team_id: uuid.UUID | None
    liaison_authorised: bool
    join_mode: str
    contact: ContactOut
    submitted_at: datetime
    #: a social organisation's unified social credit code and the region of its registration
    #: authority (T1: public, as on its registration certificate); null for other teams
    uscc: str | None = None
    registration_authority_region: str | None = None
    #: who applied, while the registration is under review (to those who may see it: the reviewers
    #: check it, T5); null once decided, and for a root team an operator created
    applicant: ApplicantOut | None = None


class TeamPage(BaseModel):
    items: list[TeamOut]
    next_cursor: str | None = None


class LiaisonCandidate(BaseModel):
    id: uuid.UUID
    name: str
    region_code: str
    region_name: str | None


class LiaisonCandidates(BaseModel):
    region_code: str
    liaison_region_code: str | None
    items: list[LiaisonCandidate]


class LiaisonAuthorisationOut(BaseModel):
    team_id: uuid.UUID
    liaison_authorised: bool


# -- review -------------------------------------------------------------------------------------
class ReviewDecision(Input):
    outcome: Outcome
    reason: Line | None = Field(None, max_length=500)


class ReviewerOut(BaseModel):
    #: region_admins: the admins of the liaison's region, reviewing for a liaison team that has no
    #: admin besides the applicant
    kind: Literal["liaison_team", "registration_authority", "region_admins"]
    name: str
    #: full contact details, from 7 days without a decision (T5)
    contact: ContactOut | None = None
    working_hours: str | None = None


class ReviewStatus(BaseModel):
    team_id: uuid.UUID
    status: str
    submitted_at: datetime
    days_waiting: int
    decided_at: datetime | None
    reason: str | None
    can_remind: bool
    next_reminder_at: datetime | None
    last_reminder_at: datetime | None
    overdue: bool
    reviewer: ReviewerOut


class ReminderOut(BaseModel):
    team_id: uuid.UUID
    requested_at: datetime
    next_reminder_at: datetime


# -- membership ---------------------------------------------------------------------------------
class JoinApplication(Input):
    message: Line | None = Field(None, max_length=500)


class JoinDecision(Input):
    outcome: Outcome
    reason: Line | None = Field(None, max_length=500)


class JoinResult(BaseModel):
    team_id: uuid.UUID
    #: "member" when the team lets anyone join, "pending" when an admin decides
    status: Literal["member", "pending"]
    request_id: uuid.UUID | None = None
    #: the team's published contact details while the application waits (T8)
    team_contact: ContactOut | None = None


class JoinRequestOut(BaseModel):
    id: uuid.UUID
    team_id: uuid.UUID
    account_id: uuid.UUID
    masked_name: str | None
    volunteer_number: str | None
    message: str | None
    status: str
    created_at: datetime


class JoinRequestPage(BaseModel):
    items: list[JoinRequestOut]
    next_cursor: str | None = None


class MyJoinRequest(BaseModel):
    id: uuid.UUID
    team_id: uuid.UUID
    team_name: str
    status: str
    created_at: datetime
    reason: str | None
    #: shown while the application waits for an answer (T8)
    team_contact: ContactOut | None


class InvitationCreate(Input):
    account_id: uuid.UUID | None = None
    volunteer_number: Line | None = Field(None, max_length=40)


class MemberAdd(Input):
    """A registered volunteer the admin found by ID number and name (FAQ V1), added at once."""

    match_token: str = Field(
        min_length=1,
        max_length=4096,
        pattern=r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+$",
        description="`match_token` of identity's `POST /api/v1/volunteer-lookups` (the same admin, 10 minutes)",
    )


class InvitationOut(BaseModel):
    id: uuid.UUID
    team_id: uuid.UUID
    team_name: str
    account_id: uuid.UUID
    status: str
    created_at: datetime


class TeamInvitationOut(BaseModel):
    """An open invitation as the team's admins see it (masked name and number of the invitee)."""

    id: uuid.UUID
    team_id: uuid.UUID
    account_id: uuid.UUID
    masked_name: str | None
    volunteer_number: str | None
    invited_by: uuid.UUID
    status: str
    created_at: datetime


class TeamInvitationPage(BaseModel):
    items: list[TeamInvitationOut]
    next_cursor: str | None = None


class MemberOut(BaseModel):
    account_id: uuid.UUID
    masked_name: str | None
    volunteer_number: str | None
    is_admin: bool
    is_project_lead: bool
    joined_at: datetime


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None = None


class MyTeam(BaseModel):
    team_id: uuid.UUID
    name: str
    status: str
    is_admin: bool
    is_project_lead: bool
    joined_at: datetime


class HistoryEntry(BaseModel):
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]


class HistoryPage(BaseModel):
    items: list[HistoryEntry]
    next_cursor: str | None = None
