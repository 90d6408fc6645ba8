"""Pages that must read a page, not the table, at national scale."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import text

from notifications import repository
from notifications.bootstrap import SERVICE_ROOT
from shared.db import make_engine, make_session_factory
from shared.migrations import upgrade_head
from shared.pagination import encode_cursor
from shared.testing import ExplainingSession

EMAILS = 30_000


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
            session = ExplainingSession(real)
            rows, _ = await repository.list_emails(
                session,  # type: ignore[arg-type]
                repository.EmailFilter(account_id=account),
                limit=50,
                cursor=None,
            )
        assert len(rows) == 2
        assert max(session.rows_read) <= 1_000, (session.rows_read, session.plans)

        # a page deep in the operators' list (and the mailbox's: sent ones) reads a page, not every
        # email back to the newest
        async with make_session_factory(engine)() as real:
            session = ExplainingSession(real)
            cursor = None
            for _ in range(3):
                rows, cursor = await repository.list_emails(
                    session,  # type: ignore[arg-type]
                    repository.EmailFilter(),
                    limit=50,
                    cursor=cursor,
                )
            deep = encode_cursor(rows[-1].created_at - timedelta(seconds=20_000), uuid.uuid4())
            for f in (repository.EmailFilter(), repository.EmailFilter(status="sent")):
                deeper, _ = await repository.list_emails(session, f, limit=50, cursor=deep)  # type: ignore[arg-type]
                assert len(deeper) == 50
        print(f"\nlist_emails pages: rows read {session.rows_read}")
        assert max(session.rows_read) <= 1_000, (session.rows_read, session.plans[-1])
    finally:
        await engine.dispose()
