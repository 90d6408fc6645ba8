"""V10 under simultaneous requests: the login throttle cannot be outrun, and a log-out, a replayed
refresh token, a password change or reset at the moment of a refresh or a login ends every
session it should, without a 500 (a deadlock between two lock orders surfaced as one).

Each race is fired over several rounds, the second request started a little later each round so
that each ordering is met; the first review of these paths found each wrong in most rounds."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from identity.testing import Identity, StartIdentity

T = TypeVar("T")


@pytest.fixture(scope="module")
async def identity_races(start_identity: StartIdentity) -> AsyncIterator[Identity]:
    # every request of a test comes from one address: only the per-account limit is measured
    async with start_identity(login_address_free_failures=100_000) as service:
        yield service


async def later(delay: float, request: Awaitable[T]) -> T:
    await asyncio.sleep(delay)
    return await request


async def refresh(identity: Identity, token: str) -> httpx.Response:
    return await identity.client.post("/api/v1/token-refreshes", json={"refresh_token": token})


async def logged_in(identity: Identity, body: dict[str, Any]) -> str:
    response = await identity.log_in(body["username"], body["password"])
    assert response.status_code == 200, response.text
    return str(response.json()["refresh_token"])


async def reset_link_token(identity: Identity, body: dict[str, Any], account_id: str) -> str:
    asked = await identity.client.post("/api/v1/password-resets", json={"username": body["username"]})
    assert asked.status_code == 202
    event = (await identity.events("account.password_reset_requested", account_id))[-1]
    return parse_qs(urlparse(event["reset_url"]).query)["token"][0]


def change(identity: Identity, body: dict[str, Any], new_password: str) -> Awaitable[httpx.Response]:
    return identity.client.post(
        "/api/v1/password-changes",
        json={"username": body["username"], "current_password": body["password"], "new_password": new_password},
    )


def confirm(identity: Identity, token: str, new_password: str) -> Awaitable[httpx.Response]:
    return identity.client.post(
        "/api/v1/password-resets/confirmations", json={"token": token, "new_password": new_password}
    )


async def test_simultaneous_wrong_passwords_are_checked_no_more_often_than_the_free_failures(
    identity_races: Identity,
) -> None:
    free = identity_races.settings.login_account_free_failures
    for _ in range(3):
        body, _ = await identity_races.sign_up()
        guesses = [f"wrong guess {i:03d} xx" for i in range(30)] + [body["password"]]
        answers = await asyncio.gather(*(identity_races.log_in(body["username"], g) for g in guesses))
        statuses = collections.Counter(a.status_code for a in answers)
        assert statuses[401] + statuses[200] <= free, statuses  # passwords actually checked
        assert statuses[429] >= len(guesses) - free, statuses
        assert set(statuses) <= {200, 401, 429}, statuses


async def test_a_success_takes_back_its_attempt_and_the_lock_it_set(identity_races: Identity) -> None:
    """Counted before it is checked, the fifth attempt sets the lock; when it is right, the lock goes."""
    free = identity_races.settings.login_account_free_failures
    body, _ = await identity_races.sign_up()
    for i in range(free - 1):
        assert (await identity_races.log_in(body["username"], f"wrong guess {i} xx")).status_code == 401
    assert (await identity_races.log_in(body["username"], body["password"])).status_code == 200
    for i in range(free):
        assert (await identity_races.log_in(body["username"], f"wrong again {i} xx")).status_code == 401
    assert (await identity_races.log_in(body["username"], body["password"])).status_code == 429


@pytest.mark.parametrize("ending", ["log_out", "replay"])
async def test_a_log_out_or_a_replayed_token_at_the_moment_of_a_refresh_ends_the_token_the_refresh_issued(
    identity_races: Identity, ending: str
) -> None:
    """The chain's earlier token, logged out with or shown again (stolen), ends the whole chain,
    the token a refresh of its current one issues at that moment included."""
    body, _ = await identity_races.sign_up()
    for i in range(10):
        first = await logged_in(identity_races, body)
        second = (await refresh(identity_races, first)).json()["refresh_token"]
        end = (
            identity_races.client.post("/api/v1/token-revocations", json={"refresh_token": first})
            if ending == "log_out"
            else refresh(identity_races, first)
        )
        refreshed, ended = await asyncio.gather(refresh(identity_races, second), later((i % 5) * 0.003, end))
        if ending == "log_out":
            assert ended.status_code == 204
        else:
            assert ended.json()["code"] == "refresh_token_reused"
        if refreshed.status_code == 200:
            assert (await refresh(identity_races, refreshed.json()["refresh_token"])).status_code == 401
        else:
            assert refreshed.json()["code"] == "refresh_token_invalid"


async def test_a_password_change_at_the_moment_of_a_refresh_ends_the_token_it_issued_without_a_500(
    identity_races: Identity,
) -> None:
    for i in range(12):
        body, _ = await identity_races.sign_up()
        token = await logged_in(identity_races, body)
        refreshed, changed = await asyncio.gather(
            later((i % 6) * 0.006, refresh(identity_races, token)),
            change(identity_races, body, f"brand new passphrase {i} ok"),
        )
        assert changed.status_code == 200, changed.text
        assert refreshed.status_code in (200, 401), refreshed.text
        if refreshed.status_code == 200:
            assert (await refresh(identity_races, refreshed.json()["refresh_token"])).status_code == 401


async def test_a_reset_link_at_the_moment_of_a_password_change_gives_no_500(identity_races: Identity) -> None:
    for i in range(12):
        body, account = await identity_races.sign_up()
        token = await reset_link_token(identity_races, body, account["id"])
        reset, changed = await asyncio.gather(
            later((i % 6) * 0.006, confirm(identity_races, token, f"reset passphrase {i} ok")),
            change(identity_races, body, f"changed passphrase {i} ok"),
        )
        # one of them wins: a link spent by the change, or a change of a password the reset replaced
        assert (reset.status_code, changed.status_code) in ((204, 401), (400, 200)), (reset.text, changed.text)
        winner = f"reset passphrase {i} ok" if reset.status_code == 204 else f"changed passphrase {i} ok"
        assert (await identity_races.log_in(body["username"], winner)).status_code == 200


async def test_a_national_reset_at_the_moment_of_a_refresh_and_a_reset_link_gives_no_500(
    identity_races: Identity,
) -> None:
    admin = identity_races.national_admin()
    for i in range(10):
        body, account = await identity_races.sign_up()
        token = await logged_in(identity_races, body)
        link = await reset_link_token(identity_races, body, account["id"])
        reset, refreshed, confirmed = await asyncio.gather(
            identity_races.client.post(
                f"/api/v1/admin/accounts/{account['id']}/temporary-passwords",
                json={"reason": "本人遗失全部资料"},
                headers=admin,
            ),
            later((i % 5) * 0.004, refresh(identity_races, token)),
            later((i % 5) * 0.004, confirm(identity_races, link, f"link passphrase {i} ok")),
        )
        assert reset.status_code == 201, reset.text
        assert refreshed.status_code in (200, 401), refreshed.text
        assert confirmed.status_code in (204, 400), confirmed.text
        if refreshed.status_code == 200:  # before the reset: the reset ended it
            assert (await refresh(identity_races, refreshed.json()["refresh_token"])).status_code == 401


async def test_a_login_with_the_old_password_at_the_moment_it_is_changed_opens_no_lasting_session(
    identity_races: Identity,
) -> None:
    for i in range(10):
        body, account = await identity_races.sign_up()
        link = await reset_link_token(identity_races, body, account["id"])
        by_change = i % 2 == 0
        new_password = f"brand new passphrase {i} ok"
        replaced = (
            change(identity_races, body, new_password) if by_change else confirm(identity_races, link, new_password)
        )
        login, done = await asyncio.gather(
            later((i % 5) * 0.004, identity_races.log_in(body["username"], body["password"])), replaced
        )
        assert done.status_code in (200, 204), done.text
        assert login.status_code in (200, 401), login.text
        if login.status_code == 200:  # it came first, and the change ended its session
            assert (await refresh(identity_races, login.json()["refresh_token"])).status_code == 401
