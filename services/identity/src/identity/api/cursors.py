"""Opaque cursors for keyset pagination on ``(timestamp, id)``."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from shared.errors import VALIDATION_FAILED, AppError


def encode(at: datetime, item_id: uuid.UUID) -> str:
    raw = json.dumps([at.isoformat(), str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, item_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at), uuid.UUID(item_id)
    except (ValueError, TypeError) as exc:
        # The shape of every other validation failure: a list of {loc, msg, type}.
        raise AppError(
            VALIDATION_FAILED, [{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}]
        ) from exc
