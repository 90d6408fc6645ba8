"""Lists stay one page, read about one page of rows and run a few statements however much data
there is: a city federation with hundreds of pending sub-team registrations, a directory of tens of
thousands of teams, a team of tens of thousands of members. The rows are written in bulk with SQL
(and ANALYZEd, so the planner sees the real sizes); one teams service of its own holds them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from shared.auth import ROLE_NATIONAL_ADMIN, ROLE_REGIONAL_ADMIN, ROLE_VOLUNTEER, Principal
from shared.db import UnitOfWork
from shared.testing import ExplainingSession
from teams import registration
from teams.access import is_reviewer
from teams.domain.naming import name_key
from teams.repository import TeamsRepository

PENDING_TEAMS = 250  # more than the largest page (200)
APPROVED_TEAMS = 20_000
TEAM_MEMBERS = 20_000


@pytest.fixture(scope="module")
async def big(start_teams: Any) -> AsyncIterator[Any]:
    """A teams service of its own: the bulk rows stay out of the database the other tests share."""
    async with start_teams() as service:
        yield service


# -- measuring -------------------------------------------------------------------------------
@contextmanager
def statements(teams: Any) -> Iterator[list[str]]:
    """The statements the service runs meanwhile (not the relay's and consumers' own)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "outbox" not in statement and "inbox" not in statement:
            seen.append(statement)

    event.listen(teams.runtime.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(teams.runtime.engine.sync_engine, "before_cursor_execute", record)


async def insert_pending_teams(teams: Any, liaison_id: str, count: int, tag: str) -> None:
    """``count`` sub-team registrations waiting under the liaison team, a second apart."""
    async with teams.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO teams (id, name, region_code, level, kind, liaison_team_id, status, is_root,"
                " liaison_authorised, join_mode, contact_person, contact_phone, contact_email,"
                " contact_address, applicant_account_id, submitted_at, created_at, name_key)"
                " SELECT gen_random_uuid(), :tag || g || '志愿服务队', '330106', 'county', 'other', :liaison,"
                " 'pending', false, false, 'reject_anyone', '王老师', '0571-88886666', 't@example.org',"
                " '杭州市西湖区', gen_random_uuid(), now() - g * interval '1 second', now(),"
                " lower(:tag || g || '志愿服务队')"
                " FROM generate_series(1, :n) AS g"
            ),
            {"liaison": uuid.UUID(liaison_id), "n": count, "tag": tag},
        )
        await conn.execute(text("ANALYZE teams"))


# -- GET /reviews ----------------------------------------------------------------------------
async def all_review_pages(teams: Any, who: Any, limit: int | None = None) -> tuple[list[str], list[int]]:
    """Every team waiting for ``who``, page by page: (ids in order, statements per page)."""
    ids: list[str] = []
    per_page: list[int] = []
    params: dict[str, Any] = {} if limit is None else {"limit": limit}
    while True:
        with statements(teams) as seen:
            response = await teams.client.get("/api/v1/reviews", params=params, headers=teams.auth(who))
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= 200, f"{len(body['items'])} items in one response: no page size cap"
        ids += [t["id"] for t in body["items"]]
        per_page.append(len(seen))
        if body.get("next_cursor") is None:
            return ids, per_page
        params = {**params, "cursor": body["next_cursor"]}


async def test_reviews_come_in_pages_of_a_few_statements_each(big: Any) -> None:
    """A federation's admin, and the regional admin reviewing in place of an admin-less root team,
    page through hundreds of waiting registrations, oldest first, a few statements per page."""
    [liaison_admin] = await big.volunteers(1)
    federation = await big.root_team("330100", liaison_admin)
    admin_less = await big.root_team("330200")
    region_admin = await big.region_admin("330200")
    await insert_pending_teams(big, federation["id"], PENDING_TEAMS, "fed")
    await insert_pending_teams(big, admin_less["id"], PENDING_TEAMS, "nb")

    with statements(big) as seen:
        started = time.perf_counter()
        first = await big.client.get("/api/v1/reviews", headers=big.auth(liaison_admin))
        elapsed = time.perf_counter() - started
    assert first.status_code == 200, first.text
    print(f"\n/reviews, first page: {len(first.json()['items'])} items, {len(seen)} statements, {elapsed:.3f} s")
    assert len(seen) <= 10, f"{len(seen)} statements for one page (one per pending team)"
    assert len(first.json()["items"]) == 50  # the default page
    assert first.json()["next_cursor"] is not None

    for who in (liaison_admin, region_admin):
        ids, per_page = await all_review_pages(big, who, limit=100)
        assert len(ids) == len(set(ids)) == PENDING_TEAMS
        assert len(per_page) == 3
        assert max(per_page) <= 10, per_page
    async with big.runtime.session_factory() as session:
        rows = await session.execute(
            text("SELECT id::text FROM teams WHERE liaison_team_id = :l ORDER BY submitted_at, id"),
            {"l": uuid.UUID(admin_less["id"])},
        )
        assert ids == [r[0] for r in rows]  # the region admin's, oldest first

    too_large = await big.client.get("/api/v1/reviews", params={"limit": 201}, headers=big.auth(liaison_admin))
    assert too_large.status_code == 422
    bad = await big.client.get("/api/v1/reviews", params={"cursor": "x"}, headers=big.auth(liaison_admin))
    assert bad.status_code == 422
    assert bad.json()["code"] == "cursor_invalid"


async def test_the_paged_review_list_shows_exactly_the_registrations_the_reader_may_decide(big: Any) -> None:
    """Whatever the list's query, it lists for every kind of reader exactly the pending teams
    ``is_reviewer`` (which guards the decision) lets them decide, and never their own."""
    liaison_admin, co_admin, sole_admin, volunteer = (uuid.uuid4() for _ in range(4))
    rows: list[dict[str, Any]] = []

    def team(region: str, *, status: str = "pending", **values: Any) -> uuid.UUID:
        team_id = uuid.uuid4()
        rows.append(
            {
                "id": team_id,
                "region": region,
                "status": status,
                "liaison": values.get("liaison"),
                "authority": values.get("authority"),
                "applicant": values.get("applicant", uuid.uuid4()),
                "root": values.get("root", False),
            }
        )
        return team_id

    federation = team("330100", status="approved", root=True)  # admins: liaison_admin, co_admin
    lone = team("330300", status="approved", root=True)  # its only admin registers under it
    headless = team("330500", status="approved", root=True)  # no admin at all
    province = team("330000", status="approved", root=True)  # no admin, a province's team
    team("330106", liaison=federation)
    team("330107", liaison=federation, applicant=co_admin)
    team("330108", liaison=federation, applicant=liaison_admin)
    team("330109", liaison=federation, status="approved")
    team("330302", liaison=lone, applicant=sole_admin)
    team("330303", liaison=lone)
    team("330502", liaison=headless)
    team("330502", liaison=headless, applicant=volunteer)
    team("330100", liaison=province, status="rejected")
    team("330100", liaison=province)
    team("330106", authority="330106")
    team("330106", authority="330106", applicant=volunteer)
    team("330402", authority="330402", liaison=federation)
    team("110105", authority="110105")
    team("330106", authority="330106", status="approved")
    memberships = [(federation, liaison_admin), (federation, co_admin), (lone, sole_admin)]

    async with big.runtime.engine.begin() as conn:
        for n, row in enumerate(rows):
            await conn.execute(
                text(
                    "INSERT INTO teams (id, name, region_code, level, kind, registration_authority_region,"
                    " liaison_team_id, status, is_root, liaison_authorised, join_mode, contact_person,"
                    " contact_phone, contact_email, contact_address, applicant_account_id, submitted_at, name_key)"
                    " VALUES (:id, :name, :region, 'county', 'other', :authority, :liaison, :status, :root, true,"
                    " 'reject_anyone', '王', '0571-88886666', 'a@example.org', '杭州', :applicant,"
                    " now() - interval '1 day' + :n * interval '1 second', :name_key)"
                ),
                {
                    **row,
                    "name": (name := f"规则{n}{uuid.uuid4().hex[:6]}志愿服务队"),
                    "name_key": name_key(name),
                    "n": n,
                },
            )
        for team_id, account_id in memberships:
            await conn.execute(
                text("INSERT INTO memberships (team_id, account_id, is_admin, joined_at) VALUES (:t, :a, true, now())"),
                {"t": team_id, "a": account_id},
            )

    def regional(region: str | None, account_id: uuid.UUID | None = None) -> Principal:
        roles = frozenset({ROLE_VOLUNTEER, ROLE_REGIONAL_ADMIN})
        return Principal(account_id or uuid.uuid4(), roles, region)

    readers = [
        Principal(liaison_admin, frozenset({ROLE_VOLUNTEER})),
        Principal(co_admin, frozenset({ROLE_VOLUNTEER})),
        Principal(sole_admin, frozenset({ROLE_VOLUNTEER})),
        Principal(volunteer, frozenset({ROLE_VOLUNTEER}), "330500"),  # a region, but no admin role
        Principal(uuid.uuid4(), frozenset({ROLE_VOLUNTEER, ROLE_NATIONAL_ADMIN})),
        Principal(volunteer, frozenset({ROLE_VOLUNTEER, ROLE_NATIONAL_ADMIN})),
        regional("330000"),
        regional("330300"),
        regional("330300", sole_admin),
        regional("330500", volunteer),
        regional("330100"),
        regional("330106"),
        regional("330402", co_admin),
        regional("110000"),
        regional(None),
    ]
    ours = {row["id"] for row in rows}
    async with big.runtime.session_factory() as session:
        repo = TeamsRepository(session)
        teams_by_id = {t.id: t for t in await repo.lock_teams(ours)}
        newest = max(t.submitted_at for t in teams_by_id.values())  # a day ago: older than the bulk
        for reader in readers:
            expected = [row["id"] for row in rows if await is_reviewer(repo, reader, teams_by_id[row["id"]])]
            expected = [i for i in expected if teams_by_id[i].status == "pending"]
            listed: list[uuid.UUID] = []
            after = None
            while True:
                uow = UnitOfWork(big.runtime.session_factory, big.runtime.messaging, producer="teams")
                async with uow:
                    page = await registration.reviews_waiting_for(uow, reader, after=after, limit=7)
                listed += [t.id for t in page if t.id in ours]
                if len(page) < 7 or page[-1].submitted_at > newest:
                    break
                after = (page[-1].submitted_at, page[-1].id)
            assert listed == expected, (reader.roles, reader.region)


# -- directory and member lists: an index walk of one page -------------------------------------
async def test_team_directory_page_reads_a_page_not_the_whole_table(big: Any) -> None:
    async with big.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO teams (id, name, region_code, level, kind, status, is_root, liaison_authorised,"
                " join_mode, contact_person, contact_phone, contact_email, contact_address,"
                " applicant_account_id, submitted_at, created_at, name_key)"
                " SELECT gen_random_uuid(), 'dir' || g || '志愿服务队',"
                " CASE WHEN g % 500 = 1 THEN '650102'"
                " ELSE (ARRAY['110105','330106','440305','510104','320102'])[1 + g % 5] END, 'county', 'other',"
                " CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'approved' END, false, false, 'reject_anyone',"
                " '王老师', '0571-88886666', 't@example.org', '地址', gen_random_uuid(), now(), now(),"
                " 'dir' || g || '志愿服务队'"
                " FROM generate_series(1, :n) AS g"
            ),
            {"n": APPROVED_TEAMS},
        )
        await conn.execute(text("ANALYZE teams"))
    async with big.runtime.session_factory() as real:
        session = ExplainingSession(real)
        repo = TeamsRepository(session)  # type: ignore[arg-type]
        first = await repo.list_teams(region_prefix=None, after=None, limit=51)
        after = (first[-1].name, first[-1].id)
        later = await repo.list_teams(region_prefix=None, after=after, limit=51)
        in_region = await repo.list_teams(region_prefix="4403", after=None, limit=51)
        in_small_region = await repo.list_teams(region_prefix="6501", after=None, limit=51)  # 40 teams
    assert len(first) == len(later) == len(in_region) == 51
    assert len(in_small_region) == 40
    assert all(t.status == "approved" for t in first + later + in_region + in_small_region)
    assert all(t.region_code.startswith("4403") for t in in_region)
    assert all(t.region_code == "650102" for t in in_small_region)
    assert [t.name for t in in_small_region] == sorted(t.name for t in in_small_region)
    labels = ("first", "later", "region", "small region")
    for label, rows, ms, plan in zip(labels, session.rows_read, session.ms, session.plans, strict=True):
        print(f"\nlist_teams ({label} page): rows read {rows} in {ms:.1f} ms\n{plan}")
    assert max(session.rows_read) <= 1_000, f"a page of 51 read {session.rows_read} rows"


async def test_member_list_page_reads_a_page_not_the_whole_team(big: Any) -> None:
    [admin] = await big.volunteers(1)
    team_id = uuid.UUID((await big.approved_team(admin))["id"])
    async with big.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO memberships (team_id, account_id, is_admin, is_project_lead, joined_at)"
                " SELECT :team, gen_random_uuid(), false, false, now() - g * interval '1 second'"
                " FROM generate_series(1, :n) AS g"
            ),
            {"team": team_id, "n": TEAM_MEMBERS},
        )
        await conn.execute(text("ANALYZE memberships"))
    async with big.runtime.session_factory() as real:
        session = ExplainingSession(real)
        repo = TeamsRepository(session)  # type: ignore[arg-type]
        first = await repo.members_page(team_id, after=None, limit=51)
        last = first[-1][0]
        later = await repo.members_page(team_id, after=(last.joined_at, last.account_id), limit=51)
    assert len(first) == len(later) == 51
    for label, rows, ms, plan in zip(("first", "later"), session.rows_read, session.ms, session.plans, strict=True):
        print(f"\nmembers_page ({label} page): rows read {rows} in {ms:.1f} ms\n{plan}")
    assert max(session.rows_read) <= 1_000, f"a page of 51 read {session.rows_read} rows"


# -- a region admin's reviews: the region's queue, not the country's ---------------------------
async def insert_review_queue(
    conn: Any, count: int, tag: str, region: str, *, authority: str | None = None, **values: Any
) -> None:
    """``count`` pending registrations in ``region``: a social organisation's (``authority``) or a
    sub-team's (``liaison``, ``applicant``), submitted ``offset`` seconds from now and a second apart."""
    await conn.execute(
        text(
            "INSERT INTO teams (id, name, region_code, level, kind, registration_authority_region,"
            " liaison_team_id, status, is_root, liaison_authorised, join_mode, contact_person, contact_phone,"
            " contact_email, contact_address, applicant_account_id, submitted_at, created_at, name_key)"
            " SELECT gen_random_uuid(), :tag || g || '志愿服务队', :region, 'county', 'other', :authority,"
            " :liaison, 'pending', false, false, 'reject_anyone', '王老师', '0571-88886666', 't@example.org',"
            " '地址', coalesce(:applicant, gen_random_uuid()), now() + (:offset + g) * interval '1 second', now(),"
            " lower(:tag || g || '志愿服务队')"
            " FROM generate_series(1, :n) AS g"
        ),
        {
            "tag": tag,
            "region": region,
            "authority": authority,
            "liaison": values.get("liaison"),
            "applicant": values.get("applicant"),
            "offset": values.get("offset", 0),
            "n": count,
        },
    )


async def test_a_region_admins_review_page_reads_the_regions_queue_not_the_countrys(big: Any) -> None:
    """20,000 registrations wait elsewhere (social organisations of another city, the sub-teams of
    its federations with and without an admin), 61 in Quanzhou (3505), all newer: a Quanzhou
    admin's page of 50 reads about its region's rows, not the country's queue before them."""
    federation_admin = uuid.uuid4()

    def liaison(region: str, tag: str) -> dict[str, Any]:
        name = f"{tag}{uuid.uuid4().hex[:6]}联合会"
        return {"id": uuid.uuid4(), "region": region, "name": name, "name_key": name_key(name)}

    elsewhere_headless, elsewhere_federation = liaison("440300", "深圳"), liaison("440300", "深圳")
    headless, federation = liaison("350500", "泉州"), liaison("350500", "泉州")
    async with big.runtime.engine.begin() as conn:
        for team in (elsewhere_headless, elsewhere_federation, headless, federation):
            await conn.execute(
                text(
                    "INSERT INTO teams (id, name, region_code, level, kind, status, is_root, liaison_authorised,"
                    " join_mode, contact_person, contact_phone, contact_email, contact_address,"
                    " applicant_account_id, submitted_at, name_key)"
                    " VALUES (:id, :name, :region, 'city', 'other', 'approved', true, true, 'reject_anyone',"
                    " '王', '0571-88886666', 'a@example.org', '地址', gen_random_uuid(), now(), :name_key)"
                ),
                team,
            )
        for team in (elsewhere_federation, federation):  # one admin each: their sub-teams are theirs
            await conn.execute(
                text("INSERT INTO memberships (team_id, account_id, is_admin, joined_at) VALUES (:t, :a, true, now())"),
                {"t": team["id"], "a": federation_admin},
            )
        await insert_review_queue(conn, 8_000, "rqa", "440305", authority="440305")
        await insert_review_queue(conn, 8_000, "rqf", "440305", liaison=elsewhere_federation["id"])
        await insert_review_queue(conn, 4_000, "rqh", "440305", liaison=elsewhere_headless["id"])
        # Quanzhou's: 30 social organisations, 30 sub-teams of the admin-less federation, one
        # registered by the other federation's only admin (no other admin decides it), and 100 of
        # that federation's, which its admin decides
        await insert_review_queue(conn, 30, "rqqa", "350503", authority="350503", offset=100_000)
        await insert_review_queue(conn, 30, "rqqh", "350502", liaison=headless["id"], offset=100_001)
        await insert_review_queue(
            conn, 1, "rqqo", "350502", liaison=federation["id"], applicant=federation_admin, offset=100_002
        )
        await insert_review_queue(conn, 100, "rqqf", "350502", liaison=federation["id"], offset=100_000)
        await conn.execute(text("ANALYZE teams"))
        await conn.execute(text("ANALYZE memberships"))
        expected = [
            r[0]
            for r in await conn.execute(
                text(
                    "SELECT id FROM teams WHERE status = 'pending' AND (registration_authority_region LIKE '3505%'"
                    " OR liaison_team_id = :headless OR (liaison_team_id = :federation AND applicant_account_id = :a))"
                    " ORDER BY submitted_at, id"
                ),
                {"headless": headless["id"], "federation": federation["id"], "a": federation_admin},
            )
        ]
    assert len(expected) == 61

    reviewer = uuid.uuid4()  # a Quanzhou admin
    async with big.runtime.session_factory() as real:
        session = ExplainingSession(real)
        repo = TeamsRepository(session)  # type: ignore[arg-type]
        first = await repo.pending_reviews_page(reviewer, regions_prefix="3505", after=None, limit=51)
        after = (first[-1].submitted_at, first[-1].id)
        later = await repo.pending_reviews_page(reviewer, regions_prefix="3505", after=after, limit=51)
    assert [t.id for t in [*first, *later]] == expected
    for label, rows, ms, plan in zip(("first", "later"), session.rows_read, session.ms, session.plans, strict=True):
        print(f"\npending_reviews_page (region admin, {label} page): rows read {rows} in {ms:.1f} ms\n{plan}")
    assert max(session.rows_read) <= 1_000, f"a region admin's page of 51 read {session.rows_read} rows"


# -- a team's open applications and invitations: an index walk of one page ---------------------
OPEN_ITEMS = 20_000


async def team_with_open_and_answered(teams: Any, table: str, answered: str) -> uuid.UUID:
    """A team with ``OPEN_ITEMS`` pending rows of ``table`` (join requests or invitations) and as
    many answered ones, interleaved in time."""
    [admin] = await teams.volunteers(1)
    team_id = uuid.UUID((await teams.approved_team(admin))["id"])
    extra = ", invited_by" if table == "invitations" else ""
    async with teams.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                f"INSERT INTO {table} (id, team_id, account_id, status, created_at{extra})"
                f" SELECT gen_random_uuid(), :team, gen_random_uuid(),"
                f" CASE WHEN g % 2 = 0 THEN 'pending' ELSE :answered END, now() - g * interval '1 second'"
                f"{', :admin' if extra else ''}"
                " FROM generate_series(1, :n) AS g"
            ),
            {"team": team_id, "answered": answered, "admin": admin.account_id, "n": 2 * OPEN_ITEMS},
        )
        await conn.execute(text(f"ANALYZE {table}"))
    return team_id


@pytest.mark.parametrize(
    ("table", "answered", "listing"),
    [("join_requests", "rejected", "pending_join_requests"), ("invitations", "declined", "pending_invitations")],
)
async def test_a_teams_open_requests_or_invitations_page_reads_a_page_not_all_of_them(
    big: Any, table: str, answered: str, listing: str
) -> None:
    team_id = await team_with_open_and_answered(big, table, answered)
    async with big.runtime.session_factory() as real:
        session = ExplainingSession(real)
        pending = getattr(TeamsRepository(session), listing)  # type: ignore[arg-type]
        first = await pending(team_id, after=None, limit=51)
        last = first[-1][0]
        later = await pending(team_id, after=(last.created_at, last.id), limit=51)
        expected = await real.execute(
            text(f"SELECT id FROM {table} WHERE team_id = :t AND status = 'pending' ORDER BY created_at, id LIMIT 102"),
            {"t": team_id},
        )
    assert [item.id for item, _ in [*first, *later]] == [r[0] for r in expected]
    for label, rows, ms, plan in zip(("first", "later"), session.rows_read, session.ms, session.plans, strict=True):
        print(f"\n{listing} ({label} page): rows read {rows} in {ms:.1f} ms\n{plan}")
    assert max(session.rows_read) <= 1_000, f"a page of 51 read {session.rows_read} rows"


async def test_the_overdue_sweep_reads_the_registrations_still_to_escalate_not_the_whole_queue(big: Any) -> None:
    """5,000 registrations escalated weeks ago and still undecided, and 30 now overdue: a pass of the
    T5 sweep (every replica, every 5 minutes) read all of them again, idle passes too."""
    async with big.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO teams (id, name, region_code, level, kind, status, is_root, liaison_authorised,"
                " join_mode, contact_person, contact_phone, contact_email, contact_address,"
                " applicant_account_id, submitted_at, created_at, overdue_raised_at, name_key)"
                " SELECT gen_random_uuid(), 'od' || g || '志愿服务队', '330106', 'county', 'other', 'pending',"
                " false, false, 'reject_anyone', '王老师', '0571-88886666', 't@example.org', '地址',"
                " gen_random_uuid(), CAST(:now AS timestamptz) - interval '30 days' - g * interval '1 second',"
                " CAST(:now AS timestamptz),"
                " CASE WHEN g <= 30 THEN NULL ELSE CAST(:now AS timestamptz) - interval '20 days' END,"
                " 'od' || g || '志愿服务队'"
                " FROM generate_series(1, 5030) AS g"
            ),
            {"now": big.runtime.clock.now()},
        )
        await conn.execute(text("ANALYZE teams"))
    week_ago = big.runtime.clock.now() - timedelta(days=7)
    async with big.runtime.session_factory() as real:
        session = ExplainingSession(real)
        due = await TeamsRepository(session).overdue_reviews(week_ago, 100)  # type: ignore[arg-type]
        await real.execute(
            text("UPDATE teams SET overdue_raised_at = now() WHERE id = ANY(:ids)"), {"ids": [t.id for t in due]}
        )
        idle = await TeamsRepository(session).overdue_reviews(week_ago, 100)  # type: ignore[arg-type]
        await real.rollback()
    assert (len(due), len(idle)) == (30, 0)
    for label, rows, plan in zip(("due", "idle"), session.rows_read, session.plans, strict=True):
        print(f"\noverdue_reviews ({label} pass): rows read {rows}\n{plan}")
    assert max(session.rows_read) <= 1_000, f"a pass of the overdue sweep read {session.rows_read} rows"
