"""The request context every service's middleware keeps: request and correlation ids, metrics per
route, the access line (only when INFO is on, never with personal data), body limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from fastapi import FastAPI
from prometheus_client import REGISTRY

from shared.web import configure_app, correlation_id_var


def make_app() -> FastAPI:
    app = FastAPI()
    configure_app(app, service="ctxtest", cors_origins=[], max_body_bytes=64)

    @app.get("/api/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str | None]:
        bound = structlog.contextvars.get_contextvars()
        return {"correlation_id": correlation_id_var.get(), "request_id": bound.get("request_id")}

    @app.post("/api/v1/things", status_code=201)
    async def create(body: dict[str, str]) -> dict[str, str]:
        return body

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as c:
        yield c


def _count(route: str, status: str) -> float:
    labels = {"service": "ctxtest", "method": "GET", "route": route, "status": status}
    return REGISTRY.get_sample_value("vs_http_requests_total", labels) or 0.0


async def test_a_request_id_is_made_when_none_is_given_and_is_the_correlation_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/things/1")
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    assert response.json() == {"correlation_id": request_id, "request_id": request_id}
    assert correlation_id_var.get() is None  # nothing leaks out of the request
    assert "request_id" not in structlog.contextvars.get_contextvars()


async def test_given_ids_are_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/things/1", headers={"X-Request-Id": "req-1", "X-Correlation-Id": "corr-1"})
    assert response.headers["x-request-id"] == "req-1"
    assert response.json() == {"correlation_id": "corr-1", "request_id": "req-1"}


@pytest.mark.parametrize("given", ["x" * 121, "有中文".encode(), "a b", "back\\slash", ""])
async def test_ids_that_do_not_look_like_ids_are_replaced(client: httpx.AsyncClient, given: str | bytes) -> None:
    response = await client.get("/api/v1/things/1", headers={"X-Request-Id": given, "X-Correlation-Id": given})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert request_id != given
    assert len(request_id) == 32
    assert response.json() == {"correlation_id": request_id, "request_id": request_id}


async def test_a_w3c_trace_id_is_kept(client: httpx.AsyncClient) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = await client.get("/api/v1/things/1", headers={"X-Correlation-Id": trace})
    assert response.json()["correlation_id"] == trace


async def test_requests_are_counted_per_route_template_and_status(client: httpx.AsyncClient) -> None:
    ok, missing = _count("/api/v1/things/{thing_id}", "200"), _count("unmatched", "404")
    await client.get("/api/v1/things/1")
    await client.get("/api/v1/things/2")
    await client.get("/api/v1/nowhere")
    assert _count("/api/v1/things/{thing_id}", "200") == ok + 2
    assert _count("unmatched", "404") == missing + 1


async def test_access_line_only_when_info_is_on(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[dict[str, object]] = []

    def info(event: str, **fields: object) -> None:
        lines.append({"event": event, **fields})

    monkeypatch.setattr("shared.web.log.info", info)
    with caplog.at_level(logging.WARNING, logger="shared.web"):
        await client.get("/api/v1/things/1")
    assert lines == []
    with caplog.at_level(logging.INFO, logger="shared.web"):
        await client.get("/api/v1/things/1", headers={"X-Request-Id": "r"})
    [line] = lines
    assert line["event"] == "http_request"
    assert {k: line[k] for k in ("method", "route", "status")} == {
        "method": "GET",
        "route": "/api/v1/things/{thing_id}",
        "status": 200,
    }
    assert set(line) == {"event", "method", "route", "status", "ms"}  # no path values, no query, no body


async def test_body_limits_and_media_type_still_refuse_early(client: httpx.AsyncClient) -> None:
    big = await client.post(
        "/api/v1/things", content=b'{"a": "' + b"x" * 100 + b'"}', headers={"Content-Type": "application/json"}
    )
    assert (big.status_code, big.json()["code"], big.json()["detail"]) == (
        413,
        "payload_too_large",
        {"limit_bytes": 64},
    )
    assert big.headers["x-request-id"]
    wrong = await client.post("/api/v1/things", content=b"a=b", headers={"Content-Type": "text/plain"})
    assert (wrong.status_code, wrong.json()["code"]) == (415, "unsupported_media_type")
    bad_length = await client.post(
        "/api/v1/things", content=b"{}", headers={"Content-Length": "x", "Content-Type": "application/json"}
    )
    assert (bad_length.status_code, bad_length.json()["detail"]) == (422, {"reason": "content-length"})
    ok = await client.post("/api/v1/things", json={"a": "b"})
    assert (ok.status_code, ok.json()) == (201, {"a": "b"})
