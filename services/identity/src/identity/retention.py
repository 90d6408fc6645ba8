"""Rows that only ever grow unless something removes them: spent sign-in state.

* refresh tokens a week after they expired (until then a replayed one is still recognised as a
  token of its family, which revokes the family);
* password reset tokens a day after they expired;
* failed-login counters a day after the last failure, once no lock is left on them (the counter
  starts again after a day without failures anyway): credential stuffing from many addresses
  otherwise leaves a row per address forever.

Every replica runs the sweep hourly; each table is emptied in batches of ``BATCH`` rows, one short
transaction each, so no large delete holds locks or bloats a single transaction. Times come from
the service's clock."""

from __future__ import annotations

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import Clock
from shared.db import delete_in_batches
from shared.logging import get_logger

log = get_logger("identity.retention")

PURGED = Counter("vs_identity_rows_purged_total", "Spent sign-in rows removed", ["table"])

BATCH = 5_000
INTERVAL_SECONDS = 3600

#: table -> the rows it no longer needs (:now is the service clock's time)
RULES: dict[str, str] = {
    "refresh_tokens": "expires_at < CAST(:now AS timestamptz) - interval '7 days'",
    "password_reset_tokens": "expires_at < CAST(:now AS timestamptz) - interval '1 day'",
    "login_throttle": "last_failure_at < CAST(:now AS timestamptz) - interval '1 day'"
    " AND (locked_until IS NULL OR locked_until < CAST(:now AS timestamptz))",
}


async def purge_spent(engine: AsyncEngine, clock: Clock, *, batch: int = BATCH) -> dict[str, int]:
    """One pass over every table; returns how many rows each lost."""
    purged: dict[str, int] = {}
    now = clock.now()
    for table, condition in RULES.items():
        total = await delete_in_batches(engine, table, condition, {"now": now}, batch=batch)
        purged[table] = total
        if total:
            PURGED.labels(table).inc(total)
    if any(purged.values()):
        log.info("spent_rows_purged", **purged)
    return purged
