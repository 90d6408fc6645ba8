"""Logging in and credentials (V10): tokens, rotation, logout, password policy and hashing,
reset links, throttling, temporary passwords."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from identity.testing import Identity, StartIdentity
from shared.testing import eventually


async def test_login_gives_an_access_token_and_a_refresh_token_that_rotates(identity: Identity) -> None:
    body, account = await identity.sign_up()
    login = await identity.log_in(body["username"], body["password"])
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == identity.settings.access_token_minutes * 60
    me = await identity.me({"Authorization": f"Bearer {tokens['access_token']}"})
    assert me["id"] == account["id"]

    rotated = await identity.client.post("/api/v1/token-refreshes", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    [row] = await identity.fetch(
        "SELECT count(*) FROM refresh_tokens WHERE account_id = :a AND token_hash = :h",
        a=uuid.UUID(account["id"]),
        h=hashlib.sha256(tokens["refresh_token"].encode()).digest(),
    )
    assert row[0] == 1  # stored hashed


async def test_a_reused_refresh_token_ends_the_whole_chain(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    first = (await identity.log_in(body["username"], body["password"])).json()["refresh_token"]
    second = (await identity.client.post("/api/v1/token-refreshes", json={"refresh_token": first})).json()
    replay = await identity.client.post("/api/v1/token-refreshes", json={"refresh_token": first})
    assert replay.status_code == 401
    assert replay.json()["code"] == "refresh_token_reused"
    after = await identity.client.post("/api/v1/token-refreshes", json={"refresh_token": second["refresh_token"]})
    assert after.json()["code"] == "refresh_token_invalid"


async def test_logout_revokes_the_refresh_token(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    refresh = (await identity.log_in(body["username"], body["password"])).json()["refresh_token"]
    out = await identity.client.post("/api/v1/token-revocations", json={"refresh_token": refresh})
    assert out.status_code == 204, out.text
    again = await identity.client.post("/api/v1/token-refreshes", json={"refresh_token": refresh})
    assert again.json()["code"] == "refresh_token_invalid"


async def test_password_change_revokes_every_refresh_token(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    refresh = (await identity.log_in(body["username"], body["password"])).json()["refresh_token"]
    new_password = "a much better passphrase 42"
    changed = await identity.client.post(
        "/api/v1/password-changes",
        json={"username": body["username"], "current_password": body["password"], "new_password": new_password},
    )
    assert changed.status_code == 200, changed.text
    old = await identity.client.post("/api/v1/token-refreshes", json={"refresh_token": refresh})
    assert old.json()["code"] == "refresh_token_invalid"
    assert (await identity.log_in(body["username"], body["password"])).status_code == 401
    assert (await identity.log_in(body["username"], new_password)).status_code == 200


async def test_wrong_password_is_refused_without_saying_which_part_was_wrong(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    wrong = await identity.log_in(body["username"], "not the password at all")
    unknown = await identity.log_in("nobody-" + uuid.uuid4().hex[:8], "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["message"] == "用户名或密码错误"


async def test_jwks_publishes_the_key_that_verifies_access_tokens(identity: Identity) -> None:
    jwks = (await identity.client.get("/.well-known/jwks.json")).json()
    assert jwks["keys"]
    assert all("d" not in key for key in jwks["keys"])  # public halves only


# -- password policy and hashing ------------------------------------------------------------
async def test_password_length_is_between_8_and_128(identity: Identity) -> None:
    for password in ("Ab3$xyz", "Zq8!" * 32 + "x"):
        response = await identity.client.post("/api/v1/accounts", json={**_body(identity), "password": password})
        assert response.status_code == 422
        assert response.json()["code"] == "password_length"
    await identity.sign_up(password="Zq8!" * 32)  # exactly 128


async def test_the_commonest_passwords_are_refused(identity: Identity) -> None:
    for password in ("password123", "qwertyuiop", "iloveyou1"):
        response = await identity.client.post("/api/v1/accounts", json={**_body(identity), "password": password})
        assert response.json()["code"] == "password_too_common"
        assert response.json()["message"] == "密码过于常见,请换一个更难猜的密码"


async def test_passwords_are_stored_as_argon2id_with_the_required_cost(identity: Identity) -> None:
    body, account = await identity.sign_up()
    [row] = await identity.fetch("SELECT password_hash FROM accounts WHERE id = :i", i=uuid.UUID(account["id"]))
    match = re.match(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$", row[0])
    assert match, row[0][:20]
    assert int(match.group(1)) >= 19_456
    assert int(match.group(2)) >= 2
    assert body["password"] not in row[0]


def _body(identity: Identity) -> dict[str, object]:
    from shared.testing import sign_up_body

    return sign_up_body()


# -- reset links ----------------------------------------------------------------------------
async def test_reset_request_answers_the_same_for_known_and_unknown_accounts(identity: Identity) -> None:
    body, account = await identity.sign_up()
    known = await identity.client.post("/api/v1/password-resets", json={"username": body["username"]})
    unknown = await identity.client.post("/api/v1/password-resets", json={"username": "ghost-" + uuid.uuid4().hex[:8]})
    by_email = await identity.client.post("/api/v1/password-resets", json={"email": "ghost@example.org"})
    assert known.status_code == unknown.status_code == by_email.status_code == 202
    assert known.json() == unknown.json() == by_email.json()
    assert len(await identity.events("account.password_reset_requested", account["id"])) == 1


async def test_reset_link_is_one_use_and_stored_only_hashed(identity: Identity) -> None:
    body, account = await identity.sign_up()
    await identity.client.post("/api/v1/password-resets", json={"email": body["email"]})
    [event] = await identity.events("account.password_reset_requested", account["id"])
    token = parse_qs(urlparse(event["reset_url"]).query)["token"][0]
    rows = await identity.fetch(
        "SELECT token_hash FROM password_reset_tokens WHERE account_id = :a", a=uuid.UUID(account["id"])
    )
    assert [bytes(r[0]) for r in rows] == [hashlib.sha256(token.encode()).digest()]

    new_password = "reset to something long"
    done = await identity.client.post(
        "/api/v1/password-resets/confirmations", json={"token": token, "new_password": new_password}
    )
    assert done.status_code == 204, done.text
    assert (await identity.log_in(body["username"], new_password)).status_code == 200
    again = await identity.client.post(
        "/api/v1/password-resets/confirmations", json={"token": token, "new_password": "yet another passphrase"}
    )
    assert again.status_code == 400
    assert again.json()["code"] == "reset_token_invalid"


async def test_a_reset_link_leaves_the_outbox_once_published(identity: Identity) -> None:
    """The event carries the link to notifications; the outbox row, kept for days after, does not
    keep it: a database reader or a backup of those days finds no usable link."""
    body, account = await identity.sign_up()
    await identity.client.post("/api/v1/password-resets", json={"email": body["email"]})
    [event] = await identity.events("account.password_reset_requested", account["id"])
    assert "token=" in event["reset_url"]  # as published

    async def stored() -> Any:
        rows = await identity.fetch(
            "SELECT payload, published_at FROM outbox WHERE event_type = 'account.password_reset_requested' "
            "AND payload->>'account_id' = :a",
            a=account["id"],
        )
        return rows[0] if rows and rows[0][1] is not None else None

    payload, _ = await eventually(stored, timeout=20)
    assert "reset_url" not in payload
    assert payload["account_id"] == account["id"]
    assert "expires_at" in payload
    [registered] = await identity.fetch(
        "SELECT payload FROM outbox WHERE event_type = 'account.registered' AND payload->>'account_id' = :a",
        a=account["id"],
    )
    assert registered[0]["email"] == body["email"]  # other events keep their payload


async def reset_link(identity: Identity, username: str, account_id: str) -> str:
    """Ask for a reset link and return its token (the latest one mailed to the account)."""
    asked = await identity.client.post("/api/v1/password-resets", json={"username": username})
    assert asked.status_code == 202, asked.text
    event = (await identity.events("account.password_reset_requested", account_id))[-1]
    return parse_qs(urlparse(event["reset_url"]).query)["token"][0]


async def confirm(identity: Identity, token: str, new_password: str) -> httpx.Response:
    return await identity.client.post(
        "/api/v1/password-resets/confirmations", json={"token": token, "new_password": new_password}
    )


async def test_reset_link_is_refused_after_the_password_is_changed(identity: Identity) -> None:
    body, account = await identity.sign_up()
    token = await reset_link(identity, body["username"], account["id"])
    changed = await identity.client.post(
        "/api/v1/password-changes",
        json={"username": body["username"], "current_password": body["password"], "new_password": "changed by me 2026"},
    )
    assert changed.status_code == 200, changed.text
    old_link = await confirm(identity, token, "an attacker's passphrase")
    assert old_link.status_code == 400
    assert old_link.json()["code"] == "reset_token_invalid"
    assert (await identity.log_in(body["username"], "changed by me 2026")).status_code == 200


async def test_using_one_reset_link_spends_the_others(identity: Identity) -> None:
    body, account = await identity.sign_up()
    first = await reset_link(identity, body["username"], account["id"])
    second = await reset_link(identity, body["username"], account["id"])
    assert (await confirm(identity, second, "the newest link wins")).status_code == 204
    older = await confirm(identity, first, "the older link must not")
    assert older.json()["code"] == "reset_token_invalid"
    assert (await identity.log_in(body["username"], "the newest link wins")).status_code == 200


async def test_reset_link_is_refused_after_the_national_admins_reset(identity: Identity) -> None:
    body, account = await identity.sign_up()
    token = await reset_link(identity, body["username"], account["id"])
    reset = await identity.client.post(
        f"/api/v1/admin/accounts/{account['id']}/temporary-passwords",
        json={"reason": "本人丢失手机和邮箱,持身份证到窗口办理"},
        headers=identity.national_admin(),
    )
    assert reset.status_code == 201, reset.text
    old_link = await confirm(identity, token, "whoever read the old mailbox")
    assert old_link.json()["code"] == "reset_token_invalid"
    must_change = await identity.log_in(body["username"], reset.json()["temporary_password"])
    assert must_change.json()["code"] == "password_change_required"


async def test_reset_link_expires_after_thirty_minutes(start_identity: StartIdentity) -> None:
    async with start_identity() as identity:
        body, account = await identity.sign_up()
        await identity.client.post("/api/v1/password-resets", json={"username": body["username"]})
        [event] = await identity.events("account.password_reset_requested", account["id"])
        token = parse_qs(urlparse(event["reset_url"]).query)["token"][0]
        identity.clock.advance(minutes=30, seconds=1)
        late = await identity.client.post(
            "/api/v1/password-resets/confirmations", json={"token": token, "new_password": "too late for this one"}
        )
        assert late.json()["code"] == "reset_token_invalid"
        assert (await identity.log_in(body["username"], body["password"])).status_code == 200


# -- throttling -----------------------------------------------------------------------------
async def test_repeated_failures_are_throttled_but_the_owner_gets_back_in_soon(start_identity: StartIdentity) -> None:
    async with start_identity() as identity:
        body, _ = await identity.sign_up()
        for _ in range(identity.settings.login_account_free_failures):
            assert (await identity.log_in(body["username"], "wrong guess here")).status_code == 401
        throttled = await identity.log_in(body["username"], body["password"])
        assert throttled.status_code == 429
        assert throttled.json()["code"] == "too_many_attempts"
        retry_after = int(throttled.headers["Retry-After"])
        assert 0 < retry_after <= identity.settings.login_lock_max_seconds

        # An attacker keeps guessing, each time the lock ends: the lock never exceeds the cap.
        for _ in range(12):
            identity.clock.advance(seconds=identity.settings.login_lock_max_seconds + 1)
            await identity.log_in(body["username"], "wrong guess again")
        [row] = await identity.fetch("SELECT max(locked_until) FROM login_throttle WHERE key LIKE 'account:%'")
        assert row[0] - identity.clock.now() <= timedelta(seconds=identity.settings.login_lock_max_seconds)
        identity.clock.advance(seconds=identity.settings.login_lock_max_seconds + 1)
        assert (await identity.log_in(body["username"], body["password"])).status_code == 200


async def test_one_address_trying_many_accounts_is_throttled(start_identity: StartIdentity) -> None:
    async with start_identity(login_address_free_failures=6) as identity:
        for _ in range(6):
            await identity.log_in("victim-" + uuid.uuid4().hex[:8], "guess guess guess")
        body, _ = await identity.sign_up()
        response = await identity.log_in(body["username"], body["password"])
        assert response.status_code == 429


async def test_right_passwords_from_an_address_past_its_free_failures_neither_lock_it_nor_keep_its_count(
    start_identity: StartIdentity,
) -> None:
    """Attempts are counted before they are checked; a right one takes its count back with the
    lock it set. Behind one address (a school's NAT), each good login after a few typos locked the
    address for everyone, and good logins kept the typos from ageing out."""
    async with start_identity(login_address_free_failures=3, login_account_free_failures=100) as identity:
        first, _ = await identity.sign_up()
        second, _ = await identity.sign_up()
        for n in range(3):  # the third locks the address for 30 s
            assert (await identity.log_in(f"nobody-{n}-{uuid.uuid4().hex[:6]}", "a wrong password")).status_code == 401
        identity.clock.advance(seconds=31)
        assert (await identity.log_in(first["username"], first["password"])).status_code == 200
        assert (await identity.log_in(second["username"], second["password"])).status_code == 200
        for _ in range(2):  # two days of good logins only: the typos age out
            identity.clock.advance(timedelta(hours=20))
            assert (await identity.log_in(first["username"], first["password"])).status_code == 200
        assert (await identity.log_in("nobody-else", "a wrong password")).status_code == 401
        assert (await identity.log_in(second["username"], second["password"])).status_code == 200


async def test_an_attempt_that_could_not_be_judged_is_no_failed_attempt(
    start_identity: StartIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted before its check, an attempt that then fails (the pool, the database) is given
    back: five such, then the right password, got 429 for the owner."""
    from identity import throttle

    async with start_identity() as identity:
        body, _ = await identity.sign_up()
        real = throttle.Throttle.succeeded

        async def unavailable(self: Any, *args: Any) -> None:
            raise TimeoutError("the pool had no connection")

        monkeypatch.setattr(throttle.Throttle, "succeeded", unavailable)
        for _ in range(identity.settings.login_account_free_failures):
            assert (await identity.log_in(body["username"], body["password"])).status_code >= 500
        monkeypatch.setattr(throttle.Throttle, "succeeded", real)
        assert (await identity.log_in(body["username"], body["password"])).status_code == 200


async def test_throttle_stores_no_usernames(identity: Identity) -> None:
    username = "someone-" + uuid.uuid4().hex[:8]
    await identity.log_in(username, "a wrong password")
    rows = await identity.fetch("SELECT key FROM login_throttle")
    assert rows
    assert all(username not in r[0] for r in rows)


# -- temporary passwords --------------------------------------------------------------------
async def test_national_admin_reset_gives_a_temporary_password_that_must_be_changed(identity: Identity) -> None:
    body, account = await identity.sign_up()
    admin_id = uuid.uuid4()
    reset = await identity.client.post(
        f"/api/v1/admin/accounts/{account['id']}/temporary-passwords",
        json={"reason": "本人丢失手机和邮箱,持身份证到窗口办理", "email": "back-" + body["email"]},
        headers=identity.national_admin(admin_id),
    )
    assert reset.status_code == 201, reset.text
    temporary = reset.json()["temporary_password"]
    assert (await identity.log_in(body["username"], body["password"])).status_code == 401
    must_change = await identity.log_in(body["username"], temporary)
    assert must_change.status_code == 403
    assert must_change.json()["code"] == "password_change_required"
    changed = await identity.client.post(
        "/api/v1/password-changes",
        json={"username": body["username"], "current_password": temporary, "new_password": "mine again, and long"},
    )
    assert changed.status_code == 200, changed.text
    [event] = await identity.events("account.temporary_password_set", account["id"])
    assert event["set_by_account_id"] == str(admin_id)
    assert temporary not in str(event)
    audit = await identity.fetch(
        "SELECT actor_id, reason FROM audit_log WHERE action = 'national_credential_reset' AND subject_account_id = :s",
        s=uuid.UUID(account["id"]),
    )
    assert [(a, r) for a, r in audit] == [(admin_id, "本人丢失手机和邮箱,持身份证到窗口办理")]


async def test_only_the_national_admin_resets_credentials(identity: Identity) -> None:
    _, account = await identity.sign_up()
    response = await identity.client.post(
        f"/api/v1/admin/accounts/{account['id']}/temporary-passwords",
        json={"reason": "想看看别人的账号"},
        headers=identity.regional_admin("110000"),
    )
    assert response.status_code == 403


async def test_concurrent_logins_each_get_a_token(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    responses = await asyncio.gather(*(identity.log_in(body["username"], body["password"]) for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4


async def test_simultaneous_logins_beyond_the_pool_size_all_get_in(start_identity: StartIdentity) -> None:
    """A login holds at most one pooled connection at a time: with a 2+2 pool, 8 simultaneous
    logins once all waited for each other until the pool timed out (503 after 30 s)."""
    async with start_identity(database_pool_size=2, database_max_overflow=2) as service:
        bodies = [(await service.sign_up())[0] for _ in range(8)]
        responses = await asyncio.gather(*(service.log_in(b["username"], b["password"]) for b in bodies))
    assert [r.status_code for r in responses] == [200] * 8
