"""Applications P5, P6, P8: applying, stages and their events, quotas under concurrency, leaving."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select, text

from .conftest import World

AUTO = [{"name": "引导员", "quota": 2, "admission_mode": "auto"}]
MANUAL = [{"name": "陪伴员", "quota": 1, "admission_mode": "manual"}]


async def test_verified_volunteer_applies_during_recruitment(world: World) -> None:
    project = await world.project(positions=MANUAL)
    volunteer_id, volunteer = await world.volunteer()
    response = await world.apply(project.position(), volunteer)
    assert response.status_code == 201, response.text
    assert response.json()["stage"] == "applied"
    submitted = [p for p in await world.outbox("application.submitted") if p["application_id"] == response.json()["id"]]
    assert submitted[0]["account_id"] == str(volunteer_id)


async def test_unverified_volunteer_cannot_apply(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, unverified = await world.volunteer(verified=False)
    response = await world.apply(project.position(), unverified)
    assert response.status_code == 403
    assert response.json()["code"] == "volunteer_not_verified"


async def test_applying_outside_recruitment_is_refused(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer = await world.volunteer()
    world.clock.set(world.clock.now().replace(month=2, day=1))  # recruitment ended on 31 January
    response = await world.apply(project.position(), volunteer)
    assert response.status_code == 409
    assert response.json()["code"] == "project_not_recruiting"
    draft = await world.project(positions=MANUAL, publish=False)
    world.clock.set(world.clock.now().replace(month=1, day=10))
    # a draft is its team's only: its positions do not exist for a volunteer (nor its dates)
    unseen = await world.apply(draft.position(), volunteer)
    assert (unseen.status_code, unseen.json()["code"], unseen.json()["detail"]) == (404, "position_not_found", None)


async def test_one_application_per_volunteer_and_position(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer = await world.volunteer()
    first = await world.apply(project.position(), volunteer)
    again = await world.apply(project.position(), volunteer)
    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["code"] == "already_applied"
    assert again.json()["detail"] == {"stage": "applied"}
    assert again.json()["message"] == "您已报名该岗位(报名状态:待审核),不能重复报名"
    # rejected, the volunteer reads that, not that the application is still there to wait on
    application_id = first.json()["id"]
    rejected = await world.client.post(
        f"/api/v1/applications/{application_id}/stage",
        json={"stage": "rejected", "reason": "名额已定"},
        headers=project.lead,
    )
    assert rejected.status_code == 200, rejected.text
    after = await world.client.post(
        f"/api/v1/positions/{project.position()}/applications", json={}, headers={**volunteer, "Accept-Language": "en"}
    )
    assert after.json()["detail"] == {"stage": "rejected"}
    assert after.json()["message"] == "You have already applied to this position (the application is rejected)"


async def test_manual_admission_and_every_stage_raise_events(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer = await world.volunteer()
    application_id = (await world.apply(project.position(), volunteer)).json()["id"]
    lead = project.lead
    url = f"/api/v1/applications/{application_id}"
    assert (await world.client.post(f"{url}/stage", json={"stage": "interview"}, headers=lead)).status_code == 200
    admitted = await world.client.post(f"{url}/admission", headers=lead)
    assert admitted.json()["stage"] == "admitted"
    for stage in ("training", "serving", "completed"):
        moved = await world.client.post(f"{url}/stage", json={"stage": stage}, headers=lead)
        assert moved.status_code == 200, moved.text
        assert moved.json()["stage"] == stage
    changes = [
        p["stage"] for p in await world.outbox("application.stage_changed") if p["application_id"] == application_id
    ]
    assert changes == ["interview", "training", "serving", "completed"]
    assert any(p["application_id"] == application_id for p in await world.outbox("application.admitted"))
    skipping = await world.client.post(f"{url}/stage", json={"stage": "training"}, headers=lead)
    assert skipping.status_code == 409
    assert skipping.json()["code"] == "stage_transition_not_allowed"
    # the stages by their names in the message, their codes in the detail
    assert skipping.json()["message"] == "报名当前为“已完成”,不能变更为“培训”"
    assert skipping.json()["detail"] == {"current": "completed", "target": "training"}
    in_english = await world.client.post(
        f"{url}/stage", json={"stage": "training"}, headers={**lead, "Accept-Language": "en"}
    )
    assert in_english.json()["message"] == "The application is at stage 'completed' and cannot move to 'training'"


async def test_rejection_raises_application_rejected_with_reason(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer = await world.volunteer()
    application_id = (await world.apply(project.position(), volunteer)).json()["id"]
    response = await world.client.post(
        f"/api/v1/applications/{application_id}/stage",
        json={"stage": "rejected", "reason": "岗位需要周末全天服务"},
        headers=project.lead,
    )
    assert response.json()["stage"] == "rejected"
    [event] = [p for p in await world.outbox("application.rejected") if p["application_id"] == application_id]
    assert event["reason"] == "岗位需要周末全天服务"


async def test_manual_admission_refused_when_the_position_is_full(world: World) -> None:
    project = await world.project(positions=MANUAL)  # one place
    ids = []
    for _ in range(2):
        _, volunteer = await world.volunteer()
        ids.append((await world.apply(project.position(), volunteer)).json()["id"])
    first = await world.client.post(f"/api/v1/applications/{ids[0]}/admission", headers=project.lead)
    second = await world.client.post(f"/api/v1/applications/{ids[1]}/admission", headers=project.admin)
    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["code"] == "position_full"


async def test_auto_admission_admits_in_order_until_full_then_queues(world: World) -> None:
    project = await world.project(positions=AUTO)  # two places
    stages = []
    for _ in range(3):
        _, volunteer = await world.volunteer()
        stages.append((await world.apply(project.position(), volunteer)).json()["stage"])
    assert stages == ["admitted", "admitted", "applied"]
    automatic = [p for p in await world.outbox("application.admitted") if p["project_id"] == project.id]
    assert len(automatic) == 2
    assert all(p["automatic"] for p in automatic)


async def test_200_concurrent_applications_to_10_places_admit_exactly_10(world: World) -> None:
    project = await world.project(positions=[{"name": "检票员", "quota": 10, "admission_mode": "auto"}])
    volunteers = [await world.volunteer() for _ in range(200)]
    responses = await asyncio.gather(*(world.apply(project.position(), headers) for _, headers in volunteers))
    assert all(r.status_code == 201 for r in responses), {r.status_code for r in responses}
    assert sum(r.json()["stage"] == "admitted" for r in responses) == 10
    async with world.runtime.engine.connect() as conn:
        admitted_rows = await conn.scalar(
            text("SELECT count(*) FROM applications WHERE position_id = :p AND stage = 'admitted'"),
            {"p": uuid.UUID(project.position())},
        )
        counter = await conn.scalar(
            text("SELECT admitted FROM positions WHERE id = :p"), {"p": uuid.UUID(project.position())}
        )
    assert admitted_rows == counter == 10


async def test_a_surge_on_one_position_sends_at_most_the_replicas_turns_to_the_database(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applications to one position beyond the replica's turns (``apply_turns_per_position``) wait in
    the replica without a connection, so a surge cannot take every pooled connection to wait on the
    position's row; quotas still hold."""
    from projects.turns import PositionTurns

    class Counting(PositionTurns):
        def __init__(self, limit: int) -> None:
            super().__init__(limit)
            self.now, self.peak = 0, 0

        @asynccontextmanager
        async def turn(self, position_id: uuid.UUID) -> AsyncIterator[None]:
            async with super().turn(position_id):
                self.now += 1
                self.peak = max(self.peak, self.now)
                try:
                    yield
                finally:
                    self.now -= 1

    counting = Counting(2)
    monkeypatch.setattr(world.runtime, "turns", counting)
    project = await world.project(positions=[{"name": "检票员", "quota": 5, "admission_mode": "auto"}])
    volunteers = [await world.volunteer() for _ in range(40)]
    responses = await asyncio.gather(*(world.apply(project.position(), headers) for _, headers in volunteers))
    assert all(r.status_code == 201 for r in responses), {r.status_code for r in responses}
    assert sum(r.json()["stage"] == "admitted" for r in responses) == 5
    assert counting.peak == 2
    assert len(counting) == 0


async def test_concurrent_manual_admissions_never_overbook(world: World) -> None:
    project = await world.project(positions=[{"name": "讲解员", "quota": 3, "admission_mode": "manual"}])
    ids = []
    for _ in range(20):
        _, volunteer = await world.volunteer()
        ids.append((await world.apply(project.position(), volunteer)).json()["id"])
    results = await asyncio.gather(
        *(world.client.post(f"/api/v1/applications/{i}/admission", headers=project.lead) for i in ids)
    )
    assert sorted(r.status_code for r in results) == [200] * 3 + [409] * 17


async def test_pending_application_can_be_deleted_by_its_volunteer(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer = await world.volunteer()
    application_id = (await world.apply(project.position(), volunteer)).json()["id"]
    deleted = await world.client.delete(f"/api/v1/applications/{application_id}", headers=volunteer)
    assert deleted.status_code == 204
    assert any(p["application_id"] == application_id for p in await world.outbox("application.withdrawn"))
    again = await world.apply(project.position(), volunteer)  # a deleted application does not block a new one
    assert again.status_code == 201


async def test_admitted_application_cannot_be_deleted_only_left(world: World) -> None:
    project = await world.project(positions=AUTO)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    response = await world.client.delete(f"/api/v1/applications/{application_id}", headers=volunteer)
    assert response.status_code == 409
    assert response.json()["code"] == "withdraw_not_pending"


async def test_admitted_volunteer_without_hours_leaves_and_the_lead_is_notified(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    response = await world.client.post(f"/api/v1/applications/{application_id}/leave", headers=volunteer)
    assert response.status_code == 200, response.text
    assert response.json()["stage"] == "left"
    [left] = [p for p in await world.outbox("application.left") if p["application_id"] == application_id]
    assert left["lead_account_ids"] == [str(project.lead_id)]
    view = (await world.client.get(f"/api/v1/projects/{project.id}")).json()
    assert view["positions"][0]["admitted"] == 0


async def test_leave_event_shows_the_lead_the_masked_name_and_number_and_the_admission_mode(world: World) -> None:
    """The lead's email names the volunteer as projects shows them to leads; on a manual position
    nobody takes the freed place by itself."""
    project = await world.project(positions=MANUAL)
    volunteer_id, volunteer, application_id = await world.admitted_volunteer(project)
    await world.client.post(f"/api/v1/applications/{application_id}/leave", headers=volunteer)
    [left] = [p for p in await world.outbox("application.left") if p["application_id"] == application_id]
    assert left["masked_name"] == "张*"
    assert left["volunteer_number"] == f"11{volunteer_id.int % 10**16:016d}"
    assert left["admission_mode"] == "manual"
    assert left["next_admitted"] is False


async def test_admitted_volunteer_with_hours_cannot_leave(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    recorded = await world.client.post(
        f"/api/v1/projects/{project.id}/hours",
        json={"application_id": application_id, "service_date": "2026-01-05", "minutes": 120},
        headers=project.lead,
    )
    assert recorded.status_code == 201, recorded.text
    response = await world.client.post(f"/api/v1/applications/{application_id}/leave", headers=volunteer)
    assert response.status_code == 409
    assert response.json()["code"] == "leave_refused_hours_recorded"
    assert "服务时间" in response.json()["message"]


async def test_freed_place_goes_to_the_next_in_line_on_an_auto_position(world: World) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 1, "admission_mode": "auto"}])
    _, first, first_id = await world.admitted_volunteer(project)
    _, second = await world.volunteer()
    _, third = await world.volunteer()
    second_id = (await world.apply(project.position(), second)).json()["id"]
    third_id = (await world.apply(project.position(), third)).json()["id"]
    await world.client.post(f"/api/v1/applications/{first_id}/leave", headers=first)
    second_view = (await world.client.get(f"/api/v1/applications/{second_id}", headers=second)).json()
    third_view = (await world.client.get(f"/api/v1/applications/{third_id}", headers=third)).json()
    assert second_view["stage"] == "admitted"
    assert third_view["stage"] == "applied"
    # the lead's notice says the place is taken again: the event says so, and comes first
    [left] = [p for p in await world.outbox("application.left") if p["application_id"] == first_id]
    assert left["admission_mode"] == "auto"
    assert left["next_admitted"] is True
    outbox = world.runtime.messaging.outbox
    async with world.runtime.engine.connect() as conn:
        order = [
            row.event_type
            for row in await conn.execute(
                select(outbox.c.event_type)
                .where(outbox.c.payload["application_id"].astext.in_([first_id, second_id]))
                .where(outbox.c.event_type.in_(["application.left", "application.admitted"]))
                .order_by(outbox.c.seq)
            )
        ]
    assert order[-2:] == ["application.left", "application.admitted"]


async def test_leave_event_says_nobody_took_the_place_when_nobody_waits_on_an_auto_position(world: World) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 2, "admission_mode": "auto"}])
    _, volunteer, application_id = await world.admitted_volunteer(project)
    await world.client.post(f"/api/v1/applications/{application_id}/leave", headers=volunteer)
    [left] = [p for p in await world.outbox("application.left") if p["application_id"] == application_id]
    assert left["admission_mode"] == "auto"
    assert left["next_admitted"] is False


async def test_raised_quota_goes_to_those_waiting_in_order_before_a_later_applicant(world: World) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 1, "admission_mode": "auto"}])
    await world.admitted_volunteer(project)
    waiting = []
    for _ in range(3):
        _, headers = await world.volunteer()
        waiting.append((headers, (await world.apply(project.position(), headers)).json()["id"]))
    raised = await world.client.put(
        f"/api/v1/positions/{project.position()}/quota", json={"quota": 3}, headers=project.lead
    )
    assert raised.status_code == 200, raised.text
    assert raised.json()["positions"][0]["admitted"] == 3
    stages = [
        (await world.client.get(f"/api/v1/applications/{app_id}", headers=headers)).json()["stage"]
        for headers, app_id in waiting
    ]
    assert stages == ["admitted", "admitted", "applied"]
    _, later = await world.volunteer()
    assert (await world.apply(project.position(), later)).json()["stage"] == "applied"
    admitted_events = await world.outbox("application.admitted")
    assert {e["application_id"] for e in admitted_events} >= {waiting[0][1], waiting[1][1]}


async def test_a_place_left_free_beside_a_waiter_goes_to_the_waiter_not_to_a_newcomer(world: World) -> None:
    """Automatic admission keeps the order of application: a free place next to someone waiting
    (its follow-up lost: the process that freed it stopped right after committing) is not taken by
    whoever applies next; the newcomer goes into line and the oldest waiter gets the place."""
    project = await world.project(positions=[{"name": "引导员", "quota": 1, "admission_mode": "auto"}])
    position = uuid.UUID(project.position())
    _, _, first_id = await world.admitted_volunteer(project)
    _, waiter = await world.volunteer()
    waiter_id = (await world.apply(project.position(), waiter)).json()["id"]
    # a leave committed, its admission of the next in line never ran
    async with world.runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE applications SET stage = 'left' WHERE id = :a"), {"a": uuid.UUID(first_id)})
        await conn.execute(text("UPDATE positions SET admitted = admitted - 1 WHERE id = :p"), {"p": position})
    _, newcomer = await world.volunteer()
    applied = await world.apply(project.position(), newcomer)
    assert applied.status_code == 201, applied.text
    assert applied.json()["stage"] == "applied"
    waiter_view = (await world.client.get(f"/api/v1/applications/{waiter_id}", headers=waiter)).json()
    assert waiter_view["stage"] == "admitted"
    async with world.runtime.engine.connect() as conn:
        admitted = (await conn.execute(text("SELECT admitted FROM positions WHERE id = :p"), {"p": position})).scalar()
    assert admitted == 1
    assert waiter_id in {e["application_id"] for e in await world.outbox("application.admitted")}


async def test_freed_place_can_be_given_by_the_lead_on_a_manual_position(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, first, first_id = await world.admitted_volunteer(project)
    _, second = await world.volunteer()
    second_id = (await world.apply(project.position(), second)).json()["id"]
    full = await world.client.post(f"/api/v1/applications/{second_id}/admission", headers=project.lead)
    assert full.json()["code"] == "position_full"
    await world.client.post(f"/api/v1/applications/{first_id}/leave", headers=first)
    admitted = await world.client.post(f"/api/v1/applications/{second_id}/admission", headers=project.lead)
    assert admitted.status_code == 200


async def test_pending_applicant_sees_the_project_contact(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer = await world.volunteer()
    application_id = (await world.apply(project.position(), volunteer)).json()["id"]
    view = (await world.client.get(f"/api/v1/applications/{application_id}", headers=volunteer)).json()
    assert view["project_contact"] == {"name": "王老师", "phone": "010-12345678", "email": "contact@example.org"}
    mine = (await world.client.get("/api/v1/me/applications", headers=volunteer)).json()
    assert mine["items"][0]["project_contact"]["phone"] == "010-12345678"
    await world.client.post(f"/api/v1/applications/{application_id}/admission", headers=project.lead)
    answered = (await world.client.get(f"/api/v1/applications/{application_id}", headers=volunteer)).json()
    assert answered["project_contact"] is None


async def test_volunteer_cannot_see_other_applicants(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer = await world.volunteer()
    _, other = await world.volunteer()
    application_id = (await world.apply(project.position(), volunteer)).json()["id"]
    await world.apply(project.position(), other)
    listing = await world.client.get(f"/api/v1/projects/{project.id}/applications", headers=volunteer)
    assert listing.status_code == 403
    assert listing.json()["code"] == "not_project_manager"
    peek = await world.client.get(f"/api/v1/applications/{application_id}", headers=other)
    assert peek.status_code == 404
    managers = await world.client.get(f"/api/v1/projects/{project.id}/applications", headers=project.lead)
    assert managers.status_code == 200
    assert {i["masked_name"] for i in managers.json()["items"]} == {"张*"}
    assert len(managers.json()["items"]) == 2


async def test_lead_of_one_project_cannot_admit_on_another(world: World) -> None:
    project_a = await world.project(positions=MANUAL)
    project_b = await world.project(positions=MANUAL)
    _, volunteer = await world.volunteer()
    application_id = (await world.apply(project_b.position(), volunteer)).json()["id"]
    response = await world.client.post(f"/api/v1/applications/{application_id}/admission", headers=project_a.lead)
    assert response.status_code == 403
    assert response.json()["code"] == "not_project_manager"


async def test_team_and_volunteer_rate_each_other_after_serving(world: World) -> None:
    project = await world.project(positions=MANUAL)
    _, volunteer, application_id = await world.admitted_volunteer(project)
    url = f"/api/v1/applications/{application_id}"
    early = await world.client.put(f"{url}/team-rating", json={"score": 5}, headers=project.lead)
    assert early.json()["code"] == "rating_not_allowed"
    await world.client.post(f"{url}/stage", json={"stage": "serving"}, headers=project.lead)
    assert (await world.client.put(f"{url}/team-rating", json={"score": 5}, headers=project.lead)).status_code == 204
    rated = await world.client.put(f"{url}/volunteer-rating", json={"score": 4, "comment": "很好"}, headers=volunteer)
    assert rated.status_code == 204
    view = (await world.client.get(url, headers=volunteer)).json()
    assert (view["team_rating"], view["volunteer_rating"]) == (5, 4)
    assert view["volunteer_comment"] == "很好"
    # the team sees the volunteer's rating of the project, with its comment, in its applicant list
    applicants = await world.client.get(f"/api/v1/projects/{project.id}/applications", headers=project.lead)
    [mine] = [a for a in applicants.json()["items"] if a["id"] == application_id]
    assert (mine["team_rating"], mine["volunteer_rating"], mine["volunteer_comment"]) == (5, 4, "很好")


async def test_the_lead_reads_the_motivation_an_applicant_wrote(world: World) -> None:
    """Deciding on a manual application, the lead reads why the volunteer applied."""
    project = await world.project(positions=MANUAL)
    _, volunteer = await world.volunteer()
    applied = await world.client.post(
        f"/api/v1/positions/{project.position()}/applications",
        json={"motivation": "退休教师,熟悉社区"},
        headers=volunteer,
    )
    assert applied.status_code == 201, applied.text
    applicants = await world.client.get(f"/api/v1/projects/{project.id}/applications", headers=project.lead)
    [listed] = [a for a in applicants.json()["items"] if a["id"] == applied.json()["id"]]
    assert listed["motivation"] == "退休教师,熟悉社区"
    own = await world.client.get(f"/api/v1/applications/{applied.json()['id']}", headers=volunteer)
    assert own.json()["motivation"] == "退休教师,熟悉社区"
    # deleted by the volunteer (P6), what they wrote goes with it
    withdrawn = await world.client.delete(f"/api/v1/applications/{applied.json()['id']}", headers=volunteer)
    assert withdrawn.status_code in (200, 204), withdrawn.text
    after = await world.client.get(
        f"/api/v1/projects/{project.id}/applications", params={"stage": "withdrawn"}, headers=project.lead
    )
    [gone] = [a for a in after.json()["items"] if a["id"] == applied.json()["id"]]
    assert gone["motivation"] is None
    async with world.runtime.engine.connect() as conn:
        kept = await conn.scalar(
            text("SELECT motivation FROM applications WHERE id = :id"), {"id": applied.json()["id"]}
        )
    assert kept is None
