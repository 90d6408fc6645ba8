"""The last log processor masks personal data that slipped into a log line, however it is written."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest

from shared.logging import mask_personal_data, scrub_personal_data


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("身份证 11010519491231002X 已提交", "身份证 [id-number] 已提交"),
        ("ID11010519491231002X", "ID[id-number]"),
        ("legacy 110105491231002", "legacy [id-number]"),
        ("call 13812345678", "call [mobile]"),
        ("call 138 1234 5678", "call [mobile]"),
        ("call 138-1234-5678 now", "call [mobile] now"),
        ("call +86 13812345678", "call [mobile]"),
        ("call +852 9123 4567 now", "call [mobile] now"),
        ("call +447700900123", "call [mobile]"),
        ("?mobile=%2B85291234567&x=1", "?mobile=[mobile]&x=1"),
        ("to zhang.san@example.org", "to [email]"),
        ("to 张三@例子.中国", "to [email]"),
        ("to user@例子.中国", "to [email]"),
        (
            '"GET /api/v1/emails?recipient=zhang.san%40example.org HTTP/1.1"',
            '"GET /api/v1/emails?recipient=[email] HTTP/1.1"',
        ),
        ("?to=Zhang%40Example.ORG", "?to=[email]"),
    ],
)
def test_personal_data_is_masked_however_it_is_written(text: str, masked: str) -> None:
    assert mask_personal_data(text) == masked


@pytest.mark.parametrize(
    "text",
    ["order 2026-12-06 12:30", "seq 1234567", "uuid 4f1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e", "v1.2.3", "12 345"],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert mask_personal_data(text) == text


def test_numbers_sets_named_tuples_and_deep_values_are_masked_too() -> None:
    pair = namedtuple("pair", "name phone")
    deep: Any = "13812345678"
    for _ in range(20):
        deep = [deep]
    event = {
        "phone": 13812345678,
        "id_number": 110105194912310021,
        "count": 42,
        "flag": True,
        "emails": {"a@example.org"},
        "who": pair("张三", "13812345678"),
        "deep": deep,
    }
    scrubbed = scrub_personal_data(None, "info", event)
    assert scrubbed["phone"] == "[mobile]"
    assert scrubbed["id_number"] == "[id-number]"
    assert scrubbed["count"] == 42
    assert scrubbed["flag"] is True
    assert scrubbed["emails"] == {"[email]"}
    assert scrubbed["who"] == pair("张三", "[mobile]")
    assert "13812345678" not in repr(scrubbed["deep"])


def test_an_error_is_masked_before_it_is_cut_and_a_validation_error_loses_its_input() -> None:
    from pydantic import BaseModel, ValidationError

    from shared.logging import describe_error

    # the ID number straddles the cut: masked first, no digits of it survive
    error = RuntimeError("x" * 268 + " 11010519491231002X")  # cut after its 16th digit
    assert "1101051949" not in describe_error(error)

    class Payload(BaseModel):
        display_name: str
        age: int

    try:
        Payload.model_validate({"display_name": "王小明", "age": "十八"})
    except ValidationError as invalid:
        described = describe_error(invalid)
    assert "王小明" not in described
    assert "十八" not in described
    assert "age" in described
