"""Service hours counted once: one open sign-in session per volunteer over every project; a bulk
sheet refused for its daily cap or dates names the volunteers, days and rows, and one repeating a
row is refused; a correction must change something and says who made it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from projects import repository as repo
from projects.bootstrap import SERVICE_ROOT
from shared import migrations
from shared.contracts.identity import VolunteerMerged
from shared.db import make_engine
from shared.migrations import upgrade_head

from .conftest import World
from .test_hours import POSITIONS, code_for, record, sign


async def sessions_of(world: World, account_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with world.runtime.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT a.project_id::text, t.signed_out_at IS NULL, t.abandoned FROM attendances t"
                " JOIN applications a ON a.id = t.application_id WHERE t.account_id = :a ORDER BY t.signed_in_at"
            ),
            {"a": account_id},
        )
        return [tuple(r) for r in rows]


async def on_two_projects(world: World) -> tuple[Any, Any, uuid.UUID, dict[str, str]]:
    a = await world.project(positions=POSITIONS)
    b = await world.project(positions=POSITIONS)
    volunteer_id, volunteer = await world.volunteer()
    for project in (a, b):
        assert (await world.apply(project.position(), volunteer)).json()["stage"] == "admitted"
    return a, b, volunteer_id, volunteer


# -- one session at a time ----------------------------------------------------------------------------
async def test_a_volunteer_signed_in_on_one_project_signs_in_on_another_only_after_signing_out(
    world: World,
) -> None:
    a, b, volunteer_id, volunteer = await on_two_projects(world)
    world.clock.set(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))  # 09:00 in China
    assert (await sign(world, a.id, volunteer, "in", await code_for(world, a.id, a.lead, "in")))["http_status"] == 201
    code_b = await code_for(world, b.id, b.lead, "in")
    refused = await sign(world, b.id, volunteer, "in", code_b)
    assert (refused["http_status"], refused["code"]) == (409, "signed_in_elsewhere")
    assert refused["detail"]["project_id"] == a.id
    assert "另一个项目" in refused["message"]
    english = await world.client.post(
        f"/api/v1/projects/{b.id}/sign-ins", json={"code": code_b}, headers={**volunteer, "Accept-Language": "en"}
    )
    assert "another project" in english.json()["message"]
    # B knows nothing of the volunteer: nothing to sign out of there
    assert (await sign(world, b.id, volunteer, "out", await code_for(world, b.id, b.lead, "out")))["code"] == (
        "not_signed_in"
    )
    world.clock.set(datetime(2026, 1, 6, 5, 0, tzinfo=UTC))  # 13:00: four hours at A
    out_a = await sign(world, a.id, volunteer, "out", await code_for(world, a.id, a.lead, "out"))
    assert out_a["minutes"] == 240
    assert (await sign(world, b.id, volunteer, "in", await code_for(world, b.id, b.lead, "in")))["http_status"] == 201
    world.clock.set(datetime(2026, 1, 6, 6, 0, tzinfo=UTC))  # 14:00: an hour at B
    out_b = await sign(world, b.id, volunteer, "out", await code_for(world, b.id, b.lead, "out"))
    assert out_b["minutes"] == 60
    assert (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()["minutes"] == 300
    assert await sessions_of(world, volunteer_id) == [(a.id, False, False), (b.id, False, False)]


async def test_a_session_forgotten_on_another_project_ends_unrecorded_at_the_next_sign_in(world: World) -> None:
    a, b, volunteer_id, volunteer = await on_two_projects(world)
    await sign(world, a.id, volunteer, "in", await code_for(world, a.id, a.lead, "in"))
    world.clock.advance(hours=23)  # never signed out at A; on site at B the next morning
    signed_in = await sign(world, b.id, volunteer, "in", await code_for(world, b.id, b.lead, "in"))
    assert signed_in["http_status"] == 201, signed_in
    assert await sessions_of(world, volunteer_id) == [(a.id, False, True), (b.id, True, False)]
    assert (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()["minutes"] == 0


async def test_a_volunteer_who_left_a_project_without_signing_out_ends_that_session_to_sign_in_elsewhere(
    world: World,
) -> None:
    """Only A's lead shows A's sign-out code: gone from A without signing out, the volunteer was kept
    from signing in anywhere for the rest of the day. Asked, they end A's session (unrecorded: A's
    lead records that time by hand) and sign in at B; no minute counts twice."""
    a, b, volunteer_id, volunteer = await on_two_projects(world)
    world.clock.set(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))  # 09:00 in China at A
    await sign(world, a.id, volunteer, "in", await code_for(world, a.id, a.lead, "in"))
    world.clock.set(datetime(2026, 1, 6, 5, 0, tzinfo=UTC))  # 13:00 at B, A never signed out
    code_b = await code_for(world, b.id, b.lead, "in")
    refused = await sign(world, b.id, volunteer, "in", code_b)
    assert (refused["http_status"], refused["code"]) == (409, "signed_in_elsewhere")
    assert "确认结束该次签到" in refused["message"]
    ended = await world.client.post(
        f"/api/v1/projects/{b.id}/sign-ins", json={"code": code_b, "end_other_session": True}, headers=volunteer
    )
    assert ended.status_code == 201, ended.text
    assert await sessions_of(world, volunteer_id) == [(a.id, False, True), (b.id, True, False)]
    world.clock.set(datetime(2026, 1, 6, 7, 0, tzinfo=UTC))  # 15:00: two hours at B
    out_b = await sign(world, b.id, volunteer, "out", await code_for(world, b.id, b.lead, "out"))
    assert out_b["minutes"] == 120
    assert (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()["minutes"] == 120
    # the confirmation never ends a session on the same project: signed in there already
    again = await world.client.post(
        f"/api/v1/projects/{a.id}/sign-ins",
        json={"code": await code_for(world, a.id, a.lead, "in"), "end_other_session": True},
        headers=volunteer,
    )
    assert again.status_code == 201, again.text
    same = await world.client.post(
        f"/api/v1/projects/{a.id}/sign-ins",
        json={"code": await code_for(world, a.id, a.lead, "in"), "end_other_session": True},
        headers=volunteer,
    )
    assert (same.status_code, same.json()["code"]) == (409, "already_signed_in")


async def test_the_database_holds_one_open_session_per_volunteer_whatever_the_project(world: World) -> None:
    """What refuses two sign-ins at once is the index, not the look before the insert."""
    a, b, volunteer_id, _ = await on_two_projects(world)
    async with world.runtime.engine.connect() as conn:
        apps = dict(
            (
                await conn.execute(
                    text("SELECT project_id::text, id FROM applications WHERE account_id = :a"), {"a": volunteer_id}
                )
            ).all()
        )
    async with world.runtime.uow() as uow:
        day = world.clock.now().date()
        now = world.clock.now()
        first = await repo.open_attendance(
            uow.session, application_id=apps[a.id], account_id=volunteer_id, service_date=day, now=now
        )
        second = await repo.open_attendance(
            uow.session, application_id=apps[b.id], account_id=volunteer_id, service_date=day, now=now
        )
    assert first is not None
    assert second is None


async def test_a_merge_leaves_the_kept_record_one_open_session(world: World) -> None:
    """Both records of one person signed in (at A and at B): after identity's merge one session
    stays open (the later sign-in) and the other ends unrecorded; the kept volunteer signs out of it
    and may sign in again."""
    a = await world.project(positions=POSITIONS)
    b = await world.project(positions=POSITIONS)
    (kept_id, kept), (merged_id, merged) = await world.volunteer(), await world.volunteer()
    assert (await world.apply(a.position(), kept)).json()["stage"] == "admitted"
    assert (await world.apply(b.position(), merged)).json()["stage"] == "admitted"
    await sign(world, a.id, kept, "in", await code_for(world, a.id, a.lead, "in"))
    world.clock.advance(hours=1)
    await sign(world, b.id, merged, "in", await code_for(world, b.id, b.lead, "in"))
    world.clock.advance(hours=1)
    await world.feed(VolunteerMerged(account_id=kept_id, merged_account_id=merged_id, case_id=uuid.uuid4()))
    assert await sessions_of(world, kept_id) == [(a.id, False, True), (b.id, True, False)]
    assert await sessions_of(world, merged_id) == []
    world.clock.advance(hours=1)
    out = await sign(world, b.id, kept, "out", await code_for(world, b.id, b.lead, "out"))
    assert (out["http_status"], out["minutes"]) == (201, 120)
    assert (await sign(world, a.id, kept, "in", await code_for(world, a.id, a.lead, "in")))["http_status"] == 201


async def migrate_to(conn: AsyncConnection, revision: str) -> None:
    await migrations.migrate_to(conn, SERVICE_ROOT, revision)


async def test_the_upgrade_keeps_the_latest_of_a_volunteers_overlapping_open_sessions(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    """Sessions left open at two projects at once before migration 0016 do not stop it: the latest
    sign-in stays open, the earlier one ends at it, abandoned (its lead records that time by hand)."""
    engine = make_engine(await database_factory("projects_sessions_upgrade"), pool_size=1, max_overflow=0)
    volunteer, other = uuid.uuid4(), uuid.uuid4()
    nine, ten = datetime(2026, 1, 6, 1, 0, tzinfo=UTC), datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
    sessions, applications = {}, {}
    try:
        async with engine.begin() as conn:
            await migrate_to(conn, "0015")
            for account, signed_in in ((volunteer, nine), (volunteer, ten), (other, nine)):
                project, position, application, session = (uuid.uuid4() for _ in range(4))
                await conn.execute(
                    text(
                        "INSERT INTO projects (id, team_id, lead_account_id, created_by, title, description,"
                        " category, region_code, address, contact_name, contact_phone, requirements, starts_on,"
                        " ends_on, recruit_starts_on, recruit_ends_on, status, created_at, published_at)"
                        " VALUES (:p, :t, :t, :t, '项目', '介绍', '敬老助残', '110105', '地址', '王', '010-1',"
                        " '', '2026-01-05', '2026-03-31', '2026-01-05', '2026-01-31', 'published', now(), now())"
                    ),
                    {"p": project, "t": uuid.uuid4()},
                )
                await conn.execute(
                    text(
                        "INSERT INTO positions (id, project_id, name, description, quota, admitted, admission_mode)"
                        " VALUES (:q, :p, '岗', '', 5, 1, 'auto')"
                    ),
                    {"q": position, "p": project},
                )
                await conn.execute(
                    text(
                        "INSERT INTO applications (id, position_id, project_id, account_id, stage, created_at,"
                        " updated_at) VALUES (:a, :q, :p, :v, 'admitted', now(), now())"
                    ),
                    {"a": application, "q": position, "p": project, "v": account},
                )
                await conn.execute(
                    text(
                        "INSERT INTO attendances (id, application_id, service_date, signed_in_at)"
                        " VALUES (:s, :a, '2026-01-06', :at)"
                    ),
                    {"s": session, "a": application, "at": signed_in},
                )
                sessions[(account, signed_in)] = session
                applications[(account, signed_in)] = application
        await upgrade_head(engine, SERVICE_ROOT)
        async with engine.connect() as conn:
            after = {
                r.id: (r.account_id, r.signed_out_at, r.abandoned)
                for r in await conn.execute(text("SELECT id, account_id, signed_out_at, abandoned FROM attendances"))
            }
        # a replica of the release before opens sessions without their volunteer (a rolling update):
        # the trigger fills it from the application, and the one-open-session index holds for it too
        old_sign_in = text(
            "INSERT INTO attendances (id, application_id, service_date, signed_in_at)"
            " VALUES (gen_random_uuid(), :a, '2026-01-07', now()) RETURNING account_id"
        )
        with pytest.raises(DBAPIError, match="uq_attendances_open_account"):
            async with engine.begin() as conn:  # the volunteer's session at ten is open
                await conn.execute(old_sign_in, {"a": applications[(volunteer, nine)]})
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE attendances SET signed_out_at = now() WHERE account_id = :v"), {"v": other})
            filled = (await conn.execute(old_sign_in, {"a": applications[(other, nine)]})).scalar()
    finally:
        await engine.dispose()
    assert filled == other
    assert after == {
        sessions[(volunteer, nine)]: (volunteer, ten, True),
        sessions[(volunteer, ten)]: (volunteer, None, False),
        sessions[(other, nine)]: (other, None, False),
    }


# -- bulk sheets ----------------------------------------------------------------------------------------
async def bulk(world: World, project: Any, rows: list[dict[str, Any]]) -> Any:
    return await world.client.post(
        f"/api/v1/projects/{project.id}/hours/bulk", json={"rows": rows}, headers=project.lead
    )


async def test_a_sheet_over_the_daily_cap_names_the_volunteer_the_day_and_the_rows(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    admitted = [await world.admitted_volunteer(project) for _ in range(3)]
    (_, _, a0), (over_id, _, a1), (_, _, a2) = admitted
    world.clock.advance(days=1)
    rows = [
        {"application_id": a0, "service_date": "2026-01-05", "minutes": 300},
        {"application_id": a1, "service_date": "2026-01-05", "minutes": 300},
        {"application_id": a2, "service_date": "2026-01-05", "minutes": 300},
        {"application_id": a1, "service_date": "2026-01-06", "minutes": 500},
        {"application_id": a1, "service_date": "2026-01-05", "minutes": 500},
    ]
    response = await bulk(world, project, rows)
    assert (response.status_code, response.json()["code"]) == (422, "hours_daily_cap_exceeded")
    detail = response.json()["detail"]
    assert (detail["minutes_that_day"], detail["cap_minutes"]) == (800, 720)
    assert detail["over"] == [
        {
            "account_id": str(over_id),
            "service_date": "2026-01-05",
            "minutes_that_day": 800,
            "application_ids": [a1],
            "rows": [2, 5],
        }
    ]
    totals = (await world.client.get(f"/api/v1/projects/{project.id}/hours/totals", headers=project.lead)).json()
    assert totals["minutes"] == 0


async def test_a_single_recording_over_the_cap_names_its_day(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    volunteer_id, _, application_id = await world.admitted_volunteer(project)
    await record(world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=600)
    over = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=180
    )
    assert over["code"] == "hours_daily_cap_exceeded"
    assert over["detail"]["over"] == [
        {
            "account_id": str(volunteer_id),
            "service_date": "2026-01-05",
            "minutes_that_day": 780,
            "application_ids": [application_id],
        }
    ]
    # a row over the cap on its own, on a day with nothing yet
    fresh_id, _, fresh = await world.admitted_volunteer(project)
    alone = await record(world, project.id, project.lead, application_id=fresh, service_date="2026-01-05", minutes=800)
    assert (alone["http_status"], alone["code"]) == (422, "hours_daily_cap_exceeded")
    assert [(d["account_id"], d["minutes_that_day"]) for d in alone["detail"]["over"]] == [(str(fresh_id), 800)]


async def test_a_sheet_repeating_a_row_is_refused_naming_the_rows_and_records_nothing(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    _, _, other = await world.admitted_volunteer(project)
    morning = {"application_id": application_id, "service_date": "2026-01-05", "minutes": 180, "note": "上午"}
    short = {"application_id": other, "service_date": "2026-01-05", "minutes": 30}
    rows = [morning, short, {**morning, "note": "下午"}, morning, short, {**morning, "minutes": 120}]
    response = await bulk(world, project, rows)
    assert (response.status_code, response.json()["code"]) == (422, "hours_duplicate_rows")
    assert response.json()["detail"] == {"rows": [[1, 4], [2, 5]]}
    assert "第1、4行相同;第2、5行相同" in response.json()["message"]
    assert "备注" in response.json()["message"]  # the way to keep two real sessions of one day
    english = await world.client.post(
        f"/api/v1/projects/{project.id}/hours/bulk",
        json={"rows": rows},
        headers={**project.lead, "Accept-Language": "en"},
    )
    assert "rows 1 and 4 are the same; rows 2 and 5 are the same" in english.json()["message"]
    assert (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()["minutes"] == 0
    # two sessions of one day (another note, other minutes) are two rows
    allowed = await bulk(world, project, [morning, {**morning, "note": "下午"}, {**morning, "minutes": 120}])
    assert allowed.status_code == 201, allowed.text
    assert (await world.client.get("/api/v1/me/hours", headers=volunteer)).json()["minutes"] == 480


async def test_a_sheet_with_a_date_outside_the_project_names_the_rows_on_it(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    rows = [
        {"application_id": application_id, "service_date": day, "minutes": 60}
        for day in ("2026-01-05", "2026-01-04", "2026-01-05", "2026-01-04")
    ]
    response = await bulk(world, project, rows)
    assert response.json()["code"] == "hours_date_outside_project"
    assert response.json()["detail"] == {"service_date": "2026-01-04", "rows": [2, 4]}


# -- corrections ----------------------------------------------------------------------------------------
async def test_a_correction_to_the_recorded_minutes_is_refused_and_nothing_is_written(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    recorded = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=60
    )
    response = await world.client.post(
        f"/api/v1/hours/{recorded['id']}/corrections", json={"minutes": 60, "reason": "核对无误"}, headers=project.lead
    )
    assert (response.status_code, response.json()["code"]) == (422, "hours_correction_unchanged")
    view = (await world.client.get(f"/api/v1/hours/{recorded['id']}", headers=project.lead)).json()
    assert (view["corrected"], view["corrections"]) == (False, [])
    assert [p for p in await world.outbox("hours.corrected") if p["record_id"] == recorded["id"]] == []


async def test_the_correction_event_says_who_corrected(world: World) -> None:
    project = await world.project(positions=POSITIONS)
    _, _, application_id = await world.admitted_volunteer(project)
    recorded = await record(
        world, project.id, project.lead, application_id=application_id, service_date="2026-01-05", minutes=60
    )
    response = await world.client.post(
        f"/api/v1/hours/{recorded['id']}/corrections", json={"minutes": 45, "reason": "提前离开"}, headers=project.admin
    )
    assert response.status_code == 200, response.text
    [event] = [p for p in await world.outbox("hours.corrected") if p["record_id"] == recorded["id"]]
    assert event["corrected_by"] == str(project.admin_id)
    assert (event["previous_minutes"], event["minutes"]) == (60, 45)
