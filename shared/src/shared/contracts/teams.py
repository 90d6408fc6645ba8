"""Events produced by the teams service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

from pydantic import Field

from shared.contracts.base import Event


class _TeamEvent(Event):
    producer: ClassVar[str] = "teams"
    aggregate_type: ClassVar[str] = "team"
    aggregate_field: ClassVar[str] = "team_id"


class TeamRegistered(_TeamEvent):
    event_type: ClassVar[str] = "team.registered"
    summary: ClassVar[str] = "A team applied for registration and awaits review"

    team_id: uuid.UUID
    name: str
    region_code: str
    kind: str
    applicant_account_id: uuid.UUID
    liaison_team_id: uuid.UUID | None = None
    registration_authority_region: str | None = None
    #: accounts that may review it (liaison team admins, or the authority's regional admins)
    reviewer_account_ids: list[uuid.UUID] = Field(default_factory=list)


class TeamApproved(_TeamEvent):
    event_type: ClassVar[str] = "team.approved"
    summary: ClassVar[str] = "A team's registration was approved"

    team_id: uuid.UUID
    name: str
    region_code: str
    applicant_account_id: uuid.UUID
    reviewed_by_account_id: uuid.UUID
    reason: str | None = None
    #: a root liaison team an admin created directly: nobody applied (``applicant_account_id`` is
    #: its given admin or the creating operator), so nobody is told an application passed
    root_team: bool = False


class TeamRejected(_TeamEvent):
    event_type: ClassVar[str] = "team.rejected"
    summary: ClassVar[str] = "A team's registration was rejected, with the reason"

    team_id: uuid.UUID
    name: str
    applicant_account_id: uuid.UUID
    reviewed_by_account_id: uuid.UUID
    reason: str


class TeamReviewReminderRequested(_TeamEvent):
    event_type: ClassVar[str] = "team.review_reminder_requested"
    summary: ClassVar[str] = "The applicant pressed 'remind review' (4 days on, at most daily)"

    team_id: uuid.UUID
    name: str
    applicant_account_id: uuid.UUID
    reviewer_account_ids: list[uuid.UUID]
    requested_at: datetime
    days_waiting: int


class TeamReviewOverdue(_TeamEvent):
    event_type: ClassVar[str] = "team.review_overdue"
    summary: ClassVar[str] = "Seven days without a review decision: escalation to reviewers and region admins"

    team_id: uuid.UUID
    name: str
    region_code: str
    applicant_account_id: uuid.UUID
    reviewer_account_ids: list[uuid.UUID]
    region_admin_account_ids: list[uuid.UUID]
    submitted_at: datetime
    #: who reviews it: the liaison team (id and name), or, for a social organisation, the
    #: registration authority of this region (民政部门); both absent in events raised before
    liaison_team_id: uuid.UUID | None = None
    liaison_team_name: str | None = None
    registration_authority_region: str | None = None


class _MembershipEvent(_TeamEvent):
    team_id: uuid.UUID
    account_id: uuid.UUID


class TeamMemberJoined(_MembershipEvent):
    event_type: ClassVar[str] = "team.member_joined"
    summary: ClassVar[str] = (
        "A volunteer became a member (approved, open join, accepted invitation, or brought in by an admin)"
    )

    #: the admin who brought the volunteer in without their answer (FAQ V1: found by ID number and
    #: name), with the team's name, so the volunteer is told; absent for every other way of joining
    added_by_account_id: uuid.UUID | None = None
    team_name: str | None = None


class TeamMemberLeft(_MembershipEvent):
    event_type: ClassVar[str] = "team.member_left"
    summary: ClassVar[str] = "A member left or was removed"


class TeamAdminAppointed(_MembershipEvent):
    event_type: ClassVar[str] = "team.admin_appointed"
    summary: ClassVar[str] = "A member became an admin of the team"


class TeamAdminRemoved(_MembershipEvent):
    event_type: ClassVar[str] = "team.admin_removed"
    summary: ClassVar[str] = "A member is no longer an admin of the team"


class TeamProjectLeadAppointed(_MembershipEvent):
    event_type: ClassVar[str] = "team.project_lead_appointed"
    summary: ClassVar[str] = "A member may lead projects of the team"


class TeamProjectLeadRemoved(_MembershipEvent):
    event_type: ClassVar[str] = "team.project_lead_removed"
    summary: ClassVar[str] = "A member may no longer lead projects of the team"


class TeamLiaisonAuthorised(_TeamEvent):
    event_type: ClassVar[str] = "team.liaison_authorised"
    summary: ClassVar[str] = "A regional admin allowed the team to take sub-teams"

    team_id: uuid.UUID
    region_code: str
    by_account_id: uuid.UUID


class TeamLiaisonWithdrawn(_TeamEvent):
    event_type: ClassVar[str] = "team.liaison_withdrawn"
    summary: ClassVar[str] = "A regional admin withdrew the team's right to take sub-teams"

    team_id: uuid.UUID
    region_code: str
    by_account_id: uuid.UUID
