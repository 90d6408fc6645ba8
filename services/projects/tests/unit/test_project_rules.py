"""Pure project rules: P1 dates, P2 length, P4 extension windows (29, 31, 59, 61 days)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from projects.domain.project import (
    ExtensionRequest,
    ProjectDates,
    check_extension,
    extension_open_to,
    is_due_for_closing,
)
from shared.errors import AppError

CLOSED_AT = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)


def code_of(fn: object, *args: object) -> str | None:
    try:
        fn(*args)  # type: ignore[operator]
    except AppError as exc:
        return exc.code
    return None


def dates(start: str, end: str, r_start: str, r_end: str) -> ProjectDates:
    return ProjectDates(*(date.fromisoformat(d) for d in (start, end, r_start, r_end)))


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (dates("2026-01-05", "2026-03-31", "2026-01-05", "2026-01-31"), None),
        (dates("2026-01-05", "2026-03-31", "2026-01-04", "2026-01-31"), "recruitment_outside_project"),
        (dates("2026-01-05", "2026-03-31", "2026-03-01", "2026-04-01"), "recruitment_outside_project"),
        (dates("2026-01-05", "2026-01-04", "2026-01-05", "2026-01-05"), "project_dates_order"),
        (dates("2026-01-05", "2026-03-31", "2026-01-31", "2026-01-05"), "recruitment_dates_order"),
        (dates("2026-01-05", "2027-01-04", "2026-01-05", "2026-01-31"), None),
        (dates("2026-01-05", "2027-01-05", "2026-01-05", "2026-01-31"), "project_too_long"),
    ],
)
def test_project_dates_rules_each_have_their_code(value: ProjectDates, code: str | None) -> None:
    assert code_of(value.check) == code


def request(
    days: int, *, team_admin: bool = True, national: bool = False, used: int = 0, closed_at: datetime = CLOSED_AT
) -> ExtensionRequest:
    """A request ``days`` China days after the closing day (the end date 2026-03-31 + 1)."""
    return ExtensionRequest(
        status="closed",
        closed_at=closed_at,
        team_admin_extensions=used,
        starts_on=date(2026, 1, 5),
        ends_on=date(2026, 3, 31),
        new_end_date=date(2026, 12, 31),
        today=date(2026, 4, 1) + timedelta(days=days),
        by_team_admin=team_admin,
        by_national_admin=national,
    )


@pytest.mark.parametrize(
    ("days", "team_admin", "national", "code"),
    [
        (29, True, False, None),
        (31, True, False, "extension_needs_national_admin"),
        (31, False, True, None),
        (59, False, True, None),
        (59, True, False, "extension_needs_national_admin"),
        (61, False, True, "extension_window_over"),
        (61, True, False, "extension_window_over"),
        (29, False, False, "not_team_manager"),
    ],
)
def test_extension_windows(days: int, team_admin: bool, national: bool, code: str | None) -> None:
    assert code_of(check_extension, request(days, team_admin=team_admin, national=national)) == code


@pytest.mark.parametrize(
    ("days", "team_admin_may", "national_may"),
    [(30, True, True), (31, False, True), (60, False, True), (61, False, False)],
)
def test_the_windows_are_whole_china_days_counted_from_the_day_after_the_end_date(
    days: int, team_admin_may: bool, national_may: bool
) -> None:
    """Whenever the sweep ran: minutes past midnight, or a month late after an outage."""
    for closed_at in (
        datetime(2026, 3, 31, 16, 4, 30, tzinfo=UTC),  # 00:04:30 on April 1st in Beijing
        datetime(2026, 4, 1, 15, 59, tzinfo=UTC),  # 23:59 that day
        datetime(2026, 4, 30, 2, 0, tzinfo=UTC),  # the sweep was down for a month
    ):
        assert (code_of(check_extension, request(days, closed_at=closed_at)) is None) is team_admin_may
        by_national = request(days, closed_at=closed_at, team_admin=False, national=True)
        assert (code_of(check_extension, by_national) is None) is national_may
        expected = "team_admin" if team_admin_may else "national_admin" if national_may else None
        assert extension_open_to(closed_at, date(2026, 3, 31), date(2026, 4, 1) + timedelta(days=days), 0) == expected


def test_a_refusal_counts_the_days_it_names() -> None:
    with pytest.raises(AppError) as refused:
        check_extension(request(31))
    assert refused.value.detail == {"days_since_closing": 31}


def test_team_admin_extends_only_once() -> None:
    assert code_of(check_extension, request(3, used=1)) == "extension_already_used"
    assert code_of(check_extension, request(3, used=1, team_admin=False, national=True)) is None


def test_extension_keeps_the_365_day_limit() -> None:
    req = request(3)
    too_far = ExtensionRequest(**{**req.__dict__, "new_end_date": date(2027, 1, 5)})
    assert code_of(check_extension, too_far) == "project_too_long"


def test_project_is_due_for_closing_the_day_after_its_end() -> None:
    assert not is_due_for_closing("published", date(2026, 3, 31), date(2026, 3, 31))
    assert is_due_for_closing("published", date(2026, 3, 31), date(2026, 4, 1))
    assert not is_due_for_closing("draft", date(2026, 3, 31), date(2026, 4, 1))
