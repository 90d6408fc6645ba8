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


def test_development_takes_the_defaults() -> None:
    settings = PagesSettings(environment="development")
    assert settings.page_url.startswith("http://localhost")


@pytest.mark.parametrize(
    "override", [{"request_body_timeout_seconds": 0}, {"request_body_min_rate": 0}, {"request_body_min_rate": -5}]
)
def test_a_body_pace_that_would_refuse_every_body_is_refused(override: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match=next(iter(override))):
        ServiceSettings(**override)
