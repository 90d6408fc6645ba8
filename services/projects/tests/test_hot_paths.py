"""The surge's hot paths answer exactly what the models they skip would have: the apply response,
the bulk hours response written straight from the rows, route matching with the hot routes first,
and bulk recordings that stay right once the statements' plans are custom-made."""

from __future__ import annotations

import asyncio
import gc
import uuid
from datetime import date

from sqlalchemy import text

from projects import repository as repo
from projects import services
from projects.api import routes
from projects.api import schemas as sch
from shared import service
from shared.auth import ROLE_VOLUNTEER, Principal

from .conftest import World

POSITIONS = [{"name": "引导员", "quota": 50, "admission_mode": "auto"}]


def test_bulk_hours_json_is_the_models_json() -> None:
    rows = [
        {
            "id": uuid.uuid4(),
            "application_id": uuid.uuid4(),
            "account_id": uuid.uuid4(),
            "service_date": date(2026, 1, 5 + i % 3),
            "minutes": 30 + i,
            "late": i % 2 == 0,
            "notified": "",
        }
        for i in range(7)
    ]
    items = [sch.HoursOut.model_validate(r) for r in rows]
    expected = sch.BulkHoursOut(recorded=7, late=4, items=items).model_dump_json().encode()
    assert routes._bulk_hours_json(rows) == expected


def test_the_hot_routes_are_tried_first_and_are_still_documented() -> None:
    first = [(sorted(r.methods), r.path) for r in routes.router.routes[:2]]  # type: ignore[attr-defined]
    assert first == [
        (["POST"], "/api/v1/positions/{position_id}/applications"),
        (["POST"], "/api/v1/projects/{project_id}/hours/bulk"),
    ]


async def test_apply_answers_the_documented_body(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer = await world.volunteer()
    response = await world.apply(project.position(), volunteer)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert sch.ApplicationCreated.model_validate(body).model_dump(mode="json") == body
    assert body["stage"] == "admitted"
    schema = world.client._transport.app.openapi()  # type: ignore[attr-defined]
    operation = schema["paths"]["/api/v1/positions/{position_id}/applications"]["post"]
    assert operation["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ApplicationCreated"
    )
    assert operation["security"]  # the token is still documented as required


async def test_apply_path_keeps_its_refusals(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer = await world.volunteer()
    position = project.position()
    wrong_method = await world.client.get(f"/api/v1/positions/{position}/applications", headers=volunteer)
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "method_not_allowed")
    bad_id = await world.client.post("/api/v1/positions/not-a-uuid/applications", headers=volunteer)
    assert (bad_id.status_code, bad_id.json()["code"]) == (422, "validation_failed")
    anonymous = await world.client.post(f"/api/v1/positions/{position}/applications")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
    too_long = await world.client.post(
        f"/api/v1/positions/{position}/applications", json={"motivation": "长" * 2001}, headers=volunteer
    )
    assert (too_long.status_code, too_long.json()["code"]) == (422, "validation_failed")
    unknown = await world.apply(str(uuid.uuid4()), volunteer)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "position_not_found")
    first = await world.apply(position, volunteer)
    again = await world.apply(position, volunteer)
    assert first.status_code == 201
    assert (again.status_code, again.json()["code"]) == (409, "already_applied")


async def test_bulk_recordings_stay_right_past_the_prepared_statements_fifth_run(world: World) -> None:
    """PostgreSQL switches a prepared statement to a generic plan after five runs; the bulk path asks
    for custom plans: results must be the same on every run, refusals included."""
    project = await world.project(positions=POSITIONS)
    admitted = await asyncio.gather(*(world.admitted_volunteer(project) for _ in range(12)))
    ids = [application_id for _, _, application_id in admitted]
    world.clock.set(world.clock.now().replace(day=20))
    for day in range(5, 13):
        rows = [{"application_id": a, "service_date": f"2026-01-{day:02d}", "minutes": 60} for a in ids]
        response = await world.client.post(
            f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": rows}, headers=project.lead
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["recorded"], body["late"]) == (12, 12)
        assert sorted(i["application_id"] for i in body["items"]) == sorted(ids)
    over = [{"application_id": ids[0], "service_date": "2026-01-05", "minutes": 700, "note": n} for n in "AB"]
    refused = await world.client.post(
        f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": over}, headers=project.lead
    )
    assert refused.json()["code"] == "hours_daily_cap_exceeded"
    totals = (await world.client.get(f"/api/v1/projects/{project.id}/hours/totals", headers=project.lead)).json()
    assert totals["minutes"] == 8 * 12 * 60


async def test_a_bulk_recording_ends_its_custom_plans_with_its_statement(world: World) -> None:
    """The sheet's statement is planned for its arrays (``force_custom_plan``, asked just before it);
    the statement itself puts the default back, so that its records' foreign-key checks, which
    PostgreSQL runs after the statement's rows and prepares like any statement, are planned once
    rather than once per record."""
    project = await world.project(positions=POSITIONS)
    admitted = await asyncio.gather(*(world.admitted_volunteer(project) for _ in range(3)))
    world.clock.set(world.clock.now().replace(day=20))
    rows = [services.HoursRow(uuid.UUID(a), date(2026, 1, 6), 60) for _, _, a in admitted]
    lead = Principal(account_id=project.lead_id, roles=frozenset({ROLE_VOLUNTEER}))
    plans = text("SELECT current_setting('plan_cache_mode')")
    async with world.runtime.uow() as uow:
        recorded = await services.record_hours(uow, world.runtime, lead, uuid.UUID(project.id), rows, source="bulk")
        assert sorted(r["application_id"] for r in recorded) == sorted(r.application_id for r in rows)
        assert await uow.session.scalar(plans) == "auto"
    async with world.runtime.uow() as uow:  # what the use case asked for before the statement
        await repo.plan_for_these_arrays(uow.session)
        assert await uow.session.scalar(plans) == "force_custom_plan"


async def test_a_started_service_has_settled_its_heap(world: World) -> None:
    # the app's lifespan ran (the world's client is up): start-up objects frozen, young objects
    # collected every YOUNG_COLLECTION_THRESHOLD allocations (700 by default)
    assert service._heap_settled
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == service.YOUNG_COLLECTION_THRESHOLD
