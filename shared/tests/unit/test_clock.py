"""The injectable clock and the local (China) date the rules use."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from shared.clock import ManualClock, SystemClock, local_today


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(datetime(2026, 5, 1, 0, 0, tzinfo=UTC))
    assert clock.now() == clock.now() == datetime(2026, 5, 1, tzinfo=UTC)
    assert clock.advance(hours=2) == datetime(2026, 5, 1, 2, tzinfo=UTC)
    assert clock.advance(timedelta(days=1)) == datetime(2026, 5, 2, 2, tzinfo=UTC)


def test_manual_clock_normalises_to_utc() -> None:
    clock = ManualClock(datetime(2026, 5, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))))
    assert clock.now() == datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(0)


def test_manual_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        ManualClock(datetime(2026, 5, 1))
    with pytest.raises(ValueError, match="aware"):
        ManualClock().set(datetime(2026, 5, 1))


def test_local_today_is_the_date_in_china_not_in_utc() -> None:
    # 2026-06-30 17:00 UTC is already 1 July in Beijing.
    clock = ManualClock(datetime(2026, 6, 30, 17, 0, tzinfo=UTC))
    assert local_today(clock) == date(2026, 7, 1)
    clock.set(datetime(2026, 6, 30, 15, 59, tzinfo=UTC))
    assert local_today(clock) == date(2026, 6, 30)


def test_system_clock_is_aware_utc() -> None:
    assert SystemClock().now().utcoffset() == timedelta(0)
