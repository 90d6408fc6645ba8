"""Cursors round-trip their sort keys and refuse anything else with cursor_invalid."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.errors import AppError
from shared.pagination import decode_cursor, encode_cursor, time_cursor


def test_a_time_cursor_round_trips() -> None:
    at, item = datetime(2026, 11, 26, 8, 30, tzinfo=UTC), uuid.uuid4()
    assert time_cursor(encode_cursor(at, item)) == (at, item)


def test_name_and_sequence_cursors_round_trip() -> None:
    item = uuid.uuid4()
    assert decode_cursor(encode_cursor("志愿服务队", item), str, uuid.UUID) == ("志愿服务队", item)
    assert decode_cursor(encode_cursor(42), int) == (42,)


def test_a_cursor_on_the_longest_team_name_fits_what_the_routes_take() -> None:
    name, item = "志" * 60, uuid.uuid4()
    cursor = encode_cursor(name, item)
    assert len(cursor) <= 400  # the teams list's cursor parameter
    assert decode_cursor(cursor, str, uuid.UUID) == (name, item)


@pytest.mark.parametrize(
    "cursor",
    [
        base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode(),  # nested past the reader's recursion
        base64.urlsafe_b64encode(b"[" * 600 + b"]" * 600).decode(),  # longer than any cursor made here
        "not-a-cursor",
        "",
        encode_cursor("2026-11-26T08:30:00", uuid.uuid4()),  # no zone
        encode_cursor(datetime.now(UTC)),  # a part missing
        encode_cursor(datetime.now(UTC), "not-a-uuid"),
        "%%%",
    ],
)
def test_anything_else_is_refused_with_cursor_invalid(cursor: str) -> None:
    with pytest.raises(AppError) as refused:
        time_cursor(cursor)
    assert refused.value.spec.code == "cursor_invalid"
    assert refused.value.spec.status == 422


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**30])
def test_a_sequence_cursor_beyond_the_databases_bigint_is_refused(number: int) -> None:
    with pytest.raises(AppError) as refused:
        decode_cursor(encode_cursor(number), int)
    assert refused.value.spec.code == "cursor_invalid"
    assert decode_cursor(encode_cursor(2**63 - 1), int) == (2**63 - 1,)


@pytest.mark.parametrize("part", [1.5, True, " 7", "7_0", "١٢", "+7", [7]])
def test_a_sequence_cursor_is_digits_as_written_and_nothing_int_would_also_take(part: object) -> None:
    raw = base64.urlsafe_b64encode(json.dumps([part]).encode()).decode().rstrip("=")
    with pytest.raises(AppError) as refused:
        decode_cursor(raw, int)
    assert refused.value.spec.code == "cursor_invalid"
    assert decode_cursor(encode_cursor(-3), int) == (-3,)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_time_cursor_its_zone_pushes_off_the_calendar_is_refused(moment: str) -> None:
    with pytest.raises(AppError) as refused:
        time_cursor(encode_cursor(moment, uuid.uuid4()))
    assert refused.value.spec.code == "cursor_invalid"


def test_a_time_cursor_comes_back_in_utc() -> None:
    at, _ = time_cursor(encode_cursor("2026-11-26T16:30:00+08:00", uuid.uuid4()))
    assert at.utcoffset() is not None
    assert at.utcoffset().total_seconds() == 0
    assert at == datetime(2026, 11, 26, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("name", ["a\x00b", "\ud800"])
def test_a_name_cursor_the_database_cannot_compare_is_refused(name: str) -> None:
    import base64
    import json

    cursor = base64.urlsafe_b64encode(json.dumps([name, str(uuid.uuid4())]).encode()).decode().rstrip("=")
    with pytest.raises(AppError) as refused:
        decode_cursor(cursor, str, uuid.UUID)
    assert refused.value.spec.code == "cursor_invalid"
