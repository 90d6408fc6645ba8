"""Projects P1-P4: creating, dates and length, copying, publishing, auto-close and extension."""

from __future__ import annotations

import uuid
from datetime import timedelta

from shared.testing import eventually, lock_waiters

from .conftest import World, project_body


async def test_team_lead_creates_a_draft_project_with_positions(world: World) -> None:
    project = await world.project(
        publish=False,
        positions=[
            {"name": "陪伴员", "quota": 5, "admission_mode": "manual"},
            {"name": "引导员", "quota": 3, "admission_mode": "auto"},
        ],
    )
    assert project.data["status"] == "draft"
    assert {p["name"]: p["remaining"] for p in project.data["positions"]} == {"陪伴员": 5, "引导员": 3}
    assert project.data["contact"]["phone"] == "010-12345678"


async def test_positions_keep_the_order_the_team_gave_them_and_a_copy_keeps_it(world: World) -> None:
    given = ["组员", "组长", "安全员"]
    project = await world.project(positions=[{"name": n, "quota": 3, "admission_mode": "manual"} for n in given])
    assert [p["name"] for p in project.data["positions"]] == given
    added = await world.client.post(
        f"/api/v1/projects/{project.id}/positions",
        json={"name": "后勤", "quota": 2, "admission_mode": "auto"},
        headers=project.lead,
    )
    assert added.status_code in (200, 201), added.text
    shown = await world.client.get(f"/api/v1/projects/{project.id}")
    assert [p["name"] for p in shown.json()["positions"]] == [*given, "后勤"]
    copy = await world.client.post(f"/api/v1/projects/{project.id}/copies", json=COPY_DATES, headers=project.admin)
    assert [p["name"] for p in copy.json()["positions"]] == [*given, "后勤"]


async def test_a_contact_email_of_the_longest_valid_length_is_kept(world: World) -> None:
    # 254 characters, the most an address may have (RFC 5321); the column once held 200 (a 500)
    email = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".org"
    assert len(email) == 254
    team_id, _, admin = await world.team()
    contact = {"name": "王老师", "phone": "010-12345678", "email": email}
    created = await world.client.post("/api/v1/projects", json=project_body(team_id, contact=contact), headers=admin)
    assert created.status_code == 201, created.text
    shown = await world.client.get(f"/api/v1/projects/{created.json()['id']}", headers=admin)
    assert shown.json()["contact"]["email"] == email


async def test_text_the_database_cannot_store_is_refused_with_a_code_and_nothing_is_kept(world: World) -> None:
    team_id, _, admin = await world.team()
    before = await world.client.get("/api/v1/me/projects", headers=admin)
    bodies = {
        "NUL in the title": project_body(team_id, title="社区\x00敬老"),
        "NUL in a position's name": project_body(
            team_id, positions=[{"name": "陪\x00伴员", "quota": 5, "admission_mode": "manual"}]
        ),
        "a line break in the title": project_body(team_id, title="社区\n敬老"),
        "a vertical tab in the description": project_body(team_id, description="陪伴\x0b老人"),
    }
    for what, body in bodies.items():
        response = await world.client.post("/api/v1/projects", json=body, headers=admin)
        assert (response.status_code, response.json()["code"]) == (422, "validation_failed"), what
    after = await world.client.get("/api/v1/me/projects", headers=admin)
    assert after.json()["items"] == before.json()["items"]
    # text of several lines keeps its line breaks and tabs
    lines = "第一段:陪伴老人\n第二段:\t协助文体活动\r\n第三段"
    created = await world.client.post(
        "/api/v1/projects", json=project_body(team_id, description=lines, requirements=lines), headers=admin
    )
    assert created.status_code == 201, created.text
    assert (created.json()["description"], created.json()["requirements"]) == (lines, lines)


async def test_an_application_whose_motivation_holds_a_nul_is_refused_and_the_place_stays_free(world: World) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 1, "admission_mode": "auto"}])
    _, volunteer = await world.volunteer()
    url = f"/api/v1/positions/{project.position(0)}/applications"
    refused = await world.client.post(url, json={"motivation": "我\x00想参加"}, headers=volunteer)
    assert (refused.status_code, refused.json()["code"]) == (422, "validation_failed")
    admitted = await world.client.post(url, json={"motivation": "我想参加\n周末都有空"}, headers=volunteer)
    assert admitted.status_code == 201, admitted.text
    assert admitted.json()["stage"] == "admitted"


async def test_stranger_cannot_create_a_project_for_a_team(world: World) -> None:
    team_id, _, _ = await world.team()
    _, stranger = await world.volunteer()
    response = await world.client.post("/api/v1/projects", json=project_body(team_id), headers=stranger)
    assert response.status_code == 403
    assert response.json()["code"] == "not_team_manager"


async def test_recruitment_outside_project_dates_is_refused_with_its_own_code(world: World) -> None:
    team_id, _, admin = await world.team()
    body = project_body(team_id, recruit_starts_on="2026-01-01")  # before the project starts
    response = await world.client.post("/api/v1/projects", json=body, headers=admin)
    assert response.status_code == 422
    assert response.json()["code"] == "recruitment_outside_project"
    assert "招募" in response.json()["message"]


async def test_project_longer_than_365_days_is_refused_with_its_own_code(world: World) -> None:
    team_id, _, admin = await world.team()
    body = project_body(team_id, starts_on="2026-01-05", ends_on="2027-01-05")  # 366 days
    response = await world.client.post("/api/v1/projects", json=body, headers={**admin, "Accept-Language": "en"})
    assert response.status_code == 422
    assert response.json()["code"] == "project_too_long"
    assert "365" in response.json()["message"]


async def test_project_of_exactly_365_days_is_accepted(world: World) -> None:
    team_id, _, admin = await world.team()
    body = project_body(team_id, starts_on="2026-01-05", ends_on="2027-01-04")
    response = await world.client.post("/api/v1/projects", json=body, headers=admin)
    assert response.status_code == 201, response.text


#: the new dates a copy asks for, after the source project (which ends 2026-03-31)
COPY_DATES = {
    "starts_on": "2026-04-01",
    "ends_on": "2026-06-30",
    "recruit_starts_on": "2026-04-01",
    "recruit_ends_on": "2026-04-15",
}


async def test_copy_keeps_content_and_asks_only_for_new_dates(world: World) -> None:
    project = await world.project()
    dates = COPY_DATES
    response = await world.client.post(f"/api/v1/projects/{project.id}/copies", json=dates, headers=project.lead)
    assert response.status_code == 201, response.text
    copy = response.json()
    assert copy["status"] == "draft"
    assert copy["id"] != project.id
    assert copy["copied_from"] == project.id
    assert copy["title"] == project.data["title"]
    assert copy["contact"] == project.data["contact"]
    assert [(p["name"], p["quota"], p["admitted"]) for p in copy["positions"]] == [
        (p["name"], p["quota"], 0) for p in project.data["positions"]
    ]
    assert copy["starts_on"] == "2026-04-01"
    extra = await world.client.post(
        f"/api/v1/projects/{project.id}/copies", json={**dates, "title": "x"}, headers=project.lead
    )
    assert extra.status_code == 422  # nothing but the dates


async def test_copy_applies_the_date_rules(world: World) -> None:
    project = await world.project()
    dates = {
        "starts_on": "2026-04-01",
        "ends_on": "2027-04-30",
        "recruit_starts_on": "2026-04-01",
        "recruit_ends_on": "2026-04-15",
    }
    response = await world.client.post(f"/api/v1/projects/{project.id}/copies", json=dates, headers=project.lead)
    assert response.json()["code"] == "project_too_long"


async def test_publishing_raises_project_published(world: World) -> None:
    project = await world.project()
    assert project.data["status"] == "published"
    assert project.data["recruiting"] is True
    published = await world.outbox("project.published")
    assert any(p["project_id"] == project.id for p in published)


async def close(world: World, project_id: str) -> None:
    """Move past the project's end (2026-03-31) and run the sweep."""
    world.clock.set(world.clock.now().replace(year=2026, month=4, day=1, hour=1))
    from projects.services import close_due_projects

    await close_due_projects(world.runtime)
    response = await world.client.get(f"/api/v1/projects/{project_id}")
    assert response.json()["status"] == "closed"


async def test_sweep_closes_projects_after_their_end_date_and_raises_project_closed(world: World) -> None:
    project = await world.project()
    from projects.services import close_due_projects

    world.clock.set(world.clock.now().replace(month=3, day=30))
    await close_due_projects(world.runtime)
    assert (await world.client.get(f"/api/v1/projects/{project.id}")).json()["status"] == "published"
    await close(world, project.id)
    closed = [p for p in await world.outbox("project.closed") if p["project_id"] == project.id]
    assert len(closed) == 1
    assert closed[0]["lead_account_ids"] == [str(project.lead_id)]
    # the team's admins (who may extend it) are told too, and whether their one extension is left
    assert closed[0]["team_admin_account_ids"] == [str(project.admin_id)]
    assert closed[0]["team_admin_extension_used"] is False


async def extend(world: World, project_id: str, headers: dict[str, str], new_end: str = "2026-06-30") -> dict:
    response = await world.client.post(
        f"/api/v1/projects/{project_id}/extensions", json={"new_end_date": new_end}, headers=headers
    )
    return {**response.json(), "http_status": response.status_code}


async def test_team_admin_extends_once_within_30_days_of_closing(world: World) -> None:
    project = await world.project()
    await close(world, project.id)
    world.clock.advance(days=29)
    result = await extend(world, project.id, project.admin)
    assert result["http_status"] == 200, result
    assert result["ends_on"] == "2026-06-30"
    assert (await world.client.get(f"/api/v1/projects/{project.id}")).json()["status"] == "published"
    extended = [p for p in await world.outbox("project.extended") if p["project_id"] == project.id]
    assert len(extended) == 1
    assert extended[0]["by_national_admin"] is False
    # closes again after the new end date; the team admin's one extension is used up
    world.clock.set(world.clock.now().replace(month=7, day=2))
    from projects.services import close_due_projects

    await close_due_projects(world.runtime)
    closings = [p for p in await world.outbox("project.closed") if p["project_id"] == project.id]
    assert [c["team_admin_extension_used"] for c in closings] == [False, True]
    world.clock.advance(days=1)
    again = await extend(world, project.id, project.admin, "2026-08-31")
    assert again["code"] == "extension_already_used"


async def test_team_admin_cannot_extend_31_days_after_closing(world: World) -> None:
    project = await world.project()
    await close(world, project.id)
    world.clock.advance(days=31)
    result = await extend(world, project.id, project.admin)
    assert result["http_status"] == 403
    assert result["code"] == "extension_needs_national_admin"


async def test_national_admin_extends_59_days_after_closing(world: World) -> None:
    project = await world.project()
    await close(world, project.id)
    world.clock.advance(days=59)
    result = await extend(world, project.id, world.national_admin(), "2026-07-31")
    assert result["http_status"] == 200, result
    extended = [p for p in await world.outbox("project.extended") if p["project_id"] == project.id]
    assert extended[0]["by_national_admin"] is True
    # the team's admins, told of the closing, hear of the extension as well
    assert extended[0]["team_admin_account_ids"] == [str(project.admin_id)]


async def test_nobody_extends_61_days_after_closing(world: World) -> None:
    project = await world.project()
    await close(world, project.id)
    world.clock.advance(days=61)
    by_admin = await extend(world, project.id, project.admin, "2026-07-31")
    by_national = await extend(world, project.id, world.national_admin(), "2026-07-31")
    assert by_admin["code"] == by_national["code"] == "extension_window_over"
    assert "60" in by_national["message"]


async def test_project_lead_who_is_not_team_admin_cannot_extend(world: World) -> None:
    project = await world.project()
    await close(world, project.id)
    world.clock.advance(days=2)
    result = await extend(world, project.id, project.lead)
    assert result["http_status"] == 403
    # the lead manages the project; the refusal says who extends it, not that leads may not manage
    assert result["code"] == "extension_needs_team_admin"
    assert result["message"] == "项目延期须由本团体的管理员办理(项目负责人不能延期)"
    _, stranger = await world.volunteer()
    assert (await extend(world, project.id, stranger))["code"] == "not_team_manager"


AUTO_ONE = [{"name": "引导员", "quota": 1, "admission_mode": "auto"}]


async def stage_of(world: World, application_id: str, headers: dict[str, str]) -> str:
    return str((await world.client.get(f"/api/v1/applications/{application_id}", headers=headers)).json()["stage"])


async def test_a_closed_projects_automatic_positions_admit_nobody_until_it_is_extended(world: World) -> None:
    """A raised quota is refused as a new position is; a place a leave frees stays free while the
    project is closed, and goes to the one waiting when it is extended."""
    project = await world.project(positions=AUTO_ONE)
    _, first, first_application = await world.admitted_volunteer(project)
    _, second = await world.volunteer()
    waiting = (await world.apply(project.position(), second)).json()
    assert waiting["stage"] == "applied"
    await close(world, project.id)
    raised = await world.client.put(
        f"/api/v1/positions/{project.position()}/quota", json={"quota": 2}, headers=project.lead
    )
    assert (raised.status_code, raised.json()["code"]) == (409, "project_closed")
    left = await world.client.post(f"/api/v1/applications/{first_application}/leave", headers=first)
    assert left.status_code == 200, left.text
    from projects.services import give_places_left

    world.clock.advance(days=1)
    await give_places_left(world.runtime)  # the admission sweep finds nothing to give either
    assert await stage_of(world, waiting["id"], second) == "applied"
    assert (await extend(world, project.id, project.admin))["http_status"] == 200
    assert await stage_of(world, waiting["id"], second) == "admitted"


async def test_a_leave_while_the_project_is_being_extended_waits_and_gives_its_place_to_the_one_waiting(
    world: World,
) -> None:
    """The leave reads the project's status held: it waits for the extension in progress and finds
    the project open again, so its place goes to the next in line. Unheld, it read "closed", gave
    the place to nobody, and the extension, which had counted the position full, marked nothing."""
    import asyncio
    from datetime import date

    from projects import services
    from shared.auth import ROLE_VOLUNTEER, Principal

    project = await world.project(positions=AUTO_ONE)
    first_id, _, first_application = await world.admitted_volunteer(project)
    _, second = await world.volunteer()
    waiting = (await world.apply(project.position(), second)).json()
    await close(world, project.id)
    admin = Principal(project.admin_id, frozenset({ROLE_VOLUNTEER}))
    leaver = Principal(first_id, frozenset({ROLE_VOLUNTEER}))
    async with world.runtime.uow() as extension:
        free = await services.extend_project(extension, admin, uuid.UUID(project.id), date(2026, 6, 30))
        assert free == []  # the position is full as the extension counts it

        async def leave() -> uuid.UUID | None:
            async with world.runtime.uow() as uow:
                return await services.leave(uow, leaver, uuid.UUID(first_application), session_max_minutes=960)

        leaving = asyncio.ensure_future(leave())

        async def leave_waits() -> bool:
            return leaving.done() or bool(await lock_waiters(world.runtime.engine))

        await eventually(leave_waits)
        assert not leaving.done()
    await leaving  # the extension committed: the project is open and the next in line is admitted
    assert await stage_of(world, waiting["id"], second) == "admitted"


async def test_a_copy_goes_to_the_copier_when_the_source_lead_no_longer_leads_in_the_team(world: World) -> None:
    from shared.contracts.teams import TeamProjectLeadRemoved

    project = await world.project()
    await world.feed(TeamProjectLeadRemoved(team_id=project.team_id, account_id=project.lead_id))
    dates = COPY_DATES
    response = await world.client.post(f"/api/v1/projects/{project.id}/copies", json=dates, headers=project.admin)
    assert response.status_code == 201, response.text
    assert response.json()["lead_account_id"] == str(project.admin_id)


async def test_open_project_cannot_be_extended(world: World) -> None:
    project = await world.project()
    result = await extend(world, project.id, project.admin)
    assert result["code"] == "project_not_closed"


async def test_draft_is_hidden_from_the_public_and_listing_is_paginated(world: World) -> None:
    project = await world.project(publish=False)
    anonymous = await world.client.get(f"/api/v1/projects/{project.id}")
    assert anonymous.status_code == 404
    own = await world.client.get(f"/api/v1/projects/{project.id}", headers=project.lead)
    assert own.status_code == 200
    for _ in range(2):
        await world.project()
    page = await world.client.get("/api/v1/projects", params={"limit": 1})
    assert page.status_code == 200
    body = page.json()
    assert len(body["items"]) == 1
    assert body["next_cursor"]
    nxt = await world.client.get("/api/v1/projects", params={"limit": 1, "cursor": body["next_cursor"]})
    assert nxt.json()["items"][0]["id"] != body["items"][0]["id"]
    assert all(i["status"] != "draft" for i in body["items"])


async def test_the_public_list_puts_the_latest_publication_first(world: World) -> None:
    drafted_first = await world.project(publish=False)
    published_first = await world.client.post(
        "/api/v1/projects", json=project_body(drafted_first.team_id), headers=drafted_first.admin
    )
    publish = f"/api/v1/projects/{published_first.json()['id']}/publication"
    assert (await world.client.post(publish, headers=drafted_first.admin)).status_code == 200
    world.clock.advance(timedelta(hours=1))
    publish = f"/api/v1/projects/{drafted_first.id}/publication"
    assert (await world.client.post(publish, headers=drafted_first.lead)).status_code == 200
    listed = await world.client.get("/api/v1/projects", params={"team_id": str(drafted_first.team_id)})
    assert [p["id"] for p in listed.json()["items"]] == [drafted_first.id, published_first.json()["id"]]
    first, second = listed.json()["items"]
    assert first["published_at"] > second["published_at"]
    # and page by page in the same order
    page = await world.client.get("/api/v1/projects", params={"team_id": str(drafted_first.team_id), "limit": 1})
    rest = await world.client.get(
        "/api/v1/projects",
        params={"team_id": str(drafted_first.team_id), "limit": 1, "cursor": page.json()["next_cursor"]},
    )
    assert [page.json()["items"][0]["id"], rest.json()["items"][0]["id"]] == [first["id"], second["id"]]
    assert rest.json()["next_cursor"] is None


async def test_only_the_team_sees_which_account_leads_a_project(world: World) -> None:
    project = await world.project()
    _, stranger = await world.volunteer()
    for who, headers in {"anonymous": {}, "a volunteer": stranger}.items():
        shown = await world.client.get(f"/api/v1/projects/{project.id}", headers=headers)
        assert shown.status_code == 200, who
        assert shown.json()["lead_account_id"] is None, who
        assert shown.json()["contact"]["phone"] == "010-12345678", who
    for who, headers in {"the lead": project.lead, "a team admin": project.admin}.items():
        shown = await world.client.get(f"/api/v1/projects/{project.id}", headers=headers)
        assert shown.json()["lead_account_id"] == str(project.lead_id), who


async def test_unknown_project_is_404_with_code(world: World) -> None:
    response = await world.client.get(f"/api/v1/projects/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["code"] == "project_not_found"


async def test_my_projects_shows_drafts_and_who_may_still_extend_a_closed_project(world: World) -> None:
    project = await world.project()
    draft = await world.client.post(
        "/api/v1/projects", json=project_body(project.team_id, title="草稿项目"), headers=project.admin
    )
    assert draft.status_code == 201

    async def open_to() -> object:
        response = await world.client.get("/api/v1/me/projects", params={"status": "closed"}, headers=project.admin)
        [item] = [i for i in response.json()["items"] if i["id"] == project.id]
        return item["extension_open_to"]

    mine = (await world.client.get("/api/v1/me/projects", headers=project.admin)).json()["items"]
    assert {i["status"] for i in mine} == {"draft", "published"}
    led = (await world.client.get("/api/v1/me/projects", headers=project.lead)).json()["items"]
    assert [i["id"] for i in led] == [project.id]  # the lead leads only this one
    await close(world, project.id)
    world.clock.advance(days=1)
    assert await open_to() == "team_admin"
    world.clock.advance(days=30)
    assert await open_to() == "national_admin"
    world.clock.advance(days=30)
    assert await open_to() is None


async def test_draft_can_be_edited_with_the_date_rules_applied(world: World) -> None:
    project = await world.project(publish=False)
    url = f"/api/v1/projects/{project.id}"
    edited = await world.client.patch(
        url, json={"title": "社区敬老(周末)", "recruit_ends_on": "2026-02-15"}, headers=project.lead
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["title"], edited.json()["recruit_ends_on"]) == ("社区敬老(周末)", "2026-02-15")
    outside = await world.client.patch(url, json={"recruit_ends_on": "2026-04-15"}, headers=project.lead)
    assert outside.json()["code"] == "recruitment_outside_project"
    await world.client.post(f"{url}/publication", headers=project.lead)
    late = await world.client.patch(url, json={"title": "改名", "starts_on": "2026-01-06"}, headers=project.lead)
    assert (late.status_code, late.json()["code"]) == (409, "published_fields_locked")
    assert late.json()["detail"] == {"fields": ["starts_on", "title"]}
    # what applicants read and reach the managers by is still corrected (P8's published contact)
    contact = {"name": "李老师", "phone": "010-87654321", "email": "new@example.org"}
    fixed = await world.client.patch(
        url, json={"contact": contact, "requirements": "有耐心,会手语优先"}, headers=project.lead
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["contact"]["phone"] == "010-87654321"
    assert fixed.json()["title"] == "社区敬老(周末)"


async def test_positions_can_be_added_and_quota_never_drops_below_admitted(world: World) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 3, "admission_mode": "auto"}])
    for _ in range(2):
        await world.admitted_volunteer(project)
    added = await world.client.post(
        f"/api/v1/projects/{project.id}/positions",
        json={"name": "后勤", "quota": 4, "admission_mode": "manual"},
        headers=project.lead,
    )
    assert added.status_code == 201
    assert {p["name"] for p in added.json()["positions"]} == {"引导员", "后勤"}
    too_low = await world.client.put(
        f"/api/v1/positions/{project.position()}/quota", json={"quota": 1}, headers=project.lead
    )
    assert too_low.status_code == 409
    assert too_low.json()["code"] == "quota_below_admitted"
    assert "2" in too_low.json()["message"]
    ok = await world.client.put(
        f"/api/v1/positions/{project.position()}/quota", json={"quota": 2}, headers=project.lead
    )
    assert ok.status_code == 200
    stranger = await world.client.put(
        f"/api/v1/positions/{project.position()}/quota", json={"quota": 9}, headers=(await world.volunteer())[1]
    )
    assert stranger.status_code == 403


async def test_a_lead_the_team_removed_no_longer_runs_the_project_until_an_admin_hands_it_on(world: World) -> None:
    from shared.contracts.teams import TeamProjectLeadRemoved

    project = await world.project(positions=[{"name": "陪伴员", "quota": 5, "admission_mode": "manual"}])
    _, volunteer = await world.volunteer()
    application_id = (await world.apply(project.position(), volunteer)).json()["id"]
    await world.feed(TeamProjectLeadRemoved(team_id=project.team_id, account_id=project.lead_id))

    refused = await world.client.post(f"/api/v1/applications/{application_id}/admission", headers=project.lead)
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_project_manager"

    # only a team admin hands the project on, and only to one of the team's admins or leads
    new_lead_id, new_lead = await world.lead(project.team_id)
    by_lead = await world.client.put(
        f"/api/v1/projects/{project.id}/lead", json={"lead_account_id": str(new_lead_id)}, headers=new_lead
    )
    assert by_lead.status_code == 403
    assert by_lead.json()["code"] == "not_team_admin"
    outsider = await world.client.put(
        f"/api/v1/projects/{project.id}/lead", json={"lead_account_id": str(uuid.uuid4())}, headers=project.admin
    )
    assert outsider.status_code == 422
    assert outsider.json()["code"] == "lead_not_in_team"
    handed = await world.client.put(
        f"/api/v1/projects/{project.id}/lead", json={"lead_account_id": str(new_lead_id)}, headers=project.admin
    )
    assert handed.status_code == 200, handed.text
    assert handed.json()["lead_account_id"] == str(new_lead_id)
    admitted = await world.client.post(f"/api/v1/applications/{application_id}/admission", headers=new_lead)
    assert admitted.status_code == 200, admitted.text


async def test_a_closed_project_admits_nobody_until_it_is_extended(world: World) -> None:
    project = await world.project(positions=[{"name": "陪伴员", "quota": 5, "admission_mode": "manual"}])
    _, volunteer = await world.volunteer()
    application_id = (await world.apply(project.position(), volunteer)).json()["id"]
    await close(world, project.id)
    refused = await world.client.post(f"/api/v1/applications/{application_id}/admission", headers=project.lead)
    assert refused.status_code == 409
    assert refused.json()["code"] == "project_closed"
    extended = await world.client.post(
        f"/api/v1/projects/{project.id}/extensions", json={"new_end_date": "2026-04-30"}, headers=project.admin
    )
    assert extended.status_code == 200, extended.text
    admitted = await world.client.post(f"/api/v1/applications/{application_id}/admission", headers=project.lead)
    assert admitted.status_code == 200, admitted.text


async def test_a_project_or_position_created_again_under_its_idempotency_key_is_made_once(world: World) -> None:
    """A lead's app retries a creation whose answer was lost: under the same key it gets the first
    one's project back, not a second project (or position) beside it."""
    team_id, _, _ = await world.team()
    lead_id, lead = await world.lead(team_id)
    body = project_body(team_id, lead_account_id=str(lead_id))
    keyed = {**lead, "Idempotency-Key": "create-2026-01-05"}
    first = await world.client.post("/api/v1/projects", json=body, headers=keyed)
    again = await world.client.post("/api/v1/projects", json=body, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await world.client.post("/api/v1/projects", json={**body, "title": "另一个项目"}, headers=keyed)
    assert other.json()["code"] == "idempotency_key_reused"

    url = f"/api/v1/projects/{first.json()['id']}/positions"
    position = {"name": "安检员", "quota": 3, "admission_mode": "auto"}
    added = [
        await world.client.post(url, json=position, headers={**lead, "Idempotency-Key": "position-1"}) for _ in range(2)
    ]
    assert [r.status_code for r in added] == [201, 201]
    names = [p["name"] for p in added[1].json()["positions"]]
    assert names.count("安检员") == 1
    without_key = await world.client.post(url, json=position, headers=lead)  # no key: a second one, as asked
    assert [p["name"] for p in without_key.json()["positions"]].count("安检员") == 2


async def test_a_lead_the_team_withdrew_hears_nothing_more_and_the_team_admins_hear_instead(world: World) -> None:
    """A volunteer leaving, the project closing, its extension: the lead hears of them while they
    hold a role in the team; after the team withdrew it, its admins do (P6: someone running the
    project is told at once). 我的项目 no longer lists its projects to them, drafts included."""
    from datetime import UTC, datetime

    from projects import services
    from shared.contracts.teams import TeamProjectLeadRemoved

    project = await world.project(ends_on="2026-02-10", recruit_ends_on="2026-01-31")
    draft = await world.project(publish=False)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    for removed in (project, draft):
        await world.feed(TeamProjectLeadRemoved(team_id=removed.team_id, account_id=removed.lead_id))
    left = await world.client.post(f"/api/v1/applications/{application_id}/leave", headers=volunteer)
    assert left.status_code == 200, left.text
    [event] = [e for e in await world.outbox("application.left") if e["application_id"] == application_id]
    assert event["lead_account_ids"] == [str(project.admin_id)]

    world.clock.set(datetime(2026, 2, 11, 2, 0, tzinfo=UTC))
    await services.close_due_projects(world.runtime)
    [closed] = [e for e in await world.outbox("project.closed") if e["project_id"] == project.id]
    assert str(project.lead_id) not in closed["lead_account_ids"]
    assert str(project.admin_id) in closed["team_admin_account_ids"]
    extension = {"new_end_date": "2026-03-10"}
    extended = await world.client.post(
        f"/api/v1/projects/{project.id}/extensions", json=extension, headers=project.admin
    )
    assert extended.status_code == 200, extended.text
    [event] = [e for e in await world.outbox("project.extended") if e["project_id"] == project.id]
    assert event["lead_account_ids"] == [str(project.admin_id)]

    for removed in (project, draft):
        mine = (await world.client.get("/api/v1/me/projects", headers=removed.lead)).json()["items"]
        assert removed.id not in [p["id"] for p in mine]
