"""Pages that must read a page, not the table, at national scale."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import text

from identity.bootstrap import SERVICE_ROOT
from identity.repository import Cases
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
