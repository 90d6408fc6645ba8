"""N1/N3: every message, triggered by its real event committed in a producer's outbox, relayed over
RabbitMQ and received by the aiosmtpd server: recipient, language, content, sender and the
allow-list advice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from notifications.config import NotificationsSettings
from notifications.models import BODY_FORGOTTEN, Email, Recipient
from shared.contracts.identity import (
    AccountContactChanged,
    AccountRegistered,
    PasswordResetRequested,
    TemporaryPasswordSet,
    VolunteerVerificationChanged,
    VolunteerVerified,
)
from shared.contracts.projects import (
    ApplicationAdmitted,
    ApplicationLeft,
    ApplicationRejected,
    ProjectClosed,
    ProjectExtended,
)
from shared.contracts.teams import (
    TeamApproved,
    TeamMemberJoined,
    TeamRejected,
    TeamReviewOverdue,
    TeamReviewReminderRequested,
)
from shared.testing import ReceivedEmail, SmtpServer, assert_valid_html, eventually

from .conftest import Service, StartService

DEFAULTS = NotificationsSettings()
SITE = DEFAULTS.site_url
#: the deployment's national service line, named in the emails that send people to it
SERVICE_LINE = "010-12345678(工作日 8:30–17:30)"


@pytest.fixture(scope="module")
async def service(start_service: StartService, smtp_server: SmtpServer) -> AsyncIterator[Service]:
    async with start_service(smtp_server, national_service_line=SERVICE_LINE) as svc:
        yield svc


async def one_email_to(service: Service, address: str, subject_part: str) -> ReceivedEmail:
    [email] = await service.smtp.wait_for(lambda m: address in m.rcpt_tos and subject_part in m.subject, timeout=30)
    return email


def assert_sender_and_advice(email: ReceivedEmail, *, english: bool = False) -> None:
    """N3: the operator's sender name and address, and the advice to allow-list it, from settings."""
    assert DEFAULTS.mail_from_address in email.message["From"]
    sender_name = DEFAULTS.mail_from_name_en if english else DEFAULTS.mail_from_name
    assert email.message["From"].addresses[0].display_name == sender_name
    advice = DEFAULTS.mail_allowlist_advice_en if english else DEFAULTS.mail_allowlist_advice
    assert advice in email.text()
    assert sender_name in email.text()
    assert sender_name in email.html()
    if english:  # no Chinese sender name anywhere in an English email
        assert DEFAULTS.mail_from_name not in email.text() + email.html()
    assert DEFAULTS.mail_from_address in email.text()
    assert DEFAULTS.mail_from_address in email.html()
    assert email.message["Content-Language"] == ("en" if english else "zh-CN")
    assert_valid_html(email.html())  # opened in webmail too: in Chrome and Firefox alike (X3)


async def test_sign_up_is_welcomed_in_chinese_by_default(service: Service) -> None:
    account_id = uuid.uuid4()
    address = f"welcome-{account_id.hex[:10]}@example.org"
    await service.produce(
        AccountRegistered(account_id=account_id, username="zhangsan88", display_name="张三", email=address)
    )
    email = await one_email_to(service, address, "欢迎")
    assert email.rcpt_tos == [address]
    assert "张三" in email.text()
    assert "zhangsan88" in email.text()
    assert "<strong>zhangsan88</strong>" in email.html()
    assert f"{SITE}/login" in email.text()
    assert f'href="{SITE}/login"' in email.html()
    assert_sender_and_advice(email)


async def test_sign_up_is_welcomed_in_english_for_a_recipient_who_chose_it(service: Service) -> None:
    account_id = uuid.uuid4()
    address = f"welcome-en-{account_id.hex[:10]}@example.org"
    await service.produce(
        AccountRegistered(account_id=account_id, username="alice01", display_name="Alice", email=address, language="en")
    )
    email = await one_email_to(service, address, "Welcome")
    assert "Alice" in email.text()
    assert "alice01" in email.text()
    assert "once verified you will receive your national volunteer number" in email.text()
    assert f"{SITE}/login" in email.text()
    assert_sender_and_advice(email, english=True)


async def test_the_bootstrapped_national_admin_is_not_welcomed_as_a_volunteer_but_gets_later_mail(
    service: Service,
) -> None:
    account_id = uuid.uuid4()
    address = f"staff-{account_id.hex[:10]}@example.org"
    [registered] = await service.produce(
        AccountRegistered(account_id=account_id, username="admin", display_name="全国管理员", email=address, staff=True)
    )
    await service.handled(registered, "welcome_email")
    await service.handled(registered, "recipients")
    assert await service.emails(event_id=str(registered)) == []
    # the address is known all the same: a later email reaches the admin at once
    await service.produce(TemporaryPasswordSet(account_id=account_id, set_by_account_id=uuid.uuid4(), by_team_id=None))
    await one_email_to(service, address, "临时密码")
    assert [m.subject for m in service.smtp.to(address)] == ["您的账号已设置临时密码"]


async def test_html_part_escapes_what_users_typed(service: Service) -> None:
    account_id = uuid.uuid4()
    address = f"escape-{account_id.hex[:10]}@example.org"
    await service.produce(
        AccountRegistered(account_id=account_id, username="u1", display_name="<b>王五</b>", email=address)
    )
    email = await one_email_to(service, address, "欢迎")
    assert "&lt;b&gt;王五&lt;/b&gt;" in email.html()
    assert "<b>王五</b>" not in email.html()


async def test_verification_success_carries_the_volunteer_number(service: Service) -> None:
    account_id, address = await service.register()
    await service.produce(
        VolunteerVerified(
            account_id=account_id,
            volunteer_number="11010520261125000001",
            masked_name="李*",
            region_code="110105",
            verified_at=datetime.now(UTC),
        )
    )
    email = await one_email_to(service, address, "实名认证已通过")
    assert "11010520261125000001" in email.text()
    assert "人工审核" not in email.text()
    assert f"{SITE}/account/card" in email.text()
    assert_sender_and_advice(email)


async def test_a_provider_asking_for_manual_review_tells_the_volunteer_to_upload_the_id_card(
    service: Service,
) -> None:
    """V5/V6: the provider could not decide; a regional admin does, from the ID card's front the
    volunteer uploads. The upload itself (``manual``) moves the status too: no email for that."""
    account_id, address = await service.register()
    [asked] = await service.produce(
        VolunteerVerificationChanged(account_id=account_id, status="manual_review", reason="需要人工核验", manual=False)
    )
    email = await one_email_to(service, address, "人工审核")
    assert email.subject == "实名认证需要人工审核"
    assert "上传身份证件正面图片" in email.text()
    assert "原因:需要人工核验" in email.text()
    assert f"{SITE}/account/identity" in email.text()
    assert_sender_and_advice(email)
    [uploaded] = await service.produce(
        VolunteerVerificationChanged(account_id=account_id, status="manual_review", manual=True)
    )
    await service.handled(uploaded, "verification_email")
    assert await service.emails(event_id=str(uploaded)) == []
    assert [e["template"] for e in await service.emails(event_id=str(asked))] == ["verification_manual_review"]


async def test_manual_review_outcomes_are_mailed_both_ways(service: Service) -> None:
    passed_id, passed = await service.register()
    failed_id, failed = await service.register(language="en", name="Bob")
    await service.produce(
        VolunteerVerified(
            account_id=passed_id,
            volunteer_number="11010520261125000002",
            masked_name="李*",
            region_code="110105",
            verified_at=datetime.now(UTC),
            manual=True,
        ),
        VolunteerVerificationChanged(
            account_id=failed_id, status="failed", reason="证件照片不清晰 / photo unreadable", manual=True
        ),
    )
    ok = await one_email_to(service, passed, "实名认证已通过")
    assert "人工审核" in ok.text()
    refused = await one_email_to(service, failed, "not")
    assert "manual review" in refused.text().lower()
    # free text stays as written, labelled as a quotation
    assert 'The reason, quoted as given: "证件照片不清晰 / photo unreadable"' in refused.text()
    assert "<q>证件照片不清晰 / photo unreadable</q>" in refused.html()
    assert "upload a photo of the front of your ID card under Edit profile → Identity" in refused.text()
    assert f"{SITE}/account/identity" in refused.text()
    assert_sender_and_advice(refused, english=True)


async def test_a_failed_verification_gives_the_way_on_not_a_resubmission(service: Service) -> None:
    """FAQ V5/V6: if name and number match the card, upload its front and wait for a person; if the
    name was wrong, correct it and it is checked again. There is no "submit again"."""
    account_id, address = await service.register()
    await service.produce(VolunteerVerificationChanged(account_id=account_id, status="failed", reason="姓名与证件不符"))
    email = await one_email_to(service, address, "实名认证未通过")
    text = email.text()
    assert "原因:姓名与证件不符" in text
    assert "如果一致,请登录系统,在“修改资料”页面的“身份信息”一栏按提示上传身份证正面图片" in text
    assert "等待管理员人工审核" in text
    assert "如果姓名填写有误,请在同一栏修改姓名,修改后系统将自动重新认证" in text
    assert "重新提交认证" not in text
    assert f"修改资料 → 身份信息:{SITE}/account/identity" in text
    assert f'href="{SITE}/account/identity"' in email.html()


async def test_verification_status_changes_other_than_failure_send_nothing_twice(service: Service) -> None:
    account_id, address = await service.register()
    [pending_event, verified_status_event] = await service.produce(
        VolunteerVerificationChanged(account_id=account_id, status="pending"),
        VolunteerVerificationChanged(account_id=account_id, status="verified"),
    )
    await service.handled(pending_event, "verification_email")
    await service.handled(verified_status_event, "verification_email")
    assert await service.emails(event_id=str(pending_event)) == []
    assert await service.emails(event_id=str(verified_status_event)) == []
    # The success email comes from volunteer.verified alone; only the welcome reached this address.
    assert len(service.smtp.to(address)) == 1


async def test_password_reset_link_is_mailed_with_its_expiry_in_china_time(service: Service) -> None:
    account_id, address = await service.register()
    expires = datetime(2026, 11, 26, 2, 30, tzinfo=UTC)  # 10:30 in Beijing
    url = f"https://volunteer.example.org/reset#{uuid.uuid4().hex}"
    [event_id] = await service.produce(PasswordResetRequested(account_id=account_id, reset_url=url, expires_at=expires))
    email = await one_email_to(service, address, "重置密码")
    assert url in email.text()
    assert f'href="{url}"' in email.html()
    assert "2026-11-26 10:30" in email.text()
    # operators see that it went, never the one-use link; the stored variables are gone too
    [sent] = await service.settled(event_id)
    detail = (await service.client.get(f"/api/v1/emails/{sent['id']}", headers=service.admin)).json()
    assert detail["body_withheld"] is True
    assert url not in detail["body_text"] + detail["body_html"]
    async with service.runtime.session_factory() as session:
        row = await session.get(Email, uuid.UUID(sent["id"]))
    assert row is not None
    assert row.context is None
    # nor does the database keep it once sent: a reader or a backup finds no usable link
    assert url not in row.body_text + row.body_html
    assert row.body_text == row.body_html == BODY_FORGOTTEN


async def test_temporary_password_notice_never_contains_a_password(service: Service) -> None:
    account_id, address = await service.register()
    await service.produce(
        TemporaryPasswordSet(account_id=account_id, set_by_account_id=uuid.uuid4(), by_team_id=uuid.uuid4())
    )
    email = await one_email_to(service, address, "临时密码")
    assert "本邮件不包含密码" in email.text()
    assert "团体的管理员" in email.text()
    assert f"登录:{SITE}/login" in email.text()


async def test_a_volunteer_brought_into_a_team_by_its_admin_is_told_and_nobody_else(service: Service) -> None:
    """FAQ V1: an admin who found the account by ID number and name brought it in without its owner's
    answer; the owner learns of it, and how to leave if they did not ask. Joining by one's own
    application or answer sends nothing."""
    added, address = await service.register()
    english, english_address = await service.register(language="en", name="Li Si")
    joined_alone, _ = await service.register()
    team_id = uuid.uuid4()
    by_admin = {"added_by_account_id": uuid.uuid4(), "team_name": "朝阳助老服务队"}
    *_, own_join = await service.produce(
        TeamMemberJoined(team_id=team_id, account_id=added, **by_admin),
        TeamMemberJoined(team_id=team_id, account_id=english, **by_admin),
        TeamMemberJoined(team_id=team_id, account_id=joined_alone),
    )

    email = await one_email_to(service, address, "朝阳助老服务队")
    assert "凭您的证件号码和姓名" in email.text()
    assert "退出该团体" in email.text()
    assert f"团体页面:{SITE}/teams/{team_id}" in email.text()
    assert_sender_and_advice(email)
    en = await one_email_to(service, english_address, "You were added")
    assert "leave the team" in en.text()
    assert_sender_and_advice(en, english=True)
    await service.handled(own_join, "team_member_added_email")
    assert await service.emails(event_id=str(own_join)) == []


async def test_a_volunteer_brought_into_a_team_is_given_the_national_service_line_to_call(service: Service) -> None:
    added, address = await service.register()
    english, english_address = await service.register(language="en", name="Li Si")
    team_name = f"朝阳助老服务队{uuid.uuid4().hex[:6]}"
    by_admin = {"team_id": uuid.uuid4(), "added_by_account_id": uuid.uuid4(), "team_name": team_name}
    await service.produce(
        TeamMemberJoined(account_id=added, **by_admin), TeamMemberJoined(account_id=english, **by_admin)
    )
    zh = await one_email_to(service, address, team_name)
    assert f"并联系全国服务电话:{SERVICE_LINE}。" in zh.text()
    assert f"并联系全国服务电话:{SERVICE_LINE}。" in zh.html()
    en = await one_email_to(service, english_address, team_name)
    assert f"call the national service line: {SERVICE_LINE}." in en.text()
    assert f"call the national service line: {SERVICE_LINE}." in en.html()


async def test_team_review_outcomes_reach_the_applicant(service: Service) -> None:
    applicant, address = await service.register()
    approved_team, rejected_team = uuid.uuid4(), uuid.uuid4()
    await service.produce(
        TeamApproved(
            team_id=approved_team,
            name="朝阳助老服务队",
            region_code="110105",
            applicant_account_id=applicant,
            reviewed_by_account_id=uuid.uuid4(),
        ),
        TeamRejected(
            team_id=rejected_team,
            name="海淀环保队",
            applicant_account_id=applicant,
            reviewed_by_account_id=uuid.uuid4(),
            reason="登记材料缺少负责人信息",
        ),
    )
    approved = await one_email_to(service, address, "审核已通过")
    assert "朝阳助老服务队" in approved.subject
    assert f"{SITE}/teams/{approved_team}" in approved.text()
    rejected = await one_email_to(service, address, "审核未通过")
    assert "登记材料缺少负责人信息" in rejected.text()
    # a rejected registration can no longer change (teams: "correct it and register again"): the
    # email leads to a new registration, not to the rejected team's page
    assert "您可以根据审核意见修改后重新登记:" in rejected.text()
    assert f"{SITE}/teams/new" in rejected.text()
    assert f'href="{SITE}/teams/new"' in rejected.html()
    assert str(rejected_team) not in rejected.text() + rejected.html()
    assert "重新提交" not in rejected.text()


async def test_a_root_team_created_by_an_admin_tells_nobody_their_application_passed(service: Service) -> None:
    given_admin, address = await service.register()
    [event_id] = await service.produce(
        TeamApproved(
            team_id=uuid.uuid4(),
            name="杭州市志愿服务联合会",
            region_code="330100",
            applicant_account_id=given_admin,
            reviewed_by_account_id=uuid.uuid4(),
            reason="由管理员直接创建的联络团体",
            root_team=True,
        )
    )
    await service.handled(event_id, "team_review_email")
    assert await service.emails(event_id=str(event_id)) == []
    assert [m for m in service.smtp.to(address) if "审核" in m.subject] == []


async def test_an_english_applicant_sees_the_reviewers_reason_quoted_as_written(service: Service) -> None:
    applicant, address = await service.register(language="en", name="Frank")
    await service.produce(
        TeamRejected(
            team_id=uuid.uuid4(),
            name="Harbour Cleanup Team",
            applicant_account_id=applicant,
            reviewed_by_account_id=uuid.uuid4(),
            reason="登记材料缺少负责人信息",
        )
    )
    email = await one_email_to(service, address, "was not approved")
    assert 'The reviewer\'s reason, quoted as written: "登记材料缺少负责人信息"' in email.text()
    assert f"register the team again: {SITE}/teams/new" in email.text()
    assert "apply again" not in email.text()
    assert_sender_and_advice(email, english=True)


async def test_review_reminder_reaches_every_reviewer_in_their_language(service: Service) -> None:
    reviewer_zh, address_zh = await service.register()
    reviewer_en, address_en = await service.register(language="en", name="Carol")
    await service.produce(
        TeamReviewReminderRequested(
            team_id=uuid.uuid4(),
            name="西城义工队",
            applicant_account_id=uuid.uuid4(),
            reviewer_account_ids=[reviewer_zh, reviewer_en],
            requested_at=datetime.now(UTC),
            days_waiting=4,
        )
    )
    zh = await one_email_to(service, address_zh, "提醒审核")
    assert "4 天" in zh.text()
    assert "西城义工队" in zh.text()
    assert f"{SITE}/reviews" in zh.text()
    en = await one_email_to(service, address_en, "Review reminder")
    assert "Carol" in en.text()
    assert "4 days" in en.text()


async def test_escalation_reaches_reviewers_and_region_admins_once_each(service: Service) -> None:
    reviewer, reviewer_address = await service.register()
    admin, admin_address = await service.register()
    [event_id] = await service.produce(
        TeamReviewOverdue(
            team_id=uuid.uuid4(),
            name="东城应急队",
            region_code="110101",
            applicant_account_id=uuid.uuid4(),
            # the reviewer is also one of the region's admins: one email, not two
            reviewer_account_ids=[reviewer, admin],
            region_admin_account_ids=[admin],
            submitted_at=datetime(2026, 11, 18, 17, 0, tzinfo=UTC),  # 19 Nov in Beijing
        )
    )
    await service.settled(event_id, count=2)
    for address in (reviewer_address, admin_address):
        email = await one_email_to(service, address, "审核超时")
        assert "2026-11-19" in email.text()
        # a reviewer who is also a region admin is asked to decide: they can
        assert "您是该申请的审核人,请尽快登录系统作出审核决定" in email.text()


async def test_escalation_asks_reviewers_to_decide_and_region_admins_to_follow_up_naming_the_reviewer(
    service: Service,
) -> None:
    reviewer, reviewer_address = await service.register()
    admin, admin_address = await service.register(language="en", name="Grace")
    team_id = uuid.uuid4()
    await service.produce(
        TeamReviewOverdue(
            team_id=team_id,
            name="东城应急队",
            region_code="110101",
            applicant_account_id=uuid.uuid4(),
            reviewer_account_ids=[reviewer],
            region_admin_account_ids=[admin],
            submitted_at=datetime(2026, 11, 18, 17, 0, tzinfo=UTC),
            liaison_team_id=uuid.uuid4(),
            liaison_team_name="东城区志愿服务联合会",
        )
    )
    decide = await one_email_to(service, reviewer_address, "审核超时")
    assert "审核方为联络团体“东城区志愿服务联合会”" in decide.text()
    assert f"请尽快登录系统作出审核决定:{SITE}/reviews" in decide.text()
    follow_up = await one_email_to(service, admin_address, "Overdue review")
    text = follow_up.text()
    assert 'It is reviewed by the liaison team "东城区志愿服务联合会".' in text
    assert "not a reviewer of this registration" in text
    assert "please follow up with the reviewer" in text
    assert "decide on it soon" not in text
    assert f"{SITE}/teams/{team_id}" in text


async def test_escalation_of_a_social_organisation_names_its_registration_authority(service: Service) -> None:
    reviewer, address = await service.register()
    await service.produce(
        TeamReviewOverdue(
            team_id=uuid.uuid4(),
            name="东城社工协会",
            region_code="110101",
            applicant_account_id=uuid.uuid4(),
            reviewer_account_ids=[reviewer],
            region_admin_account_ids=[],
            submitted_at=datetime(2026, 11, 18, 17, 0, tzinfo=UTC),
            registration_authority_region="110101",
        )
    )
    email = await one_email_to(service, address, "东城社工协会")
    assert "审核方为登记机关(东城区民政部门)" in email.text()


async def test_escalation_of_an_organisation_registered_with_the_ministry_names_the_ministry(
    service: Service,
) -> None:
    """A code the Ministry of Civil Affairs issued carries 100000, no region: the email names the
    ministry (as teams does), never the bare code nor "100000's civil affairs department"."""
    reviewer, address = await service.register()
    admin, admin_address = await service.register(language="en", name="Ivan")
    await service.produce(
        TeamReviewOverdue(
            team_id=uuid.uuid4(),
            name="中华志愿者协会分会",
            region_code="110101",
            applicant_account_id=uuid.uuid4(),
            reviewer_account_ids=[reviewer],
            region_admin_account_ids=[admin],
            submitted_at=datetime(2026, 11, 18, 17, 0, tzinfo=UTC),
            registration_authority_region="100000",
        )
    )
    zh = await one_email_to(service, address, "中华志愿者协会分会")
    assert "审核方为登记机关(民政部)。" in zh.text()
    assert "审核方为登记机关(民政部)。" in zh.html()
    en = await one_email_to(service, admin_address, "中华志愿者协会分会")
    assert "It is reviewed by the registration authority (the Ministry of Civil Affairs)." in en.text()
    assert "It is reviewed by the registration authority (the Ministry of Civil Affairs)." in en.html()
    for email in (zh, en):
        assert "100000" not in email.text() + email.html()


async def test_admission_and_rejection_reach_the_volunteer(service: Service) -> None:
    volunteer, address = await service.register()
    common = {"project_id": uuid.uuid4(), "position_id": uuid.uuid4(), "account_id": volunteer}
    await service.produce(
        ApplicationAdmitted(
            application_id=uuid.uuid4(), project_title="社区图书角", position_name="图书整理", **common
        ),
        ApplicationRejected(
            application_id=uuid.uuid4(),
            project_title="马拉松补给站",
            position_name="补给",
            reason="名额已满",
            **common,
        ),
    )
    admitted = await one_email_to(service, address, "录用")
    assert "恭喜您被志愿服务项目“社区图书角”的“图书整理”岗位录用。" in admitted.text()
    assert f"{SITE}/projects/{common['project_id']}" in admitted.text()
    rejected = await one_email_to(service, address, "报名结果")
    assert "名额已满" in rejected.text()
    assert f"{SITE}/projects" in rejected.text()


async def test_leave_notice_goes_to_every_project_lead_at_once(service: Service) -> None:
    volunteer, _ = await service.register(name="赵六")
    lead_a, address_a = await service.register()
    lead_b, address_b = await service.register(language="en", name="Dave")
    project_id = uuid.uuid4()
    await service.produce(
        ApplicationLeft(
            application_id=uuid.uuid4(),
            project_id=project_id,
            position_id=uuid.uuid4(),
            account_id=volunteer,
            project_title="河道清洁",
            position_name="巡河",
            lead_account_ids=[lead_a, lead_b],
            masked_name="赵*",
            volunteer_number="VS00000000018",
            admission_mode="manual",
        )
    )
    zh = await one_email_to(service, address_a, "退出")
    # the lead sees the volunteer as projects shows them: masked name and number, not the name
    assert "志愿者赵*(志愿者编号 VS00000000018)" in zh.text()
    assert "赵六" not in zh.text() + zh.html()
    assert "河道清洁" in zh.text()
    assert "您可以录用其他报名者,或根据需要重新招募" in zh.text()
    assert f"{SITE}/projects/{project_id}" in zh.text()
    en = await one_email_to(service, address_b, "left")
    assert "Dave" in en.text()
    assert "The volunteer 赵* (volunteer number VS00000000018)" in en.text()
    assert "赵六" not in en.text() + en.html()


@pytest.mark.parametrize(
    ("next_admitted", "expected"),
    [
        (True, "空出的名额已由排队中的下一位报名者自动录用,您无需处理"),
        (False, "目前没有排队的报名者,空出的名额将自动录用下一位报名者"),
    ],
)
async def test_leave_notice_of_an_automatic_position_says_who_takes_the_place(
    service: Service, next_admitted: bool, expected: str
) -> None:
    lead, address = await service.register()
    title = f"自动岗位{uuid.uuid4().hex[:6]}"
    await service.produce(
        ApplicationLeft(
            application_id=uuid.uuid4(),
            project_id=uuid.uuid4(),
            position_id=uuid.uuid4(),
            account_id=uuid.uuid4(),
            project_title=title,
            position_name="引导员",
            lead_account_ids=[lead],
            masked_name="钱*",
            volunteer_number="VS00000000026",
            admission_mode="auto",
            next_admitted=next_admitted,
        )
    )
    email = await one_email_to(service, address, title)
    assert expected in email.text()
    assert "重新招募" not in email.text()


async def test_leave_notice_of_an_older_event_names_nobody(service: Service) -> None:
    """An event from before the producer carried the masked name: no name rather than the full one."""
    volunteer, _ = await service.register(name="孙七")
    lead, address = await service.register()
    await service.produce(
        ApplicationLeft(
            application_id=uuid.uuid4(),
            project_id=uuid.uuid4(),
            position_id=uuid.uuid4(),
            account_id=volunteer,
            project_title="旧事件项目",
            position_name="巡河",
            lead_account_ids=[lead],
        )
    )
    email = await one_email_to(service, address, "旧事件项目")
    assert "一名已录用的志愿者" in email.text()
    assert "孙七" not in email.text()


async def test_project_closing_and_extension_reach_the_leads(service: Service) -> None:
    lead, address = await service.register()
    project_id = uuid.uuid4()
    await service.produce(
        ProjectClosed(
            project_id=project_id,
            team_id=uuid.uuid4(),
            title="冬季送温暖",
            closed_at=datetime(2026, 11, 25, 16, 5, tzinfo=UTC),
            lead_account_ids=[lead],
            team_admin_extension_used=False,
        ),
        ProjectExtended(
            project_id=project_id,
            team_id=uuid.uuid4(),
            title="冬季送温暖",
            new_end_date=date(2026, 12, 31),
            extended_by_account_id=uuid.uuid4(),
            lead_account_ids=[lead],
        ),
    )
    closed = await one_email_to(service, address, "已结项")
    assert "自动结项" in closed.text()
    assert "2026-11-26" in closed.text()
    # a lead who is not a team admin: the team admins' window, to ask them
    assert "团体管理员可在 2026-12-27 00:00(北京时间)前延期一次,请与团体管理员联系" in closed.text()
    assert f"{SITE}/projects/{project_id}" in closed.text()
    extended = await one_email_to(service, address, "已延期")
    assert "2026-12-31" in extended.text()
    assert f"{SITE}/projects/{project_id}" in extended.text()


async def test_a_national_admins_extension_reaches_the_team_admins_as_well_as_the_leads(service: Service) -> None:
    """The team admins were told of the closing and to call the national line: they hear that the
    national admin extended it too (only the leads did)."""
    lead, lead_address = await service.register()
    admin, admin_address = await service.register(language="en", name="Heidi")
    title = f"河道守护{uuid.uuid4().hex[:6]}"
    [event_id] = await service.produce(
        ProjectExtended(
            project_id=uuid.uuid4(),
            team_id=uuid.uuid4(),
            title=title,
            new_end_date=date(2027, 1, 31),
            extended_by_account_id=uuid.uuid4(),
            by_national_admin=True,
            lead_account_ids=[lead],
            team_admin_account_ids=[admin],
        )
    )
    await service.settled(event_id, count=2)
    to_lead = await one_email_to(service, lead_address, title)
    assert "您负责的志愿服务项目" in to_lead.text()
    assert "由全国系统管理员延期" in to_lead.text()
    to_admin = await one_email_to(service, admin_address, title)
    assert "Your team's project" in to_admin.text()
    assert "by the national administrator" in to_admin.text()
    assert "2027-01-31" in to_admin.text()


async def test_project_closing_tells_the_team_admins_the_extension_dates_once_each(service: Service) -> None:
    """P4 / FAQ T9: the team admins' one extension until closing + 30 days, the national admin's (by
    the national service line) until + 60 days, none after; the lead who is also an admin gets one."""
    lead, lead_address = await service.register()
    admin, admin_address = await service.register(language="en", name="Heidi")
    title = f"春节慰问{uuid.uuid4().hex[:6]}"
    [event_id] = await service.produce(
        ProjectClosed(
            project_id=uuid.uuid4(),
            team_id=uuid.uuid4(),
            title=title,
            # the sweep ran three days late: the days count from the day after the end date
            closed_at=datetime(2026, 11, 28, 16, 5, tzinfo=UTC),
            closed_on=date(2026, 11, 26),
            lead_account_ids=[lead],
            team_admin_account_ids=[lead, admin],
            team_admin_extension_used=False,
        )
    )
    await service.settled(event_id, count=2)
    zh = (await one_email_to(service, lead_address, title)).text()
    assert "您所在志愿团体的志愿服务项目" in zh
    assert "已于 2026-11-26 自动结项" in zh
    assert "您作为团体管理员可在 2026-12-27 00:00(北京时间)前延期一次。" in zh  # days 0-30, each whole
    assert f"在 2027-01-26 00:00(北京时间,结项后60天)前,可拨打全国服务电话:{SERVICE_LINE},由全国管理员办理延期。" in zh
    assert "超过该时间后,项目不能再延期。" in zh
    en = (await one_email_to(service, admin_address, title)).text()
    assert "As a team admin you may extend it once until 2026-12-27 00:00 (Beijing time)." in en
    assert "Until 2027-01-26 00:00 (Beijing time, 60 days after closing) a national admin can extend it" in en
    assert "call the national service line" in en
    assert "After that the project can no longer be extended." in en


async def test_project_closing_after_the_team_admins_extension_was_used_gives_only_the_national_window(
    service: Service,
) -> None:
    admin, address = await service.register()
    title = f"已延期过{uuid.uuid4().hex[:6]}"
    await service.produce(
        ProjectClosed(
            project_id=uuid.uuid4(),
            team_id=uuid.uuid4(),
            title=title,
            closed_at=datetime(2026, 11, 25, 16, 5, tzinfo=UTC),
            lead_account_ids=[],
            team_admin_account_ids=[admin],
            team_admin_extension_used=True,
        )
    )
    text = (await one_email_to(service, address, title)).text()
    assert "本项目已使用过团体管理员的一次延期,团体管理员不能再延期。" in text
    assert "2026-12-27" not in text
    assert "2027-01-26 00:00" in text  # an event without closed_on: the day of closed_at


async def test_email_to_an_account_not_yet_known_waits_for_its_registration(service: Service) -> None:
    account_id = uuid.uuid4()
    address = f"late-{account_id.hex[:10]}@example.org"
    [event_id] = await service.produce(
        PasswordResetRequested(
            account_id=account_id,
            reset_url="https://volunteer.example.org/reset#late",
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
        )
    )
    [waiting] = await service.settled(event_id, status="awaiting_recipient")
    assert waiting["to_address"] == ""
    await service.produce(AccountRegistered(account_id=account_id, username="late", display_name="迟到", email=address))
    email = await one_email_to(service, address, "重置密码")
    assert "迟到" in email.text()


def committed_batches(queue: str) -> tuple[float, float]:
    """(transactions, messages) the dispatcher committed for ``queue`` so far in this process."""
    count = REGISTRY.get_sample_value("vs_consumer_batch_messages_count", {"queue": queue}) or 0.0
    total = REGISTRY.get_sample_value("vs_consumer_batch_messages_sum", {"queue": queue}) or 0.0
    return count, total


async def test_a_burst_of_registrations_is_handled_in_batches_and_releases_every_waiting_email(
    service: Service,
) -> None:
    accounts = [uuid.uuid4() for _ in range(40)]
    expires = datetime.now(UTC) + timedelta(minutes=30)
    resets = await service.produce(
        *(
            PasswordResetRequested(
                account_id=a, reset_url=f"https://volunteer.example.org/reset#b{i}", expires_at=expires
            )
            for i, a in enumerate(accounts)
        )
    )
    for event_id in resets:
        await service.settled(event_id, status="awaiting_recipient")
    before = {q: committed_batches(q) for q in ("notifications.recipients", "notifications.welcome_email")}

    # one transaction of 40 sign-ups: they reach the queues together and are handled in batches
    await service.produce(
        *(
            AccountRegistered(
                account_id=a, username=f"burst{i}", display_name=f"批{i}", email=f"burst{i}-{a.hex[:8]}@example.org"
            )
            for i, a in enumerate(accounts)
        )
    )
    for i, a in enumerate(accounts):
        address = f"burst{i}-{a.hex[:8]}@example.org"
        reset = await one_email_to(service, address, "重置密码")
        assert f"reset#b{i}" in reset.text()
        assert f"批{i}" in reset.text()
        await one_email_to(service, address, "欢迎")
    for queue, (transactions, messages) in before.items():
        after_transactions, after_messages = committed_batches(queue)
        assert after_messages - messages == len(accounts)
        assert after_transactions - transactions < len(accounts)  # some messages shared a transaction


async def test_changed_address_and_language_are_used_for_later_emails(service: Service) -> None:
    account_id, old_address = await service.register()
    new_address = f"moved-{account_id.hex[:10]}@example.org"
    await service.produce(
        AccountContactChanged(account_id=account_id, display_name="Erin", email=new_address, language="en")
    )

    async def recipient_moved() -> bool:
        async with service.runtime.session_factory() as session:
            recipient = await session.get(Recipient, account_id)
            return recipient is not None and recipient.email == new_address

    # the change and the next email travel on different queues: wait until the read model has it
    await eventually(recipient_moved, timeout=30)
    await service.produce(
        PasswordResetRequested(
            account_id=account_id,
            reset_url="https://volunteer.example.org/reset#moved",
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
        )
    )
    email = await one_email_to(service, new_address, "password")
    assert "Erin" in email.text()
    assert len(service.smtp.to(old_address)) == 1  # only the welcome went to the old address


async def test_an_older_contact_change_arriving_late_does_not_overwrite_a_newer_one(service: Service) -> None:
    account_id, _ = await service.register()
    newer = f"newer-{account_id.hex[:10]}@example.org"
    older = f"older-{account_id.hex[:10]}@example.org"
    now = datetime.now(UTC)
    await service.publish(AccountContactChanged(account_id=account_id, display_name="新", email=newer), occurred_at=now)
    late = await service.publish(
        AccountContactChanged(account_id=account_id, display_name="旧", email=older),
        occurred_at=now - timedelta(minutes=5),
    )
    await service.handled(late.event_id, "recipients")
    async with service.runtime.session_factory() as session:
        recipient = await session.get(Recipient, account_id)
    assert recipient is not None
    assert recipient.email == newer
    assert recipient.display_name == "新"
