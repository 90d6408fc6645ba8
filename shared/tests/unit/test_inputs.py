"""Input models trim text and then check it; their published schema must not accept what trimming
then refuses (schemathesis found `{"reason": "N\\x977 "}`: four characters for a minimum of four,
three once trimmed, refused as too short although the schema allowed it)."""

from __future__ import annotations

import re
from typing import Annotated, Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from shared.inputs import INPUT_CONFIG, NO_CONTROL, TRIMMED, a_person_name


class Sample(BaseModel):
    model_config = INPUT_CONFIG

    reason: str = Field(min_length=4, max_length=20)
    phone: str = Field(pattern=r"^[0-9+\-() ]{5,30}$")
    code: str = Field(pattern=r"^\d{6}$")
    username: str | None = Field(default=None, min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    note: Annotated[str, StringConstraints(pattern=NO_CONTROL)] = ""
    tags: list[Annotated[str, StringConstraints(min_length=2)]] = []


SCHEMA = Sample.model_json_schema()
PROPERTIES = SCHEMA["properties"]


def published(name: str) -> Any:
    return jsonschema_rs.validator_for({**PROPERTIES[name], "$defs": SCHEMA.get("$defs", {})})


def test_text_that_trimming_could_shorten_below_its_constraints_is_published_as_trimmed() -> None:
    assert PROPERTIES["reason"]["pattern"] == TRIMMED
    # a pattern of its own: both apply
    assert PROPERTIES["phone"]["pattern"] == r"^[0-9+\-() ]{5,30}$"
    assert PROPERTIES["phone"]["allOf"] == [{"pattern": TRIMMED}]
    [text, _] = PROPERTIES["username"]["anyOf"]
    assert text["allOf"] == [{"pattern": TRIMMED}]
    assert PROPERTIES["tags"]["items"]["pattern"] == TRIMMED
    # patterns that trimming cannot break are left as they are
    assert "allOf" not in PROPERTIES["code"]
    assert "allOf" not in PROPERTIES["note"]
    assert PROPERTIES["note"]["pattern"] == NO_CONTROL


@pytest.mark.parametrize(
    ("field", "value"),
    [("reason", "N\x977 "), ("reason", " ab "), ("phone", " 1234"), ("tags", [" a"]), ("username", "ab\u3000")],
)
def test_what_trimming_would_refuse_is_refused_by_the_published_schema_too(field: str, value: Any) -> None:
    assert not published(field).is_valid(value)
    body = {"reason": "long enough", "phone": "12345", "code": "110105", field: value}
    with pytest.raises(ValidationError):
        Sample.model_validate(body)


WHITESPACE = " \t\n\r\x0b\x0c\x1c\x85\xa0\u2003\u3000\ufeff"
VALID = {"reason": "long enough", "phone": "12345", "code": "110105"}


def padded(core: str, max_core: int) -> st.SearchStrategy[str]:
    """Text around the lengths that matter, with whitespace (and near-whitespace) at its ends."""
    pad = st.one_of(st.just(""), st.text(alphabet=st.sampled_from(WHITESPACE), min_size=1, max_size=2))
    return st.tuples(pad, st.text(alphabet=st.sampled_from(core), max_size=max_core), pad).map("".join)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), field=st.sampled_from(["reason", "phone"]))
def test_whatever_the_published_schema_accepts_the_model_accepts_as_sent(data: st.DataObject, field: str) -> None:
    core = {"reason": "ab\x97中 \x1c", "phone": " 0129+-()"}[field]
    value = data.draw(padded(core, 8), label=field)
    if published(field).is_valid(value):
        model = Sample.model_validate({**VALID, field: value})
        assert getattr(model, field) == value


@pytest.mark.parametrize(
    ("field", "value"),
    # at the minimum; spaces inside; ends the models do not trim (nor does the schema's \s count them)
    [("reason", "abcd"), ("reason", "a  d"), ("reason", "中中中中"), ("reason", "\x1cab\x1c"), ("phone", "1 2 3")],
)
def test_text_at_its_limits_is_accepted_by_both_as_sent(field: str, value: str) -> None:
    assert published(field).is_valid(value)
    assert getattr(Sample.model_validate({**VALID, field: value}), field) == value


def test_the_model_still_trims_what_it_is_sent() -> None:
    model = Sample.model_validate({"reason": "  pasted text  ", "phone": " 12345 ", "code": "110105"})
    assert (model.reason, model.phone) == ("pasted text", "12345")


def test_trimmed_names_exactly_the_characters_the_models_trim() -> None:
    """Whatever the models take off either end (Unicode's White_Space), and nothing else, is refused
    there; the published pattern is checked as ECMA-262 (JSON Schema's dialect) and as Python reads it."""

    class One(BaseModel):
        model_config = INPUT_CONFIG
        text: str

    trimmed = [c for c in map(chr, range(0x110000)) if not 0xD800 <= ord(c) <= 0xDFFF and One(text=f"x{c}").text == "x"]
    assert len(trimmed) == 25
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": TRIMMED})
    for c in trimmed:
        assert not ecma.is_valid(f"x{c}")
        assert not ecma.is_valid(f"{c}x")
        assert not re.fullmatch(TRIMMED, f"x{c}")
        assert not re.fullmatch(TRIMMED, f"{c}x")
    for c in ("\x1c", "\ufeff", "\u200b", "a", "中"):
        assert ecma.is_valid(f"{c}x{c}")
        assert re.fullmatch(TRIMMED, f"{c}x{c}")


@pytest.mark.parametrize(
    "name",
    [
        "张三",
        "阿依古丽·买买提",
        "Zhang San",
        "བཀྲ་ཤིས་",
        "ᠪᠠᠲᠤ\u180eᠮᠥ\u180b",
        "Ruža Šimić",
        "محمد\u200cعلی",
        "张\U00031350",  # CJK Extension H (Unicode 15): names and places
        "王\ue000",  # a rare character an older system kept in the private-use area
    ],
)
def test_a_person_name_takes_the_names_people_have(name: str) -> None:
    assert a_person_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "\u202e三张",  # right-to-left override: shown reversed on the card
        "张\u200b三",  # zero-width space
        "张\u00ad三",  # soft hyphen
        "Z" + "\u0301" * 5 + "alg" + "\u0336" * 20 + "o",  # zalgo
    ],
)
def test_a_person_name_refuses_what_no_document_prints(name: str) -> None:
    with pytest.raises(ValueError, match="a name"):
        a_person_name(name)
