"""Login throttling per account and per client address, in PostgreSQL so replicas share it.

After a number of free failures, each further failure locks the key for an exponentially
growing time capped at a few minutes: enough to make guessing hopeless, too short for an
attacker to keep the owner out for long. An attempt is counted before its password is checked
(simultaneous attempts cannot outrun the count); a success clears the account's count.

Sign-up's identity answers (the ID number is registered, the imported record has another name)
are budgeted per client address the same way (:func:`sign_up_key`, :meth:`Policy.for_sign_ups`):
only a refusal of that kind keeps its count.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from identity import errors
from identity.config import IdentitySettings
from identity.domain import usernames
from shared.errors import AppError, ErrorSpec
from shared.logging import get_logger

log = get_logger("identity.throttle")


def account_key(username: str) -> str:
    # A hash: unknown usernames are throttled too, and the table holds no usernames. Every
    # spelling that finds one account (another case; a look-alike letter) has one key.
    return "account:" + hashlib.sha256(usernames.fold(username).encode()).hexdigest()[:40]


def address_key(address: str) -> str:
    return "address:" + address


def sign_up_key(address: str) -> str:
    return "sign-up:" + address


@dataclass(frozen=True)
class Policy:
    account_free: int
    address_free: int
    base_seconds: int
    max_seconds: int
    #: this long without a failure starts a key's count again
    window: timedelta = timedelta(days=1)

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> Policy:
        return cls(
            settings.login_account_free_failures,
            settings.login_address_free_failures,
            settings.login_lock_base_seconds,
            settings.login_lock_max_seconds,
        )

    @classmethod
    def for_sign_ups(cls, settings: IdentitySettings) -> Policy:
        """Sign-up's identity answers per address: the ``sign_up_identity_refusals_per_hour``th
        within an hour of the one before locks the address's sign-ups for an hour, after which
        the count starts again."""
        per_hour = settings.sign_up_identity_refusals_per_hour
        return cls(per_hour, per_hour, 3600, 3600, window=timedelta(hours=1))

    def lock_seconds(self, key: str, failures: int) -> int:
        free = self.account_free if key.startswith("account:") else self.address_free
        if failures < free:
            return 0
        return int(min(self.max_seconds, self.base_seconds * 2 ** min(failures - free, 20)))


class Throttle:
    def __init__(
        self,
        engine: AsyncEngine,
        policy: Policy,
        *,
        refusal: ErrorSpec = errors.TOO_MANY_ATTEMPTS,
        what: str = "login",
    ) -> None:
        self.engine = engine
        self.policy = policy
        #: the 429 a locked key answers (``retry_after`` in its message), and what it throttles (logs)
        self.refusal = refusal
        self.what = what

    async def attempt(self, keys: list[str], now: datetime) -> Reservation:
        """Count an attempt against each key before its password is checked, or refuse it while a
        key is locked (a refused attempt counts for nothing, so hammering a locked account does
        not keep its owner out longer). Counted first, attempts made at the same moment take
        turns on the keys' rows: no more of them are checked than the free failures allow, where
        checking first and counting after let all of them through. The attempt that reaches the
        free failures sets the lock. A right password (``succeeded``) or an attempt that could
        not be judged (``give_back``) takes its count back, with the lock it set."""
        keys = sorted(set(keys))  # one lock order for every attempt
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO login_throttle (key, failures, last_failure_at)"
                    " SELECT k, 0, :now FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k"
                    " ON CONFLICT (key) DO NOTHING"
                ),
                {"keys": keys, "now": now},
            )
            rows = (
                await conn.execute(
                    text(
                        "SELECT key, failures, last_failure_at, locked_until FROM login_throttle"
                        " WHERE key = ANY(:keys) ORDER BY key FOR UPDATE"
                    ),
                    {"keys": keys},
                )
            ).all()
            until = max(
                (r.locked_until for r in rows if r.locked_until is not None and r.locked_until > now), default=None
            )
            if until is not None:
                retry_after = max(1, math.ceil((until - now).total_seconds()))
                log.info(f"{self.what}_throttled", retry_after=retry_after)
                raise AppError(
                    self.refusal,
                    {"retry_after": retry_after},
                    params={"retry_after": retry_after},
                    headers={"Retry-After": str(retry_after)},
                )
            counted: dict[str, Counted] = {}
            for row in rows:
                # a day (the policy's window) without failures starts the count again
                failures = 1 if row.last_failure_at <= now - self.policy.window else row.failures + 1
                seconds = self.policy.lock_seconds(row.key, failures)
                lock = now + timedelta(seconds=seconds) if seconds else None
                await conn.execute(
                    text(
                        "UPDATE login_throttle SET failures = :failures, last_failure_at = :now,"
                        " locked_until = coalesce(CAST(:lock AS timestamptz), locked_until) WHERE key = :key"
                    ),
                    {"key": row.key, "failures": failures, "now": now, "lock": lock},
                )
                counted[row.key] = Counted(row.failures, row.last_failure_at, row.locked_until, failures, lock)
        return Reservation(now, counted)

    async def succeeded(self, reservation: Reservation, account: str) -> None:
        """The right password: the account's count is cleared, lock included; every other key
        (the address) takes back this attempt, as :meth:`give_back`."""
        async with self.engine.begin() as conn:
            await conn.execute(text("DELETE FROM login_throttle WHERE key = :key"), {"key": account})
            await self._take_back(conn, reservation, [k for k in reservation.counted if k != account])

    async def give_back(self, reservation: Reservation) -> None:
        """An attempt that was not judged (the database or the hashing failed): no failure."""
        async with self.engine.begin() as conn:
            await self._take_back(conn, reservation, list(reservation.counted))

    async def _take_back(self, conn: Any, reservation: Reservation, keys: list[str]) -> None:
        """One count fewer on each key, and where nothing changed the row since this attempt (its
        lock and its time are still there), the lock and time it had before: a right password from
        an address past its free failures neither locks the address nor keeps its count from
        ageing. What attempts made since did to the row stays."""
        for key in sorted(keys):
            was = reservation.counted[key]
            await conn.execute(
                text(
                    "UPDATE login_throttle SET failures = greatest(failures - 1, 0),"
                    " locked_until = CASE WHEN locked_until IS NOT DISTINCT FROM CAST(:ours AS timestamptz)"
                    "   THEN CAST(:before AS timestamptz) ELSE locked_until END,"
                    " last_failure_at = CASE WHEN last_failure_at = :now AND failures = :counted"
                    "   THEN :last_before ELSE last_failure_at END"
                    " WHERE key = :key"
                ),
                {
                    "key": key,
                    "ours": was.lock if was.lock is not None else was.locked_until,
                    "before": was.locked_until,
                    "now": reservation.now,
                    "counted": was.counted,
                    "last_before": was.last_failure_at,
                },
            )


@dataclass(frozen=True)
class Counted:
    """A key's row as an attempt found it, and the lock the attempt set (None: none)."""

    failures: int
    last_failure_at: datetime
    locked_until: datetime | None
    #: the count and the lock the attempt set
    counted: int
    lock: datetime | None


@dataclass(frozen=True)
class Reservation:
    """An attempt counted against its keys (see :meth:`Throttle.attempt`)."""

    now: datetime
    counted: dict[str, Counted]
