"""Service-hours rules (P7): who gets hours, late flag, daily cap, sign-in codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from projects import errors
from shared.errors import AppError

SIGN_IN = "in"
SIGN_OUT = "out"


def check_service_date(service_date: date, starts_on: date, ends_on: date, today: date) -> None:
    if service_date > today or service_date < starts_on or service_date > ends_on:
        raise AppError(errors.HOURS_DATE_OUTSIDE_PROJECT, {"service_date": service_date.isoformat()})


def is_late(service_date: date, today: date, *, project_closed: bool, grace_days: int) -> bool:
    """补录: recorded after the session's date (beyond the grace days) or after the project closed."""
    return project_closed or (today - service_date).days > grace_days


def check_daily_cap(minutes_that_day: int, cap_minutes: int, *, over: list[dict[str, Any]] | None = None) -> None:
    """``over``: the volunteer-days over the cap, for a recording to say which (its ``detail``)."""
    if minutes_that_day > cap_minutes:
        detail: dict[str, Any] = {"minutes_that_day": minutes_that_day, "cap_minutes": cap_minutes}
        if over is not None:
            detail["over"] = over
        raise AppError(errors.HOURS_DAILY_CAP_EXCEEDED, detail, params={"cap_hours": _hours(cap_minutes)})


def _hours(minutes: int) -> str:
    return f"{minutes / 60:g}"


def minutes_between(signed_in_at: datetime, signed_out_at: datetime) -> int:
    """Whole minutes on site; a sign-out before the sign-in counts nothing."""
    return max(0, int((signed_out_at - signed_in_at).total_seconds() // 60))


def session_forgotten(signed_in_at: datetime, now: datetime, max_minutes: int) -> bool:
    """A session open longer than anyone serves in one go: the volunteer forgot to sign out, and the
    time since says nothing about how long they served."""
    return minutes_between(signed_in_at, now) > max_minutes


def capped_session_minutes(on_site: int, already_that_day: int, cap_minutes: int) -> int:
    """A sign-out adds what fits under the day's cap, never a refusal for the volunteer on site."""
    return max(0, min(on_site, cap_minutes - already_that_day))


# -- sign-in codes (the QR payload the lead shows on site) ----------------------------------------
@dataclass(frozen=True)
class SignCode:
    project_id: uuid.UUID
    kind: str
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_sign_code(secret: bytes, project_id: uuid.UUID, kind: str, expires_at: datetime) -> str:
    body = json.dumps({"p": str(project_id), "k": kind, "e": int(expires_at.timestamp())}, separators=(",", ":"))
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()[:16]
    return f"{_b64(body.encode())}.{_b64(mac)}"


def read_sign_code(secret: bytes, code: str, *, project_id: uuid.UUID, kind: str, now: datetime) -> SignCode:
    """A code is good for one project, one direction (in/out), until it expires."""
    try:
        body_part, mac_part = code.strip().split(".", 1)
        body = _unb64(body_part)
        mac = _unb64(mac_part)
    except (ValueError, TypeError) as exc:
        raise AppError(errors.SIGN_CODE_INVALID) from exc
    expected = hmac.new(secret, body, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(mac, expected):
        raise AppError(errors.SIGN_CODE_INVALID)
    try:
        data = json.loads(body)
        parsed = SignCode(uuid.UUID(data["p"]), str(data["k"]), int(data["e"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise AppError(errors.SIGN_CODE_INVALID) from exc
    if parsed.project_id != project_id or parsed.kind != kind:
        raise AppError(errors.SIGN_CODE_INVALID)
    if parsed.expires_at < now.timestamp():
        raise AppError(errors.SIGN_CODE_EXPIRED)
    return parsed
