"""N2: once, never lost. Duplicate deliveries, SMTP outages, 4xx back-off, 5xx failures and their
replay by an operator, over the real broker, database and an aiosmtpd server."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from notifications.consumers import keep_recipients, send_welcome
from notifications.models import Email, Recipient
from notifications.outbox import dedupe_key, message_id_for
from notifications.transport import LEASE_RUNS_OUT, SENT_UNCONFIRMED
from shared.auth import ROLE_REGIONAL_ADMIN, ROLE_VOLUNTEER
from shared.contracts.identity import AccountContactChanged, AccountRegistered, VolunteerVerified
from shared.contracts.projects import ApplicationLeft
from shared.contracts.teams import TeamReviewReminderRequested
from shared.testing import SmtpServer, envelope_for, eventually

from .conftest import Service, StartService


def registration(tag: str = "") -> AccountRegistered:
    account_id = uuid.uuid4()
    return AccountRegistered(
        account_id=account_id,
        username=f"u{account_id.hex[:10]}",
        display_name="测试",
        email=f"n2-{tag}{account_id.hex[:12]}@example.org",
    )


async def email_rows(service: Service, **where: Any) -> list[Email]:
    async with service.runtime.session_factory() as session:
        query = select(Email)
        for column, value in where.items():
            query = query.where(getattr(Email, column) == value)
        return list((await session.execute(query)).scalars())


async def test_the_same_event_delivered_twice_gives_one_email(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        event = registration()
        envelope = await service.publish(event)
        await service.publish(event, event_id=envelope.event_id)  # the very same event, again
        # a later event of the same account travels the same lane: once it is mailed, both
        # deliveries of the first were handled (the emails themselves may leave in either order:
        # send loops run side by side)
        # (at the same address: the welcome goes to the newest the account has when it is queued)
        marker = AccountRegistered(
            account_id=event.account_id, username="marker", display_name="测试", email=event.email
        )
        await service.publish(marker)
        await smtp_server.wait_for(lambda m: event.email in m.rcpt_tos and "marker" in m.text(), timeout=30)
        [row] = await service.settled(envelope.event_id)
        assert row["to_address"] == event.email
        assert len([m for m in smtp_server.to(event.email) if event.username in m.text()]) == 1


async def test_redelivery_by_the_producers_relay_gives_one_email(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        event = registration()
        [event_id] = await service.produce(event)
        await service.settled(event_id)
        await service.producer.redeliver(event_id)  # as a relay that died before marking it published
        await eventually(lambda: service.producer.published(event_id), timeout=20)
        follow_up = registration()
        await service.produce(follow_up)
        await smtp_server.wait_for(lambda m: follow_up.email in m.rcpt_tos, timeout=30)
        await service.settled(event_id)
        assert len(smtp_server.to(event.email)) == 1


async def test_unique_key_makes_a_second_handling_a_no_op_and_names_the_message_id(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """The inbox is the first guard; the email's own (event, recipient, template) key the second,
    e.g. for a handler that runs again under another name or after an inbox purge."""
    async with start_service(smtp_server) as service:
        event = registration()
        envelope = envelope_for(event)
        other = registration()
        other_envelope = envelope_for(other)
        for batch in ([(event, envelope)], [(event, envelope)], [(other, other_envelope), (event, envelope)]):
            async with service.runtime.uow() as uow:
                await send_welcome(batch, uow, service.runtime)
        [email] = await smtp_server.wait_for(lambda m: event.email in m.rcpt_tos, timeout=30)
        await smtp_server.wait_for(lambda m: other.email in m.rcpt_tos, timeout=30)
        rows = await email_rows(service, event_id=envelope.event_id)
        assert len(rows) == 1
        assert len(await email_rows(service, event_id=other_envelope.event_id)) == 1
        key = dedupe_key(envelope.event_id, event.email, "welcome")
        assert rows[0].dedupe_key == key
        assert email.message["Message-ID"] == message_id_for(key, "volunteer.example.org")
        await service.settled(envelope.event_id)
        assert len(smtp_server.to(event.email)) == 1


async def test_smtp_down_while_events_keep_arriving_then_every_email_arrives_exactly_once(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        known_id, known_address = await service.register()
        own_smtp.stop()
        before = [registration("a") for _ in range(15)]
        ids = await service.produce(*before)

        async def all_deferred() -> bool:
            rows = [r for r in await email_rows(service) if r.event_id in set(ids)]
            return len(rows) == len(ids) and all(r.attempts >= 1 and r.status == "pending" for r in rows)

        await eventually(all_deferred, timeout=30)
        # still down: more events arrive, one of them for an account known from before
        during = [registration("b") for _ in range(15)]
        ids += await service.produce(*during)
        [verified_id] = await service.produce(
            VolunteerVerified(
                account_id=known_id,
                volunteer_number="11010520261126000009",
                masked_name="李*",
                region_code="110105",
                verified_at=datetime.now(UTC),
            )
        )
        rows = await eventually(lambda: _with_attempts(service, [*ids, verified_id]), timeout=30)
        assert all("cannot connect" in (r.last_error or "") for r in rows)

        own_smtp.start()
        for event_id in [*ids, verified_id]:
            await service.settled(event_id)
        addresses = [e.email for e in before + during]
        received = Counter(rcpt for m in own_smtp.received for rcpt in m.rcpt_tos)
        assert all(received[a] == 1 for a in addresses), received
        assert received[known_address] == 2  # its welcome before the outage and the verification
        assert len(own_smtp.received) == len(addresses) + 2


async def _with_attempts(service: Service, event_ids: list[uuid.UUID]) -> list[Email] | None:
    rows = [r for r in await email_rows(service) if r.event_id in set(event_ids)]
    return rows if len(rows) == len(event_ids) and all(r.attempts >= 1 for r in rows) else None


async def test_smtp_down_while_leave_notices_and_reminders_are_produced_then_each_arrives_once(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    """Issue 7: the mail server is down for a stretch while project leads' leave notices (P6) and
    review reminders (T5) are produced; after it returns every one arrives exactly once."""
    async with start_service(own_smtp) as service:
        leads = [await service.register(name=f"负责人{i}") for i in range(5)]
        reviewers = [await service.register(name=f"审核人{i}") for i in range(5)]
        own_smtp.stop()
        events: list[Any] = [
            ApplicationLeft(
                application_id=uuid.uuid4(),
                project_id=uuid.uuid4(),
                position_id=uuid.uuid4(),
                account_id=uuid.uuid4(),
                project_title="河道清洁",
                position_name="巡河",
                lead_account_ids=[lead_id],
            )
            for lead_id, _ in leads
        ]
        events += [
            TeamReviewReminderRequested(
                team_id=uuid.uuid4(),
                name="西城义工队",
                applicant_account_id=uuid.uuid4(),
                reviewer_account_ids=[reviewer_id],
                requested_at=datetime.now(UTC),
                days_waiting=4,
            )
            for reviewer_id, _ in reviewers
        ]
        ids = [event_id for event in events for event_id in await service.produce(event)]
        rows = await eventually(lambda: _with_attempts(service, ids), timeout=30)
        assert all(r.status == "pending" for r in rows)  # deferred while the server is away, not lost

        own_smtp.start()
        for event_id in ids:
            await service.settled(event_id)
        received = Counter(rcpt for m in own_smtp.received for rcpt in m.rcpt_tos)
        # each address: its welcome before the outage, then exactly one notice or reminder
        assert {address: received[address] for _, address in leads + reviewers} == {
            address: 2 for _, address in leads + reviewers
        }
        subjects = Counter(m.subject for m in own_smtp.received if "欢迎" not in m.subject)
        print(f"\nsmtp outage: produced={len(ids)} delivered_after_return={sum(subjects.values())}")
        assert sum(subjects.values()) == len(ids)


async def test_temporary_refusal_is_retried_with_growing_delays_until_accepted(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        own_smtp.refuse_with = "451 4.3.0 Mailbox busy, try again later"
        event = registration()
        [event_id] = await service.produce(event)

        async def retried_three_times() -> Email | None:
            rows = await email_rows(service, event_id=event_id)
            return rows[0] if rows and rows[0].attempts >= 3 else None

        row = await eventually(retried_three_times, timeout=30)
        assert row.status == "pending"
        assert "451" in (row.last_error or "")
        assert row.next_attempt_at > row.created_at
        own_smtp.refuse_with = None
        [sent] = await service.settled(event_id)
        assert sent["attempts"] >= 4
        assert sent["last_error"] is None
        assert len(own_smtp.to(event.email)) == 1


async def test_a_connection_lost_after_the_message_went_out_is_an_attempt_sent_again_later(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    """The server took the message in, then the connection dropped before its answer. That is no
    kept connection gone stale (replaced at once, no attempt used): the email counts the attempt
    with its reason and goes again after the back-off, under the same Message-ID (SMTP's rule:
    never confirmed, so sent again), where it was resent at once and looked sent first time."""
    async with start_service(own_smtp) as service:
        await service.register()  # a kept-open connection in the pool
        own_smtp.drop_after_accepting = 1
        event = registration()
        [event_id] = await service.produce(event)

        async def unconfirmed() -> Email | None:
            rows = await email_rows(service, event_id=event_id)
            return rows[0] if rows and rows[0].last_error == SENT_UNCONFIRMED else None

        row = await eventually(unconfirmed, timeout=20)
        assert (row.status, row.attempts) == ("pending", 1)
        [sent] = await service.settled(event_id)
        assert sent["attempts"] == 2
        copies = own_smtp.to(event.email)
        assert len(copies) == 2
        assert copies[0].message["Message-ID"] == copies[1].message["Message-ID"] == row.message_id


async def test_a_send_that_would_outlast_its_lease_sends_no_message_so_no_other_loop_sends_it_beside_it(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    """A server answering each step just inside the timeout (0.9 s a step, 1 s timeout): on a fresh
    connection the message would have gone out 2.7 s into a 3.2 s lease and its answer come after
    the lease ended, when another loop had claimed the email and sent it too (2 copies). No message
    goes out later than two timeouts before the lease ends: the send is cut before it, deferred
    with the reason, and the email goes once the server answers in time."""
    async with start_service(own_smtp, smtp_timeout=1.0, mail_send_lease_seconds=3.2) as service:
        own_smtp.reply_delay = 0.9
        event = registration()
        [event_id] = await service.produce(event)

        async def cut() -> Email | None:
            rows = await email_rows(service, event_id=event_id)
            return rows[0] if rows and rows[0].last_error == LEASE_RUNS_OUT else None

        await eventually(cut, timeout=20)
        assert own_smtp.to(event.email) == []  # no message went out to be sent again beside it
        own_smtp.reply_delay = 0.0
        [sent] = await service.settled(event_id)
        assert sent["attempts"] >= 2
        assert len(own_smtp.to(event.email)) == 1


async def test_temporary_refusals_end_as_failed_after_the_last_attempt(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp, mail_max_attempts=3) as service:
        own_smtp.refuse_with = "421 4.7.0 Too many connections"
        [event_id] = await service.produce(registration())
        [failed] = await service.settled(event_id, status="failed")
        assert failed["attempts"] == 3
        assert "421" in failed["last_error"]
        assert own_smtp.received == []


async def test_permanent_refusal_fails_at_once_with_the_reason_and_an_admin_replays_it(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        own_smtp.refuse_with = "550 5.1.1 <someone@example.org> mailbox unavailable"
        event = registration()
        [event_id] = await service.produce(event)
        [failed] = await service.settled(event_id, status="failed")
        assert failed["attempts"] == 1
        assert "550" in failed["last_error"]
        assert "mailbox unavailable" in failed["last_error"]
        assert "someone@example.org" not in failed["last_error"]  # no addresses in the reason
        listed = await service.emails(status="failed")
        assert [i["id"] for i in listed] == [failed["id"]]

        own_smtp.refuse_with = None
        path = f"/api/v1/emails/{failed['id']}/replay"
        volunteer = await service.client.post(path, headers=service.bearer(ROLE_VOLUNTEER))
        assert volunteer.status_code == 403
        regional = await service.client.post(path, headers=service.bearer(ROLE_REGIONAL_ADMIN, region="110000"))
        assert regional.status_code == 403
        assert (await service.client.post(path)).status_code == 401

        replayed = await service.client.post(path, headers=service.admin)
        assert replayed.status_code == 200, replayed.text
        [audit] = replayed.json()["replays"]
        assert audit["previous_status"] == "failed"
        assert "550" in audit["previous_error"]
        [sent] = await service.settled(event_id)
        assert sent["attempts"] == 1  # attempts start afresh on replay
        assert len(own_smtp.to(event.email)) == 1

        again = await service.client.post(path, headers=service.admin)
        assert again.status_code == 409
        assert again.json()["code"] == "email_not_replayable"
        assert again.json()["message"] == "只有发送失败或被限流拦截的邮件可以重新发送"
        english = await service.client.post(path, headers={**service.admin, "Accept-Language": "en"})
        assert english.json()["message"] == "Only failed or suppressed emails can be replayed"


def verified(account_id: uuid.UUID) -> VolunteerVerified:
    return VolunteerVerified(
        account_id=account_id,
        volunteer_number="11010520261126000010",
        masked_name="李*",
        region_code="110105",
        verified_at=datetime.now(UTC),
    )


async def contact_changed(service: Service, account_id: uuid.UUID, *, email: str, name: str) -> None:
    """The account's contact change, committed by identity and stored in the read model."""
    await service.produce(AccountContactChanged(account_id=account_id, display_name=name, email=email))

    async def stored() -> bool:
        async with service.runtime.session_factory() as session:
            recipient = await session.get(Recipient, account_id)
            return recipient is not None and recipient.email == email

    await eventually(stored, timeout=30)


async def test_a_replayed_email_goes_to_the_address_the_recipient_corrected_since(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        account_id, old_address = await service.register()
        own_smtp.refuse_with = "550 5.1.1 mailbox unavailable"
        [event_id] = await service.produce(verified(account_id))
        [failed] = await service.settled(event_id, status="failed")
        assert failed["to_address"] == old_address
        own_smtp.refuse_with = None

        new_address = await replay_after_correcting_the_address(service, account_id, failed["id"])
        [email] = await own_smtp.wait_for(lambda m: new_address in m.rcpt_tos, timeout=30)
        assert email.message["To"].addresses[0].display_name == "王五"
        assert "11010520261126000010" in email.text()
        [sent] = await service.settled(event_id)
        assert sent["to_address"] == new_address
        assert len(own_smtp.to(old_address)) == 1  # only the welcome, before the failure


async def test_a_replayed_welcome_goes_to_the_address_the_recipient_corrected_since(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        own_smtp.refuse_with = "550 5.1.1 mailbox unavailable"
        account_id, old_address = await service.register(wait=False)
        [failed] = await eventually(lambda: _failed_welcomes(service, old_address), timeout=30, interval=0.1)
        own_smtp.refuse_with = None
        new_address = await replay_after_correcting_the_address(service, account_id, failed["id"])
        await own_smtp.wait_for(lambda m: new_address in m.rcpt_tos, timeout=30)
        assert own_smtp.to(old_address) == []


async def replay_after_correcting_the_address(service: Any, account_id: uuid.UUID, email_id: str) -> str:
    """The recipient corrects the address, then an operator replays the failed email: the replay
    answers with the new address, which it returns."""
    new_address = f"fixed-{account_id.hex[:10]}@example.org"
    await contact_changed(service, account_id, email=new_address, name="王五")
    replayed = await service.client.post(f"/api/v1/emails/{email_id}/replay", headers=service.admin)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["to_address"] == new_address
    return new_address


async def _failed_welcomes(service: Any, address: str) -> list[dict[str, Any]] | None:
    items = [e for e in await service.emails(template="welcome", status="failed") if e["to_address"] == address]
    return items or None


async def test_pending_emails_follow_a_contact_change_of_their_account(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        account_id, old_address = await service.register()
        own_smtp.refuse_with = "450 4.2.1 Mailbox temporarily unavailable"
        [event_id] = await service.produce(verified(account_id))
        await eventually(lambda: _with_attempts(service, [event_id]), timeout=30)

        new_address = f"moved-{account_id.hex[:10]}@example.org"
        await contact_changed(service, account_id, email=new_address, name="王五")
        [row] = await email_rows(service, event_id=event_id)
        assert row.status == "pending"
        assert (row.to_address, row.to_name) == (new_address, "王五")  # in the change's transaction
        assert row.rate_key == new_address  # and the new mailbox's limits count it

        async def tried_twice_since() -> bool:  # so no send claimed before the change is in flight
            [now] = await email_rows(service, event_id=event_id)
            return now.attempts >= row.attempts + 2

        await eventually(tried_twice_since, timeout=30)
        own_smtp.refuse_with = None
        await own_smtp.wait_for(lambda m: new_address in m.rcpt_tos, timeout=30)
        [sent] = await service.settled(event_id)
        assert sent["to_address"] == new_address
        assert len(own_smtp.to(old_address)) == 1  # only the welcome, before the change


async def test_a_welcome_handled_after_the_contact_change_goes_to_the_new_address_only(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """The recipients queue may run ahead of the welcome's: the sign-up and a later contact change
    both stored (nothing pending to re-address yet), then the welcome's handler takes the
    account.registered. It addresses the welcome as the read model holds the account by then."""
    async with start_service(smtp_server) as service:
        event = registration("typo-")
        new_address = f"fixed-{event.account_id.hex[:12]}@example.org"
        signed_up = envelope_for(event, occurred_at=datetime.now(UTC) - timedelta(seconds=2))
        change = AccountContactChanged(
            account_id=event.account_id, display_name="Erin", email=new_address, language="en"
        )
        for stored in ((event, signed_up), (change, envelope_for(change))):
            async with service.runtime.uow() as uow:
                await keep_recipients([stored], uow, service.runtime)
        async with service.runtime.uow() as uow:
            await send_welcome([(event, signed_up)], uow, service.runtime)

        [welcome] = await service.settled(signed_up.event_id)
        assert welcome["to_address"] == new_address
        [email] = await smtp_server.wait_for(lambda m: new_address in m.rcpt_tos, timeout=30)
        assert "Welcome" in email.subject  # in the language the account holds now
        assert "Erin" in email.text()
        assert smtp_server.to(event.email) == []


async def test_a_welcome_keeps_the_sign_ups_address_when_the_read_model_holds_nothing_newer(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        event = registration()
        signed_up = envelope_for(event)
        older = AccountContactChanged(
            account_id=event.account_id, display_name="旧", email=f"old-{event.email}", language="en"
        )
        async with service.runtime.uow() as uow:  # a contact older than the sign-up's
            await keep_recipients(
                [(older, envelope_for(older, occurred_at=signed_up.occurred_at - timedelta(minutes=5)))],
                uow,
                service.runtime,
            )
        async with service.runtime.uow() as uow:
            await send_welcome([(event, signed_up)], uow, service.runtime)
        [welcome] = await service.settled(signed_up.event_id)
        assert welcome["to_address"] == event.email
        [email] = await smtp_server.wait_for(lambda m: event.email in m.rcpt_tos, timeout=30)
        assert "欢迎" in email.subject


async def test_operators_list_emails_by_status_recipient_and_event_page_by_page(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        events = [registration() for _ in range(5)]
        ids = await service.produce(*events)
        for event_id in ids:
            await service.settled(event_id)

        [by_recipient] = await service.emails(recipient=events[2].email.upper())
        assert by_recipient["event_id"] == str(ids[2])
        [by_event] = await service.emails(event_id=str(ids[3]))
        assert by_event["to_address"] == events[3].email
        assert len(await service.emails(status="sent", template="welcome")) == 5
        assert await service.emails(status="failed") == []

        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = await service.client.get("/api/v1/emails", params=params, headers=service.admin)
            assert page.status_code == 200
            body = page.json()
            assert len(body["items"]) <= 2
            seen += [i["id"] for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 5
        created = [i["created_at"] for i in await service.emails()]
        assert created == sorted(created, reverse=True)  # newest first

        detail = await service.client.get(f"/api/v1/emails/{by_event['id']}", headers=service.admin)
        assert detail.status_code == 200
        assert "测试" in detail.json()["body_text"]
        assert detail.json()["message_id"].endswith("@volunteer.example.org>")


async def test_operator_view_refuses_bad_input_with_stable_codes(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        bad_cursor = await service.client.get(
            "/api/v1/emails", params={"cursor": "not-a-cursor"}, headers=service.admin
        )
        assert bad_cursor.status_code == 422
        assert bad_cursor.json()["code"] == "cursor_invalid"
        assert bad_cursor.json()["message"] == "分页游标无效"
        bad_status = await service.client.get("/api/v1/emails", params={"status": "lost"}, headers=service.admin)
        assert bad_status.status_code == 422
        missing = await service.client.get(f"/api/v1/emails/{uuid.uuid4()}", headers=service.admin)
        assert missing.status_code == 404
        assert missing.json()["code"] == "email_not_found"
        not_admin = await service.client.get("/api/v1/emails", headers=service.bearer(ROLE_VOLUNTEER))
        assert not_admin.status_code == 403


async def test_control_characters_in_text_filters_are_refused_with_a_code_not_a_server_error(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        bad_filters = [
            {"recipient": "a\x00@example.org"},  # NUL: PostgreSQL cannot take it in text
            {"template": "wel\x00come"},
            {"recipient": "a\x1b@example.org"},
            {"template": "welcome\x7f"},
            {"recipient": "a\x85@example.org"},  # a C1 control character
        ]
        for params in bad_filters:
            refused = await service.client.get("/api/v1/emails", params=params, headers=service.admin)
            assert refused.status_code == 422, (params, refused.text)
            assert refused.json()["code"] == "validation_failed"
            assert refused.json()["message"] == "请求参数不合法"
            english = await service.client.get(
                "/api/v1/emails", params=params, headers={**service.admin, "Accept-Language": "en"}
            )
            assert english.status_code == 422
            assert english.json()["message"] == "The request is not valid"
        # printable text, Chinese included, is still a filter
        assert await service.emails(recipient="张三@例子.中国", template="welcome") == []


async def test_emails_not_yet_due_are_left_alone(start_service: StartService, own_smtp: SmtpServer) -> None:
    """An email deferred into the future is not picked before its time, however often the sender wakes."""
    async with start_service(own_smtp, mail_retry_base_seconds=3600, mail_retry_max_seconds=3600) as service:
        own_smtp.refuse_with = "450 4.2.1 Mailbox temporarily unavailable"
        [event_id] = await service.produce(registration())
        [_row] = await eventually(lambda: _with_attempts(service, [event_id]), timeout=30)
        own_smtp.refuse_with = None
        for _ in range(5):
            service.runtime.sender.wake()
            await service.runtime.sender.send_due()
        [still] = await email_rows(service, event_id=event_id)
        assert still.attempts == 1
        assert still.status == "pending"
        assert still.next_attempt_at - still.created_at >= timedelta(minutes=29)
        assert own_smtp.received == []
        async with service.runtime.session_factory() as session:
            due = await session.scalar(select(func.count()).select_from(Email).where(Email.status == "pending"))
        assert due == 1


async def test_queued_email_wakes_the_sender_at_once_without_waiting_for_a_poll(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """LISTEN/NOTIFY from the queueing transaction: with polling once an hour, mail still flows."""
    async with start_service(smtp_server, mail_poll_interval=3600) as service:
        events = [registration("wake") for _ in range(3)]
        for event in events:  # one after another: each must wake an idle loop by itself
            await service.produce(event)
            await smtp_server.wait_for(lambda m, e=event: e.email in m.rcpt_tos, timeout=30)
        # a replay wakes it too
        smtp_server.refuse_with = "550 5.7.1 refused"
        try:
            failed_event = registration("wake")
            [event_id] = await service.produce(failed_event)
            [failed] = await service.settled(event_id, status="failed")
        finally:
            smtp_server.refuse_with = None
        response = await service.client.post(f"/api/v1/emails/{failed['id']}/replay", headers=service.admin)
        assert response.status_code == 200
        await smtp_server.wait_for(lambda m: failed_event.email in m.rcpt_tos, timeout=30)
