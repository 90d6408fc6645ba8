"""Requests a client may send again count once (``Idempotency-Key``).

A recording of service hours whose answer a lost connection swallowed is sent again by any
sensible client; without a key, it was recorded twice and the volunteer's official hours doubled.
A request carrying ``Idempotency-Key`` claims the key (per account) in its own transaction, before
its work, and keeps its answer with it: a retry under the same key gets that answer again
(``Idempotent-Replayed: true``) and changes nothing. Two at once take turns on the key's row: the
second waits for the first to commit, then replays it. A refused request rolls its claim back
with everything else, so a retry runs again. A key used again for another request (another route,
project or body) is refused with ``idempotency_key_reused``. Keys are kept
``IDEMPOTENCY_KEY_HOURS`` (24), then purged by every replica's sweep.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from projects import errors
from shared.db import delete_in_batches
from shared.errors import AppError

HEADER = "Idempotency-Key"
#: what a key may be: printable ASCII, as the IETF draft and the usual clients (a UUID) make them
KEY_PATTERN = r"^[\x21-\x7e]{1,100}$"
#: how long a key is remembered
IDEMPOTENCY_KEY_HOURS = 24

_CLAIM = text(
    "INSERT INTO idempotent_requests (account_id, key, scope, fingerprint, created_at) "
    "VALUES (:account_id, :key, :scope, :fingerprint, :now) ON CONFLICT (account_id, key) DO NOTHING RETURNING 1"
)
_READ = text(
    "SELECT scope, fingerprint, status_code, response FROM idempotent_requests "
    "WHERE account_id = :account_id AND key = :key"
)
_STORE = text(
    "UPDATE idempotent_requests SET status_code = :status_code, response = :response "
    "WHERE account_id = :account_id AND key = :key"
)


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: bytes


def fingerprint(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


async def claim(
    session: AsyncSession, account_id: uuid.UUID, key: str, *, scope: str, body: bytes, now: datetime
) -> Answer | None:
    """Claim ``key`` for this request in the session's transaction; the earlier answer when a
    request under it committed first (``None``: go on, and :func:`keep` the answer)."""
    params = {"account_id": account_id, "key": key}
    claimed = await session.execute(_CLAIM, {**params, "scope": scope, "fingerprint": fingerprint(body), "now": now})
    if claimed.first() is not None:
        return None
    earlier = (await session.execute(_READ, params)).one()
    if earlier.scope != scope or earlier.fingerprint != fingerprint(body) or earlier.status_code is None:
        raise AppError(errors.IDEMPOTENCY_KEY_REUSED)
    return Answer(earlier.status_code, bytes(earlier.response))


async def keep(session: AsyncSession, account_id: uuid.UUID, key: str, answer: Answer) -> None:
    """Keep the answer with the claimed key, in the request's own transaction."""
    await session.execute(
        _STORE, {"account_id": account_id, "key": key, "status_code": answer.status_code, "response": answer.body}
    )


async def purge(engine: AsyncEngine, now: datetime, *, batch: int = 1000) -> int:
    """Forget keys older than :data:`IDEMPOTENCY_KEY_HOURS`."""
    before = now - timedelta(hours=IDEMPOTENCY_KEY_HOURS)
    return await delete_in_batches(
        engine, "idempotent_requests", "created_at < :before", {"before": before}, batch=batch
    )
