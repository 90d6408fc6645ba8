"""Pages that must read a page, not the table, at national scale."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from identity.bootstrap import SERVICE_ROOT
from identity.repository import Cases
from shared.db import make_engine, make_session_factory
from shared.migrations import upgrade_head

CASES = 30_000


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows every scan node of an EXPLAIN ANALYZE plan read (returned + filtered out), over its loops."""
    total = 0
    if "Scan" in plan["Node Type"]:
        total += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * plan.get("Actual Loops", 1)
    for child in plan.get("Plans", []):
        total += _rows_read(child)
    return total


class Explaining:
    """A stand-in session: every statement a repository function runs is EXPLAIN ANALYZEd first."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.rows_read: list[int] = []
        self.ms: list[float] = []
        self.plans: list[str] = []

    async def execute(self, stmt: Any, params: Any = None) -> Any:
        conn = await self.session.connection()
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        values = compiled.construct_params(params)
        positional = tuple(values[name] for name in (compiled.positiontup or []))
        plan = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled), positional)).scalar_one()
        plan = json.loads(plan) if isinstance(plan, str) else plan
        self.rows_read.append(_rows_read(plan[0]["Plan"]))
        self.ms.append(plan[0]["Execution Time"])
        shown = (await conn.exec_driver_sql("EXPLAIN " + str(compiled), positional)).all()
        self.plans.append("\n".join(r[0] for r in shown))
        return await self.session.execute(stmt, params)


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
            session = Explaining(real)
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
