"""Scaling out: two app instances on one database and broker; the read models fed by events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from projects.services import close_due_projects
from shared.clock import ManualClock
from shared.contracts.identity import VolunteerMerged, VolunteerVerified
from shared.contracts.projects import ProjectPublished
from shared.contracts.teams import TeamAdminAppointed, TeamAdminRemoved, TeamApproved, TeamProjectLeadAppointed
from shared.testing import envelope_for

from .conftest import START, StartProjects, World, project_body


@pytest.fixture(scope="module")
async def replicas(start_projects: StartProjects) -> AsyncIterator[tuple[World, World]]:
    clock = ManualClock(START)
    async with start_projects(clock=clock) as first:  # noqa: SIM117 - the second needs the first
        # one database, one broker, one identity issuing the tokens both verify
        async with start_projects(clock=clock, database_url=first.database_url, signer=first.signer) as second:
            yield first, second


async def test_concurrent_admissions_through_two_replicas_never_overbook(replicas: tuple[World, World]) -> None:
    first, second = replicas
    first.clock.set(START)
    project = await first.project(positions=[{"name": "志愿者", "quota": 7, "admission_mode": "auto"}])
    volunteers = [await first.volunteer() for _ in range(60)]
    responses = await asyncio.gather(
        *((first if i % 2 else second).apply(project.position(), headers) for i, (_, headers) in enumerate(volunteers))
    )
    assert all(r.status_code == 201 for r in responses)
    assert sum(r.json()["stage"] == "admitted" for r in responses) == 7
    view = (await second.client.get(f"/api/v1/projects/{project.id}")).json()
    assert view["positions"][0]["remaining"] == 0


async def test_sweep_running_on_both_replicas_closes_each_project_once(replicas: tuple[World, World]) -> None:
    first, second = replicas
    first.clock.set(START)
    projects = [await first.project() for _ in range(5)]
    first.clock.set(START.replace(month=4, day=2))
    counts = await asyncio.gather(*(close_due_projects(w.runtime) for w in (first, second, first, second)))
    ids = {p.id for p in projects}
    closed = [p for p in await first.outbox("project.closed") if p["project_id"] in ids]
    assert len(closed) == 5
    assert sorted(p["project_id"] for p in closed) == sorted(ids)
    assert sum(counts) >= 5  # other modules' projects may close too; none twice
    again = await asyncio.gather(close_due_projects(first.runtime), close_due_projects(second.runtime))
    assert again == [0, 0]


async def test_background_sweep_closes_projects_without_being_called(start_projects: StartProjects) -> None:
    from shared.testing import eventually

    clock = ManualClock(START)
    async with start_projects(clock=clock, close_sweep_interval=0.2) as world:
        project = await world.project()
        clock.set(START.replace(month=4, day=1))

        async def closed() -> bool:
            response = await world.client.get(f"/api/v1/projects/{project.id}")
            return bool(response.json()["status"] == "closed")

        assert await eventually(closed, timeout=20, interval=0.1)


async def test_merge_moves_applications_and_hours_to_the_kept_volunteer(world: World) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 5, "admission_mode": "auto"}])
    merged_id, merged_headers, application_id = await world.admitted_volunteer(project)
    kept_id, kept_headers = await world.volunteer()
    await world.client.post(
        f"/api/v1/projects/{project.id}/hours",
        json={"application_id": application_id, "service_date": "2026-01-05", "minutes": 45},
        headers=project.lead,
    )
    await world.feed(VolunteerMerged(account_id=kept_id, merged_account_id=merged_id, case_id=uuid.uuid4()))
    mine = (await world.client.get("/api/v1/me/applications", headers=kept_headers)).json()["items"]
    assert [a["id"] for a in mine] == [application_id]
    assert (await world.client.get("/api/v1/me/hours", headers=kept_headers)).json()["minutes"] == 45
    assert (await world.client.get("/api/v1/me/hours", headers=merged_headers)).json()["minutes"] == 0
    # the merged-away record can no longer apply
    other = await world.project(positions=[{"name": "引导员", "quota": 5, "admission_mode": "auto"}])
    refused = await world.apply(other.position(), merged_headers)
    assert refused.json()["code"] == "volunteer_not_verified"


async def test_after_a_merge_the_kept_volunteers_day_counts_both_records_against_the_daily_cap(
    world: World,
) -> None:
    """The day's total moves with the hours: 400 + 400 minutes on one day (more than the 720 cap,
    recorded before anyone knew they were one person) refuse any more minutes that day; a correction
    lowering one of them is taken even while the day stays over (it is what brings the day back),
    raising one is refused."""
    first = await world.project(positions=[{"name": "引导员", "quota": 5, "admission_mode": "auto"}])
    second = await world.project(positions=[{"name": "引导员", "quota": 5, "admission_mode": "auto"}])
    merged_id, _, merged_app = await world.admitted_volunteer(first)
    kept_id, _, kept_app = await world.admitted_volunteer(second)
    recorded = {}
    for project, application_id in ((first, merged_app), (second, kept_app)):
        r = await world.client.post(
            f"/api/v1/projects/{project.id}/hours",
            json={"application_id": application_id, "service_date": "2026-01-05", "minutes": 400},
            headers=project.lead,
        )
        assert r.status_code == 201, r.text
        recorded[application_id] = r.json()["id"]
    await world.feed(VolunteerMerged(account_id=kept_id, merged_account_id=merged_id, case_id=uuid.uuid4()))
    more = await world.client.post(
        f"/api/v1/projects/{second.id}/hours",
        json={"application_id": kept_app, "service_date": "2026-01-05", "minutes": 10},
        headers=second.lead,
    )
    assert more.json()["code"] == "hours_daily_cap_exceeded", more.text
    raised = await world.client.post(
        f"/api/v1/hours/{recorded[kept_app]}/corrections", json={"minutes": 410, "reason": "多记"}, headers=second.lead
    )
    assert raised.json()["code"] == "hours_daily_cap_exceeded", raised.text
    lowered = await world.client.post(
        f"/api/v1/hours/{recorded[merged_app]}/corrections",
        json={"minutes": 350, "reason": "同一人重复"},
        headers=first.lead,
    )
    assert lowered.status_code in (200, 201, 204), lowered.text
    async with world.runtime.engine.connect() as conn:
        days = (
            await conn.execute(
                text("SELECT account_id, minutes FROM volunteer_days WHERE account_id IN (:k, :m)"),
                {"k": kept_id, "m": merged_id},
            )
        ).all()
    assert [(a, m) for a, m in days] == [(kept_id, 750)]


async def test_merging_two_admitted_records_keeps_one_place_and_gives_the_other_to_the_next_in_line(
    world: World,
) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 2, "admission_mode": "auto"}])
    merged_id, _, merged_app = await world.admitted_volunteer(project)
    kept_id, kept_headers, kept_app = await world.admitted_volunteer(project)
    _, waiting = await world.volunteer()
    waiting_app = (await world.apply(project.position(), waiting)).json()
    assert waiting_app["stage"] == "applied"
    await world.feed(VolunteerMerged(account_id=kept_id, merged_account_id=merged_id, case_id=uuid.uuid4()))
    mine = (await world.client.get("/api/v1/me/applications", headers=kept_headers)).json()["items"]
    assert sorted((a["id"], a["stage"]) for a in mine) == sorted([(kept_app, "admitted"), (merged_app, "withdrawn")])
    after = (await world.client.get(f"/api/v1/applications/{waiting_app['id']}", headers=waiting)).json()
    assert after["stage"] == "admitted"  # the second place of one person went to the next in line
    view = (await world.client.get(f"/api/v1/projects/{project.id}", headers=project.lead)).json()
    assert view["positions"][0]["admitted"] == 2


async def test_a_merge_admits_the_next_in_line_once_with_its_correlation_and_a_redelivery_changes_nothing(
    world: World,
) -> None:
    """The waiter is admitted after the merge commits (services.admit_waiting), in a transaction of
    its own that carries the merge message's correlation: one application.admitted (one email), and
    the same message delivered again is a no-op."""
    project = await world.project(positions=[{"name": "引导员", "quota": 2, "admission_mode": "auto"}])
    merged_id, _, _ = await world.admitted_volunteer(project)
    kept_id, _, _ = await world.admitted_volunteer(project)
    waiting = [await world.volunteer() for _ in range(2)]
    apps = [(await world.apply(project.position(), h)).json()["id"] for _, h in waiting]
    merge = envelope_for(VolunteerMerged(account_id=kept_id, merged_account_id=merged_id, case_id=uuid.uuid4()))
    dispatcher = world.runtime.dispatcher
    assert dispatcher is not None
    sub = dispatcher.handlers.specs["volunteers"].subscription

    async def admissions() -> list[dict[str, str]]:
        async with world.runtime.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT payload->>'application_id' AS app, causation_id, correlation_id FROM outbox "
                    "WHERE event_type = 'application.admitted' AND payload->>'application_id' = ANY(:apps)"
                ),
                {"apps": apps},
            )
            return [dict(r) for r in rows.mappings()]

    async def stages() -> list[str]:
        return [
            (await world.client.get(f"/api/v1/applications/{app}", headers=h)).json()["stage"]
            for app, (_, h) in zip(apps, waiting, strict=True)
        ]

    await dispatcher.handle(sub, merge)
    assert await stages() == ["admitted", "applied"]  # the oldest waiter, and one place only
    expected = [{"app": apps[0], "causation_id": str(merge.event_id), "correlation_id": str(merge.event_id)}]
    assert await admissions() == expected
    await dispatcher.handle(sub, merge)
    assert await stages() == ["admitted", "applied"]
    assert await admissions() == expected
    view = (await world.client.get(f"/api/v1/projects/{project.id}", headers=project.lead)).json()
    assert view["positions"][0]["admitted"] == 2


async def test_merging_keeps_the_admission_with_hours_over_a_rejected_application(world: World) -> None:
    project = await world.project(positions=[{"name": "陪伴员", "quota": 5, "admission_mode": "manual"}])
    merged_id, _, merged_app = await world.admitted_volunteer(project)
    await world.client.post(
        f"/api/v1/projects/{project.id}/hours",
        json={"application_id": merged_app, "service_date": "2026-01-05", "minutes": 60},
        headers=project.lead,
    )
    kept_id, kept_headers = await world.volunteer()
    kept_app = (await world.apply(project.position(), kept_headers)).json()["id"]
    rejected = await world.client.post(
        f"/api/v1/applications/{kept_app}/stage", json={"stage": "rejected"}, headers=project.lead
    )
    assert rejected.status_code == 200, rejected.text
    await world.feed(VolunteerMerged(account_id=kept_id, merged_account_id=merged_id, case_id=uuid.uuid4()))
    kept_view = (await world.client.get(f"/api/v1/applications/{merged_app}", headers=kept_headers)).json()
    assert (kept_view["stage"], kept_view["minutes_total"]) == ("admitted", 60)
    withdrawn = (await world.client.get(f"/api/v1/applications/{kept_app}", headers=kept_headers)).json()
    assert (withdrawn["stage"], withdrawn["minutes_total"]) == ("withdrawn", 0)
    assert (await world.client.get("/api/v1/me/hours", headers=kept_headers)).json()["minutes"] == 60


async def test_removed_team_admin_can_no_longer_manage(world: World) -> None:
    project = await world.project(positions=[{"name": "陪伴员", "quota": 5, "admission_mode": "manual"}])
    _, volunteer = await world.volunteer()
    application_id = (await world.apply(project.position(), volunteer)).json()["id"]
    await world.feed(TeamAdminRemoved(team_id=project.team_id, account_id=project.admin_id))
    response = await world.client.post(f"/api/v1/applications/{application_id}/admission", headers=project.admin)
    assert response.status_code == 403


async def test_approving_a_team_makes_no_one_its_admin_until_teams_appoints_one(world: World) -> None:
    # A root team created without an admin names its creator, a regional admin, as the applicant.
    team_id, operator, admin = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await world.feed(
        TeamApproved(
            team_id=team_id,
            name="朝阳区志愿服务联合会",
            region_code="110105",
            applicant_account_id=operator,
            reviewed_by_account_id=operator,
        )
    )
    by_operator = await world.client.post("/api/v1/projects", json=project_body(team_id), headers=world.auth(operator))
    assert by_operator.status_code == 403, by_operator.text
    assert by_operator.json()["code"] == "not_team_manager"
    await world.feed(TeamAdminAppointed(team_id=team_id, account_id=admin))
    by_admin = await world.client.post("/api/v1/projects", json=project_body(team_id), headers=world.auth(admin))
    assert by_admin.status_code == 201, by_admin.text


async def test_read_model_events_are_idempotent(world: World) -> None:
    from shared.contracts.identity import VolunteerVerified

    account_id = uuid.uuid4()
    event = VolunteerVerified(
        account_id=account_id,
        volunteer_number="1100000000000001",
        masked_name="李*",
        region_code="110105",
        verified_at=world.clock.now(),
    )
    envelope = envelope_for(event)
    dispatcher = world.runtime.dispatcher
    assert dispatcher is not None
    sub = dispatcher.handlers.specs["volunteers"].subscription
    await dispatcher.handle(sub, envelope)
    await dispatcher.handle(sub, envelope)
    async with world.runtime.engine.connect() as conn:
        inbox = await conn.scalar(text("SELECT count(*) FROM inbox WHERE message_id = :m"), {"m": envelope.event_id})
        rows = await conn.scalar(text("SELECT count(*) FROM volunteers WHERE account_id = :a"), {"a": account_id})
    assert (inbox, rows) == (1, 1)


async def test_a_volunteer_with_the_longest_real_name_identity_takes_is_known(world: World) -> None:
    """Identity takes real names of 100 characters and masks them keeping their length; the read
    model held 60, and such a volunteer's volunteer.verified failed every try (dead-lettered)."""
    from shared.contracts.identity import VolunteerVerified

    account_id = uuid.uuid4()
    masked = "W" + "*" * 99
    await world.feed(
        VolunteerVerified(
            account_id=account_id,
            volunteer_number="1100000000000002",
            masked_name=masked,
            region_code="110105",
            verified_at=world.clock.now(),
        )
    )
    async with world.runtime.engine.connect() as conn:
        stored = await conn.scalar(text("SELECT masked_name FROM volunteers WHERE account_id = :a"), {"a": account_id})
    assert stored == masked


async def deliver(world: World, event: Any, sequence: int | None = None, occurred_at: Any = None) -> None:
    """``event`` through the consumers' dispatcher, as the relay would publish it at ``sequence``."""
    envelope = envelope_for(event, sequence=sequence, occurred_at=occurred_at)
    dispatcher = world.runtime.dispatcher
    assert dispatcher is not None
    sub = next(
        s.subscription for s in dispatcher.handlers.specs.values() if event.event_type in s.subscription.routing_keys
    )
    await dispatcher.handle(sub, envelope)


async def test_a_team_role_event_delivered_after_a_newer_one_changes_nothing(world: World) -> None:
    """An appointment replayed (a dead letter) after the removal that followed it does not make the
    removed admin an admin again; nor does a removal replayed after a later appointment undo it."""
    team_id, _, _ = await world.team()
    removed, lead = uuid.uuid4(), uuid.uuid4()
    await deliver(world, TeamAdminAppointed(team_id=team_id, account_id=removed), sequence=10)
    await deliver(world, TeamAdminRemoved(team_id=team_id, account_id=removed), sequence=11)
    await deliver(world, TeamAdminAppointed(team_id=team_id, account_id=removed), sequence=10)  # replayed
    await deliver(world, TeamProjectLeadAppointed(team_id=team_id, account_id=lead), sequence=13)
    await deliver(world, TeamAdminRemoved(team_id=team_id, account_id=lead), sequence=12)  # another role
    async with world.runtime.engine.connect() as conn:
        roles = (
            await conn.execute(
                text("SELECT account_id, role FROM team_roles WHERE team_id = :t AND account_id = ANY(:a)"),
                {"t": team_id, "a": [removed, lead]},
            )
        ).all()
    assert [(r.account_id, r.role) for r in roles] == [(lead, "lead")]
    by_removed = await world.client.post("/api/v1/projects", json=project_body(team_id), headers=world.auth(removed))
    assert by_removed.status_code == 403, by_removed.text


async def test_an_older_verification_delivered_late_leaves_the_newer_one(world: World) -> None:
    account_id = uuid.uuid4()
    now = world.clock.now()
    newer = VolunteerVerified(
        account_id=account_id,
        volunteer_number="1100000000000011",
        masked_name="王*",
        region_code="110105",
        verified_at=now,
    )
    older = newer.model_copy(update={"volunteer_number": "1100000000000010", "verified_at": now - timedelta(days=3)})
    await deliver(world, newer)
    await deliver(world, older)
    async with world.runtime.engine.connect() as conn:
        number = await conn.scalar(
            text("SELECT volunteer_number FROM volunteers WHERE account_id = :a"), {"a": account_id}
        )
    assert number == "1100000000000011"


async def test_a_merged_records_verification_arriving_after_the_merge_leaves_it_merged(world: World) -> None:
    """The merge comes in the kept account's lane and the merged one's verification in its own: when
    the verification is late, the merged record must not become a volunteer who can apply."""
    kept, _ = await world.volunteer()
    merged = uuid.uuid4()
    await deliver(world, VolunteerMerged(account_id=kept, merged_account_id=merged, case_id=uuid.uuid4()))
    await deliver(
        world,
        VolunteerVerified(
            account_id=merged,
            volunteer_number="1100000000000020",
            masked_name="赵*",
            region_code="110105",
            verified_at=world.clock.now(),
        ),
    )
    async with world.runtime.engine.connect() as conn:
        merged_into = await conn.scalar(text("SELECT merged_into FROM volunteers WHERE account_id = :a"), {"a": merged})
    assert merged_into == kept


async def test_events_raised_for_several_consumed_messages_in_one_transaction_keep_their_own_ids(
    world: World,
) -> None:
    """Batch consumption (``<SVC>_CONSUMER_BATCH_SIZE`` > 1) runs several messages' handlers in one
    unit of work: each message's events must carry that message's correlation and causation ids,
    also through the projects unit of work's own outbox statement."""
    first, second = uuid.uuid4(), uuid.uuid4()
    start = START.date()
    uow = world.runtime.uow()
    async with uow:
        for project_id, message in ((first, "m1"), (second, "m2")):
            uow.next_message(f"corr-{message}", f"cause-{message}")
            uow.raise_event(
                ProjectPublished(
                    project_id=project_id,
                    team_id=uuid.uuid4(),
                    title="批量",
                    region_code="110105",
                    starts_on=start,
                    ends_on=start,
                )
            )
    async with world.runtime.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT aggregate_id, correlation_id, causation_id FROM outbox "
                    "WHERE aggregate_id IN (:a, :b) ORDER BY seq"
                ),
                {"a": str(first), "b": str(second)},
            )
        ).all()
    assert [tuple(r) for r in rows] == [(str(first), "corr-m1", "cause-m1"), (str(second), "corr-m2", "cause-m2")]


async def test_after_commit_steps_run_once_committed_and_are_dropped_by_a_rollback(world: World) -> None:
    """A handler's follow-up (a merge's admission of those waiting) runs only after the inbox's
    transaction committed, sees that commit from a connection of its own, and never runs for a
    transaction that rolled back (nor later, when the unit of work is entered again)."""
    account_id = uuid.uuid4()
    ran: list[tuple[str, int]] = []

    async def step(name: str) -> None:
        async with world.runtime.engine.connect() as conn:
            seen = await conn.scalar(text("SELECT count(*) FROM volunteers WHERE account_id = :a"), {"a": account_id})
        ran.append((name, int(seen or 0)))

    insert = text(
        "INSERT INTO volunteers (account_id, volunteer_number, masked_name, region_code, verified_at) "
        "VALUES (:a, :n, '李*', '110105', now())"
    )
    number = {"a": account_id, "n": f"AC{account_id.int % 10**12:012d}"}
    uow = world.runtime.uow()

    async def failing() -> None:
        async with uow:
            await uow.session.execute(insert, number)
            uow.after_commit(lambda: step("rolled back"))
            raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError):
        await failing()
    async with uow:
        await uow.session.execute(insert, number)
        uow.after_commit(lambda: step("first"))
        uow.after_commit(lambda: step("second"))
        assert ran == []
    assert ran == [("first", 1), ("second", 1)]
