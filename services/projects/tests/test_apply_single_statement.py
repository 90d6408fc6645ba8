"""The apply hot path writes in one statement that is its own transaction (no BEGIN/COMMIT round
trips): a duplicate or refused application must leave nothing behind, whatever the timing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import text

from shared.contracts.projects import ApplicationAdmitted, ApplicationSubmitted, HoursRecorded, HoursRecordedItem
from shared.db import asyncpg_dsn

from .conftest import StartProjects, World

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


async def test_the_statement_writes_exactly_when_the_recruitment_rules_accept(world: World) -> None:
    """The apply statement judges recruitment itself (it writes nothing otherwise) and the use case
    judges it again from what the statement read, to refuse with the rule's code: at every edge of
    the window, local midnight included (dates are China's), the two agree. A disagreement would
    either write an application the rules refuse or answer 500."""
    project = await world.project(
        positions=[{"name": "引导员", "quota": 50, "admission_mode": "auto"}],
        recruit_starts_on="2026-01-10",
        recruit_ends_on="2026-01-20",
    )
    edges = [
        (datetime(2026, 1, 9, 15, 59, tzinfo=UTC), False),  # 9 January, 23:59 in Beijing
        (datetime(2026, 1, 9, 16, 0, tzinfo=UTC), True),  # 10 January, 00:00
        (datetime(2026, 1, 15, 4, 0, tzinfo=UTC), True),
        (datetime(2026, 1, 20, 15, 59, tzinfo=UTC), True),  # 20 January, 23:59
        (datetime(2026, 1, 20, 16, 0, tzinfo=UTC), False),  # 21 January, 00:00
    ]
    admitted = 0
    for moment, accepted in edges:
        world.clock.set(moment)
        volunteer_id, volunteer = await world.volunteer()
        response = await world.apply(project.position(), volunteer)
        if accepted:
            admitted += 1
            assert (response.status_code, response.json()["stage"]) == (201, "admitted"), (moment, response.text)
        else:
            assert (response.status_code, response.json()["code"]) == (409, "project_not_recruiting"), moment
            assert await _events_of(world, "application.submitted", volunteer_id) == 0
        assert await _admitted_counter(world, project.position()) == admitted


async def test_an_unknown_position_is_not_found_and_writes_nothing(world: World) -> None:
    volunteer_id, volunteer = await world.volunteer()
    response = await world.apply(str(uuid.uuid4()), volunteer)
    assert (response.status_code, response.json()["code"]) == (404, "position_not_found")
    assert await _events_of(world, "application.submitted", volunteer_id) == 0


async def test_application_events_built_in_sql_are_the_contract_s_json(world: World) -> None:
    """The apply statement writes its events' payloads itself: they must be exactly what the
    ApplicationSubmitted and ApplicationAdmitted models would have written, in that order, and the
    admission only when a place was taken."""
    project = await world.project(positions=[{"name": "引导员", "quota": 1, "admission_mode": "auto"}])
    first_id, first = await world.volunteer()
    second_id, second = await world.volunteer()
    taken = (await world.apply(project.position(), first)).json()
    waiting = (await world.apply(project.position(), second)).json()
    assert (taken["stage"], waiting["stage"]) == ("admitted", "applied")
    expected = {
        "project_id": project.id,
        "position_id": project.position(),
        "project_title": project.data["title"],
        "position_name": "引导员",
    }
    submitted = [p for p in await world.outbox("application.submitted") if p["project_id"] == project.id]
    assert submitted == [
        {**expected, "application_id": taken["id"], "account_id": str(first_id)},
        {**expected, "application_id": waiting["id"], "account_id": str(second_id)},
    ]
    for payload in submitted:
        assert payload == ApplicationSubmitted.model_validate(payload).model_dump(mode="json")
    [admitted] = [p for p in await world.outbox("application.admitted") if p["project_id"] == project.id]
    assert admitted == {**expected, "application_id": taken["id"], "account_id": str(first_id), "automatic": True}
    assert admitted == ApplicationAdmitted.model_validate(admitted).model_dump(mode="json")
    async with world.runtime.engine.connect() as conn:
        rows_meta = (
            await conn.execute(
                text(
                    "SELECT event_type, aggregate_type, aggregate_id, producer, schema_version FROM outbox "
                    "WHERE payload->>'application_id' = :a ORDER BY seq"
                ),
                {"a": taken["id"]},
            )
        ).all()
    assert [tuple(r) for r in rows_meta] == [
        ("application.submitted", "application", taken["id"], "projects", ApplicationSubmitted.schema_version),
        ("application.admitted", "application", taken["id"], "projects", ApplicationAdmitted.schema_version),
    ]


async def test_hours_recorded_events_built_in_sql_are_the_contract_s_json(world: World) -> None:
    """Bulk hours write their ``hours.recorded`` outbox row in the insert statement itself: one event
    for the sheet, listing its records; the payload must be exactly what the HoursRecorded model
    would have written."""
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
    [payload] = [p for p in await world.outbox("hours.recorded") if p["project_id"] == project.id]
    assert payload == HoursRecorded.model_validate(payload).model_dump(mode="json")
    assert set(payload) == set(HoursRecorded.model_fields)
    assert (payload["source"], payload["recorded_by"]) == ("bulk", str(project.lead_id))
    assert len(payload["records"]) == 2
    for item in payload["records"]:
        assert set(item) == set(HoursRecordedItem.model_fields)
        record = records[item["record_id"]]
        assert (item["application_id"], item["account_id"]) == (application_id, str(volunteer_id))
        assert (item["service_date"], item["minutes"], item["late"]) == (
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
    assert [tuple(r) for r in rows_meta] == [("project", project.id, "projects", HoursRecorded.schema_version)]


async def _drop_pooled_connections(world: World) -> int:
    """What a database restart or failover does to a replica's pool: every connection the pool
    holds is cut by the server. Returns how many were cut."""
    database = world.runtime.engine.url.database
    admin = await asyncpg.connect(asyncpg_dsn(world.database_url))
    try:
        return int(
            await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        )
    finally:
        await admin.close()


async def _fill_pool_and_cut_it(world: World, project_id: str) -> None:
    # every pooled connection in use at once, so the pool holds as many as it can keep
    size = world.runtime.settings.database_pool_size
    await asyncio.gather(*(world.client.get(f"/api/v1/projects/{project_id}") for _ in range(size)))
    assert await _drop_pooled_connections(world) >= size


async def test_connections_the_server_closed_are_replaced_at_checkout_without_a_failed_request(
    start_projects: StartProjects,
) -> None:
    """No ping before each use (``database_pre_ping`` off), yet a database restart costs no request:
    the driver saw the server close each pooled connection, and the pool swaps it at checkout. No
    relay here: its next poll would meet a dead connection first, and SQLAlchemy would then renew the
    whole pool, hiding what the requests alone meet."""
    async with start_projects(run_relay=False) as world:
        project = await world.project(positions=AUTO)
        volunteers = [await world.volunteer() for _ in range(3)]
        await _fill_pool_and_cut_it(world, project.id)
        await asyncio.sleep(0.3)  # the event loop reads each connection's close
        for account_id, headers in volunteers:
            applied = await world.apply(project.position(), headers)
            assert applied.status_code == 201, applied.text
            assert await _events_of(world, "application.submitted", account_id) == 1
            read = await world.client.get(f"/api/v1/projects/{project.id}")
            assert read.status_code == 200, read.text
        assert await _admitted_counter(world, project.position()) == 3


async def test_a_connection_cut_under_a_single_statement_use_case_fails_as_lost_and_leaves_the_pool(
    world: World,
) -> None:
    """Cut while a use case holds it (the driver had no chance to notice at checkout): the failure is
    a lost connection, which the API answers with a retryable 503 (``shared.web``), not a bug's 500;
    the pool drops the connection instead of lending it again."""
    uow = world.runtime.uow()
    cut: list[int] = []

    async def cut_under_use() -> None:
        async with uow.single_statements() as conn:
            cut.append(conn.get_server_pid())
            async with world.runtime.engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": cut[0]})
            await asyncio.sleep(0.2)  # the close has reached the driver: "connection is closed"
            await conn.fetchval("SELECT 1")

    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await cut_under_use()
    for _ in range(world.runtime.settings.database_pool_size + 1):
        async with uow.single_statements() as conn:
            assert conn.get_server_pid() != cut[0]
            assert await conn.fetchval("SELECT 1") == 1
