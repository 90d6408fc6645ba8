"""What every service's request-body models share: unknown fields refused, text trimmed, and a
published schema that says so.

Input models drop whitespace around text (``str_strip_whitespace``) and then check its length and
pattern, so ``" ab "`` fails a ``minLength`` of 4 that its four characters meet. The schema would
then accept what the service refuses: a client, or a fuzzer, that trusts it gets a
``validation_failed``. Published text whose trimmed form could break its constraints (a minimum
length, or a pattern that admits spaces and not the empty string) therefore also carries
:data:`TRIMMED`: no whitespace at either end. Whatever meets the schema is then already trimmed,
and trimming changes nothing. The service still trims what it is sent (a pasted name with a
trailing space is accepted); the schema only asks clients to send text as it will be stored.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, ConfigDict, StringConstraints

#: the characters the models trim: Unicode's White_Space, which pydantic's ``str_strip_whitespace``
#: takes off (Rust's ``str::trim``), spelled out because regex dialects disagree on ``\s``
#: (ECMA-262, JSON Schema's dialect, leaves out U+0085; Python adds U+001C-U+001F)
_TRIMMED_OFF = r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: no whitespace at either end: the first and the last character are not among those trimmed
TRIMMED = rf"^[^{_TRIMMED_OFF}](?:[\s\S]*[^{_TRIMMED_OFF}])?$"


def _shrinks_below(schema: dict[str, Any]) -> bool:
    """Whether trimming a string this schema accepts could make it break the schema."""
    if schema.get("type") != "string":
        return False
    if schema.get("minLength", 0) > 0:
        return True
    pattern = schema.get("pattern")
    if pattern is None or pattern == TRIMMED:
        return False
    # a pattern of allowed characters without spaces keeps holding once spaces are cut off; one
    # that admits spaces and needs some characters (``^[0-9 ]{5,30}$``) may not
    return (" " in pattern or r"\s" in pattern) and re.fullmatch(pattern, "") is None


def _require_trimmed(schema: dict[str, Any]) -> None:
    for member in (*schema.get("anyOf", ()), *schema.get("oneOf", ())):
        _require_trimmed(member)
    if isinstance(schema.get("items"), dict):
        _require_trimmed(schema["items"])
    if not _shrinks_below(schema):
        return
    if "pattern" in schema:
        constraints = schema.setdefault("allOf", [])
        if {"pattern": TRIMMED} not in constraints:
            constraints.append({"pattern": TRIMMED})
    else:
        schema["pattern"] = TRIMMED


def published_trimmed(schema: dict[str, Any], model: type[Any]) -> None:
    """``json_schema_extra`` of input models: mark their text fields as trimmed (module docstring)."""
    for field in schema.get("properties", {}).values():
        _require_trimmed(field)


#: no control characters (NUL above all, which PostgreSQL cannot store in text) in a line of text:
#: a name, title, address, reason, filter. Refused with validation_failed, never a 500; in the
#: schema, so clients and fuzzers know it too. A lone surrogate (``"\\ud800"``, which JSON allows
#: and UTF-8 cannot encode) fails any pattern, and is refused the same way.
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
#: the same for text of several lines (a description, requirements, a note): tab and line breaks
#: (LF, CR) allowed
NO_CONTROL_BUT_LINES = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
#: one line of text
Line = Annotated[str, StringConstraints(pattern=NO_CONTROL)]
#: text of several lines
Lines = Annotated[str, StringConstraints(pattern=NO_CONTROL_BUT_LINES)]

#: invisible characters some scripts' names need: zero-width non-joiner and joiner, and the
#: Mongolian vowel separator (the variation selectors beside it are marks, allowed)
_JOINERS = frozenset({"\u200c", "\u200d", "\u180e"})
#: combining marks one letter may carry: Tibetan stacks two or three, and a "zalgo" name dozens
_MAX_MARKS = 4


def a_person_name(name: str) -> str:
    """A person's name as a document prints it: no invisible formatting characters (a
    right-to-left override that shows ``张三`` reversed on a card, a zero-width space, a soft
    hyphen; the joiners some scripts need apart), and no pile of combining marks drawn over the
    lines around it; else a ``ValueError`` (validation_failed). Private-use characters stay (older
    systems wrote rare name characters, 生僻字, there, as GB 18030 mapped some), and so do those this
    Python's Unicode tables do not know yet (CJK extensions added for names and places since)."""
    marks = 0
    for char in name:
        category = unicodedata.category(char)
        if category == "Cf" and char not in _JOINERS:
            raise ValueError(f"a name holds no invisible formatting character (U+{ord(char):04X})")
        marks = marks + 1 if category in ("Mn", "Me") else 0
        if marks > _MAX_MARKS:
            raise ValueError(f"a name's letter carries at most {_MAX_MARKS} combining marks")
    return name


#: a person's real name (one line, as a document prints it: :func:`a_person_name`)
PersonName = Annotated[str, StringConstraints(pattern=NO_CONTROL), AfterValidator(a_person_name)]


def within_the_calendar(moment: datetime) -> datetime:
    """A moment with a time zone that stays inside years 1-9999 once in UTC, as PostgreSQL stores
    it (``0001-01-01T00:00:00+08:00`` does not: the driver's conversion overflows, a 500), else a
    ``ValueError`` (validation_failed). The moment itself is kept as given; a naive one is left to
    the rule that asks for a zone."""
    if moment.utcoffset() is not None:
        try:
            moment.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("a moment at the edge of the calendar that UTC cannot hold") from exc
    return moment


#: a moment with its time zone (RFC 3339), one the database can store
Moment = Annotated[AwareDatetime, AfterValidator(within_the_calendar)]


#: the configuration of every request-body model
INPUT_CONFIG = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=published_trimmed)
