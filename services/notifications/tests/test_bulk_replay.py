"""N2, after an incident: an operator replays every failed email a filter matches in one call (a
cap per call, a count of what remains), with the single replay's per-email semantics, safely when
two operators run it at once, over the real broker, database and an aiosmtpd server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select, text

from notifications import repository
from notifications.models import Email, EmailReplay
from notifications.outbox import lock_account
from notifications.repository import ReplayFilter
from shared.auth import ROLE_NATIONAL_ADMIN, ROLE_REGIONAL_ADMIN, ROLE_VOLUNTEER
from shared.clock import ManualClock
from shared.contracts.identity import AccountRegistered, TemporaryPasswordSet
from shared.testing import SmtpServer, eventually

from .conftest import Service, StartService
from .test_awaiting_recipient import expired_email, register, waiting_service
from .test_rate_limits_and_mailbox import reset_for

PATH = "/api/v1/emails/replay"
REFUSED = "550 5.1.1 mailbox unavailable"


def registration() -> AccountRegistered:
    account_id = uuid.uuid4()
    return AccountRegistered(
        account_id=account_id,
        username=f"u{account_id.hex[:10]}",
        display_name="测试",
        email=f"bulk-{account_id.hex[:12]}@example.org",
    )


async def failed_welcomes(
    service: Service, smtp: SmtpServer, n: int, refusal: str = REFUSED
) -> list[AccountRegistered]:
    """``n`` accounts whose welcome email the server refused for good (one transaction of events)."""
    smtp.refuse_with = refusal
    events = [registration() for _ in range(n)]
    for event_id in await service.produce(*events):
        await service.settled(event_id, status="failed")
    smtp.refuse_with = None
    return events


def admin_headers(service: Service, admin_id: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.signer.issue(admin_id, roles=[ROLE_NATIONAL_ADMIN])}"}


async def bulk(service: Service, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
    response = await service.client.post(PATH, json=body, headers=headers or service.admin)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["replayed"] == len(result["email_ids"])
    return result


async def replay_rows(service: Service) -> list[EmailReplay]:
    async with service.runtime.session_factory() as session:
        return list((await session.execute(select(EmailReplay))).scalars())


async def statuses(service: Service) -> dict[str, str]:
    async with service.runtime.session_factory() as session:
        rows = (await session.execute(select(Email.to_address, Email.status))).all()
    return {address: status for address, status in rows}


async def delivered_once(smtp: SmtpServer, events: list[AccountRegistered]) -> None:
    """Every one of these welcomes reached the server, and none of them twice."""
    for e in events:
        await smtp.wait_for(lambda m, e=e: e.email in m.rcpt_tos, timeout=30)
    counts = Counter(address for m in smtp.received for address in m.rcpt_tos)
    assert {e.email: counts[e.email] for e in events} == {e.email: 1 for e in events}


async def test_bulk_replay_replays_only_the_failed_emails_the_filter_matches(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    start = datetime.now(UTC)
    clock = ManualClock(start)
    async with start_service(own_smtp, clock=clock) as service:
        early = await failed_welcomes(service, own_smtp, 2)
        clock.advance(timedelta(hours=2))
        [later] = await failed_welcomes(service, own_smtp, 1)
        [relay_denied] = await failed_welcomes(service, own_smtp, 1, refusal="553 5.7.1 relay denied")
        sent = registration()
        [sent_event] = await service.produce(sent)
        await service.settled(sent_event)
        [later_email] = await service.emails(account_id=str(later.account_id), template="welcome")
        before = await statuses(service)
        middle = (start + timedelta(hours=1)).isoformat()

        async def would(**body: Any) -> int:
            result = await bulk(service, dry_run=True, **body)
            assert result["dry_run"] is True
            assert result["replayed"] == 0
            remaining: int = result["remaining"]
            return remaining

        assert await would(error_prefix="550") == 3
        assert await would(error_prefix="553 5.7") == 1
        assert await would(error_prefix="55%") == 0  # a prefix, not a pattern
        assert await would(created_before=middle) == 2
        assert await would(created_from=middle) == 2  # the sent one is never counted
        assert await would(event_id=later_email["event_id"]) == 1
        assert await would(account_id=str(relay_denied.account_id)) == 1
        assert await would(template="welcome") == 4
        assert await would(template="password_reset") == 0
        assert await would(all_failed=True) == 4
        # the dry runs changed nothing
        assert await statuses(service) == before
        assert await replay_rows(service) == []

        admin_id = uuid.uuid4()
        first = await bulk(service, admin_headers(service, admin_id), error_prefix="550", created_from=middle)
        assert first["email_ids"] == [later_email["id"]]
        assert first["remaining"] == 0
        second = await bulk(service, admin_headers(service, admin_id), error_prefix="550")
        assert (second["replayed"], second["remaining"]) == (2, 0)
        await delivered_once(own_smtp, [*early, later])

        after = await statuses(service)
        assert after[relay_denied.email] == "failed"
        assert not own_smtp.to(relay_denied.email)
        assert len(own_smtp.to(sent.email)) == 1  # the sent one was left alone
        audits = await replay_rows(service)
        assert len(audits) == 3
        assert {a.replayed_by_account_id for a in audits} == {admin_id}
        assert all(a.previous_status == "failed" and (a.previous_error or "").startswith("550") for a in audits)
        assert all(a.replayed_at == clock.now() for a in audits)
        detail = await service.client.get(f"/api/v1/emails/{later_email['id']}", headers=service.admin)
        assert (detail.json()["status"], detail.json()["attempts"]) == ("sent", 1)
        assert len(detail.json()["replays"]) == 1

        # nothing matches any more: pending and sent emails are never replayed
        assert (await bulk(service, error_prefix="550"))["replayed"] == 0
        assert len(await replay_rows(service)) == 3


async def test_a_bulk_replay_takes_at_most_the_limit_and_says_how_many_remain(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        events = await failed_welcomes(service, own_smtp, 5)
        replayed: list[str] = []
        for expected, left in ((2, 3), (2, 1), (1, 0), (0, 0)):
            assert (await bulk(service, template="welcome", dry_run=True))["remaining"] == left + expected
            result = await bulk(service, template="welcome", limit=2)
            assert (result["replayed"], result["remaining"]) == (expected, left)
            replayed += result["email_ids"]
        assert len(set(replayed)) == 5
        await delivered_once(own_smtp, events)


async def test_only_national_admins_bulk_replay_and_bad_filters_are_refused_with_a_code(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        body = {"template": "welcome"}
        assert (await service.client.post(PATH, json=body)).status_code == 401
        volunteer = await service.client.post(PATH, json=body, headers=service.bearer(ROLE_VOLUNTEER))
        assert (volunteer.status_code, volunteer.json()["code"]) == (403, "forbidden")
        regional = await service.client.post(
            PATH, json=body, headers=service.bearer(ROLE_REGIONAL_ADMIN, region="110000")
        )
        assert regional.status_code == 403

        async def refused(body: dict[str, Any], code: str, **headers: str) -> dict[str, Any]:
            response = await service.client.post(PATH, json=body, headers={**service.admin, **headers})
            assert response.status_code == 422, response.text
            answer: dict[str, Any] = response.json()
            assert answer["code"] == code
            return answer

        nothing = await refused({}, "replay_filter_required")
        assert nothing["message"].startswith("请至少指定一个筛选条件")
        await refused({"dry_run": True, "limit": 10}, "replay_filter_required")
        await refused({"all_failed": False}, "replay_filter_required")
        backwards = await refused(
            {"created_from": "2026-12-02T00:00:00+08:00", "created_before": "2026-12-01T00:00:00+08:00"},
            "replay_time_range_invalid",
        )
        assert backwards["message"] == "创建时间范围的起点必须早于终点"
        same = "2026-12-01T00:00:00Z"
        await refused({"created_from": same, "created_before": same}, "replay_time_range_invalid")
        unknown = await refused({"template": "welcom"}, "replay_template_unknown")
        assert unknown["message"] == "没有这个邮件模板:welcom"
        padded = await service.client.post(
            "/api/v1/emails/replay", json={"template": " welcome ", "dry_run": True}, headers=service.admin
        )
        assert padded.status_code == 200, padded.text  # trimmed, as every body is
        english = await refused({}, "replay_filter_required", **{"Accept-Language": "en"})
        assert english["message"].startswith("Give at least one filter")
        for bad in (
            {"error_prefix": "550\x00"},
            {"error_prefix": ""},
            {"template": "x" * 81},
            {"created_from": "2026-12-01T00:00:00"},  # no time zone
            {"event_id": "not-a-uuid"},
            {"template": "welcome", "limit": 0},
            {"template": "welcome", "limit": 1001},
            {"template": "welcome", "status": "sent"},  # no such field: nothing is silently ignored
            {"all_failed": "yes please"},
        ):
            await refused(bad, "validation_failed")
        assert (await bulk(service, all_failed=True))["replayed"] == 0


async def test_two_operators_bulk_replaying_at_once_replay_each_email_once(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        events = await failed_welcomes(service, own_smtp, 30)
        first, second = uuid.uuid4(), uuid.uuid4()
        results = await asyncio.gather(
            bulk(service, admin_headers(service, first), template="welcome", limit=20),
            bulk(service, admin_headers(service, second), template="welcome", limit=20),
        )
        ids = [email_id for result in results for email_id in result["email_ids"]]
        assert len(ids) == len(set(ids)) == 30
        audits = await replay_rows(service)
        assert Counter(str(a.email_id) for a in audits) == Counter(ids)
        assert {a.replayed_by_account_id for a in audits} == {first, second}
        await delivered_once(own_smtp, events)


async def test_a_bulk_replay_skips_without_waiting_the_emails_another_one_holds(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    """The race made deterministic: the first replay's transaction stays open while the second runs."""
    async with start_service(own_smtp) as service:
        events = await failed_welcomes(service, own_smtp, 6)
        welcome = ReplayFilter(template="welcome")
        now = service.runtime.clock.now()
        async with service.runtime.session_factory() as one, one.begin():
            held = await repository.bulk_replay(one, welcome, by=uuid.uuid4(), now=now, limit=4)
            assert len(held.email_ids) == 4
            async with service.runtime.session_factory() as two, two.begin():
                other = await asyncio.wait_for(
                    repository.bulk_replay(two, welcome, by=uuid.uuid4(), now=now, limit=10), timeout=10
                )
            assert len(other.email_ids) == 2
            assert not set(other.email_ids) & set(held.email_ids)
        assert len(await replay_rows(service)) == 6
        await delivered_once(own_smtp, events)


async def test_bulk_replay_of_recipient_unknown_emails_sends_to_accounts_that_arrived_and_waits_for_the_rest(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with waiting_service(start_service, smtp_server, clock) as service:
        arrived, still_unknown = uuid.uuid4(), uuid.uuid4()
        first = await expired_email(service, clock, arrived)
        second = await expired_email(service, clock, still_unknown)
        address = await register(service, arrived)
        clock.advance(timedelta(minutes=5))

        result = await bulk(service, error_prefix="recipient_unknown")
        assert sorted(result["email_ids"]) == sorted([first["id"], second["id"]])
        assert result["remaining"] == 0
        await smtp_server.wait_for(lambda m: address in m.rcpt_tos and "实名认证已通过" in m.subject, timeout=30)

        async def status_of(email_id: str) -> dict[str, Any]:
            response = await service.client.get(f"/api/v1/emails/{email_id}", headers=service.admin)
            body: dict[str, Any] = response.json()
            return body

        sent = await eventually(lambda: _if_sent(status_of(first["id"])), timeout=20)
        assert sent["to_address"] == address
        waiting = await status_of(second["id"])
        assert waiting["status"] == "awaiting_recipient"
        assert waiting["to_address"] == ""
        # it waits afresh from the replay, the full time again
        assert datetime.fromisoformat(waiting["next_attempt_at"]) == clock.now()
        assert waiting["replays"][0]["previous_error"].startswith("recipient_unknown:")
        assert len([m for m in smtp_server.to(address) if "实名认证已通过" in m.subject]) == 1


async def _if_sent(detail: Any) -> dict[str, Any] | None:
    body: dict[str, Any] = await detail
    return body if body["status"] == "sent" else None


async def test_bulk_replay_leaves_rate_limited_emails_suppressed_and_replayed_ones_still_count(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    """A failed temporary-password notice was counted by the limit when queued and is the same email
    when replayed; a suppressed one is the limit's decision and stays held. (A reset link is never
    replayed: its link is not kept.)"""
    async with start_service(own_smtp, mail_rate_limits={"temporary_password": 1}) as service:
        account_id, address = await service.register()

        def notice() -> TemporaryPasswordSet:
            return TemporaryPasswordSet(account_id=account_id, set_by_account_id=uuid.uuid4(), by_team_id=uuid.uuid4())

        own_smtp.refuse_with = REFUSED
        [failed_id] = await service.produce(notice())
        await service.settled(failed_id, status="failed")
        [held_id] = await service.produce(notice())
        [held] = await service.settled(held_id, status="suppressed")
        own_smtp.refuse_with = None

        result = await bulk(service, template="temporary_password")
        assert (result["replayed"], result["remaining"]) == (1, 0)
        await service.settled(failed_id)
        [later_id] = await service.produce(notice())
        await service.settled(later_id, status="suppressed")  # the replayed one still counts
        assert (await bulk(service, all_failed=True))["replayed"] == 0
        assert (await service.settled(held_id, status="suppressed"))[0]["id"] == held["id"]
        assert len([m for m in own_smtp.to(address) if "临时密码" in m.subject]) == 1


async def test_a_failed_reset_email_keeps_no_link_and_is_left_out_of_bulk_replays(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        account_id, _ = await service.register()
        own_smtp.refuse_with = REFUSED
        [failed_id] = await service.produce(reset_for(account_id, 1))
        [failed] = await service.settled(failed_id, status="failed")
        async with service.runtime.session_factory() as session:
            row = await session.get(Email, uuid.UUID(failed["id"]))
        assert row is not None
        assert "reset#1" not in row.body_text + row.body_html
        assert (await bulk(service, all_failed=True))["replayed"] == 0


async def test_a_bulk_replay_of_a_thousand_emails_costs_a_fixed_number_of_statements(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp, mail_senders=2) as service:
        await failed_welcomes(service, own_smtp, 1)
        async with service.runtime.engine.begin() as conn:  # 999 more like it, from an incident
            await conn.execute(
                text(
                    """
                    INSERT INTO emails (id, dedupe_key, event_id, event_type, template, recipient_key,
                           recipient_account_id, to_address, to_name, language, subject, body_text, body_html,
                           message_id, status, attempts, last_error, created_at, next_attempt_at)
                    SELECT gen_random_uuid(), dedupe_key || ':' || n, gen_random_uuid(), event_type, template,
                           recipient_key, recipient_account_id, to_address, to_name, language, subject,
                           body_text, body_html, message_id, status, attempts, last_error, created_at,
                           next_attempt_at
                      FROM emails, generate_series(1, 999) AS n
                     WHERE status = 'failed'
                    """
                )
            )
        own_smtp.refuse_with = REFUSED  # they fail again at once rather than fill the test's server
        statements: list[str] = []
        runtime = service.runtime
        async with runtime.session_factory() as session, session.begin():
            mine = (await session.connection()).sync_connection

            def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                if conn is mine:  # not the send loops' or the sweep's
                    statements.append(statement)

            event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
            try:
                started = time.perf_counter()
                done = await repository.bulk_replay(
                    session, ReplayFilter(template="welcome"), by=uuid.uuid4(), now=runtime.clock.now(), limit=1000
                )
                elapsed = time.perf_counter() - started
            finally:
                event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
        assert (len(done.email_ids), done.remaining) == (1000, 0)
        # claim, accounts' locks, replay with its audit, count of the rest
        assert len(statements) == 4, statements
        async with runtime.session_factory() as session:
            audited = await session.scalar(select(func.count()).select_from(EmailReplay))
        assert audited == 1000
        print(f"bulk replay of 1000 emails: {len(statements)} statements, {elapsed * 1000:.0f} ms")


async def test_a_bulk_replay_leaves_for_the_next_call_the_emails_of_an_account_whose_address_is_being_stored(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    """A recipients handler holds the account's lock while it stores a contact change (and then
    waits for that account's rows): the replay neither waits for it nor sends to the old address."""
    async with start_service(own_smtp) as service:
        busy, free = await failed_welcomes(service, own_smtp, 2)
        runtime = service.runtime
        async with runtime.session_factory() as handler, handler.begin():
            await lock_account(handler, busy.account_id)
            result = await asyncio.wait_for(bulk(service, template="welcome"), timeout=10)
            [only] = result["email_ids"]
            replayed = await service.client.get(f"/api/v1/emails/{only}", headers=service.admin)
            assert replayed.json()["to_address"] == free.email
            assert result["remaining"] == 1
        again = await bulk(service, template="welcome")
        assert (again["replayed"], again["remaining"]) == (1, 0)
        await delivered_once(own_smtp, [busy, free])
