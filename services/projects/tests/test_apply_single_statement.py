"""The apply hot path writes in one statement that is its own transaction (no BEGIN/COMMIT round
trips): a duplicate or refused application must leave nothing behind, whatever the timing."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from .conftest import World

AUTO = [{"name": "引导员", "quota": 3, "admission_mode": "auto"}]


async def _admitted_counter(world: World, position_id: str) -> int:
    async with world.runtime.engine.connect() as conn:
        result = await conn.execute(text("SELECT admitted FROM positions WHERE id = :id"), {"id": position_id})
        return int(result.scalar_one())


async def _events_of(world: World, event_type: str, account_id: uuid.UUID) -> int:
    return sum(1 for p in await world.outbox(event_type) if p["account_id"] == str(account_id))


async def test_applying_twice_to_an_auto_position_keeps_one_place_and_one_set_of_events(world: World) -> None:
    project = await world.project(positions=AUTO)
    volunteer_id, volunteer = await world.volunteer()
    first = await world.apply(project.position(), volunteer)
    again = await world.apply(project.position(), volunteer)
    assert first.json()["stage"] == "admitted"
    assert again.status_code == 409
    assert again.json()["code"] == "already_applied"
    assert await _admitted_counter(world, project.position()) == 1
    assert await _events_of(world, "application.submitted", volunteer_id) == 1
    assert await _events_of(world, "application.admitted", volunteer_id) == 1


async def test_a_double_click_on_apply_takes_one_place_only(world: World) -> None:
    """Ten identical requests at once: one application, one place; the others are refused and the
    places they took inside their statement are not kept."""
    project = await world.project(positions=AUTO)
    volunteer_id, volunteer = await world.volunteer()
    answers = await asyncio.gather(*(world.apply(project.position(), volunteer) for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 9
    assert await _admitted_counter(world, project.position()) == 1
    assert await _events_of(world, "application.submitted", volunteer_id) == 1
    assert await _events_of(world, "application.admitted", volunteer_id) == 1
    # the two places left are still there for others
    for _ in range(2):
        _, other = await world.volunteer()
        assert (await world.apply(project.position(), other)).json()["stage"] == "admitted"
    _, late = await world.volunteer()
    assert (await world.apply(project.position(), late)).json()["stage"] == "applied"


async def test_a_refused_application_takes_no_place_and_raises_no_event(world: World) -> None:
    project = await world.project(positions=AUTO)
    unverified_id, unverified = await world.volunteer(verified=False)
    refused = await world.apply(project.position(), unverified)
    assert refused.status_code == 403
    assert await _admitted_counter(world, project.position()) == 0
    assert await _events_of(world, "application.submitted", unverified_id) == 0
