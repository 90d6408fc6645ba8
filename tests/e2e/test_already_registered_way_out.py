"""End to end (V2, T7, FAQ V1), the four services over real HTTP, RabbitMQ and SMTP: someone told at
sign-up that their ID number is already registered (years ago, at a big event) gives a team admin
their ID number and name; the admin finds the account in identity, brings it into the team in teams
at once, sets a temporary password from the member list in identity, and gives them the username
with it; they log in, choose their own password, and update their details. The account's own
email address hears that it was brought in, and of the new password, without it."""

from __future__ import annotations

import uuid

import httpx

from shared.testing import SmtpServer, sign_up_body
from tests.abuse.stack import OpenStack, Stack, created


async def test_an_already_registered_volunteer_gets_back_in_through_a_team_admin(
    open_stack: OpenStack, smtp_server: SmtpServer
) -> None:
    async with open_stack() as stack, httpx.AsyncClient(timeout=30) as client:
        await way_out(stack, client, smtp_server)


async def way_out(stack: Stack, client: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    identity, teams = stack.url("identity"), stack.url("teams")
    admin, national = stack.users["volunteer"], stack.users["national_admin"]
    # registered long ago, details forgotten since
    first = sign_up_body(real_name="陈志远")
    registered = await client.post(f"{identity}/api/v1/accounts", json=first)
    assert registered.status_code == 201, registered.text
    account_id = registered.json()["id"]

    # 1. signing up again: refused, with the way out
    again = await client.post(
        f"{identity}/api/v1/accounts", json={**sign_up_body(real_name="陈志远"), "id_number": first["id_number"]}
    )
    assert (again.status_code, again.json()["code"]) == (409, "id_number_already_registered")
    assert again.json()["message"] == "使用该证件号码的志愿者已经注册过"
    assert "重置密码" in again.json()["detail"]["way_out"]["zh"]

    # 2. a team admin's team (a root team the national admin made, approved at once)
    team = await created(
        client,
        "POST",
        f"{teams}/api/v1/root-teams",
        national,
        status=201,
        json={
            "name": f"朝阳{uuid.uuid4().hex[:6]}志愿服务联合会",
            "region_code": "110105",
            "contact": {
                "person": "王老师",
                "phone": "010-88886666",
                "email": "team@example.org",
                "address": "朝阳区1号",
            },
            "admin_account_id": str(admin.account_id),
        },
    )

    # 3. the admin finds the account by the ID number and name the volunteer gave
    found = await created(
        client,
        "POST",
        f"{identity}/api/v1/volunteer-lookups",
        admin,
        status=200,
        json={"id_number": first["id_number"], "real_name": "陈志远"},
    )
    assert (found["volunteer_id"], found["masked_name"]) == (account_id, "陈**")

    # 4. and brings it into the team at once: its owner cannot log in to accept an invitation
    member = await created(
        client,
        "POST",
        f"{teams}/api/v1/teams/{team['id']}/members",
        admin,
        status=201,
        json={"match_token": found["match_token"]},
    )
    assert member["account_id"] == account_id

    # 5. from the member list, a temporary password (once identity heard of the membership)
    reset = await created(
        client,
        "POST",
        f"{identity}/api/v1/teams/{team['id']}/members/{account_id}/temporary-passwords",
        admin,
        status=201,
    )
    assert reset["username"] == first["username"]

    # 6. the volunteer logs in with what the admin gave, chooses a password, updates their details
    tokens = f"{identity}/api/v1/tokens"
    must_change = await client.post(
        tokens, json={"username": reset["username"], "password": reset["temporary_password"]}
    )
    assert must_change.json()["code"] == "password_change_required"
    changed = await client.post(
        f"{identity}/api/v1/password-changes",
        json={
            "username": reset["username"],
            "current_password": reset["temporary_password"],
            "new_password": "my own passphrase again 2026",
        },
    )
    assert changed.status_code == 200, changed.text
    logged_in = await client.post(
        tokens, json={"username": first["username"], "password": "my own passphrase again 2026"}
    )
    assert logged_in.status_code == 200, logged_in.text
    headers = {"Authorization": f"Bearer {logged_in.json()['access_token']}"}
    updated = await client.patch(f"{identity}/api/v1/accounts/me", json={"mobile": "13912345678"}, headers=headers)
    assert (updated.status_code, updated.json()["mobile"]) == (200, "13912345678")

    # 7. the account's own address was told it was brought into the team, and that a temporary
    # password was set, never what it is
    await smtp_server.wait_for(lambda m: first["email"] in m.rcpt_tos and team["name"] in m.subject, timeout=30)
    [notice] = await smtp_server.wait_for(
        lambda m: first["email"] in m.rcpt_tos and "临时密码" in m.subject, timeout=30
    )
    assert reset["temporary_password"] not in notice.text() + notice.html()
