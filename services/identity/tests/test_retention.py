"""Spent sign-in rows are purged, the ones still of use are kept (identity.retention)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text

from identity.retention import purge_spent
from identity.testing import Identity


async def _seed(identity: Identity, account_id: uuid.UUID, tag: str) -> None:
    """For each table one row long spent and one still of use, relative to the clock's now."""
    now = identity.clock.now()
    async with identity.runtime.engine.begin() as conn:
        for name, expires in (("spent", now - timedelta(days=8)), ("live", now - timedelta(days=6))):
            await conn.execute(
                text(
                    "INSERT INTO refresh_tokens (id, account_id, family_id, token_hash, expires_at, created_at) "
                    "VALUES (gen_random_uuid(), :a, gen_random_uuid(), sha256(convert_to(:h, 'UTF8')), :e, :c)"
                ),
                {"a": account_id, "h": f"{tag}-refresh-{name}", "e": expires, "c": expires - timedelta(days=30)},
            )
        for name, expires in (("spent", now - timedelta(days=2)), ("live", now + timedelta(minutes=20))):
            await conn.execute(
                text(
                    "INSERT INTO password_reset_tokens (id, account_id, token_hash, expires_at, created_at) "
                    "VALUES (gen_random_uuid(), :a, sha256(convert_to(:h, 'UTF8')), :e, :c)"
                ),
                {"a": account_id, "h": f"{tag}-reset-{name}", "e": expires, "c": expires - timedelta(minutes=30)},
            )
        for key, last, locked in (
            (f"address:{tag}-spent", now - timedelta(days=2), None),  # a day without failures: counts again from 0
            (f"address:{tag}-recent", now - timedelta(hours=2), None),  # still counting
            (f"address:{tag}-locked", now - timedelta(days=2), now + timedelta(hours=1)),  # still locked
        ):
            await conn.execute(
                text(
                    "INSERT INTO login_throttle (key, failures, locked_until, last_failure_at) VALUES (:k, 5, :l, :f)"
                ),
                {"k": key, "l": locked, "f": last},
            )


async def test_spent_tokens_and_failed_login_counters_are_purged_and_live_ones_kept(identity: Identity) -> None:
    _, account = await identity.sign_up()
    account_id = uuid.UUID(account["id"])
    tag = uuid.uuid4().hex[:8]
    await _seed(identity, account_id, tag)
    await purge_spent(identity.runtime.engine, identity.clock, batch=1)  # batch 1: the loop takes every batch
    refresh = await identity.fetch(
        "SELECT count(*) FROM refresh_tokens WHERE account_id = :a AND expires_at < :n",
        a=account_id,
        n=identity.clock.now(),
    )
    resets = await identity.fetch(
        "SELECT expires_at > :n FROM password_reset_tokens WHERE account_id = :a", a=account_id, n=identity.clock.now()
    )
    throttles = await identity.fetch(
        "SELECT key FROM login_throttle WHERE key LIKE :k ORDER BY key", k=f"address:{tag}-%"
    )
    assert refresh[0][0] == 1  # the one expired 6 days ago is kept a week: a replay still revokes its family
    assert [r[0] for r in resets] == [True]
    assert [r[0] for r in throttles] == [f"address:{tag}-locked", f"address:{tag}-recent"]


async def test_a_sign_in_still_works_after_the_purge(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    first = await identity.log_in(body["username"], body["password"])
    assert first.status_code == 200
    await purge_spent(identity.runtime.engine, identity.clock)
    refreshed = await identity.client.post(
        "/api/v1/token-refreshes", json={"refresh_token": first.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
