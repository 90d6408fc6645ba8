"""Per-recipient rate limits against mailbox flooding, and the standalone mailbox view."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta

from notifications.models import Email
from shared.clock import CHINA_TZ, ManualClock
from shared.contracts.identity import AccountRegistered, PasswordResetRequested, TemporaryPasswordSet
from shared.contracts.teams import TeamMemberJoined, TeamReviewOverdue, TeamReviewReminderRequested
from shared.testing import SmtpServer, assert_valid_html, eventually

from .conftest import Service, StartService


def reset_for(account_id: uuid.UUID, n: int) -> PasswordResetRequested:
    return PasswordResetRequested(
        account_id=account_id,
        reset_url=f"https://volunteer.example.org/reset#{n}",
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
    )


async def statuses(service: Service, event_ids: list[uuid.UUID]) -> list[str]:
    result = []
    for event_id in event_ids:
        [item] = await eventually(lambda e=event_id: service.emails(event_id=str(e)), timeout=20)
        result.append(item["status"])
    return result


async def test_password_reset_requests_beyond_the_limit_do_not_reach_the_mailbox(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with start_service(smtp_server, clock=clock) as service:
        victim, address = await service.register()
        other, other_address = await service.register()
        flood = [reset_for(victim, n) for n in range(8)]
        ids = []
        for event in flood:  # one request after another, as the reset button would be pressed
            ids += await service.produce(event)
        [other_id] = await service.produce(reset_for(other, 99))

        found = await statuses(service, ids)
        assert found.count("suppressed") == 3
        sent = [event_id for event_id, status in zip(ids, found, strict=True) if status != "suppressed"]
        for event_id in sent:
            await service.settled(event_id)
        await service.settled(other_id)  # another recipient is not held back by the victim's flood
        resets = [m for m in smtp_server.to(address) if "重置密码" in m.subject]
        assert len(resets) == 5
        assert len([m for m in smtp_server.to(other_address) if "重置密码" in m.subject]) == 1

        [suppressed] = await service.emails(status="suppressed", account_id=str(victim), limit=1)
        assert "rate limit" in suppressed["last_error"]
        assert "password_reset" in suppressed["last_error"]

        # an hour later the window has moved on
        clock.advance(timedelta(hours=1, seconds=1))
        [later_id] = await service.produce(reset_for(victim, 100))
        await service.settled(later_id)
        assert len([m for m in smtp_server.to(address) if "重置密码" in m.subject]) == 6


async def test_what_a_team_admin_can_send_a_member_at_will_is_limited_too(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """A team admin may reset a member's password, or add someone to a team, as often as they like:
    each tells the member by email, so both are held to the default limits (5 and 10 an hour)."""
    async with start_service(smtp_server) as service:
        member, _ = await service.register()
        admin, team_id = uuid.uuid4(), uuid.uuid4()
        notices = [
            TemporaryPasswordSet(account_id=member, set_by_account_id=admin, by_team_id=team_id) for _ in range(7)
        ]
        added = [
            TeamMemberJoined(
                team_id=uuid.uuid4(), account_id=member, added_by_account_id=uuid.uuid4(), team_name="某队"
            )
            for _ in range(12)
        ]
        ids = []
        for event in [*notices, *added]:
            ids += await service.produce(event)
        found = await statuses(service, ids)
        assert found[:7].count("suppressed") == 2
        assert found[7:].count("suppressed") == 2
        # the national admin's reset (V10: someone who lost everything) is never held back
        [national] = await service.produce(TemporaryPasswordSet(account_id=member, set_by_account_id=uuid.uuid4()))
        [sent] = await service.settled(national)  # sent, where it was suppressed after five team resets
        assert sent["template"] == "temporary_password"


async def test_an_operator_may_release_a_suppressed_email(start_service: StartService, smtp_server: SmtpServer) -> None:
    async with start_service(smtp_server, mail_rate_limits={"temporary_password": 1}) as service:
        account_id, address = await service.register()
        notices = [
            TemporaryPasswordSet(account_id=account_id, set_by_account_id=uuid.uuid4(), by_team_id=uuid.uuid4())
            for _ in range(2)
        ]
        first = await service.produce(notices[0])
        second = await service.produce(notices[1])
        await service.settled(first[0])
        [held] = await service.settled(second[0], status="suppressed")
        response = await service.client.post(f"/api/v1/emails/{held['id']}/replay", headers=service.admin)
        assert response.status_code == 200
        assert response.json()["replays"][0]["previous_status"] == "suppressed"
        await service.settled(second[0])
        assert len([m for m in smtp_server.to(address) if "临时密码" in m.subject]) == 2


async def test_a_reset_link_held_back_by_the_limit_is_kept_nowhere_and_not_replayed(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """The rate limit's suppressed reset holds a live link for half an hour: its body is not kept,
    and an operator cannot release it (the person asks for a new link)."""
    async with start_service(smtp_server, mail_rate_limits={"password_reset": 1}) as service:
        account_id, _ = await service.register()
        first = await service.produce(reset_for(account_id, 1))
        second = await service.produce(reset_for(account_id, 2))
        await service.settled(first[0])
        [held] = await service.settled(second[0], status="suppressed")
        async with service.runtime.session_factory() as session:
            row = await session.get(Email, uuid.UUID(held["id"]))
        assert row is not None
        assert "reset#2" not in row.body_text + row.body_html + str(row.context)
        refused = await service.client.post(f"/api/v1/emails/{held['id']}/replay", headers=service.admin)
        assert (refused.status_code, refused.json()["code"]) == (409, "email_link_not_kept")


def reminder(team_id: uuid.UUID, reviewer: uuid.UUID, name: str) -> TeamReviewReminderRequested:
    return TeamReviewReminderRequested(
        team_id=team_id,
        name=name,
        applicant_account_id=uuid.uuid4(),
        reviewer_account_ids=[reviewer],
        requested_at=datetime.now(UTC),
        days_waiting=4,
    )


async def test_review_reminders_cannot_flood_a_reviewer_but_each_team_is_heard(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """One team's reminders to a reviewer are limited (3 an hour); a liaison reviewing many teams
    still hears of each of them (the teams service lets each remind once a day)."""
    async with start_service(smtp_server) as service:
        reviewer, address = await service.register()
        flooding = uuid.uuid4()
        ids = []
        for _ in range(5):  # the same team's reminders, pressed again and again
            ids += await service.produce(reminder(flooding, reviewer, "刷屏团体"))
        others = []
        for n in range(5):  # five other teams waiting for the same reviewer
            others += await service.produce(reminder(uuid.uuid4(), reviewer, f"待审团体{n}"))
        found = await statuses(service, ids)
        assert found.count("suppressed") == 2
        assert "suppressed" not in await statuses(service, others)
        for event_id, status in zip(ids + others, found + ["pending"] * 5, strict=True):
            if status != "suppressed":
                await service.settled(event_id)
        reminders = [m for m in smtp_server.to(address) if "提醒审核" in m.subject]
        assert len(reminders) == 8
        assert len([m for m in reminders if "刷屏团体" in m.text()]) == 3


async def test_accounts_sharing_a_mailbox_share_its_limit(start_service: StartService, smtp_server: SmtpServer) -> None:
    """A family registering three accounts with one address, or someone registering accounts with
    a victim's address: reset requests over all of them reach that mailbox at most 5 times an hour."""
    async with start_service(smtp_server) as service:
        shared_address = f"Family-{uuid.uuid4().hex[:10]}@Example.org"
        accounts = [uuid.uuid4() for _ in range(3)]
        registered = []
        for n, account_id in enumerate(accounts):
            registered += await service.produce(
                AccountRegistered(
                    account_id=account_id,
                    username=f"f{account_id.hex[:10]}",
                    display_name=f"家人{n}",
                    # the same mailbox, however it is spelled
                    email=shared_address if n == 0 else shared_address.lower(),
                )
            )
        for event_id in registered:
            await service.settled(event_id)
        ids = []
        for n in range(9):  # three resets for each account
            ids += await service.produce(reset_for(accounts[n % 3], n))
        found = await statuses(service, ids)
        assert found.count("suppressed") == 4
        for event_id, status in zip(ids, found, strict=True):
            if status != "suppressed":
                await service.settled(event_id)
        into_mailbox = [m for m in smtp_server.received if [r.lower() for r in m.rcpt_tos] == [shared_address.lower()]]
        assert len([m for m in into_mailbox if "重置密码" in m.subject]) == 5


async def test_sign_ups_with_someone_elses_address_cannot_flood_it_with_welcomes(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """Anyone can sign up with any address (accounts are permanent, V7): twelve sign-ups with a
    victim's address in a minute reached it twelve times. Five welcomes an hour reach a mailbox
    (a family sharing one gets each of theirs); the rest are kept as suppressed."""
    async with start_service(smtp_server) as service:
        victim = f"victim-{uuid.uuid4().hex[:10]}@example.org"
        ids = []
        for n in range(12):
            account_id = uuid.uuid4()
            ids += await service.produce(
                AccountRegistered(
                    account_id=account_id, username=f"w{account_id.hex[:10]}", display_name=f"某{n}", email=victim
                )
            )
        found = await statuses(service, ids)
        assert (found.count("suppressed"), len(found)) == (7, 12)
        for event_id, status in zip(ids, found, strict=True):
            if status != "suppressed":
                await service.settled(event_id)
        assert len(smtp_server.to(victim)) == 5


async def test_a_redelivered_welcome_in_a_batch_is_not_counted_twice(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """A batch holding a redelivered event's welcome (stored already) and a new one: the stored one
    counted once in the database and again as an earlier row of the batch, and the new welcome, the
    fifth of the hour, was held back."""
    from notifications.outbox import Addressed, queue_emails
    from shared.testing import envelope_for

    async with start_service(smtp_server) as service:
        address = f"batch-{uuid.uuid4().hex[:10]}@example.org"

        def welcome(n: int) -> Addressed:
            event = AccountRegistered(
                account_id=uuid.uuid4(), username=f"b{n}{uuid.uuid4().hex[:8]}", display_name=f"某{n}", email=address
            )
            return Addressed(
                envelope_for(event),
                template="welcome",
                to_address=address,
                to_name=event.display_name,
                language="zh",
                context={"username": event.username, "path": "/login"},
                account_id=event.account_id,
            )

        first = [welcome(n) for n in range(4)]
        async with service.runtime.uow() as uow:
            assert await queue_emails(uow, service.runtime.templates, first) == 4
        fifth = welcome(5)
        async with service.runtime.uow() as uow:  # the fourth delivered again, twice, beside a new one
            assert await queue_emails(uow, service.runtime.templates, [first[3], fifth, first[3]]) == 1
        [row] = await service.emails(event_id=str(fifth.envelope.event_id))
        assert row["status"] != "suppressed", row


async def test_emails_that_waited_for_their_address_count_for_the_mailbox_they_went_to(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """Resets requested before the account reached notifications wait for its address, then count
    for that mailbox like any other: eleven within the hour, five reach it. The sixth, held back
    while waiting, keeps no link to render once the address comes, and is addressed as it is."""
    async with start_service(smtp_server) as service:
        account = uuid.uuid4()
        address = f"late-{account.hex[:10]}@example.org"
        early = []
        for n in range(6):
            early += await service.produce(reset_for(account, n))
        for event_id in early:
            await eventually(lambda e=event_id: service.emails(event_id=str(e)), timeout=20)
        await service.produce(
            AccountRegistered(account_id=account, username=f"u{account.hex[:8]}", display_name="李四", email=address)
        )
        for event_id in early[:5]:
            await service.settled(event_id)
        [held] = await service.settled(early[5], status="suppressed")
        assert held["to_address"] == address
        later = []
        for n in range(5, 10):
            later += await service.produce(reset_for(account, n))
        assert await statuses(service, later) == ["suppressed"] * 5
        assert len([m for m in smtp_server.to(address) if "重置密码" in m.subject]) == 5


async def test_escalations_of_many_overdue_teams_all_reach_the_region_admin(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    """Escalations come from the teams sweep, once per overdue team, never from a user: a province
    with five overdue teams in one sweep sends its admin five, none suppressed by a rate limit."""
    async with start_service(smtp_server) as service:
        admin, address = await service.register()
        ids = []
        for n in range(5):
            ids += await service.produce(
                TeamReviewOverdue(
                    team_id=uuid.uuid4(),
                    name=f"超时团体{n}",
                    region_code="110101",
                    applicant_account_id=uuid.uuid4(),
                    reviewer_account_ids=[],
                    region_admin_account_ids=[admin],
                    submitted_at=datetime.now(UTC) - timedelta(days=7),
                )
            )
        for event_id in ids:
            await service.settled(event_id)
        assert len([m for m in smtp_server.to(address) if "审核超时" in m.subject]) == 5


async def test_the_standalone_mailbox_keeps_a_reset_link_to_follow(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    """Sent by SMTP, a reset email's link is not kept; in the local mailbox (read on the machine
    itself) it is what a newcomer follows to try the reset."""
    async with start_service(own_smtp, mail_transport="mailbox") as service:
        account_id, _ = await service.register(wait=False)
        [event_id] = await service.produce(reset_for(account_id, 7))
        [sent] = await service.settled(event_id)
        read = (await service.client.get(f"/api/v1/mailbox/{sent['id']}")).json()
        assert "https://volunteer.example.org/reset#7" in read["body_text"]


async def test_standalone_mailbox_keeps_emails_for_reading(start_service: StartService, own_smtp: SmtpServer) -> None:
    async with start_service(own_smtp, mail_transport="mailbox") as service:
        ids = []
        addresses = []
        for n in range(3):
            account_id = uuid.uuid4()
            addresses.append(f"box-{account_id.hex[:10]}@example.org")
            ids += await service.produce(
                AccountRegistered(
                    account_id=account_id, username=f"box{n}", display_name=f"新人{n}", email=addresses[-1]
                )
            )
        for event_id in ids:
            await service.settled(event_id)
        assert own_smtp.received == []  # nothing leaves the machine in standalone mode

        first = await service.client.get("/api/v1/mailbox", params={"limit": 2})
        assert first.status_code == 200
        page = first.json()
        assert len(page["items"]) == 2
        rest = await service.client.get("/api/v1/mailbox", params={"limit": 2, "cursor": page["next_cursor"]})
        items = page["items"] + rest.json()["items"]
        assert rest.json()["next_cursor"] is None
        assert sorted(i["to_address"] for i in items) == sorted(addresses)
        assert all(i["subject"].startswith("欢迎") for i in items)

        # it holds every email whole (reset links too): only a reader on this machine gets it,
        # though standalone mode may listen on the network for phones opening a card's page
        for host in ("192.168.1.20", "::ffff:10.0.0.7", "2001:db8::1"):
            async with service.client_from(host) as remote:
                for path in (
                    "/api/v1/mailbox",
                    f"/api/v1/mailbox/{items[0]['id']}",
                    f"/api/v1/mailbox/{items[0]['id']}.html",
                ):
                    refused = await remote.get(path)
                    assert (refused.status_code, refused.json()["code"]) == (403, "mailbox_local_only"), path
        async with service.client_from("::1") as local:
            assert (await local.get("/api/v1/mailbox")).status_code == 200
        # listening on one address of the network (VS_RUN_HOST), the machine's own browser comes from it
        async with service.client_from("192.168.1.5", "http://192.168.1.5:8004") as own_browser:
            assert (await own_browser.get("/api/v1/mailbox")).status_code == 200

        one = await service.client.get(f"/api/v1/mailbox/{items[0]['id']}")
        assert one.status_code == 200
        body = one.json()
        assert "您已成功注册账号" in body["body_text"]
        assert "<p>" in body["body_html"]
        missing = await service.client.get(f"/api/v1/mailbox/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert missing.json()["code"] == "email_not_found"


async def test_the_mailbox_refuses_a_page_of_another_site_reaching_it_from_this_machine(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    """DNS rebinding: a site whose name its owner points at 127.0.0.1 once its page is loaded has the
    browser ask from this machine, to this machine's address, under the site's own name. Only the
    names of this machine (and the address it listens on) are answered."""
    async with start_service(own_smtp, mail_transport="mailbox") as service:
        account_id = uuid.uuid4()
        [event_id] = await service.produce(
            AccountRegistered(
                account_id=account_id,
                username="rebind",
                display_name="新人",
                email=f"r-{account_id.hex[:8]}@example.org",
            )
        )
        [email] = await service.settled(event_id)
        paths = ("/api/v1/mailbox", f"/api/v1/mailbox/{email['id']}", f"/api/v1/mailbox/{email['id']}.html")
        # connected to 127.0.0.1:8004 from 127.0.0.1, as the rebound name resolves
        async with service.client_from("127.0.0.1", "http://127.0.0.1:8004") as browser:
            for foreign in ("attacker.example:8004", "attacker.example", "127.0.0.1.attacker.example:8004"):
                for path in paths:
                    refused = await browser.get(path, headers={"Host": foreign})
                    assert (refused.status_code, refused.json()["code"]) == (403, "mailbox_local_only"), (foreign, path)
            for own in ("127.0.0.1:8004", "localhost", "localhost:8004", "[::1]:8004", "LOCALHOST:8004"):
                for path in paths:
                    assert (await browser.get(path, headers={"Host": own})).status_code == 200, (own, path)
        # listening on one address of the network (VS_RUN_HOST): the machine's own browser names that address
        async with service.client_from("192.168.1.5", "http://192.168.1.5:8004") as own_browser:
            assert (await own_browser.get("/api/v1/mailbox", headers={"Host": "192.168.1.5:8004"})).status_code == 200
            refused = await own_browser.get("/api/v1/mailbox", headers={"Host": "attacker.example:8004"})
            assert (refused.status_code, refused.json()["code"]) == (403, "mailbox_local_only")


async def test_mailbox_lists_only_delivered_emails_not_those_awaiting_their_recipient(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp, mail_transport="mailbox") as service:
        unknown = uuid.uuid4()
        [waiting_event] = await service.produce(reset_for(unknown, 1))
        [waiting] = await service.settled(waiting_event, status="awaiting_recipient")
        account_id = uuid.uuid4()
        [welcome_event] = await service.produce(
            AccountRegistered(
                account_id=account_id,
                username="boxed",
                display_name="新人",
                email=f"box-{account_id.hex[:8]}@example.org",
            )
        )
        [delivered] = await service.settled(welcome_event)
        listed = [i["id"] for i in (await service.client.get("/api/v1/mailbox")).json()["items"]]
        assert delivered["id"] in listed
        assert waiting["id"] not in listed
        not_yet = await service.client.get(f"/api/v1/mailbox/{waiting['id']}")
        assert (not_yet.status_code, not_yet.json()["code"]) == (404, "email_not_found")
        assert (await service.client.get(f"/api/v1/mailbox/{waiting['id']}.html")).status_code == 404


async def test_mailbox_shows_one_email_as_a_web_page(start_service: StartService, own_smtp: SmtpServer) -> None:
    async with start_service(own_smtp, mail_transport="mailbox") as service:
        account_id = uuid.uuid4()
        address = f"page-{account_id.hex[:8]}@example.org"
        [event_id] = await service.produce(
            AccountRegistered(
                account_id=account_id, username="pageview", display_name="<i>Ivy</i>", email=address, language="en"
            )
        )
        [email] = await service.settled(event_id)
        page = await service.client.get(f"/api/v1/mailbox/{email['id']}.html")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'none'" in page.headers["content-security-policy"]
        html = page.text
        assert_valid_html(html)  # the page and the email framed in it open alike in Chrome and Firefox (X3)
        # laid out for the screen it is on, as the list is (a phone's browser would zoom out otherwise)
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
        settings = service.runtime.settings
        # From (the English sender name for an English recipient), To with name and address, language, subject
        assert f"{settings.mail_from_name_en} &lt;{settings.mail_from_address}&gt;" in html
        assert f"&lt;i&gt;Ivy&lt;/i&gt; &lt;{address}&gt;" in html  # escaped: a name is text, not markup
        assert "<i>Ivy</i>" not in html
        assert "<td>en</td>" in html
        assert "Welcome to the National Volunteer Service Information System" in html
        # the email's own HTML, escaped into a sandboxed frame (no script of it runs on the page)
        assert '<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" srcdoc="&lt;!DOCTYPE html&gt;' in html
        assert "pageview" in html
        missing = await service.client.get(f"/api/v1/mailbox/{uuid.uuid4()}.html")
        assert missing.status_code == 404
        as_json = await service.client.get(f"/api/v1/mailbox/{email['id']}")
        assert (as_json.json()["to_name"], as_json.json()["language"]) == ("<i>Ivy</i>", "en")
        # sent at China time, as the emails' own times are written
        sent = datetime.fromisoformat(as_json.json()["sent_at"]).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")
        assert f"<td>{sent}(北京时间 China time)</td>" in html


async def test_a_browser_gets_the_mailbox_as_a_page_linking_to_each_email(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp, mail_transport="mailbox") as service:
        emails = []
        for name in ("<b>甲</b>", "乙", "丙"):
            account_id = uuid.uuid4()
            address = f"list-{account_id.hex[:8]}@example.org"
            [event_id] = await service.produce(
                AccountRegistered(
                    account_id=account_id, username=f"u{account_id.hex[:8]}", display_name=name, email=address
                )
            )
            [email] = await service.settled(event_id)
            emails.append((email, name, address))
        browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
        first = await service.client.get("/api/v1/mailbox", params={"limit": 2}, headers=browser)
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/html")
        assert first.headers["vary"] == "Accept"
        assert "default-src 'none'" in first.headers["content-security-policy"]
        assert_valid_html(first.text)
        # newest first, each a link to its page, names escaped
        newest, middle = emails[2][0], emails[1][0]
        assert first.text.index(f'href="/api/v1/mailbox/{newest["id"]}.html"') < first.text.index(
            f'href="/api/v1/mailbox/{middle["id"]}.html"'
        )
        assert f"/api/v1/mailbox/{emails[0][0]['id']}.html" not in first.text
        # the older one is on the next page, which the page links to
        older = re.search(r'<a href="([^"]+)" rel="next">', first.text)
        assert older is not None
        second = await service.client.get(html.unescape(older[1]), headers=browser)
        assert f'href="/api/v1/mailbox/{emails[0][0]["id"]}.html"' in second.text
        assert "&lt;b&gt;甲&lt;/b&gt;" in second.text
        assert "<b>甲</b>" not in second.text
        assert 'rel="next"' not in second.text
        # API clients still get JSON at the same address; so does a client that asks for nothing
        for headers in ({"Accept": "application/json"}, {}):
            as_json = await service.client.get("/api/v1/mailbox", params={"limit": 2}, headers=headers)
            assert [i["id"] for i in as_json.json()["items"]] == [newest["id"], middle["id"]]
            assert as_json.headers["vary"] == "Accept"


async def test_mailbox_view_does_not_exist_when_mail_goes_out_by_smtp(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        response = await service.client.get("/api/v1/mailbox")
        assert response.status_code == 404
