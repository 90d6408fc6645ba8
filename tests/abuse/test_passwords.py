"""Passwords and reset links on the full stack, over real HTTP: stored hashes are argon2id at the
issue's cost or more, a used or expired reset link is refused, known and unknown accounts get the
same reset answer, and repeated failed logins are throttled (429) without locking the owner out
for long.

Reset links are read from the email the notifications service actually sends (real SMTP server);
identity runs on a ManualClock so expiry and lock ends are reached by moving time, not waiting.
"""

from __future__ import annotations

import re
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import text

from shared.clock import ManualClock
from shared.testing import SmtpServer, sign_up_body

from .stack import OpenStack, Stack

pytestmark = pytest.mark.slow

ARGON2ID = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")
TOKEN_IN_LINK = re.compile(r"[?&]token=([A-Za-z0-9_\-.~%]+)")


@pytest.fixture(scope="module")
def identity_clock() -> ManualClock:
    # starts at the real time: identity also checks the test signer's tokens (iat, exp) on it
    return ManualClock(datetime.now(UTC))


@pytest.fixture(scope="module")
async def stack(open_stack: OpenStack, identity_clock: ManualClock) -> AsyncIterator[Stack]:
    async with open_stack(identity_clock=identity_clock) as stack:
        yield stack


@pytest.fixture
async def identity(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("identity"), timeout=30) as client:
        yield client


async def sign_up(identity: httpx.AsyncClient) -> dict[str, str]:
    body = sign_up_body()
    response = await identity.post("/api/v1/accounts", json=body)
    assert response.status_code == 201, response.text
    return {**body, "id": response.json()["id"]}


async def log_in(identity: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await identity.post("/api/v1/tokens", json={"username": username, "password": password})


async def reset_tokens(smtp_server: SmtpServer, email: str, count: int) -> list[str]:
    """The tokens of the reset links emailed to ``email`` (oldest first), once ``count`` arrived."""
    mails = await smtp_server.wait_for(
        lambda m: email in m.rcpt_tos and TOKEN_IN_LINK.search(m.text()) is not None, count=count, timeout=60
    )
    tokens = []
    for mail in mails:
        found = TOKEN_IN_LINK.search(mail.text())
        assert found is not None
        tokens.append(unquote(found.group(1)))
    return tokens


async def test_every_stored_password_is_argon2id_with_at_least_the_required_cost(
    stack: Stack, identity: httpx.AsyncClient
) -> None:
    fresh = await sign_up(identity)
    engine = stack.apps["identity"].state.runtime.engine
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT password_hash FROM accounts"))).all()
    # the seeded volunteers, the regional admin, the national admin (create-admin) and one fresh sign-up
    assert len(rows) >= 5
    costs = []
    for (stored,) in rows:
        match = ARGON2ID.match(stored)
        assert match, f"not argon2id: {stored[:12]}…"
        memory, time_cost = int(match.group(1)), int(match.group(2))
        costs.append((memory, time_cost))
        assert memory >= 19_456
        assert time_cost >= 2
        assert fresh["password"] not in stored
    print(f"\npassword hashes checked={len(rows)} argon2id params (m, t)={sorted(set(costs))}")


async def test_a_used_reset_link_and_an_expired_one_are_refused(
    identity: httpx.AsyncClient, smtp_server: SmtpServer, identity_clock: ManualClock
) -> None:
    user = await sign_up(identity)
    asked = await identity.post("/api/v1/password-resets", json={"email": user["email"]})
    assert asked.status_code == 202, asked.text
    [token] = await reset_tokens(smtp_server, user["email"], 1)

    new_password = "a brand new passphrase 2026"
    done = await identity.post(
        "/api/v1/password-resets/confirmations", json={"token": token, "new_password": new_password}
    )
    assert done.status_code == 204, done.text
    assert (await log_in(identity, user["username"], new_password)).status_code == 200
    reused = await identity.post(
        "/api/v1/password-resets/confirmations", json={"token": token, "new_password": "another passphrase 2026"}
    )
    assert reused.status_code == 400
    assert reused.json()["code"] == "reset_token_invalid"
    assert reused.json()["message"]
    assert (await log_in(identity, user["username"], new_password)).status_code == 200, "the reuse changed it"

    asked = await identity.post("/api/v1/password-resets", json={"username": user["username"]})
    assert asked.status_code == 202, asked.text
    tokens = await reset_tokens(smtp_server, user["email"], 2)
    late_token = tokens[-1]
    assert late_token != token
    identity_clock.advance(minutes=30, seconds=1)
    expired = await identity.post(
        "/api/v1/password-resets/confirmations", json={"token": late_token, "new_password": "too late for this one"}
    )
    assert expired.status_code == 400
    assert expired.json()["code"] == "reset_token_invalid"
    assert (await log_in(identity, user["username"], new_password)).status_code == 200, "the expired link changed it"
    forged = await identity.post(
        "/api/v1/password-resets/confirmations",
        json={"token": uuid.uuid4().hex + uuid.uuid4().hex, "new_password": "guessing a token 2026"},
    )
    assert forged.status_code == 400
    assert forged.json()["code"] == "reset_token_invalid"
    print("\nreset links: used → 400 reset_token_invalid, expired (30 min + 1 s) → 400, made-up → 400")


async def test_known_and_unknown_accounts_get_the_same_reset_answer(identity: httpx.AsyncClient) -> None:
    user = await sign_up(identity)
    ghost = uuid.uuid4().hex[:10]
    requests = {
        "known_username": {"username": user["username"]},
        "unknown_username": {"username": f"ghost{ghost}"},
        "known_email": {"email": user["email"]},
        "unknown_email": {"email": f"ghost{ghost}@example.org"},
    }
    answers: dict[str, set[tuple[int, str]]] = {kind: set() for kind in requests}
    timings: dict[str, list[float]] = {kind: [] for kind in requests}
    for _ in range(8):  # interleaved, so a load spike on the shared machine hits every kind alike
        for kind, body in requests.items():
            started = time.perf_counter()
            response = await identity.post("/api/v1/password-resets", json=body)
            timings[kind].append((time.perf_counter() - started) * 1000)
            answers[kind].add((response.status_code, response.text))
    distinct = set().union(*answers.values())
    print("\nreset request timings (ms, median / max of 8):")
    for kind, values in timings.items():
        print(f"  {kind:17s} {statistics.median(values):7.1f} / {max(values):7.1f}")
    base = statistics.median(timings["known_username"])
    ratio = statistics.median(timings["unknown_username"]) / base if base else float("nan")
    print(f"  unknown/known median ratio = {ratio:.2f}")
    assert len(distinct) == 1, f"reset answers differ between known and unknown accounts: {answers}"
    [(status, _)] = distinct
    assert status == 202


async def test_repeated_failed_logins_are_throttled_and_the_owner_gets_back_in_after_the_short_lock(
    stack: Stack, identity: httpx.AsyncClient, identity_clock: ManualClock
) -> None:
    settings = stack.apps["identity"].state.runtime.settings
    owner = await sign_up(identity)
    statuses = []
    for _ in range(settings.login_account_free_failures):
        statuses.append((await log_in(identity, owner["username"], "a wrong guess here")).status_code)
    assert statuses == [401] * settings.login_account_free_failures
    guessing = await log_in(identity, owner["username"], "yet another wrong guess")
    assert guessing.status_code == 429
    assert guessing.json()["code"] == "too_many_attempts"
    # locked: even the right password waits (or the lock would tell the attacker when he guessed right)
    locked = await log_in(identity, owner["username"], owner["password"])
    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_attempts"
    retry_after = int(locked.headers["Retry-After"])
    assert 0 < retry_after <= settings.login_lock_max_seconds

    # another account from the same address is not locked by this one's lock
    bystander = await sign_up(identity)
    assert (await log_in(identity, bystander["username"], bystander["password"])).status_code == 200

    identity_clock.advance(seconds=retry_after + 1)
    back = await log_in(identity, owner["username"], owner["password"])
    assert back.status_code == 200, back.text
    assert back.json()["access_token"]
    print(
        f"\nlogin throttle: {settings.login_account_free_failures} failures free, then 429 too_many_attempts;"
        f" owner locked for Retry-After={retry_after}s (cap {settings.login_lock_max_seconds}s), back in after it"
    )
