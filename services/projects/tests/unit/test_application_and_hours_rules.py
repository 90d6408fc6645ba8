"""Pure application stage and service-hours rules."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from projects.domain import application as stages
from projects.domain import hours
from shared.errors import AppError


def code_of(fn: object, *args: object, **kwargs: object) -> str | None:
    try:
        fn(*args, **kwargs)  # type: ignore[operator]
    except AppError as exc:
        return exc.code
    return None


def test_pending_application_can_be_withdrawn_admitted_cannot() -> None:
    assert code_of(stages.check_withdrawable, "applied") is None
    assert code_of(stages.check_withdrawable, "interview") is None
    assert code_of(stages.check_withdrawable, "admitted") == "withdraw_not_pending"


@pytest.mark.parametrize(
    ("stage", "minutes", "code"),
    [
        ("admitted", 0, None),
        ("serving", 0, None),
        ("admitted", 30, "leave_refused_hours_recorded"),
        ("applied", 0, "leave_not_admitted"),
        ("completed", 0, "leave_not_admitted"),
    ],
)
def test_leaving_needs_admission_and_no_hours(stage: str, minutes: int, code: str | None) -> None:
    assert code_of(stages.check_can_leave, stage, minutes) == code


def test_lead_moves_follow_the_lifecycle() -> None:
    assert code_of(stages.check_lead_move, "applied", "interview") is None
    assert code_of(stages.check_lead_move, "admitted", "training") is None
    assert code_of(stages.check_lead_move, "admitted", "completed") == "stage_transition_not_allowed"
    assert code_of(stages.check_lead_move, "left", "serving") == "stage_transition_not_allowed"


def test_contact_shown_only_while_waiting_for_an_answer() -> None:
    assert stages.shows_contact("applied")
    assert not stages.shows_contact("admitted")
    assert not stages.shows_contact("rejected")


def test_late_flag() -> None:
    today = date(2026, 1, 10)
    assert not hours.is_late(today, today, project_closed=False, grace_days=0)
    assert hours.is_late(date(2026, 1, 9), today, project_closed=False, grace_days=0)
    assert not hours.is_late(date(2026, 1, 9), today, project_closed=False, grace_days=1)
    assert hours.is_late(today, today, project_closed=True, grace_days=0)


def test_sign_out_counts_what_fits_under_the_cap() -> None:
    start = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
    assert hours.minutes_between(start, start + timedelta(minutes=95, seconds=59)) == 95
    assert hours.minutes_between(start, start - timedelta(minutes=5)) == 0
    assert hours.capped_session_minutes(180, 660, 720) == 60
    assert hours.capped_session_minutes(180, 720, 720) == 0


def test_sign_code_is_bound_to_project_direction_and_time() -> None:
    secret = b"k"
    project = uuid.uuid4()
    now = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
    code = hours.issue_sign_code(secret, project, "in", now + timedelta(minutes=5))
    assert hours.read_sign_code(secret, code, project_id=project, kind="in", now=now).project_id == project
    assert code_of(hours.read_sign_code, secret, code, project_id=project, kind="out", now=now) == "sign_code_invalid"
    assert code_of(hours.read_sign_code, b"other", code, project_id=project, kind="in", now=now) == "sign_code_invalid"
    later = now + timedelta(minutes=6)
    assert code_of(hours.read_sign_code, secret, code, project_id=project, kind="in", now=later) == "sign_code_expired"
    assert (
        code_of(hours.read_sign_code, secret, "garbage", project_id=project, kind="in", now=now) == "sign_code_invalid"
    )
