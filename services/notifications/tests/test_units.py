"""Pure rules of the notifications service: back-off, keys, message building, templates."""

from __future__ import annotations

import itertools
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
    "welcome": {"username": "u1"},
    "verification_verified": {"volunteer_number": "110105", "manual": True},
    "verification_failed": {"reason": "r", "manual": False},
    "password_reset": {"reset_url": "https://x/reset", "expires_at": "2026-11-26 10:30"},
    "temporary_password": {"by_team": False, "set_at": "2026-11-26 10:30"},
    "team_approved": {"team_name": "t", "reason": None},
    "team_rejected": {"team_name": "t", "reason": "r"},
    "review_reminder": {"team_name": "t", "days_waiting": 4},
    "review_escalation": {"team_name": "t", "submitted_on": "2026-11-19"},
    "application_admitted": {"project_title": "p", "position_name": "q"},
    "application_rejected": {"project_title": "p", "position_name": "q", "reason": None},
    "application_left": {"project_title": "p", "position_name": "q", "volunteer_name": None, "left_at": "x"},
    "project_closed": {"project_title": "p", "closed_on": "2026-11-26", "automatic": False},
    "project_extended": {"project_title": "p", "new_end_date": "2026-12-31"},
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
