"""A username spelled with look-alike letters (V10): PostgreSQL's lower() folds some non-ASCII
letters onto ASCII ones (``lower('İ')`` is ``i`` here) where Python folds them otherwise, so a
spelling such as ``lİxiaoli`` once found ``lixiaoli`` while the login throttle counted it apart:
a fresh run of guesses per spelling. No account can have such a name (sign-up takes ASCII
letters, digits, ``_ . -``): it is answered as an unknown one, and counted under the name it
imitates."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from identity.admin import create_national_admin
from identity.testing import Identity, StartIdentity
from shared.errors import AppError

WRONG = "wrong wrong wrong"


def a_name() -> str:
    """``lixiaoli`` and a tag without another i: three i's to spell otherwise."""
    return "lixiaoli" + uuid.uuid4().hex[:6].replace("i", "a")


def look_alikes(name: str) -> list[str]:
    """Spellings of ``name`` the lookup's lower() would (or a careless fold might) take for it."""
    dotted = [name[:i] + "\u0130" + name[i + 1 :] for i, ch in enumerate(name) if ch == "i"]  # İ
    return [
        *dotted,
        name.replace("i", "\u0130"),
        name.replace("i", "i\u0307", 1),  # i and a combining dot above
        name.replace("l", "\uff4c", 1),  # a full-width l
    ]


async def test_every_look_alike_spelling_meets_the_lock_of_the_account_it_imitates(
    start_identity: StartIdentity,
) -> None:
    async with start_identity(login_account_free_failures=5, login_address_free_failures=1000) as identity:
        name = a_name()
        body, _ = await identity.sign_up(username=name)
        plain = [(await identity.log_in(name, WRONG)).status_code for _ in range(6)]
        assert plain == [401] * 5 + [429]

        # the right password, locked: 429 whatever the spelling, none of them a way round
        for spelling in [*look_alikes(name), name.upper(), name]:
            response = await identity.log_in(spelling, body["password"])
            assert (response.status_code, response.json()["code"]) == (429, "too_many_attempts"), spelling
            assert "Retry-After" in response.headers


async def test_failures_spread_over_look_alike_spellings_lock_the_account(start_identity: StartIdentity) -> None:
    async with start_identity(login_account_free_failures=5, login_address_free_failures=1000) as identity:
        name = a_name()
        body, _ = await identity.sign_up(username=name)
        spellings = look_alikes(name)
        assert len(spellings) >= 5
        codes = [(await identity.log_in(spelling, WRONG)).status_code for spelling in spellings[:5]]
        assert codes == [401] * 5

        locked = await identity.log_in(name, body["password"])
        assert (locked.status_code, locked.json()["code"]) == (429, "too_many_attempts")
        changed = await identity.client.post(
            "/api/v1/password-changes",
            json={"username": name, "current_password": body["password"], "new_password": "another fine passphrase"},
        )
        assert changed.status_code == 429  # the password change shares the login's lock


async def test_a_look_alike_spelling_never_logs_in_but_another_case_still_does(start_identity: StartIdentity) -> None:
    # (every refused spelling counts against the account: enough free failures to see them all)
    async with start_identity(login_account_free_failures=50, login_address_free_failures=1000) as identity:
        await a_look_alike_spelling_never_logs_in(identity)


async def a_look_alike_spelling_never_logs_in(identity: Identity) -> None:
    name = a_name()
    body, _ = await identity.sign_up(username=name)
    for spelling in look_alikes(name):
        response = await identity.log_in(spelling, body["password"])
        assert (response.status_code, response.json()["code"]) == (401, "invalid_credentials"), spelling
        changed = await identity.client.post(
            "/api/v1/password-changes",
            json={
                "username": spelling,
                "current_password": body["password"],
                "new_password": "another fine passphrase",
            },
        )
        assert (changed.status_code, changed.json()["code"]) == (401, "invalid_credentials"), spelling
    # documented (README, Tokens): the login ignores case where only one account has the name
    assert (await identity.log_in(name.upper(), body["password"])).status_code == 200


async def test_a_reset_by_a_look_alike_spelling_sends_nothing_and_answers_the_same(identity: Identity) -> None:
    name = a_name()
    _, account = await identity.sign_up(username=name)
    for spelling in look_alikes(name):
        response = await identity.client.post("/api/v1/password-resets", json={"username": spelling})
        assert response.status_code == 202
    assert await identity.events("account.password_reset_requested", account["id"]) == []
    unmatched = await identity.fetch(
        "SELECT count(*) FROM audit_log WHERE action = 'password_reset_requested' AND subject_account_id = :a",
        a=uuid.UUID(account["id"]),
    )
    assert unmatched[0][0] == 0  # each was written down as a request that matched nothing

    response = await identity.client.post("/api/v1/password-resets", json={"username": name.upper()})
    assert response.status_code == 202
    assert len(await identity.events("account.password_reset_requested", account["id"])) == 1  # another case finds it


@pytest.mark.parametrize("username", ["管理员", "adm\u0130n", "admin@example.org", "ad"])
async def test_create_admin_refuses_a_username_sign_up_would_refuse(identity: Identity, username: str) -> None:
    details: dict[str, Any] = {"password": "a long national admin passphrase", "display_name": "全国管理员"}
    with pytest.raises(AppError) as refused:
        await create_national_admin(identity.runtime, username=username, email="chief@example.org", **details)
    assert refused.value.spec.code == "username_invalid"
    assert await identity.fetch("SELECT 1 FROM accounts WHERE username = :u", u=username) == []


async def test_a_national_admin_created_under_a_name_sign_up_refuses_still_logs_in_by_it_exactly(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``create-admin`` took any name before it refused them: an admin bootstrapped as
    ``admin@example.org`` was locked out for good when such names stopped being looked up. Found as
    typed it still logs in; another case of it finds nothing (the database's lower() is not asked)."""
    from identity import admin as admin_module

    name = f"chief{uuid.uuid4().hex[:6]}@example.org"
    password = "a long national admin passphrase"
    monkeypatch.setattr(admin_module.usernames, "could_exist", lambda _username: True)  # as before the check
    await create_national_admin(
        identity.runtime, username=name, password=password, email="chief@example.org", display_name="全国管理员"
    )
    monkeypatch.undo()
    assert (await identity.log_in(name, password)).status_code == 200
    other_case = await identity.log_in(name.upper(), password)
    assert (other_case.status_code, other_case.json()["code"]) == (401, "invalid_credentials")
