"""Pages that must read a page, not the table, at national scale."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text

from notifications import repository
from notifications.bootstrap import SERVICE_ROOT
from shared.db import make_engine, make_session_factory
from shared.migrations import upgrade_head

EMAILS = 30_000


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


async def test_the_emails_of_one_account_read_a_page_not_the_table(
    database_factory: Callable[[str], Awaitable[str]],
) -> None:
    engine = make_engine(await database_factory("notifications_scale"), pool_size=2)
    try:
        await upgrade_head(engine, SERVICE_ROOT)
        account = uuid.uuid4()
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    """
                    INSERT INTO emails (id, dedupe_key, event_id, event_type, template, recipient_key,
                                        recipient_account_id, to_address, to_name, language, subject, body_text,
                                        body_html, message_id, status, created_at, sent_at)
                    SELECT gen_random_uuid(), 'k' || g, gen_random_uuid(), 'account.registered', 'welcome',
                           'account:' || g, CASE WHEN g IN (7, 15000) THEN :account ELSE gen_random_uuid() END,
                           'v' || g || '@example.org', '张三', 'zh', '欢迎', 'text', '<p>html</p>', '<m' || g || '>',
                           'sent', now() - g * interval '1 second', now()
                    FROM generate_series(1, :n) AS g"""
                ),
                {"n": EMAILS, "account": account},
            )
            await conn.execute(text("ANALYZE emails"))
        async with make_session_factory(engine)() as real:
            session = Explaining(real)
            rows, _ = await repository.list_emails(
                session,  # type: ignore[arg-type]
                repository.EmailFilter(account_id=account),
                limit=50,
                cursor=None,
            )
        assert len(rows) == 2
        assert max(session.rows_read) <= 1_000, (session.rows_read, session.plans)
    finally:
        await engine.dispose()
