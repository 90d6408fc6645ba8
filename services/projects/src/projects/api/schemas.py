"""Request and response models of the projects API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field

from shared.inputs import INPUT_CONFIG, Line, Lines


class Input(BaseModel):
    model_config = INPUT_CONFIG


class ContactIn(Input):
    name: Line = Field(min_length=1, max_length=60)
    phone: str = Field(min_length=5, max_length=30, pattern=r"^[0-9+\- ]+$")
    email: EmailStr | None = None


class PositionIn(Input):
    name: Line = Field(min_length=1, max_length=100)
    description: Lines = Field(default="", max_length=2000)
    quota: int = Field(ge=1, le=100_000)
    admission_mode: Literal["manual", "auto"] = "manual"


class ProjectDatesIn(Input):
    starts_on: date
    ends_on: date
    recruit_starts_on: date
    recruit_ends_on: date


class ProjectIn(ProjectDatesIn):
    team_id: uuid.UUID
    title: Line = Field(min_length=2, max_length=200)
    description: Lines = Field(min_length=1, max_length=10_000)
    category: Line = Field(min_length=1, max_length=60)
    region_code: str = Field(pattern=r"^\d{6}$")
    address: Line = Field(min_length=1, max_length=300)
    contact: ContactIn
    requirements: Lines = Field(default="", max_length=5000)
    lead_account_id: uuid.UUID | None = None
    positions: list[PositionIn] = Field(min_length=1, max_length=50)


class ProjectPatch(Input):
    title: Line | None = Field(default=None, min_length=2, max_length=200)
    description: Lines | None = Field(default=None, min_length=1, max_length=10_000)
    category: Line | None = Field(default=None, min_length=1, max_length=60)
    region_code: str | None = Field(default=None, pattern=r"^\d{6}$")
    address: Line | None = Field(default=None, min_length=1, max_length=300)
    contact: ContactIn | None = None
    requirements: Lines | None = Field(default=None, max_length=5000)
    starts_on: date | None = None
    ends_on: date | None = None
    recruit_starts_on: date | None = None
    recruit_ends_on: date | None = None


class LeadIn(Input):
    lead_account_id: uuid.UUID


class QuotaIn(Input):
    quota: int = Field(ge=1, le=100_000)


class ExtensionIn(Input):
    new_end_date: date


class ContactOut(BaseModel):
    name: str
    phone: str
    email: str | None


class PositionOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    quota: int
    admitted: int
    remaining: int
    admission_mode: str


class ProjectOut(BaseModel):
    id: uuid.UUID
    team_id: uuid.UUID
    #: the account running it: shown to the team's admins and project leads, null to others
    lead_account_id: uuid.UUID | None
    copied_from: uuid.UUID | None
    title: str
    description: str
    category: str
    region_code: str
    address: str
    contact: ContactOut
    requirements: str
    starts_on: date
    ends_on: date
    recruit_starts_on: date
    recruit_ends_on: date
    status: str
    recruiting: bool
    closed_at: datetime | None
    extensions: int
    positions: list[PositionOut]


class ProjectSummary(BaseModel):
    id: uuid.UUID
    team_id: uuid.UUID
    title: str
    category: str
    region_code: str
    starts_on: date
    ends_on: date
    recruit_starts_on: date
    recruit_ends_on: date
    status: str
    published_at: datetime | None


class ManagedProject(ProjectSummary):
    closed_at: datetime | None
    extensions: int
    #: who may still extend it (P4): team_admin (within 30 days, once), national_admin (30-60 days), or null
    extension_open_to: str | None


class ManagedProjectPage(BaseModel):
    items: list[ManagedProject]
    next_cursor: str | None


class ProjectPage(BaseModel):
    items: list[ProjectSummary]
    next_cursor: str | None


class ApplyIn(Input):
    motivation: Lines | None = Field(default=None, max_length=2000)


class StageIn(Input):
    stage: Literal["interview", "training", "serving", "completed", "rejected"]
    reason: Lines | None = Field(default=None, max_length=1000)


class RatingIn(Input):
    score: int = Field(ge=1, le=5)
    comment: Lines | None = Field(default=None, max_length=2000)


class ApplicationOut(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    position_id: uuid.UUID
    project_title: str
    position_name: str
    stage: str
    minutes_total: int
    created_at: datetime
    updated_at: datetime
    #: what the volunteer wrote when applying
    motivation: str | None = None
    reason: str | None = None
    #: the team's rating of the volunteer's service, and the volunteer's of the project (1-5), with comments
    team_rating: int | None = None
    team_comment: str | None = None
    volunteer_rating: int | None = None
    volunteer_comment: str | None = None
    #: P8: shown while the application waits for an answer
    project_contact: ContactOut | None = None


class ApplicantOut(BaseModel):
    """An applicant as the project's lead and team admins see them (masked name, volunteer number)."""

    id: uuid.UUID
    position_id: uuid.UUID
    position_name: str
    account_id: uuid.UUID
    masked_name: str | None
    volunteer_number: str | None
    stage: str
    minutes_total: int
    created_at: datetime
    #: what the volunteer wrote when applying (for deciding on the application)
    motivation: str | None = None
    #: the team's rating of the volunteer's service, and the volunteer's of the project, with comments
    team_rating: int | None = None
    team_comment: str | None = None
    volunteer_rating: int | None = None
    volunteer_comment: str | None = None


class ApplicantPage(BaseModel):
    items: list[ApplicantOut]
    next_cursor: str | None


class MyApplicationPage(BaseModel):
    items: list[ApplicationOut]
    next_cursor: str | None


class HoursIn(Input):
    application_id: uuid.UUID
    service_date: date
    minutes: int = Field(ge=1, le=24 * 60)
    note: Lines | None = Field(default=None, max_length=500)


class BulkHoursIn(Input):
    rows: list[HoursIn] = Field(min_length=1)


class HoursOut(BaseModel):
    id: uuid.UUID
    application_id: uuid.UUID
    account_id: uuid.UUID
    service_date: date
    minutes: int
    late: bool


class BulkHoursOut(BaseModel):
    recorded: int
    late: int
    items: list[HoursOut]


class CorrectionIn(Input):
    minutes: int = Field(ge=0, le=24 * 60)
    reason: Lines = Field(min_length=2, max_length=500)


class CorrectionOut(BaseModel):
    previous_minutes: int
    new_minutes: int
    reason: str
    corrected_by: uuid.UUID
    corrected_at: datetime


class HoursRecordOut(BaseModel):
    id: uuid.UUID
    application_id: uuid.UUID
    project_id: uuid.UUID
    account_id: uuid.UUID
    service_date: date
    minutes: int
    late: bool
    source: str
    note: str | None
    recorded_by: uuid.UUID
    recorded_at: datetime
    corrected: bool
    corrections: list[CorrectionOut] = Field(default_factory=list)


class HoursPage(BaseModel):
    items: list[HoursRecordOut]
    next_cursor: str | None


class VolunteerMinutes(BaseModel):
    account_id: uuid.UUID
    masked_name: str | None
    volunteer_number: str | None
    minutes: int


class ProjectTotalsOut(BaseModel):
    project_id: uuid.UUID
    minutes: int = Field(description="The project's total minutes, over every volunteer (not only this page's)")
    volunteers: list[VolunteerMinutes] = Field(
        description="A page of the volunteers with minutes recorded, in order of application (at most `limit`, "
        "default 50; fewer where few of the applications a page looks at have minutes)"
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null after the last page")


class ProjectMinutes(BaseModel):
    project_id: uuid.UUID
    title: str
    minutes: int


class MyHoursOut(BaseModel):
    minutes: int
    projects: list[ProjectMinutes]


class SignCodeOut(BaseModel):
    kind: str
    #: the QR payload the lead shows; volunteers scan it and send it back
    code: str
    expires_at: datetime


class SignIn(Input):
    code: Line = Field(min_length=10, max_length=500)
    #: signed in on another project and gone from it without signing out (``signed_in_elsewhere``):
    #: true ends that session unrecorded (its lead records the time by hand) and signs in here
    end_other_session: bool = False


class SignInOut(BaseModel):
    signed_in_at: datetime


class SignOutOut(BaseModel):
    minutes: int
    record_id: uuid.UUID | None
    #: the session was open too long (a forgotten sign-out): nothing recorded, the lead records the day
    abandoned: bool = False


class Created(BaseModel):
    id: uuid.UUID


class ApplicationCreated(BaseModel):
    id: uuid.UUID
    stage: str


class ActivityOut(BaseModel):
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    payload: dict[str, object]


class ActivityPage(BaseModel):
    items: list[ActivityOut]
    next_cursor: str | None
