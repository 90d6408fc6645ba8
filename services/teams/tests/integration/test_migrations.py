"""Data migrations of the teams service, run over a database holding what earlier versions left."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import migrations
from shared.db import asyncpg_dsn, make_engine
from shared.migrations import upgrade_head
from teams.bootstrap import SERVICE_ROOT


async def migrate_to(conn: AsyncConnection, revision: str) -> None:
    """The database as the service left it at ``revision``, for rows of that time to be written."""
    await migrations.migrate_to(conn, SERVICE_ROOT, revision)


async def test_upgrade_closes_the_open_applications_and_invitations_of_members(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    engine = make_engine(await database_factory("teams_upgrade"), pool_size=1, max_overflow=0)
    team, member, outsider = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        async with engine.begin() as conn:
            await migrate_to(conn, "0001")
            await conn.execute(
                text(
                    "INSERT INTO teams (id, name, region_code, level, kind, status, join_mode, contact_person,"
                    " contact_phone, contact_email, contact_address, applicant_account_id, submitted_at)"
                    " VALUES (:t, '西湖志愿服务队', '330106', 'county', 'other', 'approved', 'approval', '王',"
                    " '0571-88886666', 'a@example.org', '杭州', :m, now())"
                ),
                {"t": team, "m": member},
            )
            await conn.execute(
                text("INSERT INTO memberships (team_id, account_id, joined_at) VALUES (:t, :m, now())"),
                {"t": team, "m": member},
            )
            for account in (member, outsider):
                values = {"t": team, "a": account, "i": uuid.uuid4(), "r": uuid.uuid4()}
                await conn.execute(
                    text(
                        "INSERT INTO join_requests (id, team_id, account_id, status, created_at)"
                        " VALUES (:r, :t, :a, 'pending', now())"
                    ),
                    values,
                )
                await conn.execute(
                    text(
                        "INSERT INTO invitations (id, team_id, account_id, invited_by, status, created_at)"
                        " VALUES (:i, :t, :a, :a, 'pending', now())"
                    ),
                    values,
                )
        await upgrade_head(engine, SERVICE_ROOT)
        async with engine.connect() as conn:
            rows = {
                (table, account_id, status)
                for table in ("join_requests", "invitations")
                for account_id, status in (await conn.execute(text(f"SELECT account_id, status FROM {table}"))).all()
            }
    finally:
        await engine.dispose()
    assert rows == {
        ("join_requests", member, "closed"),
        ("invitations", member, "closed"),
        ("join_requests", outsider, "pending"),
        ("invitations", outsider, "pending"),
    }


async def test_upgrade_keeps_every_use_of_a_match_token_made_before_tokens_were_single_use(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    engine = make_engine(await database_factory("teams_upgrade_jti"), pool_size=1, max_overflow=0)
    admin, volunteer, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    teams = [uuid.uuid4() for _ in range(3)]
    try:
        async with engine.begin() as conn:
            await migrate_to(conn, "0007")
            for n, team in enumerate(teams):
                await conn.execute(
                    text(
                        "INSERT INTO teams (id, name, region_code, level, kind, status, join_mode, contact_person,"
                        " contact_phone, contact_email, contact_address, applicant_account_id, submitted_at)"
                        " VALUES (:t, :name, '330106', 'county', 'other', 'approved', 'reject_anyone', '王',"
                        " '0571-88886666', 'a@example.org', '杭州', :a, now())"
                    ),
                    {"t": team, "name": f"西湖{n}志愿服务队", "a": admin},
                )
            # one token used for three teams, in this order; another token used once
            uses = [(teams[0], volunteer, "jti-1", 1), (teams[1], volunteer, "jti-1", 2)]
            uses += [(teams[2], volunteer, "jti-1", 3), (teams[0], other, "jti-2", 4)]
            for team, account, jti, minute in reversed(uses):  # stored out of the order they were made
                await conn.execute(
                    text(
                        "INSERT INTO invitations (id, team_id, account_id, invited_by, status, created_at,"
                        " answered_at, match_jti) VALUES (gen_random_uuid(), :t, :v, :a, 'accepted',"
                        " now() + make_interval(mins => :m), now(), :j)"
                    ),
                    {"t": team, "v": account, "a": admin, "m": minute, "j": jti},
                )
        await upgrade_head(engine, SERVICE_ROOT)
        async with engine.connect() as conn:
            kept = (await conn.execute(text("SELECT team_id, account_id, match_jti FROM invitations"))).all()
            index = (await conn.execute(text("SELECT pg_get_indexdef('uq_invitations_match_jti'::regclass)"))).scalar()
    finally:
        await engine.dispose()
    assert sorted(kept, key=lambda r: r.match_jti) == [
        (teams[0], volunteer, "jti-1"),
        (teams[1], volunteer, "jti-1#2"),
        (teams[2], volunteer, "jti-1#3"),
        (teams[0], other, "jti-2"),
    ]
    # alembic's comparison with the models does not look at an index's WHERE
    assert index == (
        "CREATE UNIQUE INDEX uq_invitations_match_jti ON public.invitations USING btree (match_jti) "
        "WHERE (match_jti IS NOT NULL)"
    )


async def test_an_index_left_invalid_by_a_failed_concurrent_build_is_built_again_and_a_valid_one_kept(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    """0006 creates its indexes ``if_not_exists`` so operators may build them beforehand without
    blocking writes. A concurrent build that failed leaves an INVALID index under the name, which
    the planner never uses: the migration must build it again, not take it as built."""
    engine = make_engine(await database_factory("teams_upgrade_invalid_index"), pool_size=1, max_overflow=0)

    async def index(name: str) -> tuple[int, bool] | None:
        row = (
            await conn.execute(
                text("SELECT indexrelid::int, indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"),
                {"n": name},
            )
        ).one_or_none()
        return (row[0], row[1]) if row is not None else None

    try:
        async with engine.begin() as conn:
            await migrate_to(conn, "0005")
            # built beforehand by the operator: one whole, one whose concurrent build failed (the
            # state such a failure leaves: the index exists with indisvalid false)
            await conn.execute(
                text("CREATE INDEX ix_memberships_team_admins ON memberships (team_id, account_id) WHERE is_admin")
            )
            await conn.execute(text("CREATE INDEX ix_teams_region_code ON teams (region_code)"))
            await conn.execute(
                text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_teams_region_code'::regclass")
            )
            kept, invalid = await index("ix_memberships_team_admins"), await index("ix_teams_region_code")
            assert invalid is not None
            assert invalid[1] is False
            await migrate_to(conn, "0006")
            rebuilt = await index("ix_teams_region_code")
            assert rebuilt is not None
            assert rebuilt[1] is True
            assert rebuilt[0] != invalid[0]  # a new index, not the failed one
            assert await index("ix_memberships_team_admins") == kept  # a valid one stays as built
    finally:
        await engine.dispose()


@pytest.mark.parametrize("built", ["ix_teams_region_code", "ix_teams_other"], ids=["its_own", "another_on_the_table"])
async def test_a_migration_stops_while_an_index_is_still_being_built_concurrently(
    database_factory: Callable[[str], Awaitable[str]], built: str
) -> None:
    """An index whose concurrent build is still running is invalid too, and a drop queued behind
    any concurrent build on the table deadlocks with it (the build loses its index): with one of
    its indexes invalid, the migration must neither drop nor wait, but stop and say so."""
    url = await database_factory("teams_upgrade_building_index")
    engine = make_engine(url, pool_size=1, max_overflow=0)
    # a writer holding the table, the concurrent build waiting for it, and one watching (outside
    # any transaction: a transaction sees the backends' progress as it was when it first looked)
    holder, builder, watcher = [await asyncpg.connect(asyncpg_dsn(url)) for _ in range(3)]
    build: asyncio.Task[str] | None = None
    try:
        async with engine.begin() as conn:
            await migrate_to(conn, "0005")
            if built != "ix_teams_region_code":  # one of the migration's, left invalid by a failed build
                await conn.execute(text("CREATE INDEX ix_teams_region_code ON teams (region_code)"))
                await conn.execute(
                    text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_teams_region_code'::regclass")
                )
        writer = holder.transaction()
        await writer.start()
        await holder.execute("LOCK TABLE teams IN ROW EXCLUSIVE MODE")
        build = asyncio.create_task(builder.execute(f"CREATE INDEX CONCURRENTLY {built} ON teams (region_code)"))
        for _ in range(200):
            if await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_progress_create_index WHERE index_relid = to_regclass($1)", built
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the concurrent build never started")
        with pytest.raises(DBAPIError, match="is not valid while an index is being built concurrently"):
            async with engine.begin() as conn:
                await migrate_to(conn, "0006")
        await writer.rollback()
        await asyncio.wait_for(build, 30)
        async with engine.begin() as conn:
            await migrate_to(conn, "0006")  # the build ended: every index is there and valid
            valid = (
                (
                    await conn.execute(
                        text("SELECT indisvalid FROM pg_index WHERE indexrelid IN (to_regclass(:a), to_regclass(:b))"),
                        {"a": "ix_teams_region_code", "b": built},
                    )
                )
                .scalars()
                .all()
            )
        assert valid == [True] * len({"ix_teams_region_code", built})
    finally:
        if build is not None and not build.done():
            build.cancel()
        for connection in (holder, builder, watcher):
            await connection.close()
        await engine.dispose()


async def test_upgrade_gives_each_team_its_name_key_and_marks_later_live_twins(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    """Names registered twice before keys (spaces, case) keep their names: the first submitted
    keeps the key, later live twins get ``#2``, ``#3``; rejected ones keep the plain key. The
    migration does not fail on them, and the key is unique from then on."""
    engine = make_engine(await database_factory("teams_upgrade_name_key"), pool_size=1, max_overflow=0)
    rows = [  # name, region, status, minutes after the first submission
        ("西湖 阳光F3志愿服务队", "330106", "pending", 2),
        ("西湖阳光F3志愿服务队", "330106", "approved", 0),
        ("西湖阳光f3志愿服务队", "330106", "approved", 1),
        ("西湖阳光F3 志愿服务队", "330106", "rejected", 3),
        ("西湖阳光f3志愿服务队", "330203", "approved", 4),  # another region
    ]
    ids = [uuid.uuid4() for _ in rows]
    try:
        async with engine.begin() as conn:
            await migrate_to(conn, "0010")
            for team, (name, region, status, minute) in zip(ids, rows, strict=True):
                await conn.execute(
                    text(
                        "INSERT INTO teams (id, name, region_code, level, kind, status, join_mode, contact_person,"
                        " contact_phone, contact_email, contact_address, applicant_account_id, submitted_at)"
                        " VALUES (:t, :name, :region, 'county', 'other', :status, 'reject_anyone', '王',"
                        " '0571-88886666', 'a@example.org', '杭州', gen_random_uuid(),"
                        " now() + make_interval(mins => :m))"
                    ),
                    {"t": team, "name": name, "region": region, "status": status, "m": minute},
                )
        await upgrade_head(engine, SERVICE_ROOT)
        async with engine.connect() as conn:
            keys = dict((await conn.execute(text("SELECT id, name_key FROM teams"))).all())
            names = dict((await conn.execute(text("SELECT id, name FROM teams"))).all())
        with pytest.raises(DBAPIError, match="uq_teams_region_name_key"):
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO teams (id, name, name_key, region_code, level, kind, status, join_mode,"
                        " contact_person, contact_phone, contact_email, contact_address, applicant_account_id,"
                        " submitted_at) VALUES (gen_random_uuid(), '西湖阳光F3志愿服务队 ', '西湖阳光f3志愿服务队',"
                        " '330106', 'county', 'other', 'pending', 'reject_anyone', '王', '0571-88886666',"
                        " 'a@example.org', '杭州', gen_random_uuid(), now())"
                    )
                )
        # a replica of the release before writes no key (a rolling update): the trigger fills it,
        # and the name meets the unique index all the same
        old_insert = text(
            "INSERT INTO teams (id, name, region_code, level, kind, status, join_mode, contact_person,"
            " contact_phone, contact_email, contact_address, applicant_account_id, submitted_at)"
            " VALUES (:t, :name, '330106', 'county', 'other', 'pending', 'reject_anyone', '王',"
            " '0571-88886666', 'a@example.org', '杭州', gen_random_uuid(), now()) RETURNING name_key"
        )
        async with engine.begin() as conn:
            filled = (await conn.execute(old_insert, {"t": uuid.uuid4(), "name": "西湖　阳光G9志愿服务队"})).scalar()
        with pytest.raises(DBAPIError, match="uq_teams_region_name_key"):
            async with engine.begin() as conn:
                await conn.execute(old_insert, {"t": uuid.uuid4(), "name": "西湖阳光g9 志愿服务队"})
    finally:
        await engine.dispose()
    assert filled == "西湖阳光g9志愿服务队"
    key = "西湖阳光f3志愿服务队"
    assert [keys[t] for t in ids] == [f"{key}#3", key, f"{key}#2", key, key]
    assert [names[t] for t in ids] == [name for name, *_ in rows]  # names as they were
