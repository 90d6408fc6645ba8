"""FAQ V1 / T7 on the teams side: a volunteer told "already registered" cannot log in, so a team admin
who found their account by ID number and name (identity's lookup and its match token) brings it into
the team at once, where an invitation would wait for an answer that cannot come. Only the admin the
token was made for, within its 10 minutes; never as anyone's access token."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import select

from shared.auth import TokenSigner, issue_volunteer_match
from shared.testing import signing_key_pem
from teams.models import Invitation


def match(teams: Any, volunteer: Any, admin: Any, signer: TokenSigner | None = None) -> str:
    token, _, _ = issue_volunteer_match(signer or teams.signer, volunteer.account_id, admin.account_id)
    return token


async def add(teams: Any, team_id: str, admin: Any, token: str) -> Any:
    return await teams.client.post(
        f"/api/v1/teams/{team_id}/members", json={"match_token": token}, headers=teams.auth(admin)
    )


async def test_an_admin_brings_a_found_volunteer_into_the_team_at_once(teams: Any) -> None:
    [admin, volunteer] = await teams.volunteers(2)
    team = await teams.approved_team(admin)  # even a team that rejects applications
    invited = await teams.client.post(
        f"/api/v1/teams/{team['id']}/invitations",
        json={"account_id": str(volunteer.account_id)},
        headers=teams.auth(admin),
    )
    assert invited.status_code == 201, invited.text

    token, _, token_id = issue_volunteer_match(teams.signer, volunteer.account_id, admin.account_id)
    added = await add(teams, team["id"], admin, token)

    assert added.status_code == 201, added.text
    assert (added.json()["account_id"], added.json()["is_admin"]) == (str(volunteer.account_id), False)
    assert added.json()["volunteer_number"] == volunteer.volunteer_number
    members = await teams.client.get(f"/api/v1/teams/{team['id']}/members", headers=teams.auth(admin))
    assert str(volunteer.account_id) in [m["account_id"] for m in members.json()["items"]]
    joined = await teams.events("team.member_joined", team["id"])
    # who brought them in, and where: the volunteer is emailed about it (notifications)
    assert {(e["account_id"], e["added_by_account_id"], e["team_name"]) for e in joined} == {
        (str(admin.account_id), None, None),
        (str(volunteer.account_id), str(admin.account_id), team["name"]),
    }
    # who brought them in is kept, as an invitation accepted when made; the open one is closed
    async with teams.runtime.session_factory() as session:
        rows = await session.execute(
            select(Invitation.status, Invitation.invited_by, Invitation.match_jti).where(
                Invitation.team_id == uuid.UUID(team["id"]), Invitation.account_id == volunteer.account_id
            )
        )
        # the match token's id, also in identity's audit row of the lookup that issued it
        assert sorted(rows.all()) == [("accepted", admin.account_id, token_id), ("closed", admin.account_id, None)]
    again = await add(teams, team["id"], admin, match(teams, volunteer, admin))
    assert (again.status_code, again.json()["code"]) == (409, "volunteer_already_member")


async def test_a_match_made_for_another_admin_expired_forged_or_an_access_token_is_refused(teams: Any) -> None:
    [admin, other_admin, volunteer] = await teams.volunteers(3)
    team = await teams.approved_team(admin)
    foreign = TokenSigner(signing_key_pem(), issuer=teams.signer.issuer, audience=teams.signer.audience)
    stale = match(teams, volunteer, admin)
    teams.clock.advance(seconds=10 * 60 + 31)  # past the 10 minutes and the 30 s leeway
    refused = {
        "another admin's": await add(teams, team["id"], admin, match(teams, volunteer, other_admin)),
        "expired": await add(teams, team["id"], admin, stale),
        "forged": await add(teams, team["id"], admin, match(teams, volunteer, admin, foreign)),
        "the volunteer's access token": await add(
            teams, team["id"], admin, teams.auth(volunteer)["Authorization"].removeprefix("Bearer ")
        ),
        "the admin's access token": await add(
            teams, team["id"], admin, teams.auth(admin)["Authorization"].removeprefix("Bearer ")
        ),
    }

    assert {name: (r.status_code, r.json()["code"]) for name, r in refused.items()} == dict.fromkeys(
        refused, (422, "volunteer_match_invalid")
    )
    members = await teams.client.get(f"/api/v1/teams/{team['id']}/members", headers=teams.auth(admin))
    assert [m["account_id"] for m in members.json()["items"]] == [str(admin.account_id)]


async def test_a_match_token_is_never_anyone_s_access_token(teams: Any) -> None:
    [admin, volunteer] = await teams.volunteers(2)

    response = await teams.client.get(
        "/api/v1/me/teams", headers={"Authorization": f"Bearer {match(teams, volunteer, admin)}"}
    )

    assert (response.status_code, response.json()["code"]) == (401, "token_invalid")


async def test_only_the_team_s_admins_bring_volunteers_in_and_only_known_volunteers(teams: Any) -> None:
    [admin, outsider, volunteer] = await teams.volunteers(3)
    team = await teams.approved_team(admin)

    not_admin = await add(teams, team["id"], outsider, match(teams, volunteer, outsider))
    unverified = await add(teams, team["id"], admin, match(teams, type(volunteer)(uuid.uuid4()), admin))
    no_team = await add(teams, str(uuid.uuid4()), admin, match(teams, volunteer, admin))
    malformed = await add(teams, team["id"], admin, "not a token")

    assert (not_admin.status_code, not_admin.json()["code"]) == (403, "not_team_admin")
    # teams knows verified volunteers only: an account never verified goes through the national admin
    assert (unverified.status_code, unverified.json()["code"]) == (404, "volunteer_not_found")
    assert (no_team.status_code, no_team.json()["code"]) == (404, "team_not_found")
    assert (malformed.status_code, malformed.json()["code"]) == (422, "validation_failed")


async def test_a_team_under_review_takes_no_members_this_way(teams: Any) -> None:
    [liaison_admin, applicant, volunteer] = await teams.volunteers(3)
    city = await teams.root_team("330100", liaison_admin)
    pending = await teams.register(applicant, teams.registration("330106", city["id"]))
    assert pending.status_code == 201, pending.text

    added = await add(teams, pending.json()["id"], applicant, match(teams, volunteer, applicant))

    assert (added.status_code, added.json()["code"]) == (409, "team_not_approved")


async def test_a_match_token_brings_its_volunteer_into_one_team_once(teams: Any) -> None:
    [admin, volunteer] = await teams.volunteers(2)
    first, second = await teams.approved_team(admin), await teams.approved_team(admin)
    token = match(teams, volunteer, admin)
    assert (await add(teams, first["id"], admin, token)).status_code == 201

    again = await add(teams, second["id"], admin, token)

    assert (again.status_code, again.json()["code"]) == (409, "volunteer_match_used")
    assert "重新查找" in again.json()["message"]
    members = await teams.client.get(f"/api/v1/teams/{second['id']}/members", headers=teams.auth(admin))
    assert str(volunteer.account_id) not in [m["account_id"] for m in members.json()["items"]]
    # another lookup brings them into the other team
    assert (await add(teams, second["id"], admin, match(teams, volunteer, admin))).status_code == 201


async def test_one_match_token_used_for_two_teams_at_once_adds_the_volunteer_to_one(teams: Any) -> None:
    [admin, volunteer] = await teams.volunteers(2)
    first, second = await teams.approved_team(admin), await teams.approved_team(admin)
    token = match(teams, volunteer, admin)

    # two teams' rows locked by two requests: the unique index on the token's id decides
    answers = await asyncio.gather(add(teams, first["id"], admin, token), add(teams, second["id"], admin, token))

    assert sorted((r.status_code, r.json().get("code")) for r in answers) == [
        (201, None),
        (409, "volunteer_match_used"),
    ]
    teams_with_the_volunteer = []
    for team in (first, second):
        members = await teams.client.get(f"/api/v1/teams/{team['id']}/members", headers=teams.auth(admin))
        if str(volunteer.account_id) in [m["account_id"] for m in members.json()["items"]]:
            teams_with_the_volunteer.append(team["id"])
    assert len(teams_with_the_volunteer) == 1  # the refused one kept nothing of the add
    joined = [e for t in (first, second) for e in await teams.events("team.member_joined", t["id"])]
    assert [e["account_id"] for e in joined].count(str(volunteer.account_id)) == 1
