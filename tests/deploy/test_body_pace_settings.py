"""Each service paces request bodies as its deployment sets (``<SERVICE>_REQUEST_BODY_*``)."""

from __future__ import annotations

import importlib
import json

import pytest

from shared.testing import paced_request, stalled_body

#: a POST route of each service that reads a JSON body
ROUTES = {
    "identity": "/api/v1/accounts",
    "teams": "/api/v1/teams",
    "projects": "/api/v1/projects",
    "notifications": "/api/v1/emails/replay",
}


@pytest.mark.parametrize("service", sorted(ROUTES))
async def test_a_service_refuses_a_stalled_body_after_its_configured_timeout(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = service.upper()
    monkeypatch.setenv(f"{prefix}_REQUEST_BODY_TIMEOUT_SECONDS", "0.2")
    monkeypatch.setenv(f"{prefix}_REQUEST_BODY_MIN_RATE", "100")
    monkeypatch.setenv(f"{prefix}_REQUEST_BODY_MAX_SECONDS", "60")
    app = importlib.import_module(f"{service}.main").create_app()
    answer = await paced_request(app, "POST", ROUTES[service], stalled_body(b'{"a'))
    assert answer.status == 408, answer.body
    refusal = json.loads(answer.body)
    assert refusal["code"] == "request_timeout"
    assert refusal["detail"] == {"timeout_seconds": 0.2, "min_rate_bytes_per_second": 100, "max_seconds": 60}
    assert 0.2 <= answer.seconds < 2.0
