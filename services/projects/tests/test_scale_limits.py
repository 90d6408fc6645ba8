"""What a big event does to the lists and the quota: a page reads a page (not the project, not every
project), a project's hours totals come in pages, and raising a quota admits the waiting line in a
few statements however long it is.

Row counts are the smallest at which PostgreSQL, with fresh statistics, chose the whole-table plan
before the indexes of migration 0007: every list query is EXPLAIN ANALYZEd and its rows read
(returned plus filtered out, over every scan node) are bounded.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text

from projects import repository as repo
from shared.testing import ExplainingSession

from .conftest import Project, World

BIG_PROJECT_VOLUNTEERS = 20_000
OTHER_APPLICATIONS = 5_000
LISTED_PROJECTS = 20_000
WAITING = 500
PAGE_READ_LIMIT = 1_000
_CONTROL = {"BEGIN;", "COMMIT;", "ROLLBACK;", "BEGIN", "COMMIT", "ROLLBACK"}


async def _explained(world: World, query: Any, **kwargs: Any) -> tuple[list[Any], ExplainingSession]:
    async with world.runtime.session_factory() as real:
        session = ExplainingSession(real)
        rows = await query(session, **kwargs)
    return rows, session


@pytest.fixture(scope="module")
async def big_project(shared_world: World) -> Project:
    """20,000 admitted volunteers with a day's hours each, applying after 5,000 applications to
    another project."""
    world = shared_world
    other = await world.project(positions=[{"name": "往期", "quota": 100_000, "admission_mode": "auto"}])
    project = await world.project(positions=[{"name": "赛会志愿者", "quota": 100_000, "admission_mode": "auto"}])
    async with world.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                """INSERT INTO applications (id, position_id, project_id, account_id, stage, created_at, updated_at)
                   SELECT gen_random_uuid(), :position, :project, gen_random_uuid(), 'admitted', now(), now()
                   FROM generate_series(1, :n)"""
            ),
            {"n": OTHER_APPLICATIONS, "position": uuid.UUID(other.position()), "project": uuid.UUID(other.id)},
        )
        await conn.execute(
            text(
                """WITH v AS (
                       INSERT INTO volunteers (account_id, volunteer_number, masked_name, region_code, verified_at)
                       SELECT gen_random_uuid(), 'VS' || lpad(g::text, 11, '0'), '张*', '110105', now()
                       FROM generate_series(1, :n) AS g RETURNING account_id)
                   INSERT INTO applications (id, position_id, project_id, account_id, stage, created_at, updated_at)
                   SELECT gen_random_uuid(), :position, :project, account_id, 'admitted', now(), now() FROM v"""
            ),
            {"n": BIG_PROJECT_VOLUNTEERS, "position": uuid.UUID(project.position()), "project": uuid.UUID(project.id)},
        )
        await conn.execute(
            text(
                """INSERT INTO hours_records (application_id, project_id, account_id, service_date, minutes,
                                              source, recorded_by, recorded_at)
                   SELECT id, project_id, account_id, DATE '2026-01-10', 240, 'bulk', :lead,
                          now() + (seq % 1000) * interval '1 second'
                   FROM applications WHERE project_id = :project"""
            ),
            {"project": uuid.UUID(project.id), "lead": project.lead_id},
        )
        for table in ("volunteers", "applications", "hours_records"):
            await conn.execute(text(f"ANALYZE {table}"))
    return project


async def test_project_totals_come_in_pages_with_the_project_s_total(world: World, big_project: Project) -> None:
    url = f"/api/v1/projects/{big_project.id}/hours/totals"
    started = time.perf_counter()
    response = await world.client.get(url, headers=big_project.lead)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    body = response.json()
    print(f"\ntotals: {len(body['volunteers'])} entries, {len(response.content) / 1e3:.1f} kB, {elapsed:.3f} s")
    assert len(body["volunteers"]) == 50, f"{len(body['volunteers'])} volunteers in one response: no page"
    assert body["minutes"] == BIG_PROJECT_VOLUNTEERS * 240  # the project's, not the page's
    assert {v["minutes"] for v in body["volunteers"]} == {240}
    assert all(v["masked_name"] == "张*" for v in body["volunteers"])
    assert body["next_cursor"]
    more = await world.client.get(url, params={"limit": 200, "cursor": body["next_cursor"]}, headers=big_project.lead)
    assert more.status_code == 200, more.text
    second = more.json()
    assert len(second["volunteers"]) == 200
    assert second["minutes"] == body["minutes"]
    both = body["volunteers"] + second["volunteers"]
    assert len({v["account_id"] for v in both}) == 250  # no volunteer twice across pages
    numbers = [v["volunteer_number"] for v in both]
    assert numbers == sorted(numbers)  # in order of application (numbered in that order above)
    assert (await world.client.get(url, params={"limit": 201}, headers=big_project.lead)).status_code == 422


async def test_a_totals_page_reads_a_page_not_the_project(world: World, big_project: Project) -> None:
    rows, session = await _explained(
        world, repo.volunteer_minutes_page, project_id=uuid.UUID(big_project.id), after_seq=None, limit=51
    )
    assert len(rows) == 51
    print(f"\nvolunteer_minutes_page: rows read {session.rows_read} in {session.ms} ms\n{session.plans[0]}")
    assert session.rows_read[0] <= PAGE_READ_LIMIT, f"a page of 51 volunteers read {session.rows_read[0]} rows"


async def test_applicants_page_reads_a_page_not_the_project(world: World, big_project: Project) -> None:
    rows, session = await _explained(
        world, repo.list_applications, project_id=uuid.UUID(big_project.id), after_seq=None, limit=51
    )
    assert len(rows) == 51
    print(f"\nlist_applications: rows read {session.rows_read} in {session.ms} ms\n{session.plans[0]}")
    assert session.rows_read[0] <= PAGE_READ_LIMIT, f"a page of 51 applicants read {session.rows_read[0]} rows"


@pytest.mark.parametrize("stage", ["applied", "interview", "left"])
async def test_applicants_page_of_one_stage_reads_a_page_not_the_project(
    world: World, big_project: Project, stage: str
) -> None:
    """A lead's page of those at one stage (waiting for an answer, invited to an interview, gone),
    behind 20,000 admitted in a big event: read
    through the stage's own range of the project (``ix_applications_project_stage``), not by walking
    the project's applicants in order of application and keeping the few at that stage (the whole
    project read, 20,002 rows, before it)."""
    project_id = uuid.UUID(big_project.id)
    async with world.runtime.session_factory() as real:
        await real.execute(
            text(
                """INSERT INTO applications (id, position_id, project_id, account_id, stage, created_at, updated_at)
                   SELECT gen_random_uuid(), :position, :project, gen_random_uuid(), :stage, now(), now()
                   FROM generate_series(1, 60)"""
            ),
            {"position": uuid.UUID(big_project.position()), "project": project_id, "stage": stage},
        )
        session = ExplainingSession(real)
        first = await repo.list_applications(session, project_id=project_id, stage=stage, after_seq=None, limit=51)
        second = await repo.list_applications(
            session, project_id=project_id, stage=stage, after_seq=first[-1]["seq"], limit=51
        )
        await real.rollback()
    print(f"\nlist_applications {stage}: rows read {session.rows_read} in {session.ms} ms\n{session.plans[0]}")
    assert [len(first), len(second)] == [51, 9]
    assert {r["stage"] for r in first + second} == {stage}
    seqs = [r["seq"] for r in first + second]
    assert seqs == sorted(seqs)  # in order of application
    assert len(set(seqs)) == 60  # none twice, none left out
    assert max(session.rows_read) <= PAGE_READ_LIMIT, f"a page of one stage read {session.rows_read} rows"


async def test_project_hours_page_reads_a_page_not_the_project(world: World, big_project: Project) -> None:
    rows, session = await _explained(
        world, repo.list_hours, project_id=uuid.UUID(big_project.id), after=None, limit=101
    )
    assert len(rows) == 101
    print(f"\nlist_hours: rows read {session.rows_read} in {session.ms} ms\n{session.plans[0]}")
    assert session.rows_read[0] <= PAGE_READ_LIMIT, f"a page of 101 hours records read {session.rows_read[0]} rows"


@pytest.fixture(scope="module")
async def listed_projects(shared_world: World) -> Project:
    """20,000 projects of one team: a tenth in each of ten provinces, a hundredth in each of their
    counties; a quarter each published and draft, half closed."""
    world = shared_world
    template = await world.project()
    async with world.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                """INSERT INTO projects (id, team_id, lead_account_id, created_by, title, description, category,
                                         region_code, address, contact_name, contact_phone, requirements,
                                         starts_on, ends_on, recruit_starts_on, recruit_ends_on, status, created_at,
                                         published_at)
                   SELECT gen_random_uuid(), team_id, lead_account_id, created_by, title, description, category,
                          (11 + g % 10)::text || '01' || lpad((1 + (g / 10) % 10)::text, 2, '0'), address,
                          contact_name, contact_phone, requirements, starts_on, ends_on, recruit_starts_on,
                          recruit_ends_on, (ARRAY['published','closed','closed','draft'])[1 + (g / 100) % 4],
                          now() - g * interval '1 minute',
                          CASE WHEN (g / 100) % 4 < 3 THEN now() - ((g * 7919) % 20011) * interval '1 minute' END
                   FROM projects, generate_series(1, :n) AS g WHERE projects.id = :template"""
            ),
            {"n": LISTED_PROJECTS, "template": uuid.UUID(template.id)},
        )
        await conn.execute(text("ANALYZE projects"))
    return template


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"statuses": ["closed"]},
        {"team": True},
        {"region_prefix": "13"},
        {"region_prefix": "130105"},
        {"region_prefix": "130105", "statuses": ["closed"]},
    ],
    ids=["all", "closed", "team", "province", "county", "county_closed"],
)
async def test_public_project_list_reads_a_page_not_every_project(
    world: World, listed_projects: Project, filters: dict[str, Any]
) -> None:
    rows, session = await _explained(
        world,
        repo.list_projects,
        statuses=filters.get("statuses", ["published", "closed"]),
        team_id=listed_projects.team_id if filters.get("team") else None,
        region_prefix=filters.get("region_prefix"),
        after=None,
        limit=51,
    )
    assert len(rows) == 51
    assert all(r["status"] in filters.get("statuses", ["published", "closed"]) for r in rows)
    assert all(r["region_code"].startswith(filters.get("region_prefix", "")) for r in rows)
    published = [(r["published_at"], r["id"]) for r in rows]
    assert published == sorted(published, reverse=True)
    print(f"\nlist_projects {filters}: rows read {session.rows_read} in {session.ms} ms\n{session.plans[0]}")
    assert session.rows_read[0] <= PAGE_READ_LIMIT, f"a page of 51 projects read {session.rows_read[0]} rows"


@pytest.mark.parametrize("caller", ["team_admin", "lead", "stranger"])
async def test_my_projects_reads_a_page_of_the_callers_teams_not_every_project(
    world: World, listed_projects: Project, caller: str
) -> None:
    """我的项目 for the admin of the team with 20,000 projects, for a lead of one of its projects, and
    for a volunteer with none: one condition over both ways read every project for each of them."""
    account = {
        "team_admin": listed_projects.admin_id,
        "lead": listed_projects.lead_id,
        "stranger": uuid.uuid4(),
    }[caller]
    rows, session = await _explained(
        world, repo.list_managed_projects, account_id=account, status=None, after=None, limit=51
    )
    assert len(rows) == {"team_admin": 51, "lead": 51, "stranger": 0}[caller]
    if caller == "team_admin":
        created = [(r["created_at"], r["id"]) for r in rows]
        assert created == sorted(created, reverse=True)
    print(f"\nlist_managed_projects {caller}: rows read {session.rows_read} in {session.ms} ms\n{session.plans[0]}")
    assert session.rows_read[0] <= PAGE_READ_LIMIT, f"a page of my projects read {session.rows_read[0]} rows"


async def test_raising_a_quota_admits_the_line_in_a_bounded_number_of_statements(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.project(positions=[{"name": "引导员", "quota": 1, "admission_mode": "auto"}])
    position = uuid.UUID(project.position())
    async with world.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                """WITH v AS (
                       INSERT INTO volunteers (account_id, volunteer_number, masked_name, region_code, verified_at)
                       SELECT gen_random_uuid(), 'WQ' || lpad(g::text, 11, '0') || :tag, '李*', '110105', now()
                       FROM generate_series(1, :n) AS g RETURNING account_id)
                   INSERT INTO applications (id, position_id, project_id, account_id, stage, created_at, updated_at)
                   SELECT gen_random_uuid(), :position, :project, account_id, 'applied', now(), now() FROM v"""
            ),
            {"n": WAITING, "position": position, "project": uuid.UUID(project.id), "tag": project.id[:4]},
        )
        await conn.execute(text("UPDATE positions SET admitted = 1 WHERE id = :p"), {"p": position})
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    # statements sent straight to asyncpg (bulk arrays, the outbox rows) are counted too
    for name in ("fetch", "fetchrow", "fetchval", "execute"):
        original = getattr(asyncpg.Connection, name)

        def counted(self: Any, query: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            statements.append(query)
            return _original(self, query, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, name, counted)
    event.listen(world.runtime.engine.sync_engine, "before_cursor_execute", count)
    try:
        started = time.perf_counter()
        response = await world.client.put(
            f"/api/v1/positions/{position}/quota", json={"quota": 1 + WAITING + 10}, headers=project.lead
        )
        elapsed = time.perf_counter() - started
    finally:
        event.remove(world.runtime.engine.sync_engine, "before_cursor_execute", count)
        monkeypatch.undo()
    assert response.status_code == 200, response.text
    assert response.json()["positions"][0]["admitted"] == 1 + WAITING
    # not the relay's, nor the consumer's of the project's own events, nor transaction control
    background = ("outbox", "inbox", "project_activity")
    ours = [s for s in statements if not any(b in s for b in background) and s.split()[0] not in _CONTROL]
    print(f"\nquota +{WAITING + 10} with {WAITING} waiting: {len(ours)} statements, {elapsed:.2f} s")
    assert len(ours) <= 30, f"{len(ours)} statements in one request (two per waiter)"
    # one admission event per volunteer admitted (the notifications service emails each of them)
    async with world.runtime.engine.connect() as conn:
        admitted = (
            await conn.execute(
                text("SELECT count(*) FROM applications WHERE position_id = :p AND stage = 'admitted'"), {"p": position}
            )
        ).scalar_one()
    events = [e for e in await world.outbox("application.admitted") if e["position_id"] == str(position)]
    assert admitted == WAITING
    assert len(events) == WAITING
    assert all(e["automatic"] is True for e in events)
    assert len({e["application_id"] for e in events}) == WAITING
