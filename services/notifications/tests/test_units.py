"""Pure rules of the notifications service: back-off, keys, message building, templates."""

from __future__ import annotations

import itertools
import re
import uuid
from email import message_from_bytes, message_from_string, policy
from pathlib import Path
from typing import Any

import pytest

from notifications.config import NotificationsSettings
from notifications.models import Email
from notifications.outbox import dedupe_key, message_id_for
from notifications.sender import EmailSender
from notifications.templates import TEMPLATE_DIR, Templates
from notifications.transport import (
    PermanentSendError,
    SmtpTransport,
    _reason,
    build_message,
    needs_smtputf8,
    smtp_address,
)
from shared.clock import ManualClock
from shared.testing import free_port

SETTINGS = NotificationsSettings(mail_retry_base_seconds=5, mail_retry_max_seconds=1800)


def sender(settings: NotificationsSettings = SETTINGS) -> EmailSender:
    return EmailSender(None, None, settings, ManualClock())  # type: ignore[arg-type]


def test_retry_delay_doubles_with_jitter_around_it_and_stops_at_the_cap() -> None:
    s = sender()
    for attempts in range(1, 16):
        nominal = min(5 * 2 ** (attempts - 1), 1800)
        delays = [s.retry_delay(attempts) for _ in range(200)]
        assert all(0.5 * nominal <= d <= nominal for d in delays), attempts
        assert len(set(delays)) > 190  # jittered, at the cap too: a recovering server is not hit in one wave
    assert max(s.retry_delay(40) for _ in range(200)) <= 1800


def test_retry_delays_grow_on_average() -> None:
    s = sender()
    means = [sum(s.retry_delay(a) for _ in range(400)) / 400 for a in range(1, 8)]
    assert all(later > earlier * 1.5 for earlier, later in itertools.pairwise(means))


def test_dedupe_key_ignores_address_case_and_separates_templates() -> None:
    event_id = uuid.uuid4()
    assert dedupe_key(event_id, " Li@Example.ORG ", "welcome") == dedupe_key(event_id, "li@example.org", "welcome")
    assert dedupe_key(event_id, "li@example.org", "welcome") != dedupe_key(event_id, "li@example.org", "other")
    assert dedupe_key(event_id, "a@example.org", "welcome") != dedupe_key(uuid.uuid4(), "a@example.org", "welcome")


def test_message_id_is_derived_from_the_key_and_reveals_nothing() -> None:
    key = dedupe_key(uuid.uuid4(), "li@example.org", "welcome")
    first = message_id_for(key, "volunteer.example.org")
    assert first == message_id_for(key, "volunteer.example.org")
    assert first != message_id_for(key + "x", "volunteer.example.org")
    assert first.startswith("<")
    assert first.endswith("@volunteer.example.org>")
    assert "li@example.org" not in first  # a hash: no address in a header relays may log


def test_smtp_refusal_reason_keeps_the_code_and_drops_addresses() -> None:
    reason = _reason(550, "5.1.1 <zhang.san@example.org>: Recipient address rejected")
    assert reason.startswith("550 5.1.1")
    assert "zhang.san" not in reason
    assert "Recipient address rejected" in reason


def _email(**overrides: Any) -> Email:
    values: dict[str, Any] = {
        "to_name": "张三",
        "to_address": "zhangsan@example.org",
        "subject": "欢迎注册全国志愿服务信息系统",
        "message_id": "<abc@volunteer.example.org>",
        "language": "zh",
        "body_text": "张三,您好!",
        "body_html": "<p>张三,您好!</p>",
    }
    values.update(overrides)
    return Email(**values)


def test_message_carries_sender_from_settings_both_parts_and_language() -> None:
    settings = NotificationsSettings(mail_from_address="mailer@city.example.gov.cn", mail_from_name="某市志愿服务")
    message = message_from_bytes(build_message(_email(), settings), policy=policy.default)
    assert message["From"].addresses[0].addr_spec == "mailer@city.example.gov.cn"
    assert message["From"].addresses[0].display_name == "某市志愿服务"
    assert message["To"].addresses[0].display_name == "张三"
    assert message["Message-ID"] == "<abc@volunteer.example.org>"
    assert message["Content-Language"] == "zh-CN"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_body(("plain",)).get_content().startswith("张三")  # type: ignore[union-attr]
    assert "<p>" in message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    english = message_from_bytes(build_message(_email(language="en"), settings), policy=policy.default)
    assert english["Content-Language"] == "en"
    assert english["From"].addresses[0].display_name == settings.mail_from_name_en  # no Chinese sender name
    assert message["Subject"] == "欢迎注册全国志愿服务信息系统"
    assert message.is_multipart()
    assert message.get_content_type() == "multipart/alternative"
    assert not message.defects


@pytest.mark.parametrize(
    "subject",
    [
        "Welcome",
        "欢迎注册全国志愿服务信息系统" * 4,  # several encoded words, folded
        "Ünïcödé and 中文, mixed — with a long tail of words that goes past one header line",
        "=?utf-8?b?looks-encoded?=",
        "",
    ],
)
def test_any_subject_reads_back_as_it_was_written(subject: str) -> None:
    raw = build_message(_email(subject=subject), NotificationsSettings())
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))  # RFC 5322 line length
    assert message_from_bytes(raw, policy=policy.default)["Subject"] == subject


def test_long_bodies_and_english_names_read_back() -> None:
    body = "第一行\n" + "很长的一段文字。" * 300
    raw = build_message(_email(to_name="Erin O'Brien, Jr.", body_text=body), NotificationsSettings())
    message = message_from_bytes(raw, policy=policy.default)
    assert message["To"].addresses[0].display_name == "Erin O'Brien, Jr."
    assert message.get_body(("plain",)).get_content() == body  # type: ignore[union-attr]


def test_an_internationalised_domain_is_written_in_its_ascii_form() -> None:
    raw = build_message(_email(to_address="user@例子.中国"), NotificationsSettings())
    raw.decode("ascii")  # no SMTPUTF8 needed: any server takes it
    message = message_from_bytes(raw, policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "user@xn--fsqu00a.xn--fiqs8s"
    assert message["To"].addresses[0].display_name == "张三"
    assert message["Subject"] == "欢迎注册全国志愿服务信息系统"
    assert not message.defects
    assert smtp_address("user@例子.中国") == "user@xn--fsqu00a.xn--fiqs8s"
    assert smtp_address("User@Straße.de") == "User@xn--strae-oqa.de"  # IDNA 2008, not "strasse"
    assert not needs_smtputf8(smtp_address("user@例子.中国"))


def test_a_unicode_local_part_is_written_in_utf8_for_smtputf8() -> None:
    raw = build_message(_email(to_address="张三@例子.中国", to_name="Zhang San"), NotificationsSettings())
    assert needs_smtputf8(smtp_address("张三@例子.中国"))
    message = message_from_string(raw.decode("utf-8"), policy=policy.default)  # RFC 6532 headers
    assert message["To"].addresses[0].addr_spec == "张三@xn--fsqu00a.xn--fiqs8s"
    assert message["To"].addresses[0].display_name == "Zhang San"
    assert message.get_body(("plain",)).get_content().startswith("张三")  # type: ignore[union-attr]
    assert not message.defects


async def test_a_message_that_cannot_be_built_fails_for_good_with_no_address_in_the_reason() -> None:
    # a domain without an ASCII form (an empty label): no retry can build it. Nothing listens on
    # the port either, so a send that tried to connect would be deferred, not failed
    transport = SmtpTransport(NotificationsSettings(smtp_port=free_port()))
    with pytest.raises(PermanentSendError, match="message cannot be built") as refused:
        await transport.send(_email(to_address="zhangsan@例子..中国"))
    assert "zhangsan" not in str(refused.value)
    assert "例子" not in str(refused.value)


def test_a_line_break_in_an_address_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        build_message(_email(to_address="a@example.org\r\nBcc: b@example.org"), NotificationsSettings())


def _templates() -> list[str]:
    names = {p.name.split(".")[0] for p in Path(TEMPLATE_DIR).glob("*.j2") if not p.name.startswith("_")}
    return sorted(names)


CONTEXTS: dict[str, dict[str, Any]] = {
    "welcome": {"username": "u1", "path": "/login"},
    "verification_verified": {"volunteer_number": "110105", "manual": True, "path": "/account/card"},
    "verification_failed": {"reason": "r", "manual": False, "path": "/account/identity"},
    "verification_manual_review": {"reason": "r", "path": "/account/identity"},
    "password_reset": {"reset_url": "https://x/reset", "expires_at": "2026-11-26 10:30"},
    "temporary_password": {"by_team": False, "set_at": "2026-11-26 10:30", "path": "/login"},
    "team_approved": {"team_name": "t", "reason": None, "path": "/teams/t1"},
    "team_rejected": {"team_name": "t", "reason": "r", "path": "/teams/new"},
    "team_member_added": {"team_name": "t", "added_at": "2026-11-26 10:30", "service_line": "", "path": "/teams/t1"},
    "review_reminder": {"team_name": "t", "days_waiting": 4, "path": "/reviews"},
    "review_escalation": {
        "team_name": "t",
        "submitted_on": "2026-11-19",
        "liaison_team_name": None,
        "authority_region_name": None,
        "national_authority": False,
        "reviewer": True,
        "path": "/reviews",
    },
    "application_admitted": {"project_title": "p", "position_name": "q", "path": "/projects/p1"},
    "application_rejected": {"project_title": "p", "position_name": "q", "reason": None, "path": "/projects"},
    "application_left": {
        "project_title": "p",
        "position_name": "q",
        "masked_name": None,
        "volunteer_number": None,
        "left_at": "x",
        "automatic_admission": False,
        "next_admitted": False,
        "path": "/projects/p1",
    },
    "project_closed": {
        "project_title": "p",
        "closed_on": "2026-11-26",
        "automatic": False,
        "team_admin_extension_used": None,
        "team_admin_until": "2026-12-26 00:05",
        "national_admin_until": "2027-01-25 00:05",
        "service_line": "",
        "team_admin": False,
        "path": "/projects/p1",
    },
    "project_extended": {"project_title": "p", "new_end_date": "2026-12-31", "path": "/projects/p1"},
}


def test_every_message_has_a_context_here() -> None:
    assert _templates() == sorted(CONTEXTS)


@pytest.mark.parametrize("template", sorted(CONTEXTS))
@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_template_renders_subject_text_and_html_with_the_allowlist_advice(template: str, language: str) -> None:
    settings = NotificationsSettings(
        mail_allowlist_advice="白名单建议ZH", mail_allowlist_advice_en="allow-list advice EN"
    )
    rendered = Templates(settings).render(template, language, {**CONTEXTS[template], "name": "N"})
    assert rendered.subject
    assert "\n" not in rendered.subject
    advice = "allow-list advice EN" if language == "en" else "白名单建议ZH"
    assert advice in rendered.text
    assert advice in rendered.html
    assert settings.mail_from_address in rendered.text
    assert ("Hello" in rendered.text) == (language == "en")


@pytest.mark.parametrize("template", sorted(set(CONTEXTS) - {"password_reset"}))
@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_email_but_the_reset_links_its_page_under_the_site_url(template: str, language: str) -> None:
    """The reset link is identity's one-use URL; every other email links its page on the site."""
    settings = NotificationsSettings(site_url="https://zyz.example.cn/")
    rendered = Templates(settings).render(template, language, {**CONTEXTS[template], "name": "N"})
    page = "https://zyz.example.cn" + CONTEXTS[template]["path"]
    assert page in rendered.text
    assert f'href="{page}"' in rendered.html


CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


@pytest.mark.parametrize("template", sorted(CONTEXTS))
def test_an_english_email_has_no_chinese_of_its_own(template: str) -> None:
    """Sender name, footer and wording in English; only what people wrote (names, titles, reasons)
    may be in Chinese, and a reason is quoted as written."""
    context = {**CONTEXTS[template], "name": "N"}
    if "reason" in context:
        context["reason"] = "材料不全"
    rendered = Templates(NotificationsSettings()).render(template, "en", context)
    for part in (rendered.subject, rendered.text, rendered.html):
        assert not CJK.search(part.replace("材料不全", "")), part
    if "reason" in context:
        assert 'quoted as written: "材料不全"' in rendered.text or 'quoted as given: "材料不全"' in rendered.text
        assert "<q>材料不全</q>" in rendered.html


def test_production_refuses_a_site_url_on_this_machine() -> None:
    production: dict[str, Any] = {
        "environment": "production",
        "secret_key": "a-real-secret",
        "amqp_url": "amqp://vs:pw@mq.internal:5672/",
    }
    with pytest.raises(ValueError, match="site_url points at this machine"):
        NotificationsSettings(**production)
    with pytest.raises(ValueError, match="site_url points at this machine"):
        NotificationsSettings(**production, site_url="http://127.0.0.1:3000")
    assert NotificationsSettings(**production, site_url="https://zyz.example.cn").site_url == "https://zyz.example.cn"
    assert NotificationsSettings().site_url == "http://localhost:3000"  # development


def test_production_refuses_the_standalone_mailbox() -> None:
    production: dict[str, Any] = {
        "environment": "production",
        "secret_key": "a-real-secret",
        "amqp_url": "amqp://vs:pw@mq.internal:5672/",
        "site_url": "https://zyz.example.cn",
    }
    with pytest.raises(ValueError, match="mail_transport must be smtp in production"):
        NotificationsSettings(**production, mail_transport="mailbox")
    assert NotificationsSettings(**production).mail_transport == "smtp"
    assert NotificationsSettings(mail_transport="mailbox").mail_transport == "mailbox"  # development


@pytest.mark.parametrize("url", ["zyz.example.cn", "ftp://zyz.example.cn", "https://zyz.example.cn/?a=1", "https://"])
def test_site_url_must_be_a_plain_web_address(url: str) -> None:
    with pytest.raises(ValueError, match="site_url"):
        NotificationsSettings(site_url=url)


def test_the_closing_notice_names_the_national_service_line_from_settings() -> None:
    settings = NotificationsSettings(national_service_line="010-12345678(工作日 8:30–17:30)")
    context = {**CONTEXTS["project_closed"], "service_line": settings.national_service_line, "name": "N"}
    zh = Templates(settings).render("project_closed", "zh", context)
    assert "可拨打全国服务电话:010-12345678(工作日 8:30–17:30),由全国管理员办理延期" in zh.text
    en = Templates(settings).render("project_closed", "en", context)
    assert "call the national service line: 010-12345678" in en.text


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_member_added_notice_names_the_national_service_line_from_settings(language: str) -> None:
    settings = NotificationsSettings(national_service_line="010-12345678(工作日 8:30–17:30)")
    context = {**CONTEXTS["team_member_added"], "service_line": settings.national_service_line, "name": "N"}
    rendered = Templates(settings).render("team_member_added", language, context)
    said = "并联系全国服务电话:010-12345678" if language == "zh" else "call the national service line: 010-12345678"
    assert said in rendered.text
    assert said in rendered.html
    # none configured: the sentence ends without an empty colon
    bare = Templates(NotificationsSettings()).render("team_member_added", language, {**context, "service_line": ""})
    ending = "并联系全国服务电话。" if language == "zh" else "call the national service line."
    assert ending in bare.text
    assert ending in bare.html


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize(
    ("template", "added"), [("team_member_added", "service_line"), ("review_escalation", "national_authority")]
)
def test_an_email_queued_before_a_variable_was_added_still_renders(template: str, added: str, language: str) -> None:
    """An email waiting for its recipient keeps the variables of the release that queued it: a
    variable added since is optional in the templates, so such an email still goes out."""
    older = {k: v for k, v in CONTEXTS[template].items() if k != added}
    rendered = Templates(NotificationsSettings()).render(template, language, {**older, "name": "N"})
    assert rendered.subject
    assert CONTEXTS[template]["path"] in rendered.text


def test_emails_wait_a_day_for_their_recipient_unless_configured_and_never_zero_hours() -> None:
    assert NotificationsSettings().awaiting_recipient_max_hours == 24
    assert NotificationsSettings(awaiting_recipient_max_hours=72).awaiting_recipient_max_hours == 72
    for hours in (0, -1):
        with pytest.raises(ValueError, match="awaiting_recipient_max_hours"):
            NotificationsSettings(awaiting_recipient_max_hours=hours)


def test_a_rate_key_follows_the_email_to_its_mailbox_keeping_its_scope() -> None:
    from notifications.outbox import rate_key, readdressed

    team = "8c7e6f0a-0000-4000-8000-000000000001"
    waiting = rate_key("account:42", None, team)
    assert waiting == f"account:42 {team}"
    assert readdressed(waiting, " Li.Si@Example.org ") == f"li.si@example.org {team}"
    assert readdressed(rate_key("account:42", None), "a#b@example.org") == "a#b@example.org"  # '#' may be in an address
    assert readdressed(None, "x@example.org") == "x@example.org"  # queued before migration 0009
