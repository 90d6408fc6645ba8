"""The settings the deploy files leave out (``UNREAD`` in test_deploy_files.py) are truly unread, and
production asks for no secret a service never uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from identity.config import IdentitySettings
from notifications.config import NotificationsSettings
from projects.config import ProjectsSettings
from teams.config import TeamsSettings

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION: dict[str, Any] = {"environment": "production", "amqp_url": "amqps://vs:a-real-password@mq.internal:5671/"}


def sources_reading(name: str, folder: Path) -> set[str]:
    return {str(path.relative_to(ROOT)) for path in folder.rglob("*.py") if name in path.read_text("utf-8")}


@pytest.mark.parametrize("service", ["teams", "notifications"])
def test_teams_and_notifications_read_no_secret_key(service: str) -> None:
    # nor does any shared code they call with their settings: only the settings module names it
    assert sources_reading("secret_key", ROOT / "services" / service / "src") <= {
        f"services/{service}/src/{service}/config.py"
    }
    assert sources_reading("secret_key", ROOT / "shared" / "src") == {"shared/src/shared/settings.py"}


def test_production_asks_teams_and_notifications_for_no_secret_key() -> None:
    assert TeamsSettings(**PRODUCTION).environment == "production"
    assert NotificationsSettings(**PRODUCTION, site_url="https://www.volunteer.example.cn").environment == "production"


def test_production_still_asks_identity_and_projects_for_their_secret_key() -> None:
    # identity signs volunteer cards with a key derived from it, projects the on-site sign-in codes
    with pytest.raises(ValidationError, match="secret_key must be set"):
        ProjectsSettings(**PRODUCTION)
    identity = {
        "jwt_private_key": "pem",
        "data_keys": "k1:AAAA",
        "blind_index_key": "BBBB",
        "password_reset_url": "https://www.volunteer.example.cn/reset-password",
        "card_verification_url": "https://www.volunteer.example.cn/api/v1/card-verifications",
    }
    with pytest.raises(ValidationError, match="secret_key must be set"):
        IdentitySettings(**PRODUCTION, **identity)
    assert ProjectsSettings(**PRODUCTION, secret_key="a-real-secret").environment == "production"


def test_identity_checks_tokens_against_its_own_keys_not_its_jwks_url() -> None:
    from identity.bootstrap import build_runtime

    assert sources_reading("jwks_url", ROOT / "services" / "identity" / "src") == set()
    runtime = build_runtime(IdentitySettings(jwks_url="http://jwks.invalid/never-fetched"))
    assert runtime.verifier.source.url is None
