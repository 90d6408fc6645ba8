"""FAQ O2 / N3: someone whose system emails go missing learns, without an email, which address to
allow-list and how, to check their own address, and which mailboxes to prefer; all but the last
piece of advice from the deployment's settings, in Chinese or English."""

from __future__ import annotations

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
