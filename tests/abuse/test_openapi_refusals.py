"""X1 in the OpenAPI: what the shared layers refuse, whatever the route, is documented on every
operation it applies to, in the one error shape (FastAPI's own 422 schema, which no route
answers, is gone). A client generated from the document knows every code it may meet."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

SERVICES = ("identity", "teams", "projects", "notifications")


def operations(service: str) -> list[tuple[str, str, dict[str, Any]]]:
    app = importlib.import_module(f"{service}.main").create_app()
    schema = app.openapi()
    assert "HTTPValidationError" not in json.dumps(schema)
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


def codes(operation: dict[str, Any], status: int) -> str:
    response = operation["responses"].get(str(status), {})
    if response:
        assert "ErrorBody" in json.dumps(response.get("content", {})), response
    return str(response.get("description", ""))


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_documents_the_shared_refusals_it_can_meet(service: str) -> None:
    found = operations(service)
    assert len(found) > 8
    missing = []
    for method, path, operation in found:
        wanted: list[tuple[int, str]] = []
        if "security" in operation:
            wanted += [(401, "unauthenticated"), (401, "token_invalid"), (401, "token_expired")]
        if "requestBody" in operation:
            wanted += [(400, "malformed_json"), (413, "payload_too_large"), (415, "unsupported_media_type")]
            wanted.append((422, "validation_failed"))
        missing += [
            f"{method} {path}: {status} {code}"
            for status, code in wanted
            if f"`{code}`" not in codes(operation, status)
        ]
    assert missing == []


def test_a_route_reading_an_optional_token_documents_the_refusal_of_a_bad_one() -> None:
    for service, method, path in [
        ("teams", "GET", "/api/v1/teams/{team_id}"),
        ("projects", "GET", "/api/v1/projects/{project_id}"),
    ]:
        found = {(m, p): op for m, p, op in operations(service)}
        assert "`token_invalid`" in codes(found[(method, path)], 401), (service, path)


def test_a_route_requiring_a_role_documents_forbidden() -> None:
    found = {(m, p): op for m, p, op in operations("teams")}
    assert "`forbidden`" in codes(found[("POST", "/api/v1/root-teams")], 403)
    assert "`forbidden`" in codes(found[("PUT", "/api/v1/teams/{team_id}/liaison-authorisation")], 403)
    assert "403" not in found[("GET", "/api/v1/regions/{code}")]["responses"]  # public
