"""What the national admin does: roles, the first admin's bootstrap, finding accounts, the audit log."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from identity.admin import create_national_admin
from identity.testing import Identity, StartIdentity

ROLES_URL = "/api/v1/admin/accounts/{}/roles"


async def test_first_national_admin_is_created_and_logs_in_with_the_role(identity: Identity) -> None:
    username = "admin-" + uuid.uuid4().hex[:8]
    account_id = await create_national_admin(
        identity.runtime,
        username=username,
        password="a long national admin passphrase",
        email=f"{username}@example.org",
        display_name="全国管理员",
    )
    headers = await identity.headers_for({"username": username, "password": "a long national admin passphrase"})
    me = await identity.me(headers)
    assert (me["id"], me["roles"], me["verification"]) == (str(account_id), ["national_admin"], None)
    cases = await identity.client.get("/api/v1/admin/duplicate-cases", headers=headers)
    assert cases.status_code == 200
    # a staff account: notifications keeps its address but does not greet it as a volunteer
    [registered] = await identity.events("account.registered", account_id)
    assert registered["staff"] is True


async def test_a_volunteer_sign_up_is_not_marked_staff(identity: Identity) -> None:
    _, account = await identity.sign_up()
    [registered] = await identity.events("account.registered", account["id"])
    assert registered["staff"] is False


async def run_create_admin(database_url: str, username: str, password: str) -> tuple[int, str, str]:
    env = {**os.environ, "IDENTITY_ADMIN_PASSWORD": password, "IDENTITY_ENVIRONMENT": "test"}
    env["IDENTITY_DATABASE_URL"] = database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "identity",
        "create-admin",
        "--username",
        username,
        "--email",
        f"{username}@example.org",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_create_admin_command_migrates_and_creates_the_first_national_admin(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    url = await database_factory("identity_cli")
    weak = await run_create_admin(url, "root-admin", "123456")
    assert weak[0] == 1
    assert "password_length" in weak[2]
    code, out, _ = await run_create_admin(url, "root-admin", "a long national admin passphrase")
    assert code == 0
    account_id = uuid.UUID(out.strip().splitlines()[-1])
    again = await run_create_admin(url, "root-admin", "another long passphrase")
    assert (again[0], "username_taken" in again[2]) == (1, True)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        roles = await conn.fetchval("SELECT roles FROM accounts WHERE id = $1", account_id)
    finally:
        await conn.close()
    assert roles == ["national_admin"]


async def test_national_admin_grants_a_regional_admin_its_region(identity: Identity) -> None:
    body, account = await identity.sign_up()
    granted = await identity.client.put(
        ROLES_URL.format(account["id"]),
        json={"roles": ["regional_admin"], "admin_region": "110000"},
        headers=identity.national_admin(),
    )
    assert granted.status_code == 200, granted.text
    assert (granted.json()["roles"], granted.json()["admin_region"]) == (["regional_admin", "volunteer"], "110000")
    [event] = await identity.events("account.roles_changed", account["id"])
    assert (event["roles"], event["region_code"]) == (["regional_admin", "volunteer"], "110000")
    # The next login carries the role and region: the admin sees the region's review queue.
    headers = await identity.headers_for(body)
    assert (await identity.client.get("/api/v1/admin/id-card-reviews", headers=headers)).status_code == 200


async def test_regional_admin_needs_a_known_region(identity: Identity) -> None:
    _, account = await identity.sign_up()
    for region in (None, "999999"):
        response = await identity.client.put(
            ROLES_URL.format(account["id"]),
            json={"roles": ["regional_admin"], "admin_region": region},
            headers=identity.national_admin(),
        )
        assert response.status_code == 422
        assert response.json()["code"] in {"role_invalid", "validation_failed"}


async def test_only_the_national_admin_changes_roles(identity: Identity) -> None:
    body, account = await identity.sign_up()
    response = await identity.client.put(
        ROLES_URL.format(account["id"]),
        json={"roles": ["national_admin"]},
        headers=await identity.headers_for(body),
    )
    assert response.status_code == 403


async def test_admin_finds_an_account_by_id_number_with_a_reason_and_sees_it_masked(identity: Identity) -> None:
    body, account = await identity.sign_up(region_code="110105")
    admin_id = uuid.uuid4()
    search = {"id_number": body["id_number"], "reason": "本人来电,核实账号"}
    found = await identity.client.post(
        "/api/v1/admin/account-searches", json=search, headers=identity.national_admin(admin_id)
    )
    assert found.status_code == 200, found.text
    [item] = found.json()["items"]
    assert item["id"] == account["id"]
    assert body["id_number"] not in found.text
    elsewhere = await identity.client.post(
        "/api/v1/admin/account-searches", json=search, headers=identity.regional_admin("310000")
    )
    assert elsewhere.json()["items"] == []
    both = await identity.client.post(
        "/api/v1/admin/account-searches",
        json={**search, "username": body["username"]},
        headers=identity.national_admin(),
    )
    assert both.status_code == 422

    log = await identity.client.get(
        "/api/v1/admin/audit-entries",
        params={"actor_id": str(admin_id), "action": "account_search"},
        headers=identity.national_admin(),
    )
    assert log.status_code == 200
    [entry] = log.json()["items"]
    assert (entry["subject_account_id"], entry["reason"]) == (account["id"], "本人来电,核实账号")
    assert body["id_number"] not in log.text


async def test_audit_log_pages_newest_first_and_is_for_the_national_admin_only(identity: Identity) -> None:
    _, account = await identity.sign_up()
    admin = identity.national_admin()
    for reason in ("第一次核对", "第二次核对", "第三次核对"):
        identity.clock.advance(seconds=1)
        await identity.client.post(
            f"/api/v1/admin/accounts/{account['id']}/id-number-disclosures", json={"reason": reason}, headers=admin
        )
    params = {"subject_account_id": account["id"], "action": "id_number_disclosed", "limit": 2}
    first = (await identity.client.get("/api/v1/admin/audit-entries", params=params, headers=admin)).json()
    assert [e["reason"] for e in first["items"]] == ["第三次核对", "第二次核对"]
    second = (
        await identity.client.get(
            "/api/v1/admin/audit-entries", params={**params, "cursor": first["next_cursor"]}, headers=admin
        )
    ).json()
    assert [e["reason"] for e in second["items"]] == ["第一次核对"]
    assert second["next_cursor"] is None
    regional = await identity.client.get(
        "/api/v1/admin/audit-entries", params=params, headers=identity.regional_admin("110000")
    )
    assert regional.status_code == 403


async def test_the_last_national_admin_keeps_the_role_until_another_account_has_it(
    start_identity: StartIdentity,
) -> None:
    async with start_identity() as fresh:  # a database whose national admins this test knows
        _, first = await fresh.sign_up()
        _, second = await fresh.sign_up()
        admin = fresh.national_admin()
        granted = await fresh.client.put(
            ROLES_URL.format(first["id"]), json={"roles": ["national_admin"]}, headers=admin
        )
        assert granted.status_code == 200, granted.text

        refused = await fresh.client.put(ROLES_URL.format(first["id"]), json={"roles": ["volunteer"]}, headers=admin)
        assert refused.status_code == 409
        assert refused.json()["code"] == "last_national_admin"

        await fresh.client.put(ROLES_URL.format(second["id"]), json={"roles": ["national_admin"]}, headers=admin)
        demoted = await fresh.client.put(ROLES_URL.format(first["id"]), json={"roles": ["volunteer"]}, headers=admin)
        assert demoted.status_code == 200, demoted.text
        assert demoted.json()["roles"] == ["volunteer"]
