"""Events produced by the projects service."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.base import Event


class _ProjectEvent(Event):
    producer: ClassVar[str] = "projects"
    aggregate_type: ClassVar[str] = "project"
    aggregate_field: ClassVar[str] = "project_id"


class ProjectPublished(_ProjectEvent):
    event_type: ClassVar[str] = "project.published"
    summary: ClassVar[str] = "A project was published and recruits"

    project_id: uuid.UUID
    team_id: uuid.UUID
    title: str
    region_code: str
    starts_on: date
    ends_on: date


class ProjectClosed(_ProjectEvent):
    event_type: ClassVar[str] = "project.closed"
    summary: ClassVar[str] = "A project closed (automatically after its end date: 自动结项)"

    project_id: uuid.UUID
    team_id: uuid.UUID
    title: str
    closed_at: datetime
    automatic: bool = True
    lead_account_ids: list[uuid.UUID] = Field(default_factory=list)
    #: the admins of the team, who may extend it (P4)
    team_admin_account_ids: list[uuid.UUID] = Field(default_factory=list)
    #: whether the team admins' one extension was used already (None: not known, older events)
    team_admin_extension_used: bool | None = None
    #: the China day it closed, from which P4's 30 and 60 days count (for 自动结项 the day after its
    #: end date, whenever the sweep ran); None on older events (then ``closed_at``'s day)
    closed_on: date | None = None


class ProjectExtended(_ProjectEvent):
    event_type: ClassVar[str] = "project.extended"
    summary: ClassVar[str] = "A closed project was extended to a new end date"

    project_id: uuid.UUID
    team_id: uuid.UUID
    title: str
    new_end_date: date
    extended_by_account_id: uuid.UUID
    by_national_admin: bool = False
    lead_account_ids: list[uuid.UUID] = Field(default_factory=list)
    #: the team's admins but the one who extended it (they were told of the closing and its windows)
    team_admin_account_ids: list[uuid.UUID] = Field(default_factory=list)


class _ApplicationEvent(Event):
    producer: ClassVar[str] = "projects"
    aggregate_type: ClassVar[str] = "application"
    aggregate_field: ClassVar[str] = "application_id"

    application_id: uuid.UUID
    project_id: uuid.UUID
    position_id: uuid.UUID
    account_id: uuid.UUID
    project_title: str
    position_name: str


class ApplicationSubmitted(_ApplicationEvent):
    event_type: ClassVar[str] = "application.submitted"
    summary: ClassVar[str] = "A volunteer applied to a position"


class ApplicationAdmitted(_ApplicationEvent):
    event_type: ClassVar[str] = "application.admitted"
    summary: ClassVar[str] = "A volunteer was admitted (录用), manually or automatically"

    automatic: bool = False


class ApplicationRejected(_ApplicationEvent):
    event_type: ClassVar[str] = "application.rejected"
    summary: ClassVar[str] = "An application was rejected"

    reason: str | None = None


class ApplicationStageChanged(_ApplicationEvent):
    event_type: ClassVar[str] = "application.stage_changed"
    summary: ClassVar[str] = "An application moved to interview, training, serving or completed"

    stage: str


class ApplicationWithdrawn(_ApplicationEvent):
    event_type: ClassVar[str] = "application.withdrawn"
    summary: ClassVar[str] = "A pending application was deleted by the volunteer"


class ApplicationLeft(_ApplicationEvent):
    event_type: ClassVar[str] = "application.left"
    summary: ClassVar[str] = "An admitted volunteer with no hours left the project; the lead is emailed at once"

    lead_account_ids: list[uuid.UUID]
    #: how the lead knows the volunteer (as projects shows them): masked name and volunteer number
    masked_name: str | None = None
    volunteer_number: str | None = None
    #: the position's admission mode (auto or manual) and whether the next in line was admitted to
    #: the freed place in the same transaction (auto positions only)
    admission_mode: str | None = None
    next_admitted: bool = False


class _HoursEvent(Event):
    producer: ClassVar[str] = "projects"
    aggregate_type: ClassVar[str] = "application"
    aggregate_field: ClassVar[str] = "application_id"

    record_id: uuid.UUID
    application_id: uuid.UUID
    project_id: uuid.UUID
    account_id: uuid.UUID
    service_date: date
    minutes: int
    late: bool = False


class HoursRecordedItem(BaseModel):
    """One record of an ``hours.recorded`` event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    record_id: uuid.UUID
    application_id: uuid.UUID
    account_id: uuid.UUID
    service_date: date
    minutes: int
    late: bool = False


class HoursRecorded(_ProjectEvent):
    event_type: ClassVar[str] = "hours.recorded"
    schema_version: ClassVar[int] = 2
    summary: ClassVar[str] = (
        "Service hours were recorded: one event per recording (one row, a bulk sheet of hundreds, or a"
        " sign-out), listing its records; late recordings (补录) flagged"
    )

    project_id: uuid.UUID
    #: single, bulk or sign (sign-in/sign-out)
    source: str
    recorded_by: uuid.UUID
    records: list[HoursRecordedItem]


class HoursRecordedV1(_HoursEvent):
    """Version 1 carried one record per event: a bulk sheet of 500 rows wrote 500 outbox rows and
    published 500 messages. No longer produced; kept so a consumer can still read a v1 message."""

    event_type: ClassVar[str] = "hours.recorded"
    summary: ClassVar[str] = "Superseded by v2 (one event per recording, listing its records); no longer produced"
    #: declared for consumers only: the AsyncAPI document lists it as received, not as sent
    produced: ClassVar[bool] = False


class HoursCorrected(_HoursEvent):
    event_type: ClassVar[str] = "hours.corrected"
    summary: ClassVar[str] = "A service-hours record was corrected; minutes is the new value"

    previous_minutes: int
    reason: str
    #: who corrected it (as ``hours.recorded`` carries ``recorded_by``); None on older events
    corrected_by: uuid.UUID | None = None
