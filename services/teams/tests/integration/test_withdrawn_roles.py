"""A platform role identity withdraws stops working in teams as soon as ``account.roles_changed``
arrives over RabbitMQ: a token issued before the change is bounded by the roles teams knows now.

Identity signs tokens and raises its events on one clock; here both run on the service's clock, so
"issued before the change" means what it does in production."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from stdnum.cn import uscc

from shared.auth import ROLE_CHANGE_MARGIN_SECONDS, ROLE_REGIONAL_ADMIN, ROLE_VOLUNTEER
from shared.clock import ManualClock
from shared.contracts.identity import AccountRolesChanged
from shared.db import UnitOfWork
from shared.testing import eventually, recorded_statements
from teams.models import RegionAdmin

#: the statement of teams' role lookup (one primary-key read of its read model)
LOOKUP = "SELECT region_admins.roles"


async def roles_changed(
    teams: Any, person: Any, roles: list[str], region: str | None = None, *, at: datetime | None = None
) -> None:
    """Identity changes the account's roles at ``at`` (now, on the clock tokens are signed on); the
    event travels over RabbitMQ and teams has handled it when this returns."""
    uow = UnitOfWork(
        teams.identity.session_factory,
        teams.identity.messaging,
        producer="identity",
        clock=ManualClock(at or teams.clock.now()),
    )
    async with uow:
        uow.raise_event(AccountRolesChanged(account_id=person.account_id, roles=roles, region_code=region))
    [event_id] = uow.committed_event_ids
    inbox = teams.runtime.messaging.inbox

    async def handled() -> bool:
        async with teams.runtime.engine.connect() as conn:
            stmt = select(inbox.c.message_id).where(inbox.c.message_id == event_id, inbox.c.handler == "region_admins")
            return (await conn.execute(stmt)).first() is not None

    await eventually(handled, timeout=30, interval=0.05)


async def regional_admin(teams: Any, region: str) -> Any:
    """A regional admin of ``region`` (a ``Person`` of the conftest), known to teams."""
    person = dataclasses.replace(teams.national_admin(), roles=(ROLE_VOLUNTEER, ROLE_REGIONAL_ADMIN), region=region)
    await roles_changed(teams, person, list(person.roles), region)
    return person


async def social_group(teams: Any, region: str) -> dict[str, Any]:
    """A social group waiting for its registration authority, the regional admins of ``region``."""
    [applicant] = await teams.volunteers(1)
    body = f"51{region}{uuid.uuid4().hex[:9].upper()}"
    response = await teams.register(
        applicant,
        teams.registration(
            region, kind="social_group", uscc=body + uscc.calc_check_digit(body), registration_authority_region=region
        ),
    )
    assert response.status_code == 201, response.text
    team: dict[str, Any] = response.json()
    return team


async def approve(teams: Any, team: dict[str, Any], headers: dict[str, str]) -> Any:
    return await teams.client.post(
        f"/api/v1/teams/{team['id']}/review/decision", json={"outcome": "approved"}, headers=headers
    )


async def waiting(teams: Any, headers: dict[str, str]) -> list[str]:
    response = await teams.client.get("/api/v1/reviews", headers=headers)
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]


async def test_regional_admin_whose_role_is_withdrawn_can_no_longer_approve_with_the_old_token(teams: Any) -> None:
    admin = await regional_admin(teams, "330106")
    team = await social_group(teams, "330106")
    old_token = teams.auth(admin)
    assert team["id"] in await waiting(teams, old_token)

    teams.clock.advance(seconds=30)
    await roles_changed(teams, admin, [ROLE_VOLUNTEER])
    refused = await approve(teams, team, old_token)  # the same token, still valid for minutes
    # no longer its reviewer nor an admin of its region: the team under review is not shown to them
    assert (refused.status_code, refused.json()["code"]) == (404, "team_not_found")
    assert team["id"] not in await waiting(teams, old_token)
    root = await teams.client.post(
        "/api/v1/root-teams",
        json={
            "name": f"西湖区{uuid.uuid4().hex[:6]}志愿服务联合会",
            "region_code": "330106",
            "contact": teams.contact(),
            "liaison_authorised": True,
        },
        headers=old_token,
    )
    assert (root.status_code, root.json()["code"]) == (403, "forbidden")  # as any volunteer gets
    assert await teams.events("team.approved", uuid.UUID(team["id"])) == []


async def test_token_issued_after_the_change_acts_with_the_new_region(teams: Any) -> None:
    admin = await regional_admin(teams, "330106")
    old_token = teams.auth(admin)
    xihu, ningbo = await social_group(teams, "330106"), await social_group(teams, "330203")

    teams.clock.advance(seconds=30)
    await roles_changed(teams, admin, [ROLE_VOLUNTEER, ROLE_REGIONAL_ADMIN], "330200")  # moved to Ningbo
    teams.clock.advance(seconds=1)
    new_token = teams.auth(dataclasses.replace(admin, region="330200"))
    for token in (old_token, new_token):
        refused = await approve(teams, xihu, token)  # Xihu's registration is no longer shown to them
        assert (refused.status_code, refused.json()["code"]) == (404, "team_not_found")
    approved = await approve(teams, ningbo, new_token)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"


async def test_token_issued_after_a_withdrawal_stands_until_the_next_change_arrives(teams: Any) -> None:
    """Identity granted the role again and signed a token with it; its event is still on its way."""
    admin = await regional_admin(teams, "330106")
    teams.clock.advance(seconds=30)
    await roles_changed(teams, admin, [ROLE_VOLUNTEER])
    teams.clock.advance(seconds=ROLE_CHANGE_MARGIN_SECONDS + 1)
    granted_again = teams.auth(admin)
    team = await social_group(teams, "330106")
    approved = await approve(teams, team, granted_again)
    assert approved.status_code == 200, approved.text


async def test_an_older_role_change_arriving_after_a_newer_one_does_not_restore_the_role(teams: Any) -> None:
    admin = await regional_admin(teams, "330106")
    old_token = teams.auth(admin)
    granted_at = teams.clock.now()
    teams.clock.advance(seconds=30)
    await roles_changed(teams, admin, [ROLE_VOLUNTEER])
    # a grant made between the two (redelivered late, e.g. from a dead-letter queue) comes last
    await roles_changed(teams, admin, list(admin.roles), "330106", at=granted_at + timedelta(seconds=10))
    async with teams.runtime.session_factory() as session:
        row = await session.get(RegionAdmin, admin.account_id)
    assert row is not None
    assert (row.roles, row.region_code, row.is_national) == ([ROLE_VOLUNTEER], None, False)
    team = await social_group(teams, "330106")
    refused = await approve(teams, team, old_token)  # not shown to them, let alone theirs to decide
    assert (refused.status_code, refused.json()["code"]) == (404, "team_not_found")
    [registered] = await teams.events("team.registered", uuid.UUID(team["id"]))
    assert str(admin.account_id) not in registered["reviewer_account_ids"]


async def test_volunteer_requests_make_no_role_lookup(teams: Any) -> None:
    [volunteer] = await teams.volunteers(1)
    admin = await regional_admin(teams, "330106")
    with recorded_statements(teams.runtime.engine) as seen:
        mine = await teams.client.get("/api/v1/me/teams", headers=teams.auth(volunteer))
        assert mine.status_code == 200
    assert [s for s in seen if s.startswith(LOOKUP)] == []
    with recorded_statements(teams.runtime.engine) as seen:
        assert (await teams.client.get("/api/v1/me/teams", headers=teams.auth(admin))).status_code == 200
    assert len([s for s in seen if s.startswith(LOOKUP)]) == 1
