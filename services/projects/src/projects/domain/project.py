"""Project rules: dates (P1), length (P2), closing and extension (P4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from projects import errors
from shared.clock import CHINA_TZ
from shared.errors import AppError

MAX_PROJECT_DAYS = 365
#: days after the closing day within which a team admin may extend (once), then a national admin
TEAM_ADMIN_EXTENSION_DAYS = 30
NATIONAL_ADMIN_EXTENSION_DAYS = 60

DRAFT = "draft"
PUBLISHED = "published"
CLOSED = "closed"


@dataclass(frozen=True)
class ProjectDates:
    starts_on: date
    ends_on: date
    recruit_starts_on: date
    recruit_ends_on: date

    def check(self) -> None:
        """P1 and P2, each refused with its own code."""
        if self.ends_on < self.starts_on:
            raise AppError(errors.PROJECT_DATES_ORDER)
        if self.recruit_ends_on < self.recruit_starts_on:
            raise AppError(errors.RECRUITMENT_DATES_ORDER)
        if self.recruit_starts_on < self.starts_on or self.recruit_ends_on > self.ends_on:
            raise AppError(
                errors.RECRUITMENT_OUTSIDE_PROJECT,
                {"starts_on": self.starts_on.isoformat(), "ends_on": self.ends_on.isoformat()},
            )
        check_length(self.starts_on, self.ends_on)


def check_length(starts_on: date, ends_on: date) -> None:
    """P2: at most 365 days, counting both the first and the last day."""
    days = (ends_on - starts_on).days + 1
    if days > MAX_PROJECT_DAYS:
        raise AppError(errors.PROJECT_TOO_LONG, {"days": days, "max_days": MAX_PROJECT_DAYS})


def is_recruiting(status: str, dates: ProjectDates, today: date) -> bool:
    return status == PUBLISHED and dates.recruit_starts_on <= today <= dates.recruit_ends_on


def check_publishable(status: str, position_count: int, ends_on: date, today: date) -> None:
    if status != DRAFT:
        raise AppError(errors.PROJECT_NOT_DRAFT)
    if position_count == 0:
        raise AppError(errors.PROJECT_HAS_NO_POSITIONS)
    if ends_on < today:
        raise AppError(errors.PROJECT_ALREADY_ENDED)


def is_due_for_closing(status: str, ends_on: date, today: date) -> bool:
    """自动结项: a published project closes the day after its end date."""
    return status == PUBLISHED and ends_on < today


def closing_day(closed_at: datetime, ends_on: date) -> date:
    """The China day a project closed: for 自动结项 the day after its end date, whenever the sweep
    happened to run (late after an outage, or minutes past midnight); the day it was closed, when
    that was earlier."""
    return min(closed_at.astimezone(CHINA_TZ).date(), ends_on + timedelta(days=1))


def days_since_closing(closed_at: datetime, ends_on: date, today: date) -> int:
    """Whole China days since the closing day (0 on that day): the 30 and 60 days of P4 are days
    of the calendar, each whole, not hours from the moment a sweep ran."""
    return (today - closing_day(closed_at, ends_on)).days


def extension_open_to(closed_at: datetime | None, ends_on: date, today: date, team_admin_extensions: int) -> str | None:
    """Who may still extend a closed project (P4): ``team_admin``, ``national_admin`` or nobody."""
    if closed_at is None:
        return None
    since = days_since_closing(closed_at, ends_on, today)
    if since > NATIONAL_ADMIN_EXTENSION_DAYS:
        return None
    if since <= TEAM_ADMIN_EXTENSION_DAYS and team_admin_extensions == 0:
        return "team_admin"
    return "national_admin"


@dataclass(frozen=True)
class ExtensionRequest:
    status: str
    closed_at: datetime | None
    team_admin_extensions: int
    starts_on: date
    ends_on: date
    new_end_date: date
    #: China's date (the windows are days of its calendar)
    today: date
    by_team_admin: bool
    by_national_admin: bool
    #: the project's lead, who manages it but does not extend it (the team's admins do)
    by_project_lead: bool = False


def check_extension(req: ExtensionRequest) -> None:
    """P4: within 30 days of closing a team admin extends once; 30-60 days only a national admin;
    after 60 days nobody. Each refusal names the rule that applied. Who may ask is checked first,
    so a stranger learns nothing about the project's state."""
    if not req.by_national_admin and not req.by_team_admin:
        raise AppError(errors.EXTENSION_NEEDS_TEAM_ADMIN if req.by_project_lead else errors.NOT_TEAM_MANAGER)
    if req.status != CLOSED or req.closed_at is None:
        raise AppError(errors.PROJECT_NOT_CLOSED)
    since = days_since_closing(req.closed_at, req.ends_on, req.today)
    if since > NATIONAL_ADMIN_EXTENSION_DAYS:
        raise AppError(errors.EXTENSION_WINDOW_OVER, {"days_since_closing": since})
    if not req.by_national_admin:
        if since > TEAM_ADMIN_EXTENSION_DAYS:
            raise AppError(errors.EXTENSION_NEEDS_NATIONAL_ADMIN, {"days_since_closing": since})
        if req.team_admin_extensions >= 1:
            raise AppError(errors.EXTENSION_ALREADY_USED)
    if req.new_end_date <= req.today or req.new_end_date <= req.ends_on:
        raise AppError(errors.EXTENSION_DATE_INVALID)
    check_length(req.starts_on, req.new_end_date)
