"""Production refuses what only development may have: default secrets, the guest broker account,
public addresses pointing at the machine itself."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

REAL = {
    "environment": "production",
    "secret_key": "a-real-secret-of-the-deployment",
    "amqp_url": "amqps://svc:pw@mq.internal:5671/",
}


class PagesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAGESTEST_", extra="ignore")

    page_url: str = "http://localhost:3000/page"

    def _public_urls(self) -> dict[str, str]:
        return {"page_url": self.page_url}


def test_a_production_with_real_values_starts() -> None:
    settings = PagesSettings(**REAL, page_url="https://www.volunteer.example.cn/page")
    assert settings.environment == "production"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"secret_key": "dev-insecure-change-me"}, "secret_key"),
        ({"amqp_url": "amqp://guest:guest@mq.internal:5672/"}, "guest"),
        ({"page_url": "http://localhost:3000/page"}, "page_url"),
        ({"page_url": "http://127.0.0.1:8001/page"}, "page_url"),
        ({"page_url": "http://[::1]:8001/page"}, "page_url"),
    ],
)
def test_production_refuses_what_only_development_may_have(override: dict[str, str], named: str) -> None:
    with pytest.raises(ValidationError) as refused:
        PagesSettings(**{**REAL, "page_url": "https://www.volunteer.example.cn/page", **override})
    assert named in str(refused.value)


@pytest.mark.parametrize(
    "amqp_url",
    [
        "amqp://mq.internal:5672/vs",  # no account: the client logs in as guest/guest
        "amqps://mq.internal:5671/",
        "amqp://guest:%67uest@mq.internal:5672/",  # guest, percent-encoded
        "amqp://%67uest:a-real-password@mq.internal:5672/",
        "amqp://guest:a-real-password@mq.internal:5672/",
        "amqp://:a-real-password@mq.internal:5672/",  # no user name: the client sends guest
        "amqp://vs@mq.internal:5672/",  # no password: the client sends guest
        "amqp://vs:@mq.internal:5672/",
    ],
)
def test_production_refuses_a_broker_login_as_guest(amqp_url: str) -> None:
    with pytest.raises(ValidationError, match="amqp_url"):
        PagesSettings(**{**REAL, "page_url": "https://www.volunteer.example.cn/page", "amqp_url": amqp_url})


@pytest.mark.parametrize(
    "amqp_url",
    [
        "amqps://vs:a-real-password@mq.internal:5671/",
        "amqp://guestbook:a%40real-password@mq.internal:5672/vs",
        # a TLS client certificate logs in (RabbitMQ's EXTERNAL mechanism): no user name to give
        "amqps://mq.internal:5671/?auth=external",
    ],
)
def test_production_takes_a_broker_account_of_its_own(amqp_url: str) -> None:
    settings = PagesSettings(**{**REAL, "page_url": "https://www.volunteer.example.cn/page", "amqp_url": amqp_url})
    assert settings.amqp_url == amqp_url


@pytest.mark.parametrize(
    "page_url",
    [
        "http://localhost./page",
        "http://LOCALHOST:3000/page",
        "http://app.localhost/page",
        "http://%6Cocalhost/page",  # a browser decodes the host
        "http://ｌｏｃａｌｈｏｓｔ/page",  # and maps full-width letters (IDNA)
        "http://127.0.0.1./page",
        "http://127.8.9.10/page",
        "http://127.1/page",
        "http://0/page",
        "http://0.0.0.0/page",
        "http://2130706433/page",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/page",
        "http://0177.0.0.1/page",
        "http://0x7f.1/page",
        "http://[::]/page",
        "http://[0:0:0:0:0:0:0:1]/page",
        "http://[::ffff:127.0.0.1]/page",
        "http://[::ffff:7f00:1]/page",
        "http://[::ffff:0.0.0.0]/page",
    ],
)
def test_production_refuses_every_spelling_of_this_machine(page_url: str) -> None:
    with pytest.raises(ValidationError, match="page_url points at this machine"):
        PagesSettings(**REAL, page_url=page_url)


@pytest.mark.parametrize(
    "page_url",
    [
        "https://www.volunteer.example.cn/page",
        "https://127.example.cn/page",  # a name, not an address
        "https://localhost.example.cn/page",
        "https://app.localhost.example.cn/page",
        "http://10.0.0.5/page",
        "http://[2001:db8::1]/page",
        "http://1234567890/page",  # 73.150.2.210
    ],
)
def test_production_takes_addresses_of_other_machines(page_url: str) -> None:
    assert PagesSettings(**REAL, page_url=page_url).page_url == page_url


def test_development_takes_the_defaults() -> None:
    settings = PagesSettings(environment="development")
    assert settings.page_url.startswith("http://localhost")


@pytest.mark.parametrize(
    "override", [{"request_body_timeout_seconds": 0}, {"request_body_min_rate": 0}, {"request_body_min_rate": -5}]
)
def test_a_body_pace_that_would_refuse_every_body_is_refused(override: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match=next(iter(override))):
        ServiceSettings(**override)
