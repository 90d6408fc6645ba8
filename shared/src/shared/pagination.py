"""Opaque cursors for keyset pagination, one convention for the four services.

A cursor is the URL-safe base64 of a JSON list of the sort key's parts (timestamps as RFC 3339
with zone). Anything that does not decode to the expected parts is refused with
``cursor_invalid``, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.errors import AppError, ErrorSpec

CURSOR_INVALID = ErrorSpec("cursor_invalid", 422, "分页游标无效", "The page cursor is not valid")


def encode_cursor(*parts: object) -> str:
    # UTF-8 as it is (3 bytes a Chinese character) rather than \uXXXX escapes (6): a cursor on a
    # 60-character team name stays within what the routes take (400 characters)
    raw = json.dumps([p.isoformat() if isinstance(p, datetime) else str(p) for p in parts], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _part(value: Any, kind: type) -> Any:
    if kind is datetime:
        moment = datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            raise ValueError("a cursor's time carries its zone")
        # in UTC: a time at the edge of the calendar whose zone shifts it past year 1 or 9999
        # cannot be stored or compared, and is refused here instead of failing in the database
        return moment.astimezone(UTC)
    if kind is uuid.UUID:
        return uuid.UUID(str(value))
    if kind is int:
        # the digits encode_cursor wrote (int() would also take 1.5, true or " 7_0 ")
        if not (isinstance(value, str) and _DIGITS.fullmatch(value)):
            raise ValueError("a cursor's number is not written in digits")
        number = int(value)
        if not _BIGINT_MIN <= number <= _BIGINT_MAX:
            raise ValueError("a cursor's number is out of range")
        return number
    text = str(value)
    # text the database can compare: no NUL, nothing that is not a character (a lone surrogate)
    if "\x00" in text:
        raise ValueError("a NUL in a cursor")
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate
    return text


_DIGITS = re.compile(r"-?[0-9]+")
#: the range of the database's bigint, which every numeric sort key is
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


#: longer than any cursor this module makes (base64 of a few values: a 60-character team name
#: and an id make about 300)
MAX_CURSOR_LENGTH = 1024


def decode_cursor(cursor: str, *kinds: type) -> tuple[Any, ...]:
    """The cursor's parts converted to ``kinds`` (datetime, uuid.UUID, int or str), or a refusal.
    Ours are short (a time and an id, or a number): a longer one was not made here, and one of
    deeply nested lists would exhaust the JSON reader's recursion, so neither is read."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise AppError(CURSOR_INVALID)
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong number of parts")
        return tuple(_part(value, kind) for value, kind in zip(parts, kinds, strict=True))
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error, UnicodeDecodeError) as exc:
        raise AppError(CURSOR_INVALID) from exc


def time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The common ``(timestamp, id)`` keyset cursor."""
    at, item_id = decode_cursor(cursor, datetime, uuid.UUID)
    return at, item_id
