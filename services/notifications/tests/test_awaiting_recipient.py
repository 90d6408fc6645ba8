"""Emails waiting for a recipient whose address never reaches notifications (its account.registered
dead-lettered or lost): after ``NOTIFICATIONS_AWAITING_RECIPIENT_MAX_HOURS`` the service's periodic
sweep marks them failed with a stable reason, operators find and replay them, and gauges show the
wait long before. Time moves on the service's clock; nothing sleeps for it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from shared.clock import ManualClock
from shared.contracts.identity import AccountRegistered, VolunteerVerified
from shared.testing import RAW_LOGS, SmtpServer, eventually

from .conftest import Service, StartService

MAX_HOURS = 6
MAX_WAIT = timedelta(hours=MAX_HOURS)
HOUR = timedelta(hours=1)
SUBJECT = "实名认证已通过"


def verified(account_id: uuid.UUID) -> VolunteerVerified:
    return VolunteerVerified(
        account_id=account_id,
        volunteer_number="11010520261126000010",
        masked_name="李*",
        region_code="110105",
        verified_at=datetime.now(UTC),
    )


@asynccontextmanager
async def waiting_service(
    start_service: StartService, smtp: SmtpServer, clock: ManualClock, **overrides: Any
) -> AsyncIterator[Service]:
    """A service whose emails wait at most MAX_HOURS for their recipient; its own sweep runs once
    an hour of real time (never within a test) unless the test says otherwise, so each test runs
    the passes itself, after moving the clock."""
    settings = {"awaiting_recipient_max_hours": MAX_HOURS, "awaiting_recipient_sweep_seconds": 3600.0, **overrides}
    async with start_service(smtp, clock=clock, **settings) as service:
        yield service


async def sweep(service: Service) -> int:
    """One pass of the sweep every replica runs periodically; how many emails it gave up on."""
    expired: int = await service.runtime.sweep_awaiting_recipients()
    return expired


async def awaiting_email(service: Service, account_id: uuid.UUID) -> dict[str, Any]:
    """An email to an account notifications has never heard of, queued and waiting for it."""
    [event_id] = await service.produce(verified(account_id))
    [waiting] = await service.settled(event_id, status="awaiting_recipient")
    assert waiting["to_address"] == ""
    return waiting


async def expired_email(service: Service, clock: ManualClock, account_id: uuid.UUID) -> dict[str, Any]:
    """An email whose recipient never arrived, past the longest wait and swept: failed."""
    waiting = await awaiting_email(service, account_id)
    clock.advance(MAX_WAIT + HOUR)
    assert await sweep(service) == 1
    failed = await detail(service, waiting["id"])
    assert failed["status"] == "failed"
    return failed


async def detail(service: Service, email_id: str) -> dict[str, Any]:
    response = await service.client.get(f"/api/v1/emails/{email_id}", headers=service.admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def register(service: Service, account_id: uuid.UUID, *, name: str = "王五") -> str:
    """The account's account.registered finally reaches notifications (read model stored)."""
    address = f"late-{account_id.hex[:12]}@example.org"
    [event_id] = await service.produce(
        AccountRegistered(account_id=account_id, username=f"u{account_id.hex[:10]}", display_name=name, email=address)
    )
    await service.handled(event_id, "recipients")
    return address


def assert_recipient_unknown(email: dict[str, Any]) -> None:
    assert email["status"] == "failed"
    assert email["last_error"].startswith("recipient_unknown:")
    assert "never reached notifications" in email["last_error"]


async def gauges(service: Service) -> tuple[float, float]:
    """(emails awaiting their recipient, seconds the oldest has waited) as /metrics shows them."""
    response = await service.client.get("/metrics")
    assert response.status_code == 200
    samples = {s.name: s.value for f in text_string_to_metric_families(response.text) for s in f.samples}
    return samples["vs_emails_awaiting_recipient"], samples["vs_emails_awaiting_recipient_oldest_seconds"]


async def test_an_email_awaiting_an_unknown_recipient_waits_until_the_limit_then_fails_with_the_reason(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with waiting_service(start_service, smtp_server, clock) as service:
        waiting = await awaiting_email(service, uuid.uuid4())

        clock.advance(MAX_WAIT - HOUR)
        assert await sweep(service) == 0
        assert (await detail(service, waiting["id"]))["status"] == "awaiting_recipient"

        clock.advance(2 * HOUR)
        assert await sweep(service) == 1
        # the operator's list of failed emails shows it, with the reason
        [failed] = await service.emails(status="failed")
        assert failed["id"] == waiting["id"]
        assert_recipient_unknown(failed)
        assert failed["attempts"] == 0  # never handed to the mail server
        assert await service.emails(status="awaiting_recipient") == []
        assert await sweep(service) == 0  # given up on once


async def test_replicas_sweeping_at_once_give_up_on_each_email_once(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with waiting_service(start_service, smtp_server, clock) as service:
        waiting = [await awaiting_email(service, uuid.uuid4()) for _ in range(5)]
        clock.advance(MAX_WAIT + HOUR)
        expired = await asyncio.gather(*(sweep(service) for _ in range(4)))
        assert sum(expired) == len(waiting)
        failed = await service.emails(status="failed")
        assert sorted(f["id"] for f in failed) == sorted(w["id"] for w in waiting)


async def test_the_services_own_periodic_sweep_gives_up_and_logs_counts_and_ids_only(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with waiting_service(start_service, smtp_server, clock, awaiting_recipient_sweep_seconds=0.1) as service:
        waiting = await awaiting_email(service, uuid.uuid4())
        clock.advance(MAX_WAIT + HOUR)

        async def failed() -> dict[str, Any] | None:
            email = await detail(service, waiting["id"])
            return email if email["status"] == "failed" else None

        assert_recipient_unknown(await eventually(failed, timeout=20, interval=0.1))
        logged = [x for x in RAW_LOGS.lines if "emails_awaiting_recipient_expired" in x and waiting["id"] in x]
        [line] = [json.loads(x) for x in logged]
        assert line["count"] == 1
        assert line["email_ids"] == [waiting["id"]]
        assert line["templates"] == {"verification_verified": 1}
        # what it says, besides the log's own fields: counts and ids, no address or name
        said = set(line) - {"event", "level", "logger", "timestamp", "service"}
        assert said == {"count", "email_ids", "templates", "max_hours"}


async def test_replaying_it_once_the_account_arrived_delivers_one_email_to_the_accounts_address(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with waiting_service(start_service, smtp_server, clock) as service:
        account_id = uuid.uuid4()
        expired = await expired_email(service, clock, account_id)

        address = await register(service, account_id, name="王五")
        # addressed now, but still failed: an email given up on leaves only when an operator says so
        addressed = await detail(service, expired["id"])
        assert_recipient_unknown(addressed)
        assert addressed["to_address"] == address
        await smtp_server.wait_for(lambda m: address in m.rcpt_tos and "欢迎" in m.subject, timeout=30)
        assert [m for m in smtp_server.to(address) if SUBJECT in m.subject] == []

        replayed = await service.client.post(f"/api/v1/emails/{expired['id']}/replay", headers=service.admin)
        assert replayed.status_code == 200, replayed.text
        [audit] = replayed.json()["replays"]
        assert audit["previous_status"] == "failed"
        assert audit["previous_error"].startswith("recipient_unknown:")
        [sent] = await service.settled(uuid.UUID(expired["event_id"]))
        assert sent["to_address"] == address
        [email] = [m for m in smtp_server.to(address) if SUBJECT in m.subject]
        assert email.rcpt_tos == [address]
        assert "王五" in email.text()


async def test_replaying_it_while_the_account_is_still_unknown_puts_it_back_to_wait_and_expire_again(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with waiting_service(start_service, smtp_server, clock) as service:
        expired = await expired_email(service, clock, uuid.uuid4())

        replayed = await service.client.post(f"/api/v1/emails/{expired['id']}/replay", headers=service.admin)
        assert replayed.status_code == 200, replayed.text
        body = replayed.json()
        assert body["status"] == "awaiting_recipient"
        assert body["last_error"] is None
        assert body["replays"][0]["previous_error"].startswith("recipient_unknown:")

        # it waits afresh from the replay, not from when it was first queued
        clock.advance(MAX_WAIT - HOUR)
        assert await sweep(service) == 0
        assert (await detail(service, expired["id"]))["status"] == "awaiting_recipient"
        clock.advance(2 * HOUR)
        assert await sweep(service) == 1
        assert_recipient_unknown(await detail(service, expired["id"]))


async def test_an_email_whose_recipient_arrives_in_time_is_delivered_and_never_expires(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with waiting_service(start_service, smtp_server, clock) as service:
        account_id = uuid.uuid4()
        waiting = await awaiting_email(service, account_id)
        clock.advance(MAX_WAIT - HOUR)
        assert await sweep(service) == 0

        address = await register(service, account_id)
        [sent] = await service.settled(uuid.UUID(waiting["event_id"]))
        assert sent["to_address"] == address
        await smtp_server.wait_for(lambda m: address in m.rcpt_tos and SUBJECT in m.subject, timeout=30)

        clock.advance(2 * MAX_WAIT)
        assert await sweep(service) == 0
        later = await detail(service, waiting["id"])
        assert later["status"] == "sent"
        assert later["last_error"] is None
        assert len([m for m in smtp_server.to(address) if SUBJECT in m.subject]) == 1


async def test_gauges_show_how_many_emails_wait_for_their_recipient_and_for_how_long(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with waiting_service(start_service, smtp_server, clock) as service:
        await sweep(service)
        assert await gauges(service) == (0, 0)

        first = uuid.uuid4()
        await awaiting_email(service, first)
        clock.advance(2 * HOUR)
        second = uuid.uuid4()
        await awaiting_email(service, second)
        clock.advance(HOUR)
        await sweep(service)
        assert await gauges(service) == (2, 3 * HOUR.total_seconds())

        await register(service, first)
        await sweep(service)
        assert await gauges(service) == (1, HOUR.total_seconds())

        await register(service, second)
        await sweep(service)
        assert await gauges(service) == (0, 0)


async def test_a_reset_link_given_up_on_is_kept_nowhere_and_its_account_arriving_renders_none(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    from notifications.models import BODY_FORGOTTEN, Email
    from shared.contracts.identity import PasswordResetRequested

    clock = ManualClock(datetime.now(UTC))
    async with waiting_service(start_service, smtp_server, clock) as service:
        account_id = uuid.uuid4()
        url = f"https://volunteer.example.org/reset#{uuid.uuid4().hex}"
        [event_id] = await service.produce(
            PasswordResetRequested(account_id=account_id, reset_url=url, expires_at=datetime.now(UTC) + HOUR)
        )
        [waiting] = await service.settled(event_id, status="awaiting_recipient")
        clock.advance(MAX_WAIT + HOUR)
        assert await sweep(service) == 1
        await register(service, account_id)  # arrives after all: the email is addressed, not rendered
        async with service.runtime.session_factory() as session:
            row = await session.get(Email, uuid.UUID(waiting["id"]))
        assert row is not None
        assert row.status == "failed"
        assert row.context is None
        assert url not in row.body_text + row.body_html
        assert row.body_text in ("", BODY_FORGOTTEN)


async def test_a_waiting_email_that_no_longer_renders_fails_alone_and_the_account_still_gets_its_mail(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """An email queued by an older release waits with that release's variables; the templates of
    the running one may need more (the closing notice's ``team_admin`` and ``service_line``). Its
    account arriving renders it: the failure marks that one email failed with the reason, and the
    account is stored, its other waiting emails and its welcome go out, and later mail is addressed."""
    from sqlalchemy import update

    from notifications.models import Email, Recipient
    from shared.contracts.projects import ProjectClosed

    async with start_service(smtp_server) as service:
        account_id = uuid.uuid4()
        [closed_event] = await service.produce(
            ProjectClosed(
                project_id=uuid.uuid4(),
                team_id=uuid.uuid4(),
                title="旧版本排队的结项通知",
                closed_at=datetime.now(UTC),
                lead_account_ids=[account_id],
            )
        )
        [closing] = await service.settled(closed_event, status="awaiting_recipient")
        verified_waiting = await awaiting_email(service, account_id)
        # the closing notice's variables as an older release stored them
        async with service.runtime.session_factory() as session, session.begin():
            row = await session.get(Email, uuid.UUID(closing["id"]))
            assert row is not None
            assert row.context is not None
            older = {k: v for k, v in row.context.items() if k not in ("team_admin", "service_line")}
            await session.execute(update(Email).where(Email.id == row.id).values(context=older))

        address = await register(service, account_id, name="赵六")

        async with service.runtime.session_factory() as session:
            assert await session.get(Recipient, account_id) is not None
        failed = await detail(service, closing["id"])
        assert failed["status"] == "failed"
        assert failed["last_error"] == "render_failed: UndefinedError"
        assert failed["attempts"] == 0  # never handed to the mail server
        [sent] = await service.settled(uuid.UUID(verified_waiting["event_id"]))
        assert sent["to_address"] == address
        await smtp_server.wait_for(lambda m: address in m.rcpt_tos and "欢迎" in m.subject, timeout=30)
        # later mail finds the account at once
        [later] = await service.produce(verified(account_id))
        await service.settled(later)
        assert [m for m in smtp_server.to(address) if "结项" in m.subject] == []
        # what was logged names the email and the template, never the recipient
        [line] = [json.loads(x) for x in RAW_LOGS.lines if "email_render_failed" in x and closing["id"] in x]
        assert line["error"] == "UndefinedError"
        assert line["template"] == "project_closed"
        assert address not in json.dumps(line)
        assert "赵六" not in json.dumps(line)

        # an email that could not be rendered is not sent empty by a replay
        refused = await service.client.post(f"/api/v1/emails/{closing['id']}/replay", headers=service.admin)
        assert (refused.status_code, refused.json()["code"]) == (409, "email_not_rendered")
        bulk = await service.client.post(
            "/api/v1/emails/replay", json={"template": "project_closed"}, headers=service.admin
        )
        assert bulk.status_code == 200, bulk.text
        assert bulk.json()["replayed"] == 0
        assert (await detail(service, closing["id"]))["status"] == "failed"
