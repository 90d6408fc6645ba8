"""Pages that must read a page, not the table, at national scale."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import text

from identity.bootstrap import SERVICE_ROOT
from identity.repository import Audit, Cases, Reviews
from shared.db import make_engine, make_session_factory
from shared.migrations import upgrade_head
from shared.testing import ExplainingSession

CASES = 30_000


async def test_a_page_of_duplicate_cases_reads_a_page_not_every_case(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    engine = make_engine(await database_factory("identity_scale"), pool_size=2)
    try:
        await upgrade_head(engine, SERVICE_ROOT)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO duplicate_cases (id, id_blind_index, id_masked, status, opened_by, opened_at) "
                    "SELECT gen_random_uuid(), sha256(g::text::bytea), '110105********002X', "
                    "       CASE WHEN g % 3 = 0 THEN 'resolved' ELSE 'open' END, 'import', "
                    "       now() - g * interval '1 second' "
                    "FROM generate_series(1, :n) AS g"
                ),
                {"n": CASES},
            )
            await conn.execute(text("ANALYZE duplicate_cases"))
        async with make_session_factory(engine)() as real:
            session = ExplainingSession(real)
            first = await Cases(session).page(status="open", after=None, limit=51)  # type: ignore[arg-type]
            last = first[-1]
            second = await Cases(session).page(status="open", after=(last.opened_at, last.id), limit=51)  # type: ignore[arg-type]
            every = await Cases(session).page(status=None, after=(last.opened_at, last.id), limit=51)  # type: ignore[arg-type]
        assert len(first) == len(second) == len(every) == 51
        assert second[0].opened_at >= last.opened_at
        assert {c.id for c in first}.isdisjoint(c.id for c in second)
        assert all(c.opened_at - last.opened_at < timedelta(hours=1) for c in every)
        assert max(session.rows_read) <= 1_000, (session.rows_read, session.plans)
    finally:
        await engine.dispose()


async def test_the_review_queue_and_the_audit_log_read_a_page_not_the_table(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    """6,000 ID-card uploads waiting in 30 provinces beside 20,000 decided, and 100,000 audit entries:
    a national admin's page, a province's, a deep page and a rare action's page each sorted or
    filtered every row before."""
    engine = make_engine(await database_factory("identity_scale_review"), pool_size=2)
    try:
        await upgrade_head(engine, SERVICE_ROOT)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, username, password_hash, display_name, email, region_code,"
                    " verification_status)"
                    " SELECT md5('acct' || g)::uuid, 'u' || g, 'x', '张三', 'u' || g || '@example.org',"
                    " (11 + g % 30)::text || '0106', 'failed' FROM generate_series(1, 6000) g"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO id_card_uploads (id, account_id, region_code, content_type, size, image_ciphertext,"
                    " key_id, status, uploaded_at)"
                    " SELECT gen_random_uuid(), md5('acct' || (1 + g % 6000))::uuid,"
                    " (11 + (1 + g % 6000) % 30)::text || '0106', 'image/png', 100,"
                    " CASE WHEN g <= 6000 THEN 'x'::bytea END, 'k',"
                    " CASE WHEN g <= 6000 THEN 'pending' ELSE 'approved' END,"
                    " TIMESTAMPTZ '2026-01-01' + g * interval '7 second' FROM generate_series(1, 26000) g"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO audit_log (id, at, actor_id, action, subject_account_id, reason, detail)"
                    " SELECT gen_random_uuid(), TIMESTAMPTZ '2026-01-01' + g * interval '1 second',"
                    " md5('actor' || (g % 300))::uuid,"
                    " CASE WHEN g % 5000 = 0 THEN 'roles_changed' ELSE 'account_search' END,"
                    " md5('acct' || (1 + g % 6000))::uuid, 'r', '{}'::jsonb FROM generate_series(1, 100000) g"
                )
            )
            for table in ("accounts", "id_card_uploads", "audit_log"):
                await conn.execute(text(f"ANALYZE {table}"))
        async with make_session_factory(engine)() as real:
            session = ExplainingSession(real)
            reviews = Reviews(session)  # type: ignore[arg-type]
            national = await reviews.pending_page(scope=None, after=None, limit=51)
            deep = await reviews.pending_page(
                scope=None, after=(national[-1][0].uploaded_at, national[-1][0].id), limit=51
            )
            province = await reviews.pending_page(scope="330000", after=None, limit=51)
            audit = Audit(session)  # type: ignore[arg-type]
            newest = await audit.page(subject_account_id=None, actor_id=None, action=None, before=None, limit=51)
            half_way = await audit.page(
                subject_account_id=None,
                actor_id=None,
                action=None,
                before=(newest[-1].at - timedelta(seconds=50_000), newest[-1].id),
                limit=51,
            )
            rare = await audit.page(
                subject_account_id=None, actor_id=None, action="roles_changed", before=None, limit=51
            )
        assert [len(p) for p in (national, deep, province, newest, half_way, rare)] == [51, 51, 51, 51, 51, 20]
        assert all(u.region_code.startswith("33") for u, _ in province)
        uploaded = [u.uploaded_at for u, _ in national + deep]
        assert uploaded == sorted(uploaded)
        print(f"\nreview queue and audit pages: rows read {session.rows_read}")
        national_rows, deep_rows, province_rows, *audit_rows = session.rows_read
        assert max(national_rows, deep_rows, *audit_rows) <= 1_000, (session.rows_read, session.plans)
        # a province's page: its own queue sorted (200 here), or the country's queue walked in order
        # until a page of the province is found (about 30 pages' worth), whichever the planner
        # finds cheaper; never the decided uploads nor a sort of the country's queue (26 052 before)
        assert province_rows <= 2_000, (session.rows_read, session.plans[2])
    finally:
        await engine.dispose()
