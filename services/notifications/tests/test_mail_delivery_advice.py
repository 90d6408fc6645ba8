"""FAQ O2 / N3: someone whose system emails go missing learns, without an email, which address to
allow-list and how, to check their own address, and which mailboxes to prefer; all but the last
piece of advice from the deployment's settings, in Chinese or English."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from notifications.config import NotificationsSettings
from shared.testing import SmtpServer

from .conftest import StartService


async def test_the_advice_names_the_deployment_s_sender_and_how_to_allow_list_it(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    settings = {
        "mail_from_address": "noreply@volunteer.example.cn",
        "mail_from_name": "某省志愿服务信息系统",
        "mail_from_name_en": "Province Volunteer System",
        "mail_recommended_domains": ["qq.com", "163.com"],
    }
    async with start_service(own_smtp, **settings) as service:
        chinese = await service.client.get("/api/v1/mail-delivery-advice")
        english = await service.client.get("/api/v1/mail-delivery-advice", headers={"Accept-Language": "en"})

    assert chinese.status_code == 200, chinese.text
    assert chinese.headers["cache-control"] == "public, max-age=300"
    assert (chinese.headers["content-language"], english.headers["content-language"]) == ("zh-CN", "en")
    advice = chinese.json()
    assert (advice["sender_address"], advice["sender_name"]) == ("noreply@volunteer.example.cn", "某省志愿服务信息系统")
    assert "白名单" in advice["allowlist_advice"]
    assert "用户名@域名" in advice["address_advice"]
    assert advice["recommended_domains"] == ["qq.com", "163.com"]
    assert english.json()["sender_name"] == "Province Volunteer System"
    assert "allow-list" in english.json()["allowlist_advice"]
    assert "name@domain" in english.json()["address_advice"]


async def test_by_default_the_faq_s_providers_are_recommended(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    async with start_service(own_smtp) as service:
        advice = (await service.client.get("/api/v1/mail-delivery-advice")).json()

    assert advice["recommended_domains"] == ["qq.com", "163.com", "126.com", "sina.com", "sohu.com", "sogou.com"]


async def test_a_sender_on_an_internationalised_domain_sends_with_its_ascii_form(
    start_service: StartService, own_smtp: SmtpServer
) -> None:
    """N3: a sender such as noreply@志愿.中国 is a real address; the Message-ID took its Unicode
    domain, and every email failed as it was built."""
    async with start_service(own_smtp, mail_from_address="noreply@志愿.中国") as service:
        _, address = await service.register()
        [email] = await own_smtp.wait_for(lambda m: address in m.rcpt_tos, timeout=20)
    assert email.message["Message-ID"].endswith("@xn--m6t44a.xn--fiqs8s>")
    assert "noreply@xn--m6t44a.xn--fiqs8s" in email.message["From"]


@pytest.mark.parametrize("sender", ["noreply", "noreply@", "a b@example.org", "x@example.org\r\nBcc: y@example.org"])
def test_a_sender_that_is_no_address_stops_the_service_at_start_up(sender: str) -> None:
    with pytest.raises(ValidationError, match="mail_from_address"):
        NotificationsSettings(mail_from_address=sender)
