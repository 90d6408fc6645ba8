"""Service hours P7: who records, single and bulk, sign-in/sign-out codes, daily cap, late flag,
corrections with history, totals, and access between projects."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

from projects import idempotency, services
from projects import repository as repo

from .conftest import World

POSITIONS = [{"name": "引导员", "quota": 500, "admission_mode": "auto"}]


async def record(world: World, project_id: str, headers: dict[str, str], **row: object) -> dict:
    response = await world.client.post(f"/api/v1/projects/{project_id}/hours", json=row, headers=headers)
    return {**response.json(), "http_status": response.status_code}


async def test_lead_records_hours_for_an_admitted_volunteer_and_totals_follow(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    volunteer_id, volunteer, application_id = await world.admitted_volunteer(project)
    world.clock.set(world.clock.now().replace(day=6))
    first = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-06", minutes=90
    )
    second = await record(
        world, project.id, project.admin, application_id=application_id, service_date="2026-01-05", minutes=60
    )
    assert first["http_status"] == second["http_status"] == 201
    assert first["late"] is False
    assert second["late"] is True  # recorded after the session's date: 补录, flagged
    mine = (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()
    assert mine["minutes"] == 150
    totals = (await world.client.get(f"/api/v1/projects/{project.id}/hours/totals", headers=project.lead)).json()
    assert totals["minutes"] == 150
    assert totals["volunteers"][0]["account_id"] == str(volunteer_id)
    events = [p for p in await world.outbox("hours.recorded") if p["project_id"] == project.id]
    assert [len(e["records"]) for e in events] == [1, 1]  # one event per recording
    records = [r for e in events for r in e["records"]]
    assert sorted((r["minutes"], r["late"]) for r in records) == [(60, True), (90, False)]
    assert {e["source"] for e in events} == {"single"}


async def test_hours_refused_for_a_volunteer_who_is_not_admitted(world: World) -> None:
    project = await world.project(positions=[{"name": "陪伴员", "quota": 5, "admission_mode": "manual"}])
    _, volunteer = await world.volunteer()
    application_id = (await world.apply(project.position(), volunteer)).json()["id"]
    result = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=60
    )
    assert result["http_status"] == 409
    assert result["code"] == "hours_not_admitted"


async def test_lead_of_one_project_cannot_record_hours_on_another(world: World) -> None:
    project_a = await world.project(positions=POSITIONS)
    project_b = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project_b)
    on_b = await record(
        world, project_b.id, project_a.lead, application_id=application_id, service_date="2026-01-05", minutes=60
    )
    assert on_b["http_status"] == 403
    assert on_b["code"] == "not_project_manager"
    # nor by naming B's application under A's project
    via_a = await record(
        world, project_a.id, project_a.lead, application_id=application_id, service_date="2026-01-05", minutes=60
    )
    assert via_a["code"] == "hours_not_admitted"


async def test_volunteer_cannot_record_own_hours(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    result = await record(
        world, project.id, volunteer, application_id=application_id, service_date="2026-01-05", minutes=60
    )
    assert result["http_status"] == 403


async def test_daily_cap_refuses_the_row_that_goes_over(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    ok = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=600
    )
    over = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=180
    )
    assert ok["http_status"] == 201
    assert over["http_status"] == 422
    assert over["code"] == "hours_daily_cap_exceeded"
    assert "12" in over["message"]


async def test_daily_cap_counts_one_volunteer_over_every_position_and_project(world: World) -> None:
    two_positions = [
        {"name": "引导员", "quota": 5, "admission_mode": "auto"},
        {"name": "翻译", "quota": 5, "admission_mode": "auto"},
    ]
    project = await world.project(positions=two_positions)
    other = await world.project(positions=POSITIONS)
    _, volunteer = await world.volunteer()
    first, second, elsewhere = [
        (await world.apply(position, volunteer)).json()
        for position in (project.position(0), project.position(1), other.position())
    ]
    assert {first["stage"], second["stage"], elsewhere["stage"]} == {"admitted"}
    day = "2026-01-05"
    full = await record(world, project.id, project.lead, application_id=first["id"], service_date=day, minutes=660)
    assert full["http_status"] == 201
    over = await record(world, project.id, project.lead, application_id=second["id"], service_date=day, minutes=120)
    assert over["http_status"] == 422
    assert over["code"] == "hours_daily_cap_exceeded"
    also_over = await record(world, other.id, other.lead, application_id=elsewhere["id"], service_date=day, minutes=120)
    assert also_over["http_status"] == 422
    assert also_over["code"] == "hours_daily_cap_exceeded"
    fits = await record(world, other.id, other.lead, application_id=elsewhere["id"], service_date=day, minutes=60)
    assert fits["http_status"] == 201
    world.clock.advance(days=1)
    other_day = await record(
        world, project.id, project.lead, application_id=second["id"], service_date="2026-01-06", minutes=120
    )
    assert other_day["http_status"] == 201


async def test_future_or_out_of_project_dates_are_refused(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    future = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-09", minutes=60
    )
    before = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-01", minutes=60
    )
    assert future["code"] == before["code"] == "hours_date_outside_project"


async def test_a_bulk_sheet_with_dates_outside_the_project_is_refused_naming_the_first(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    rows = [
        {"application_id": application_id, "service_date": day, "minutes": 60}
        for day in ("2026-01-05", "2026-01-09", "2026-01-05", "2026-01-01")
    ]
    response = await world.client.post(
        f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": rows}, headers=project.lead
    )
    assert response.json()["code"] == "hours_date_outside_project"
    # the first in row order, with the sheet's rows on it (from 1)
    assert response.json()["detail"] == {"service_date": "2026-01-09", "rows": [2]}
    totals = (await world.client.get(f"/api/v1/projects/{project.id}/hours/totals", headers=project.lead)).json()
    assert totals["minutes"] == 0


async def test_bulk_records_hundreds_of_rows_in_one_request(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    admitted = await asyncio.gather(*(world.admitted_volunteer(project) for _ in range(100)))
    world.clock.set(world.clock.now().replace(day=8))
    rows = [
        {"application_id": application_id, "service_date": f"2026-01-0{day}", "minutes": 120}
        for _, _, application_id in admitted
        for day in (5, 6, 7, 8)
    ]
    response = await world.client.post(
        f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": rows}, headers=project.lead
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["recorded"] == 400
    assert body["late"] == 300  # the 5th, 6th and 7th recorded on the 8th
    totals = (await world.client.get(f"/api/v1/projects/{project.id}/hours/totals", headers=project.lead)).json()
    assert totals["minutes"] == 400 * 120
    # one event for the sheet, listing its 400 records (not 400 messages)
    [event] = [p for p in await world.outbox("hours.recorded") if p["project_id"] == project.id]
    assert event["source"] == "bulk"
    assert len(event["records"]) == 400
    assert {r["record_id"] for r in event["records"]} == {i["id"] for i in body["items"]}


async def test_a_bulk_recording_holds_a_few_database_locks_however_many_volunteers_it_lists(world: World) -> None:
    """PostgreSQL's lock table is shared and small (max_locks_per_transaction x connections: 6,400 by
    default). A recording that took a lock there per volunteer and day (one per row of a sheet) let
    thirteen 1,000-row sheets at once fill it, and then every transaction of the service failed with
    "out of shared memory". The recording is stopped at the last volunteer-day it adds to (the test
    holds that day's row), when it holds every application and every other day of the sheet, and its
    locks are counted."""
    project = await world.project(positions=POSITIONS)
    admitted = await asyncio.gather(*(world.admitted_volunteer(project) for _ in range(60)))
    world.clock.set(world.clock.now().replace(day=8))
    rows = [
        {"application_id": application_id, "service_date": f"2026-01-0{day}", "minutes": 60}
        for _, _, application_id in admitted
        for day in (5, 6, 7, 8)
    ]
    last_volunteer = max(account_id for account_id, _, _ in admitted)
    async with world.runtime.engine.connect() as blocker, world.runtime.engine.connect() as watcher:
        await blocker.execute(
            text("INSERT INTO volunteer_days (account_id, service_date, minutes) VALUES (:a, '2026-01-08', 0)"),
            {"a": last_volunteer},
        )
        sheet = asyncio.create_task(
            world.client.post(f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": rows}, headers=project.lead)
        )
        held = None
        for _ in range(500):
            held = (
                await watcher.execute(
                    text(
                        """SELECT count(*) FILTER (WHERE l.granted) AS held
                           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                           WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
                             AND a.query LIKE '%INSERT INTO volunteer_days AS d%'
                             AND EXISTS (SELECT 1 FROM pg_locks w WHERE w.pid = a.pid AND NOT w.granted
                                                                   AND w.locktype = 'transactionid')"""
                    )
                )
            ).scalar_one()
            await watcher.rollback()
            if held:
                break
            await asyncio.sleep(0.01)
        await blocker.rollback()
        response = await sheet
    assert response.status_code == 201, response.text
    assert response.json()["recorded"] == 240
    assert held is not None
    assert 0 < held < 80, held  # relations and indexes: not one per volunteer-day (273 then)


async def test_bulk_is_all_or_nothing_when_one_row_is_not_admitted(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, good = await world.admitted_volunteer(project)
    other = await world.project(positions=POSITIONS)
    _, _, foreign = await world.admitted_volunteer(other)
    rows = [
        {"application_id": good, "service_date": "2026-01-05", "minutes": 60},
        {"application_id": foreign, "service_date": "2026-01-05", "minutes": 60},
    ]
    response = await world.client.post(
        f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": rows}, headers=project.lead
    )
    assert response.status_code == 409
    assert response.json()["detail"]["application_ids"] == [foreign]
    totals = (await world.client.get(f"/api/v1/projects/{project.id}/hours/totals", headers=project.lead)).json()
    assert totals["minutes"] == 0


async def test_bulk_daily_cap_counts_rows_of_the_same_day_together(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    rows = [{"application_id": application_id, "service_date": "2026-01-05", "minutes": m} for m in (400, 401)]
    response = await world.client.post(
        f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": rows}, headers=project.lead
    )
    assert response.json()["code"] == "hours_daily_cap_exceeded"


async def test_recording_after_closing_is_allowed_and_flagged_late(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    from projects.services import close_due_projects

    world.clock.set(world.clock.now().replace(month=4, day=2))
    await close_due_projects(world.runtime)
    result = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-03-31", minutes=60
    )
    assert result["http_status"] == 201, result
    assert result["late"] is True


async def test_correction_keeps_who_what_when_and_why(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    recorded = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=60
    )
    world.clock.advance(hours=3)
    response = await world.client.post(
        f"/api/v1/hours/{recorded['id']}/corrections",
        json={"minutes": 90, "reason": "签退时间登记有误"},
        headers=project.admin,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["minutes"] == 90
    assert body["corrected"] is True
    [correction] = body["corrections"]
    assert correction["previous_minutes"] == 60
    assert correction["new_minutes"] == 90
    assert correction["reason"] == "签退时间登记有误"
    assert correction["corrected_by"] == str(project.admin_id)
    own_view = (await world.client.get(f"/api/v1/hours/{recorded['id']}", headers=volunteer)).json()
    assert own_view["corrections"][0]["previous_minutes"] == 60
    assert (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()["minutes"] == 90
    [event] = [p for p in await world.outbox("hours.corrected") if p["record_id"] == recorded["id"]]
    assert (event["previous_minutes"], event["minutes"]) == (60, 90)


async def test_correction_by_another_project_lead_is_refused(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    other = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    recorded = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=60
    )
    response = await world.client.post(
        f"/api/v1/hours/{recorded['id']}/corrections", json={"minutes": 0, "reason": "删掉"}, headers=other.lead
    )
    assert response.status_code == 403


async def sign(world: World, project_id: str, headers: dict[str, str], kind: str, code: str) -> dict:
    response = await world.client.post(
        f"/api/v1/projects/{project_id}/sign-{kind}s", json={"code": code}, headers=headers
    )
    return {**response.json(), "http_status": response.status_code}


async def code_for(world: World, project_id: str, headers: dict[str, str], kind: str) -> str:
    response = await world.client.post(
        f"/api/v1/projects/{project_id}/sign-codes", params={"kind": kind}, headers=headers
    )
    assert response.status_code == 200, response.text
    return str(response.json()["code"])


async def test_sign_in_and_out_with_the_leads_code_records_the_time_between(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, _ = await world.admitted_volunteer(project)
    signed_in = await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    assert signed_in["http_status"] == 201, signed_in
    twice = await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    assert twice["code"] == "already_signed_in"
    world.clock.advance(hours=2, minutes=30)
    out = await sign(world, project.id, volunteer, "out", await code_for(world, project.id, project.lead, "out"))
    assert out["http_status"] == 201, out
    assert out["minutes"] == 150
    record = (await world.client.get(f"/api/v1/hours/{out['record_id']}", headers=volunteer)).json()
    assert record["source"] == "sign"
    assert record["minutes"] == 150


async def test_sign_out_is_capped_per_day(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    await record(world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=660)
    await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    world.clock.advance(hours=3)
    out = await sign(world, project.id, volunteer, "out", await code_for(world, project.id, project.lead, "out"))
    assert out["minutes"] == 60  # 12 h cap, 11 h already recorded


async def test_a_forgotten_sign_out_ends_unrecorded_and_the_next_day_can_sign_in(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    world.clock.advance(hours=23)  # never signed out; back on site the next morning
    again = await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    assert again["http_status"] == 201, again
    world.clock.advance(hours=2)
    out = await sign(world, project.id, volunteer, "out", await code_for(world, project.id, project.lead, "out"))
    assert (out["minutes"], out["abandoned"]) == (120, False)
    record = (await world.client.get(f"/api/v1/hours/{out['record_id']}", headers=volunteer)).json()
    assert record["service_date"] == "2026-01-06"
    async with world.runtime.engine.connect() as conn:
        sessions = (
            await conn.execute(
                text(
                    "SELECT service_date::text, abandoned, record_id IS NOT NULL FROM attendances"
                    " WHERE application_id = :a ORDER BY signed_in_at"
                ),
                {"a": application_id},
            )
        ).all()
    assert [tuple(r) for r in sessions] == [("2026-01-05", True, False), ("2026-01-06", False, True)]
    mine = (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()
    assert mine["minutes"] == 120  # the forgotten session did not count the night


async def test_a_sign_out_long_after_the_sign_in_records_nothing_and_says_so(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, _ = await world.admitted_volunteer(project)
    await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    world.clock.advance(hours=20)
    out = await sign(world, project.id, volunteer, "out", await code_for(world, project.id, project.lead, "out"))
    assert out["http_status"] == 201, out
    assert (out["minutes"], out["record_id"], out["abandoned"]) == (0, None, True)
    again = await sign(world, project.id, volunteer, "out", await code_for(world, project.id, project.lead, "out"))
    assert again["code"] == "not_signed_in"
    mine = (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()
    assert mine["minutes"] == 0


async def test_sign_in_outside_the_projects_dates_is_refused_at_the_door(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, _ = await world.admitted_volunteer(project)
    world.clock.set(world.clock.now().replace(month=4, day=1))  # the project ended on 31 March
    refused = await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    assert refused["http_status"] == 422
    assert refused["code"] == "hours_date_outside_project"
    world.clock.set(world.clock.now().replace(month=3, day=31))
    allowed = await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    assert allowed["http_status"] == 201, allowed


async def test_expired_or_foreign_sign_codes_are_refused(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    other = await world.project(positions=POSITIONS)
    _, volunteer, _ = await world.admitted_volunteer(project)
    code = await code_for(world, project.id, project.lead, "in")
    out_code = await code_for(world, project.id, project.lead, "out")
    foreign = await code_for(world, other.id, other.lead, "in")
    assert (await sign(world, project.id, volunteer, "in", foreign))["code"] == "sign_code_invalid"
    assert (await sign(world, project.id, volunteer, "in", out_code))["code"] == "sign_code_invalid"
    assert (await sign(world, project.id, volunteer, "in", code[:-3] + "abc"))["code"] == "sign_code_invalid"
    world.clock.advance(timedelta(minutes=6))
    assert (await sign(world, project.id, volunteer, "in", code))["code"] == "sign_code_expired"


async def test_only_managers_get_sign_codes(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, _ = await world.admitted_volunteer(project)
    response = await world.client.post(f"/api/v1/projects/{project.id}/sign-codes", headers=volunteer)
    assert response.status_code == 403


async def test_leave_and_recording_racing_never_leave_hours_on_a_departed_volunteer(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    for _ in range(10):
        _, volunteer, application_id = await world.admitted_volunteer(project)
        leave, hours = await asyncio.gather(
            world.client.post(f"/api/v1/applications/{application_id}/leave", headers=volunteer),
            world.client.post(
                f"/api/v1/projects/{project.id}/hours",
                json={"application_id": application_id, "service_date": "2026-01-05", "minutes": 30},
                headers=project.lead,
            ),
        )
        assert (leave.status_code == 200) != (hours.status_code == 201), (leave.text, hours.text)
    async with world.runtime.engine.connect() as conn:
        bad = await conn.scalar(
            text(
                "SELECT count(*) FROM hours_records h JOIN applications a ON a.id = h.application_id "
                "WHERE a.stage = 'left'"
            )
        )
    assert bad == 0


async def test_activity_log_lists_the_projects_facts_for_its_managers(world: World) -> None:
    from shared.testing import eventually

    project = await world.project(positions=POSITIONS)
    _, volunteer, _ = await world.admitted_volunteer(project)

    async def logged() -> list[str] | None:
        response = await world.client.get(f"/api/v1/projects/{project.id}/activity", headers=project.lead)
        types = [i["event_type"] for i in response.json()["items"]]
        return types if {"project.published", "application.submitted", "application.admitted"} <= set(types) else None

    assert await eventually(logged, timeout=30, interval=0.2)
    denied = await world.client.get(f"/api/v1/projects/{project.id}/activity", headers=volunteer)
    assert denied.status_code == 403


async def test_project_totals_page_through_each_volunteer_once_with_the_project_s_total(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Totals come a page at a time, in order of application: a volunteer on two positions of the
    project is one entry with both positions' minutes, volunteers without minutes (none yet, or
    corrected to 0) are left out, and the total is the project's whatever the page. A page looks at
    a bounded number of applications (``TOTALS_SCAN``), so it may hold fewer than ``limit``: the
    cursor goes on until the last one."""
    project = await world.project(
        positions=[
            {"name": "引导员", "quota": 20, "admission_mode": "auto"},
            {"name": "翻译", "quota": 20, "admission_mode": "auto"},
        ]
    )
    volunteers = [await world.admitted_volunteer(project) for _ in range(6)]
    second = await world.apply(project.position(1), volunteers[1][1])  # the second volunteer, twice
    assert second.json()["stage"] == "admitted"
    minutes = [60, 30, 20, 0, 10, 40]  # the fourth has none; the sixth's will be corrected to 0
    rows = [
        {"application_id": app, "service_date": "2026-01-05", "minutes": m}
        for (_, _, app), m in zip(volunteers, minutes, strict=True)
        if m
    ] + [{"application_id": second.json()["id"], "service_date": "2026-01-05", "minutes": 45}]
    recorded = await world.client.post(
        f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": rows}, headers=project.lead
    )
    assert recorded.status_code == 201, recorded.text
    [sixth] = [r for r in recorded.json()["items"] if r["application_id"] == volunteers[5][2]]
    zero = await world.client.post(
        f"/api/v1/hours/{sixth['id']}/corrections", json={"minutes": 0, "reason": "录错了人"}, headers=project.lead
    )
    assert zero.status_code == 200, zero.text
    expected = [(str(volunteers[i][0]), m) for i, m in ((0, 60), (1, 75), (2, 20), (4, 10))]

    async def all_pages(limit: int) -> tuple[list[tuple[str, int]], list[int]]:
        entries: list[tuple[str, int]] = []
        sizes: list[int] = []
        cursor = None
        while True:
            params: dict[str, object] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            body = (
                await world.client.get(
                    f"/api/v1/projects/{project.id}/hours/totals", params=params, headers=project.lead
                )
            ).json()
            assert body["minutes"] == 165
            entries += [(v["account_id"], v["minutes"]) for v in body["volunteers"]]
            sizes.append(len(body["volunteers"]))
            cursor = body["next_cursor"]
            if cursor is None:
                return entries, sizes

    assert await all_pages(2) == (expected, [2, 2])
    assert await all_pages(50) == (expected, [4])
    monkeypatch.setattr(repo, "TOTALS_SCAN", 3)  # a page looks at 3 applications at most
    entries, sizes = await all_pages(2)
    assert entries == expected
    # applications looked at per page: 1-3 (the third found tells there is more) | 3-5 (the fourth
    # has no minutes) | 6 (corrected to 0) and 7 (the second volunteer's other one): nothing left
    assert sizes == [2, 2, 0]
    bad = await world.client.get(
        f"/api/v1/projects/{project.id}/hours/totals", params={"cursor": "not-a-cursor"}, headers=project.lead
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "cursor_invalid"


async def test_a_session_signed_out_after_midnight_in_china_is_not_late(world: World) -> None:
    """Recorded on site as it ends: a session from 22:00 to 01:00 is the evening's, not 补录."""
    from datetime import UTC, datetime

    project = await world.project(positions=POSITIONS)
    _, volunteer, _ = await world.admitted_volunteer(project)
    world.clock.set(datetime(2026, 1, 10, 14, 0, tzinfo=UTC))  # 22:00 in China
    signed_in = await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    assert signed_in["http_status"] == 201, signed_in
    world.clock.set(datetime(2026, 1, 10, 17, 0, tzinfo=UTC))  # 01:00 the next day in China
    out = await sign(world, project.id, volunteer, "out", await code_for(world, project.id, project.lead, "out"))
    record = (await world.client.get(f"/api/v1/hours/{out['record_id']}", headers=project.lead)).json()
    assert (record["service_date"], record["minutes"], record["late"]) == ("2026-01-10", 180, False)


async def test_a_session_on_the_last_evening_is_not_late_whether_or_not_the_project_closed_meanwhile(
    world: World,
) -> None:
    """Signed in at 22:00 on the end date, out at 01:00: the close sweep may run at 00:01 or later;
    the record is the same either way (recorded on site, not 补录)."""
    from datetime import UTC, datetime

    project = await world.project(positions=POSITIONS, ends_on="2026-01-10", recruit_ends_on="2026-01-09")
    _, volunteer, _ = await world.admitted_volunteer(project)
    world.clock.set(datetime(2026, 1, 10, 14, 0, tzinfo=UTC))  # 22:00 on the last day, in China
    signed_in = await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    assert signed_in["http_status"] == 201, signed_in
    world.clock.set(datetime(2026, 1, 10, 16, 1, tzinfo=UTC))  # 00:01: the sweep closes the project
    await services.close_due_projects(world.runtime)
    assert (await world.client.get(f"/api/v1/projects/{project.id}")).json()["status"] == "closed"
    world.clock.set(datetime(2026, 1, 10, 17, 0, tzinfo=UTC))  # 01:00
    out = await sign(world, project.id, volunteer, "out", await code_for(world, project.id, project.lead, "out"))
    assert out["http_status"] == 201, out
    record = (await world.client.get(f"/api/v1/hours/{out['record_id']}", headers=project.lead)).json()
    assert (record["service_date"], record["minutes"], record["late"]) == ("2026-01-10", 180, False)


async def test_a_volunteer_signed_in_signs_out_before_leaving(world: World) -> None:
    """Signed in, they are serving: leaving then would leave the session open for ever (sign-out
    refused once they left). A session forgotten long ago ends unrecorded, and they may leave."""
    project = await world.project(positions=POSITIONS)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    await sign(world, project.id, volunteer, "in", await code_for(world, project.id, project.lead, "in"))
    world.clock.advance(hours=3)
    leave = f"/api/v1/applications/{application_id}/leave"
    refused = await world.client.post(leave, headers=volunteer)
    assert (refused.status_code, refused.json()["code"]) == (409, "leave_while_signed_in")
    world.clock.advance(hours=20)  # past the longest session: forgotten
    assert (await world.client.post(leave, headers=volunteer)).status_code == 200
    async with world.runtime.engine.connect() as conn:
        still_open = await conn.scalar(
            text("SELECT count(*) FROM attendances WHERE application_id = :a AND signed_out_at IS NULL"),
            {"a": application_id},
        )
    assert still_open == 0


async def test_the_projects_hours_list_shows_each_corrected_records_history(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    world.clock.set(world.clock.now().replace(day=6))
    first = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=120
    )
    plain = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-06", minutes=30
    )
    corrected = await world.client.post(
        f"/api/v1/hours/{first['id']}/corrections", json={"minutes": 60, "reason": "早退一小时"}, headers=project.lead
    )
    assert corrected.status_code == 200, corrected.text
    items = {
        i["id"]: i
        for i in (await world.client.get(f"/api/v1/projects/{project.id}/hours", headers=project.lead)).json()["items"]
    }
    history = items[first["id"]]["corrections"]
    assert [(c["previous_minutes"], c["new_minutes"], c["reason"]) for c in history] == [(120, 60, "早退一小时")]
    assert items[plain["id"]]["corrections"] == []


async def test_a_recording_sent_again_under_its_idempotency_key_counts_once(world: World) -> None:
    """A client whose answer a lost connection swallowed sends the recording again: under the same
    Idempotency-Key it gets the first answer, and the volunteer's hours are not doubled; at the
    same moment too. The key names one request: used for another, it is refused."""
    project = await world.project(positions=POSITIONS)
    volunteer_id, volunteer, application_id = await world.admitted_volunteer(project)
    url = f"/api/v1/projects/{project.id}/hours"
    row = {"application_id": application_id, "service_date": "2026-01-05", "minutes": 120}
    keyed = {**project.lead, "Idempotency-Key": "d7f0c1e2-0001"}
    first = await world.client.post(url, json=row, headers=keyed)
    again = await world.client.post(url, json=row, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    racing = {**project.lead, "Idempotency-Key": "d7f0c1e2-0002"}
    both = await asyncio.gather(*(world.client.post(url, json=row, headers=racing) for _ in range(2)))
    assert [r.status_code for r in both] == [201, 201]
    assert both[0].json()["id"] == both[1].json()["id"]
    assert (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()["minutes"] == 240

    other_body = await world.client.post(url, json={**row, "minutes": 60}, headers=keyed)
    assert (other_body.status_code, other_body.json()["code"]) == (422, "idempotency_key_reused")
    bulk = await world.client.post(f"{url}/bulk", json={"rows": [row]}, headers=keyed)  # another route
    assert bulk.json()["code"] == "idempotency_key_reused"
    # keys are the account's own: another admin's same key is another request
    by_admin = await world.client.post(url, json=row, headers={**project.admin, "Idempotency-Key": "d7f0c1e2-0001"})
    assert by_admin.status_code == 201
    assert "idempotent-replayed" not in by_admin.headers
    assert (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()["minutes"] == 360
    events = [p for p in await world.outbox("hours.recorded") if p["project_id"] == project.id]
    assert len(events) == 3
    assert str(volunteer_id) == events[0]["records"][0]["account_id"]


async def test_a_refused_recording_leaves_its_key_free_and_a_bulk_sheet_counts_once(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    url = f"/api/v1/projects/{project.id}/hours/bulk"
    key = {**project.lead, "Idempotency-Key": "sheet-2026-01-05"}
    over = {"rows": [{"application_id": application_id, "service_date": "2026-01-05", "minutes": 800}]}
    refused = await world.client.post(url, json=over, headers=key)
    assert refused.json()["code"] == "hours_daily_cap_exceeded"
    sheet = {"rows": [{"application_id": application_id, "service_date": "2026-01-05", "minutes": 300}]}
    first = await world.client.post(url, json=sheet, headers=key)  # the key was not taken by the refusal
    again = await world.client.post(url, json=sheet, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()["minutes"] == 300
    bad_key = await world.client.post(url, json=sheet, headers={**project.lead, "Idempotency-Key": "has space"})
    assert bad_key.json()["code"] == "validation_failed"


async def test_idempotency_keys_are_forgotten_after_a_day(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    row = {"application_id": application_id, "service_date": "2026-01-05", "minutes": 30}
    headers = {**project.lead, "Idempotency-Key": "old-key"}
    assert (
        await world.client.post(f"/api/v1/projects/{project.id}/hours", json=row, headers=headers)
    ).status_code == 201
    engine = world.runtime.engine

    async def kept() -> bool:
        async with engine.connect() as conn:
            found = await conn.execute(text("SELECT 1 FROM idempotent_requests WHERE key = 'old-key'"))
            return found.first() is not None

    await idempotency.purge(engine, world.clock.now() + timedelta(hours=23))
    assert await kept()
    await idempotency.purge(engine, world.clock.now() + timedelta(hours=24, seconds=1))
    assert not await kept()
