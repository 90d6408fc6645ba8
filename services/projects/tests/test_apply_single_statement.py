"""The apply hot path writes in one statement that is its own transaction (no BEGIN/COMMIT round
trips): a duplicate or refused application must leave nothing behind, whatever the timing."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from shared.contracts.projects import HoursRecorded

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


async def test_hours_recorded_events_built_in_sql_are_the_contract_s_json(world: World) -> None:
    """Bulk hours write their ``hours.recorded`` outbox rows in the insert statement itself; each
    payload must be exactly what the HoursRecorded model would have written."""
    project = await world.project(positions=[{"name": "引导员", "quota": 5, "admission_mode": "auto"}])
    volunteer_id, _, application_id = await world.admitted_volunteer(project)
    world.clock.set(world.clock.now().replace(day=8))
    rows = [
        {"application_id": application_id, "service_date": "2026-01-06", "minutes": 45},
        {"application_id": application_id, "service_date": "2026-01-08", "minutes": 30},
    ]
    response = await world.client.post(
        f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": rows}, headers=project.lead
    )
    assert response.status_code == 201, response.text
    records = {item["id"]: item for item in response.json()["items"]}
    payloads = [p for p in await world.outbox("hours.recorded") if p["project_id"] == project.id]
    assert len(payloads) == 2
    for payload in payloads:
        assert payload == HoursRecorded.model_validate(payload).model_dump(mode="json")
        assert set(payload) == set(HoursRecorded.model_fields)
        record = records[payload["record_id"]]
        assert payload["account_id"] == str(volunteer_id)
        assert (payload["service_date"], payload["minutes"], payload["late"]) == (
            record["service_date"],
            record["minutes"],
            record["late"],
        )
    async with world.runtime.engine.connect() as conn:
        rows_meta = (
            await conn.execute(
                text(
                    "SELECT aggregate_type, aggregate_id, producer, schema_version FROM outbox "
                    "WHERE event_type = 'hours.recorded' AND payload->>'project_id' = :p"
                ),
                {"p": project.id},
            )
        ).all()
    assert {tuple(r) for r in rows_meta} == {("application", application_id, "projects", 1)}
