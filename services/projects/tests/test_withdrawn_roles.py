"""A national admin whose role identity withdrew can no longer extend a project late (30-60 days
after closing, P4) with the token they hold: projects keeps the platform roles of
``account.roles_changed`` and bounds the tokens issued before the change. Volunteers' requests
(applying above all) never look roles up.

Identity signs tokens and raises its events on one clock; here both are the service's clock."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from projects.models import platform_roles
from projects.services import close_due_projects
from shared.auth import ROLE_CHANGE_MARGIN_SECONDS, ROLE_NATIONAL_ADMIN, ROLE_VOLUNTEER
from shared.contracts.identity import AccountRolesChanged
from shared.testing import envelope_for, recorded_statements

from .conftest import World

POSITIONS = [{"name": "引导员", "quota": 5, "admission_mode": "auto"}]


async def roles_changed(world: World, account_id: uuid.UUID, roles: list[str], *, at: datetime | None = None) -> None:
    """Identity changed the account's roles at ``at`` (default now): the event through the inbox
    dispatcher, as a delivery from RabbitMQ takes it."""
    change = AccountRolesChanged(account_id=account_id, roles=roles)
    dispatcher = world.runtime.dispatcher
    assert dispatcher is not None
    sub = next(s.subscription for s in dispatcher.handlers.specs.values() if s.subscription.handler == "platform_roles")
    await dispatcher.handle(sub, envelope_for(change, occurred_at=at or world.clock.now()))


async def closed_45_days_ago(world: World) -> str:
    """A project closed by the sweep 45 days ago: only a national admin may still extend it."""
    project = await world.project()
    world.clock.set(world.clock.now().replace(year=2026, month=4, day=1, hour=1))
    await close_due_projects(world.runtime)
    world.clock.advance(days=45)
    return project.id


async def extend(world: World, project_id: str, headers: dict[str, str]) -> Any:
    return await world.client.post(
        f"/api/v1/projects/{project_id}/extensions", json={"new_end_date": "2026-07-31"}, headers=headers
    )


def lookups(seen: list[str]) -> list[str]:
    return [s for s in seen if "platform_roles" in s]


async def test_late_extension_by_a_withdrawn_national_admin_is_refused_with_the_old_token(world: World) -> None:
    project_id = await closed_45_days_ago(world)
    admin_id = uuid.uuid4()
    old_token = world.auth(admin_id, ROLE_NATIONAL_ADMIN)
    world.clock.advance(seconds=30)
    await roles_changed(world, admin_id, [ROLE_VOLUNTEER])

    refused = await extend(world, project_id, old_token)
    assert (refused.status_code, refused.json()["code"]) == (403, "not_team_manager")
    project = (await world.client.get(f"/api/v1/projects/{project_id}")).json()
    assert (project["status"], project["ends_on"]) == ("closed", "2026-03-31")
    assert [p for p in await world.outbox("project.extended") if p["project_id"] == project_id] == []


async def test_token_issued_after_the_change_carries_the_new_roles(world: World) -> None:
    """After the withdrawal identity granted the role again and signed a token with it; the grant's
    event is still on its way. The token stands: it was issued after the change projects knows."""
    project_id = await closed_45_days_ago(world)
    admin_id = uuid.uuid4()
    await roles_changed(world, admin_id, [ROLE_VOLUNTEER])
    world.clock.advance(seconds=ROLE_CHANGE_MARGIN_SECONDS + 1)
    volunteer_again = world.auth(admin_id, ROLE_VOLUNTEER)
    assert (await extend(world, project_id, volunteer_again)).status_code == 403
    granted_again = world.auth(admin_id, ROLE_NATIONAL_ADMIN)
    extended = await extend(world, project_id, granted_again)
    assert extended.status_code == 200, extended.text
    [event_] = [p for p in await world.outbox("project.extended") if p["project_id"] == project_id]
    assert (event_["by_national_admin"], event_["extended_by_account_id"]) == (True, str(admin_id))


async def test_an_older_role_change_arriving_after_a_newer_one_does_not_restore_the_role(world: World) -> None:
    project_id = await closed_45_days_ago(world)
    admin_id = uuid.uuid4()
    issued = world.clock.now()
    old_token = world.auth(admin_id, ROLE_NATIONAL_ADMIN)
    world.clock.advance(seconds=30)
    await roles_changed(world, admin_id, [ROLE_VOLUNTEER])
    # the grant the withdrawal replaced, delivered late (e.g. replayed from a dead-letter queue)
    await roles_changed(world, admin_id, [ROLE_NATIONAL_ADMIN], at=issued + timedelta(seconds=10))

    async with world.runtime.engine.connect() as conn:
        row = (await conn.execute(select(platform_roles).where(platform_roles.c.account_id == admin_id))).one()
    assert row.roles == [ROLE_VOLUNTEER]
    refused = await extend(world, project_id, old_token)
    assert (refused.status_code, refused.json()["code"]) == (403, "not_team_manager")


async def test_volunteer_applying_makes_no_role_lookup(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer = await world.volunteer()
    with recorded_statements(world.runtime.engine) as seen:
        applied = await world.apply(project.position(), volunteer)
        assert applied.status_code == 201, applied.text
        assert (await world.client.get(f"/api/v1/projects/{project.id}", headers=volunteer)).status_code == 200
    assert lookups(seen) == []

    admin_id = uuid.uuid4()
    await roles_changed(world, admin_id, [ROLE_NATIONAL_ADMIN])
    with recorded_statements(world.runtime.engine) as seen:
        shown = await world.client.get(
            f"/api/v1/projects/{project.id}", headers=world.auth(admin_id, ROLE_NATIONAL_ADMIN)
        )
        assert shown.status_code == 200
    assert len(lookups(seen)) == 1
