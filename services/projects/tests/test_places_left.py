"""Places freed for those waiting are given even when the admission after the freeing never ran.

A leave, a raised quota or a merge frees places of an automatic position and, once committed, gives
them to those waiting in a transaction of its own (``services.admit_waiting``). If that admission
fails (the database gone for a moment) or its process stops first, the freeing's mark
(``places_to_give``, written with it) stays, and the admission sweep gives the places. Here the
admission after the freeing is made to fail, and the sweep is run by hand with the clock moved.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from projects import repository as repo
from projects import services
from shared.contracts.identity import VolunteerMerged

from .conftest import World

ONE_PLACE = [{"name": "引导员", "quota": 1, "admission_mode": "auto"}]


async def _stage(world: World, application_id: str) -> str:
    async with world.runtime.engine.connect() as conn:
        stage = (
            await conn.execute(text("SELECT stage FROM applications WHERE id = :a"), {"a": uuid.UUID(application_id)})
        ).scalar()
    return str(stage)


async def _marked(world: World, position_id: str) -> bool:
    async with world.runtime.engine.connect() as conn:
        found = (
            await conn.execute(
                text("SELECT count(*) FROM places_to_give WHERE position_id = :p"), {"p": uuid.UUID(position_id)}
            )
        ).scalar()
    return bool(found)


async def _admissions_of(world: World, application_id: str) -> int:
    return sum(1 for e in await world.outbox("application.admitted") if e["application_id"] == application_id)


async def _in_line_unseen(world: World, project: Any) -> str:
    """Someone who applied while the freeing ran: in line, unseen by it (put there by hand: the race)."""
    async with world.runtime.engine.begin() as conn:
        application_id = (
            await conn.execute(
                text(
                    "INSERT INTO applications (id, position_id, project_id, account_id, stage, created_at,"
                    " updated_at) VALUES (gen_random_uuid(), :p, :project, gen_random_uuid(), 'applied', now(),"
                    " now()) RETURNING id"
                ),
                {"p": uuid.UUID(project.position()), "project": uuid.UUID(project.id)},
            )
        ).scalar()
    return str(application_id)


async def _sweep_after_grace(world: World) -> None:
    # a freeing younger than the grace is left to its own admission
    assert await services.give_places_left(world.runtime) == 0
    world.clock.advance(timedelta(seconds=world.runtime.settings.admission_sweep_grace + 1))
    await services.give_places_left(world.runtime)


async def test_a_leave_whose_admission_failed_gives_its_place_to_the_waiter_at_the_next_sweep(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.project(positions=ONE_PLACE)
    _, admitted_headers, admitted_app = await world.admitted_volunteer(project)
    with monkeypatch.context() as failing:

        async def gone(uow: Any, position_id: uuid.UUID) -> set[uuid.UUID]:
            raise ConnectionError("database gone for a moment")

        failing.setattr(services, "_admit_waiting", gone)
        left = await world.client.post(f"/api/v1/applications/{admitted_app}/leave", headers=admitted_headers)
        assert left.status_code == 200, left.text
    assert await _marked(world, project.position())
    waiter_app = await _in_line_unseen(world, project)
    await _sweep_after_grace(world)
    assert await _stage(world, waiter_app) == "admitted"
    assert not await _marked(world, project.position())
    assert await _admissions_of(world, waiter_app) == 1
    # nothing left to give: the next sweep changes nothing
    await services.give_places_left(world.runtime)
    assert await _admissions_of(world, waiter_app) == 1


async def test_a_raised_quota_whose_admission_failed_gives_its_places_at_the_next_sweep(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The raise admits those it saw waiting at once; a place still free (for whoever went into line
    meanwhile) is marked, and given by the sweep when the admission after the raise failed."""
    project = await world.project(positions=ONE_PLACE)
    await world.admitted_volunteer(project)
    with monkeypatch.context() as failing:

        async def gone(uow: Any, position_id: uuid.UUID) -> set[uuid.UUID]:
            raise ConnectionError("database gone for a moment")

        failing.setattr(services, "_admit_waiting", gone)
        raised = await world.client.put(
            f"/api/v1/positions/{project.position()}/quota", json={"quota": 2}, headers=project.lead
        )
        assert raised.status_code == 200, raised.text
        assert await _marked(world, project.position())
    late_app = await _in_line_unseen(world, project)
    await _sweep_after_grace(world)
    assert await _stage(world, late_app) == "admitted"
    assert not await _marked(world, project.position())


async def test_a_merge_whose_admission_failed_gives_the_place_it_freed_at_the_next_sweep(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 2, "admission_mode": "auto"}])
    merged_id, _, _ = await world.admitted_volunteer(project)
    kept_id, _, _ = await world.admitted_volunteer(project)
    _, waiter = await world.volunteer()
    waiter_app = (await world.apply(project.position(), waiter)).json()["id"]
    with monkeypatch.context() as failing:

        async def gone(uow: Any, position_id: uuid.UUID) -> set[uuid.UUID]:
            raise ConnectionError("database gone for a moment")

        failing.setattr(services, "_admit_waiting", gone)
        await world.feed(VolunteerMerged(account_id=kept_id, merged_account_id=merged_id, case_id=uuid.uuid4()))
    assert await _stage(world, waiter_app) == "applied"
    await _sweep_after_grace(world)
    assert await _stage(world, waiter_app) == "admitted"
    assert await _admissions_of(world, waiter_app) == 1
    assert not await _marked(world, project.position())


async def test_a_leave_whose_admission_ran_leaves_no_mark_and_the_sweep_finds_nothing(world: World) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 2, "admission_mode": "auto"}])
    _, headers, application_id = await world.admitted_volunteer(project)
    left = await world.client.post(f"/api/v1/applications/{application_id}/leave", headers=headers)
    assert left.status_code == 200, left.text
    assert not await _marked(world, project.position())


async def test_an_admission_clears_only_the_freeing_it_saw(world: World) -> None:
    """A freeing committed after an admission read the mark renews it: that admission, which may not
    have seen the new free place, leaves the mark for the freeing's own admission (or the sweep)."""
    project = await world.project(positions=ONE_PLACE)
    position = uuid.UUID(project.position())
    async with world.runtime.uow() as uow:
        await repo.mark_places_to_give(uow.session, position, world.clock.now())
    async with world.runtime.uow() as admission:
        seen = await repo.places_mark(admission.session, position)
        assert seen is not None
        async with world.runtime.uow() as later_freeing:
            await repo.mark_places_to_give(later_freeing.session, position, world.clock.now())
        await repo.clear_places_mark(admission.session, position, seen)
    assert await _marked(world, project.position())
    async with world.runtime.uow() as next_admission:
        seen = await repo.places_mark(next_admission.session, position)
        assert seen is not None
        await repo.clear_places_mark(next_admission.session, position, seen)
    assert not await _marked(world, project.position())
