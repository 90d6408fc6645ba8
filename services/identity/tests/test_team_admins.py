"""T7 on the identity side: team admins (known from teams' events over RabbitMQ) look up a
volunteer to invite and reset a member's password."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
import pytest

from identity.testing import Identity
from shared.auth import volunteer_match_audience
from shared.contracts.base import Event
from shared.contracts.teams import (
    TeamAdminAppointed,
    TeamAdminRemoved,
    TeamMemberJoined,
    TeamMemberLeft,
    TeamProjectLeadAppointed,
    TeamProjectLeadRemoved,
)
from shared.messaging.amqp import AmqpBroker
from shared.testing import envelope_for, eventually


async def publish_and_wait(identity: Identity, publisher: AmqpBroker, *events: Event) -> None:
    """Publish teams' events and wait until identity's consumer has handled them."""
    envelopes = [envelope_for(e) for e in events]
    for envelope in envelopes:
        await publisher.publish(envelope)
    ids = [e.event_id for e in envelopes]

    async def handled() -> bool:
        rows = await identity.fetch("SELECT count(*) FROM inbox WHERE message_id = ANY(:ids)", ids=ids)
        return bool(rows[0][0] == len(ids))

    await eventually(handled, timeout=30, interval=0.1)


async def team_with_admin(identity: Identity, publisher: AmqpBroker) -> tuple[uuid.UUID, uuid.UUID, dict[str, str]]:
    team_id, admin_id = uuid.uuid4(), uuid.uuid4()
    await publish_and_wait(
        identity,
        publisher,
        TeamMemberJoined(team_id=team_id, account_id=admin_id),
        TeamAdminAppointed(team_id=team_id, account_id=admin_id),
    )
    return team_id, admin_id, identity.bearer(admin_id)


def lookup(body: dict[str, str], **overrides: str) -> dict[str, str]:
    return {"id_number": body["id_number"], "real_name": body["real_name"], **overrides}


async def test_team_admin_finds_a_volunteer_by_id_number_and_name(identity: Identity, publisher: AmqpBroker) -> None:
    _, admin_id, admin = await team_with_admin(identity, publisher)
    body, account = await identity.sign_up(real_name="刘德华")
    number = (await identity.verification(await identity.headers_for(body), "verified"))["verification"][
        "volunteer_number"
    ]
    found = await identity.client.post("/api/v1/volunteer-lookups", json=lookup(body), headers=admin)
    assert found.status_code == 200, found.text
    answer = found.json()
    token, expires_at = answer.pop("match_token"), answer.pop("match_expires_at")
    assert answer == {"volunteer_id": account["id"], "masked_name": "刘**", "volunteer_number": number}
    # the match token (for teams, FAQ V1): the volunteer, made for this admin, for 10 minutes, and
    # nothing personal; never an access token, of the volunteer or anyone
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["act"], claims["roles"]) == (account["id"], str(admin_id), [])
    assert claims["aud"] == volunteer_match_audience(identity.settings.jwt_audience)
    assert claims["exp"] - claims["iat"] == 600
    assert datetime.fromisoformat(expires_at) == identity.clock.now() + timedelta(minutes=10)
    assert body["id_number"] not in str(claims)
    assert "刘" not in str(claims)
    as_access = await identity.client.get("/api/v1/accounts/me", headers={"Authorization": f"Bearer {token}"})
    assert (as_access.status_code, as_access.json()["code"]) == (401, "token_invalid")
    # the lookup's audit row names the token, which teams keeps with the member it brings in
    [(detail,)] = await identity.fetch(
        "SELECT detail FROM audit_log WHERE action = 'volunteer_lookup' AND actor_id = :a", a=admin_id
    )
    assert detail["match_jti"] == claims["jti"]
    audit = await identity.fetch(
        "SELECT subject_account_id, detail FROM audit_log WHERE action = 'volunteer_lookup' AND actor_id = :a",
        a=admin_id,
    )
    assert [(r[0], r[1]["found"]) for r in audit] == [(uuid.UUID(account["id"]), True)]
    assert body["id_number"] not in str(audit)


async def test_lookup_with_the_right_number_but_another_name_finds_nothing(
    identity: Identity, publisher: AmqpBroker
) -> None:
    _, admin_id, admin = await team_with_admin(identity, publisher)
    body, _ = await identity.sign_up(real_name="刘德华")
    response = await identity.client.post(
        "/api/v1/volunteer-lookups", json=lookup(body, real_name="刘得华"), headers=admin
    )
    assert response.status_code == 404
    assert response.json()["code"] == "volunteer_not_found"
    audit = await identity.fetch(
        "SELECT subject_account_id, detail FROM audit_log WHERE action = 'volunteer_lookup' AND actor_id = :a",
        a=admin_id,
    )
    assert [(r[0], r[1]["found"]) for r in audit] == [(None, False)]


async def test_only_team_admins_may_look_up(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    response = await identity.client.post(
        "/api/v1/volunteer-lookups", json=lookup(body), headers=await identity.headers_for(body)
    )
    assert response.status_code == 403
    assert response.json()["code"] == "not_team_admin"


async def test_lookups_are_rate_limited_per_admin(
    identity: Identity, publisher: AmqpBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module's service (a second one would compete for the same queue's messages).
    monkeypatch.setattr(identity.runtime.settings, "lookup_per_hour", 3)
    _, admin_id, admin = await team_with_admin(identity, publisher)
    body, _ = await identity.sign_up()
    statuses = [
        (await identity.client.post("/api/v1/volunteer-lookups", json=lookup(body), headers=admin)).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    assert (await identity.client.post("/api/v1/volunteer-lookups", json=lookup(body), headers=admin)).json()[
        "code"
    ] == "too_many_lookups"
    identity.clock.advance(hours=1, seconds=1)
    again = await identity.client.post(
        "/api/v1/volunteer-lookups", json=lookup(body), headers=identity.bearer(admin_id)
    )
    assert again.status_code == 200


async def test_team_admin_sets_a_temporary_password_for_a_member(identity: Identity, publisher: AmqpBroker) -> None:
    team_id, admin_id, admin = await team_with_admin(identity, publisher)
    body, account = await identity.sign_up()
    member_id = uuid.UUID(account["id"])
    await publish_and_wait(identity, publisher, TeamMemberJoined(team_id=team_id, account_id=member_id))
    reset = await identity.client.post(
        f"/api/v1/teams/{team_id}/members/{member_id}/temporary-passwords", headers=admin
    )
    assert reset.status_code == 201, reset.text
    # not the username: a member who can log in knows it, and the admin needs no way in
    assert reset.json()["username"] is None
    temporary = reset.json()["temporary_password"]
    must_change = await identity.log_in(body["username"], temporary)
    assert must_change.json()["code"] == "password_change_required"
    [event] = await identity.events("account.temporary_password_set", member_id)
    assert (event["set_by_account_id"], event["by_team_id"]) == (str(admin_id), str(team_id))
    changed = await identity.client.post(
        "/api/v1/password-changes",
        json={"username": body["username"], "current_password": temporary, "new_password": "my own long password"},
    )
    assert changed.status_code == 200


async def test_team_admin_cannot_reset_someone_outside_the_team(identity: Identity, publisher: AmqpBroker) -> None:
    team_id, _, admin = await team_with_admin(identity, publisher)
    other_team, _, other_admin = await team_with_admin(identity, publisher)
    _, account = await identity.sign_up()
    member_id = uuid.UUID(account["id"])
    await publish_and_wait(identity, publisher, TeamMemberJoined(team_id=other_team, account_id=member_id))
    not_member = await identity.client.post(
        f"/api/v1/teams/{team_id}/members/{member_id}/temporary-passwords", headers=admin
    )
    assert not_member.status_code == 404
    assert not_member.json()["code"] == "not_team_member"
    not_admin = await identity.client.post(
        f"/api/v1/teams/{team_id}/members/{member_id}/temporary-passwords", headers=other_admin
    )
    assert not_admin.status_code == 403
    assert not_admin.json()["code"] == "not_team_admin"
    await publish_and_wait(identity, publisher, TeamMemberLeft(team_id=other_team, account_id=member_id))
    left = await identity.client.post(
        f"/api/v1/teams/{other_team}/members/{member_id}/temporary-passwords", headers=other_admin
    )
    assert left.json()["code"] == "not_team_member"


async def reset_by(
    identity: Identity, team_id: uuid.UUID, account_id: uuid.UUID, admin: dict[str, str]
) -> httpx.Response:
    return await identity.client.post(
        f"/api/v1/teams/{team_id}/members/{account_id}/temporary-passwords", headers=admin
    )


@pytest.mark.parametrize("role", ["regional_admin", "national_admin", "data_importer"])
async def test_team_admin_cannot_reset_an_account_holding_an_operator_role(
    identity: Identity, publisher: AmqpBroker, role: str
) -> None:
    """An operator who joined a team must not be taken over by that team's admin (T7)."""
    team_id, _, admin = await team_with_admin(identity, publisher)
    body, account = await identity.sign_up()
    member_id = uuid.UUID(account["id"])
    await publish_and_wait(identity, publisher, TeamMemberJoined(team_id=team_id, account_id=member_id))
    granted = await identity.client.put(
        f"/api/v1/admin/accounts/{member_id}/roles",
        json={"roles": [role], "admin_region": "110000" if role == "regional_admin" else None},
        headers=identity.national_admin(),
    )
    assert granted.status_code == 200, granted.text
    refused = await reset_by(identity, team_id, member_id, admin)
    assert refused.status_code == 403
    assert refused.json()["code"] == "reset_requires_national_admin"
    assert refused.json()["detail"]["because"] == "operator_role"
    assert await identity.events("account.temporary_password_set", member_id) == []
    assert (await identity.log_in(body["username"], body["password"])).status_code == 200


async def test_the_username_goes_only_to_an_admin_who_just_found_the_member_by_id_number_and_name(
    identity: Identity, publisher: AmqpBroker
) -> None:
    """FAQ V1: the owner, told "already registered", does not know their username; the admin who
    found the account with their ID number and name gives it to them with the password."""
    team_id, admin_id, admin = await team_with_admin(identity, publisher)
    body, account = await identity.sign_up(real_name="刘德华")
    member_id = uuid.UUID(account["id"])
    await publish_and_wait(identity, publisher, TeamMemberJoined(team_id=team_id, account_id=member_id))
    found = await identity.client.post("/api/v1/volunteer-lookups", json=lookup(body), headers=admin)
    assert found.status_code == 200, found.text

    identity.clock.advance(minutes=59)
    within = await reset_by(identity, team_id, member_id, identity.bearer(admin_id))  # a token of the hour
    identity.clock.advance(minutes=2)
    after = await reset_by(identity, team_id, member_id, identity.bearer(admin_id))

    assert (within.status_code, within.json()["username"]) == (201, body["username"])
    assert (after.status_code, after.json()["username"]) == (201, None)
    audit = await identity.fetch(
        "SELECT detail FROM audit_log WHERE action = 'team_admin_password_reset' AND subject_account_id = :a "
        "ORDER BY at",
        a=member_id,
    )
    assert [row[0]["username_given"] for row in audit] == [True, False]


async def with_a_role_elsewhere(
    identity: Identity, publisher: AmqpBroker, team_id: uuid.UUID, role: type[Event], other_team: uuid.UUID
) -> tuple[dict[str, Any], uuid.UUID]:
    """A new account holding ``role`` (admin or project lead) in ``other_team``, brought into ``team_id``
    (FAQ V1: an admin may bring in anyone whose ID number and name they know)."""
    body, account = await identity.sign_up()
    account_id = uuid.UUID(account["id"])
    await publish_and_wait(
        identity,
        publisher,
        TeamMemberJoined(team_id=other_team, account_id=account_id),
        role(team_id=other_team, account_id=account_id),
        TeamMemberJoined(team_id=team_id, account_id=account_id),
    )
    return body, account_id


async def test_an_admin_of_another_team_brought_into_this_one_cannot_be_reset_by_its_admin(
    identity: Identity, publisher: AmqpBroker
) -> None:
    """Were an admin of another team resettable, that team would be taken over with its admin's account."""
    team_id, _, admin = await team_with_admin(identity, publisher)
    body, other_admin_id = await with_a_role_elsewhere(identity, publisher, team_id, TeamAdminAppointed, uuid.uuid4())

    refused = await reset_by(identity, team_id, other_admin_id, admin)

    assert (refused.status_code, refused.json()["code"]) == (403, "reset_requires_national_admin")
    assert refused.json()["detail"]["because"] == "team_admin"
    assert (await identity.log_in(body["username"], body["password"])).status_code == 200


async def test_a_project_lead_of_another_team_cannot_be_reset_by_a_team_admin_until_no_longer_one(
    identity: Identity, publisher: AmqpBroker
) -> None:
    """Leading a team's projects (admissions, hours) is a role too: an account brought into this team
    that leads another team's projects goes through the national admin's reset."""
    team_id, _, admin = await team_with_admin(identity, publisher)
    other_team = uuid.uuid4()
    _, lead_id = await with_a_role_elsewhere(identity, publisher, team_id, TeamProjectLeadAppointed, other_team)

    refused = await reset_by(identity, team_id, lead_id, admin)
    await publish_and_wait(identity, publisher, TeamProjectLeadRemoved(team_id=other_team, account_id=lead_id))
    allowed = await reset_by(identity, team_id, lead_id, admin)

    assert (refused.status_code, refused.json()["detail"]["because"]) == (403, "project_lead")
    assert allowed.status_code == 201, allowed.text


async def test_team_admin_cannot_reset_another_admin_of_the_team(identity: Identity, publisher: AmqpBroker) -> None:
    team_id, _, admin = await team_with_admin(identity, publisher)
    body, account = await identity.sign_up()
    other_admin_id = uuid.UUID(account["id"])
    await publish_and_wait(
        identity,
        publisher,
        TeamMemberJoined(team_id=team_id, account_id=other_admin_id),
        TeamAdminAppointed(team_id=team_id, account_id=other_admin_id),
    )
    refused = await reset_by(identity, team_id, other_admin_id, admin)
    assert refused.status_code == 403
    assert refused.json()["code"] == "reset_requires_national_admin"
    assert refused.json()["detail"]["because"] == "team_admin"
    assert refused.json()["message"] == (
        "该账号是管理员或项目负责人账号,团体管理员不能重置其密码,请联系全国系统管理员重置"
    )
    assert (await identity.log_in(body["username"], body["password"])).status_code == 200
    # Once no longer an admin of the team, a plain member again.
    await publish_and_wait(identity, publisher, TeamAdminRemoved(team_id=team_id, account_id=other_admin_id))
    assert (await reset_by(identity, team_id, other_admin_id, admin)).status_code == 201


async def test_team_admin_reset_spends_the_members_reset_links(identity: Identity, publisher: AmqpBroker) -> None:
    team_id, _, admin = await team_with_admin(identity, publisher)
    body, account = await identity.sign_up()
    member_id = uuid.UUID(account["id"])
    await publish_and_wait(identity, publisher, TeamMemberJoined(team_id=team_id, account_id=member_id))
    await identity.client.post("/api/v1/password-resets", json={"username": body["username"]})
    [event] = await identity.events("account.password_reset_requested", member_id)
    token = parse_qs(urlparse(event["reset_url"]).query)["token"][0]
    assert (await reset_by(identity, team_id, member_id, admin)).status_code == 201
    old_link = await identity.client.post(
        "/api/v1/password-resets/confirmations", json={"token": token, "new_password": "someone else's choice"}
    )
    assert old_link.json()["code"] == "reset_token_invalid"


async def test_an_appointment_replayed_after_the_removal_that_followed_it_leaves_the_admin_removed(
    identity: Identity, publisher: AmqpBroker
) -> None:
    """Teams' events carry their outbox sequence; one delivered late (a dead letter replayed after
    the flag changed again) changes nothing, so a removed admin does not get the lookups back."""
    team_id, admin_id = uuid.uuid4(), uuid.uuid4()
    joined, appointed, removed = (
        envelope_for(event, sequence=sequence)
        for event, sequence in (
            (TeamMemberJoined(team_id=team_id, account_id=admin_id), 101),
            (TeamAdminAppointed(team_id=team_id, account_id=admin_id), 102),
            (TeamAdminRemoved(team_id=team_id, account_id=admin_id), 103),
        )
    )
    for envelope in (joined, appointed, removed, appointed.model_copy(update={"event_id": uuid.uuid4()})):
        await publisher.publish(envelope)

        async def handled(event_id: uuid.UUID = envelope.event_id) -> bool:
            rows = await identity.fetch("SELECT count(*) FROM inbox WHERE message_id = :id", id=event_id)
            return bool(rows[0][0])

        await eventually(handled, timeout=30, interval=0.1)
    [(member, admin)] = await identity.fetch(
        "SELECT member, admin FROM team_memberships WHERE team_id = :t AND account_id = :a", t=team_id, a=admin_id
    )
    assert (member, admin) == (True, False)
    body, _ = await identity.sign_up()
    refused = await identity.client.post(
        "/api/v1/volunteer-lookups", json=lookup(body), headers=identity.bearer(admin_id)
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "not_team_admin")
