"""Login throttling per account and per client address, in PostgreSQL so replicas share it.

After a number of free failures, each further failure locks the key for an exponentially
growing time capped at a few minutes: enough to make guessing hopeless, too short for an
attacker to keep the owner out for long. A success clears the account's count.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from identity import errors
from identity.config import IdentitySettings
from shared.errors import AppError
from shared.logging import get_logger

log = get_logger("identity.throttle")


def account_key(username: str) -> str:
    # A hash: unknown usernames are throttled too, and the table holds no usernames.
    return "account:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()[:40]


def address_key(address: str) -> str:
    return "address:" + address


@dataclass(frozen=True)
class Policy:
    account_free: int
    address_free: int
    base_seconds: int
    max_seconds: int

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> Policy:
        return cls(
            settings.login_account_free_failures,
            settings.login_address_free_failures,
            settings.login_lock_base_seconds,
            settings.login_lock_max_seconds,
        )

    def lock_seconds(self, key: str, failures: int) -> int:
        free = self.account_free if key.startswith("account:") else self.address_free
        if failures < free:
            return 0
        return int(min(self.max_seconds, self.base_seconds * 2 ** min(failures - free, 20)))


class Throttle:
    def __init__(self, engine: AsyncEngine, policy: Policy) -> None:
        self.engine = engine
        self.policy = policy

    async def check(self, keys: list[str], now: datetime) -> None:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text("SELECT max(locked_until) FROM login_throttle WHERE key = ANY(:keys) AND locked_until > :now"),
                {"keys": keys, "now": now},
            )
            until = result.scalar()
        if until is not None:
            retry_after = max(1, math.ceil((until - now).total_seconds()))
            log.info("login_throttled", retry_after=retry_after)
            raise AppError(
                errors.TOO_MANY_ATTEMPTS,
                {"retry_after": retry_after},
                params={"retry_after": retry_after},
                headers={"Retry-After": str(retry_after)},
            )

    async def failed(self, keys: list[str], now: datetime) -> None:
        async with self.engine.begin() as conn:
            for key in keys:
                failures = (
                    await conn.execute(
                        text(
                            "INSERT INTO login_throttle (key, failures, last_failure_at) VALUES (:key, 1, :now) "
                            "ON CONFLICT (key) DO UPDATE SET failures = CASE "
                            "  WHEN login_throttle.last_failure_at < :now - interval '1 day' THEN 1 "
                            "  ELSE login_throttle.failures + 1 END, last_failure_at = :now "
                            "RETURNING failures"
                        ),
                        {"key": key, "now": now},
                    )
                ).scalar_one()
                seconds = self.policy.lock_seconds(key, failures)
                if seconds:
                    await conn.execute(
                        text("UPDATE login_throttle SET locked_until = :until WHERE key = :key"),
                        {"key": key, "until": now + timedelta(seconds=seconds)},
                    )

    async def succeeded(self, key: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text("DELETE FROM login_throttle WHERE key = :key"), {"key": key})
