"""Error rendering: one shape, Chinese by default, English on request, never a 500 for bad input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from html5lib.html5parser import ParseError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError

from shared.auth import TokenSigner, TokenVerifier
from shared.errors import (
    CONFLICT,
    NOT_FOUND,
    VALIDATION_FAILED,
    AppError,
    ErrorSpec,
    error_responses,
    preferred_language,
    prefers_html,
)
from shared.testing import assert_valid_html
from shared.web import configure_app

QUOTA_FULL = ErrorSpec("quota_full", 409, "名额已满(上限 {limit} 人)", "The quota of {limit} is full")
LIMIT = 2048


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=20)
    count: int


def make_app() -> FastAPI:
    app = FastAPI()
    configure_app(app, service="webtest", cors_origins=[], max_body_bytes=LIMIT, body_limits={"/api/v1/big": 10_000})

    @app.post("/api/v1/items", status_code=201)
    async def create(item: ItemIn) -> dict[str, str]:
        return {"name": item.name}

    @app.post("/api/v1/big", status_code=201)
    async def big(item: ItemIn) -> dict[str, str]:
        return {"name": item.name}

    @app.get("/api/v1/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/api/v1/quota")
    async def quota() -> None:
        raise AppError(QUOTA_FULL, {"limit": 30}, params={"limit": 30})

    @app.get("/api/v1/conflict")
    async def conflict() -> None:
        raise AppError(CONFLICT)

    @app.get("/api/v1/db-gone")
    async def db_gone() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    @app.get("/api/v1/db-gone-wrapped")
    async def db_gone_wrapped() -> None:
        try:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        except asyncpg.exceptions.ConnectionDoesNotExistError as exc:
            raise RuntimeError("loading the team failed") from exc

    @app.get("/api/v1/bug")
    async def bug() -> None:
        raise ZeroDivisionError

    return app


@pytest.fixture
async def client(verifier_for: Callable[..., TokenVerifier]) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app()
    app.state.verifier = verifier_for()  # the upload route (a larger limit) asks for a valid token first
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def assert_error_shape(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, object] = response.json()
    assert set(body) == {"code", "message", "detail"}
    assert body["code"] == code
    return body


async def test_message_is_chinese_by_default(client: httpx.AsyncClient) -> None:
    body = assert_error_shape(await client.get("/api/v1/conflict"), 409, "conflict")
    assert body["message"] == CONFLICT.zh


async def test_message_is_english_when_accept_language_prefers_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/conflict", headers={"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"})
    body = assert_error_shape(response, 409, "conflict")
    assert body["message"] == CONFLICT.en
    assert response.headers["content-language"] == "en"


async def test_chinese_ranked_first_wins_over_english(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/conflict", headers={"Accept-Language": "en;q=0.4, zh-CN"})
    assert response.json()["message"] == CONFLICT.zh
    # a cache between keeps one answer per language
    assert response.headers["content-language"] == "zh-CN"
    assert "Accept-Language" in response.headers["vary"]


async def test_params_fill_the_message_and_detail_passes_through(client: httpx.AsyncClient) -> None:
    zh = assert_error_shape(await client.get("/api/v1/quota"), 409, "quota_full")
    en = (await client.get("/api/v1/quota", headers={"Accept-Language": "en"})).json()
    assert zh["message"] == "名额已满(上限 30 人)"
    assert en["message"] == "The quota of 30 is full"
    assert zh["detail"] == {"limit": 30}


async def test_invalid_body_is_422_validation_failed_with_field_locations(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/items", json={"name": "", "count": "many", "extra": 1})
    body = assert_error_shape(response, 422, "validation_failed")
    assert body["message"] == VALIDATION_FAILED.zh
    assert isinstance(body["detail"], list)
    locations = {tuple(e["loc"]) for e in body["detail"]}
    assert ("body", "name") in locations
    assert ("body", "count") in locations
    assert ("body", "extra") in locations
    problems = {tuple(e["loc"]): e["msg"] for e in body["detail"]}
    assert problems[("body", "name")] == "至少 1 个字符"
    assert problems[("body", "count")] == "应为整数"
    assert problems[("body", "extra")] == "不接受该字段"


async def test_validation_problems_follow_the_answers_language(client: httpx.AsyncClient) -> None:
    english = await client.post("/api/v1/items", json={"name": "x" * 21}, headers={"Accept-Language": "en"})
    body = assert_error_shape(english, 422, "validation_failed")
    problems = {tuple(e["loc"]): e["msg"] for e in body["detail"]}
    assert problems[("body", "name")] == "String should have at most 20 characters"
    assert problems[("body", "count")] == "Field required"
    chinese = (await client.post("/api/v1/items", json={"name": "x" * 21})).json()
    assert {tuple(e["loc"]): e["msg"] for e in chinese["detail"]} == {
        ("body", "name"): "最多 20 个字符",
        ("body", "count"): "必填",
    }


async def test_malformed_json_is_400_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/items", content=b'{"name": "x", "count": ', headers={"Content-Type": "application/json"}
    )
    assert_error_shape(response, 400, "malformed_json")


async def test_unknown_route_is_not_found_json(client: httpx.AsyncClient) -> None:
    body = assert_error_shape(await client.get("/api/v1/nothing-here"), 404, "not_found")
    assert body["message"] == NOT_FOUND.zh


async def test_wrong_method_is_405_json_naming_the_allowed_ones(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/items")
    assert_error_shape(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


async def test_lost_database_is_503_service_unavailable(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/db-gone")
    assert_error_shape(response, 503, "service_unavailable")
    assert response.headers["retry-after"]


async def test_database_error_in_the_cause_chain_is_503(client: httpx.AsyncClient) -> None:
    assert_error_shape(await client.get("/api/v1/db-gone-wrapped"), 503, "service_unavailable")


async def test_a_bug_is_500_internal_error_in_the_same_shape(client: httpx.AsyncClient) -> None:
    assert_error_shape(await client.get("/api/v1/bug"), 500, "internal_error")


async def test_oversized_body_is_413_payload_too_large(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/items", content=b"x" * (LIMIT + 1), headers={"Content-Type": "application/json"}
    )
    body = assert_error_shape(response, 413, "payload_too_large")
    assert body["detail"] == {"limit_bytes": LIMIT}
    assert response.headers["connection"] == "close"  # refused before reading: the body may still come


async def test_oversized_streamed_body_without_length_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1024

    response = await client.post("/api/v1/items", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error_shape(response, 413, "payload_too_large")


async def test_route_with_a_larger_limit_accepts_what_the_default_refuses(
    client: httpx.AsyncClient, signer: TokenSigner
) -> None:
    padded = b'{"name": "x", "count": 1}' + b" " * (LIMIT + 10)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {signer.issue(uuid.uuid4())}"}
    response = await client.post("/api/v1/big", content=padded, headers=headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("authorization", "code"), [(None, "unauthenticated"), ("Bearer forged", "token_invalid")])
async def test_a_route_with_a_larger_limit_refuses_a_caller_without_a_valid_token_before_reading_the_body(
    client: httpx.AsyncClient, authorization: str | None, code: str
) -> None:
    read: list[bytes] = []

    async def upload() -> AsyncIterator[bytes]:
        read.append(b"{")
        yield b'{"name": "x", "count": 1}'
        await asyncio.Event().wait()  # the rest never comes: only a refusal before reading ends this
        yield b""

    headers = {"Content-Type": "application/json", **({"Authorization": authorization} if authorization else {})}
    response = await asyncio.wait_for(client.post("/api/v1/big", content=upload(), headers=headers), 5)
    assert_error_shape(response, 401, code)
    assert read == []  # not a byte of the body was asked for


async def test_a_path_that_only_starts_like_an_upload_route_keeps_the_ordinary_limit_and_no_token_check(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/v1/bigger", json={"name": "x", "count": 1})
    assert_error_shape(response, 404, "not_found")
    oversized = await client.post(
        "/api/v1/bigger", content=b" " * (LIMIT + 1), headers={"Content-Type": "application/json"}
    )
    assert assert_error_shape(oversized, 413, "payload_too_large")["detail"] == {"limit_bytes": LIMIT}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/api/v1/quota", 413), ("DELETE", "/api/v1/items", 413), ("POST", "/api/v1/nowhere", 404)],
)
async def test_an_answer_given_before_a_declared_body_was_read_closes_the_connection(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    """Else the server keeps the connection and takes in the rest of the body, past every limit."""
    size = LIMIT + 1 if status == 413 else 100
    response = await client.request(method, path, content=b"x" * size, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.headers["connection"] == "close"


async def test_an_answer_after_the_whole_body_keeps_the_connection(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/items", json={"name": "x", "count": 1})
    assert response.status_code == 201
    assert "connection" not in response.headers


async def test_a_short_body_a_route_does_not_read_keeps_the_connection(client: httpx.AsyncClient) -> None:
    response = await client.request("GET", "/api/v1/ok", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert "connection" not in response.headers


class _Unreachable:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def verify(self, token: str) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [(OSError("key set unreachable"), 503, "service_unavailable"), (RuntimeError("a bug"), 500, "internal_error")],
)
async def test_a_failing_token_check_before_an_upload_is_the_services_own_error_not_a_bare_500(
    error: Exception, status: int, code: str
) -> None:
    app = make_app()
    app.state.verifier = _Unreachable(error)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(
            "/api/v1/big", json={"name": "x", "count": 1}, headers={"Authorization": "Bearer some.token.here"}
        )
    assert_error_shape(response, status, code)
    assert response.headers["x-request-id"]
    assert response.headers["connection"] == "close"  # the body was never read


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/items", content=b"name=x", headers={"Content-Type": "text/plain"})
    body = assert_error_shape(response, 415, "unsupported_media_type")
    assert body["detail"] == {"content_type": "text/plain"}


async def test_valid_request_passes_and_gets_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/items", json={"name": "x", "count": 1})
    assert response.status_code == 201
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "zh"),
        ("", "zh"),
        ("en", "en"),
        ("en-GB", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("fr, en;q=0.5", "en"),  # French is not spoken here; English is acceptable
        ("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", "en"),
        ("ja,en", "en"),
        ("fr", "zh"),  # neither: the default
        ("fr, zh-TW;q=0.4, en;q=0.3", "zh"),
        ("*, en;q=0.5", "zh"),
        ("en;q=0.9, zh;q=0.8", "en"),
        ("en, zh", "en"),  # equal: the first listed
        ("en;q=bogus, zh", "zh"),
        ("en;q=0", "zh"),  # "not English"
        ("en;q=2, zh;q=0.5", "zh"),  # q outside 0-1: unreadable
        ("english", "zh"),  # not a tag for English
    ],
)
def test_preferred_language(header: str | None, lang: str) -> None:
    assert preferred_language(header) == lang


def test_error_responses_document_every_code_under_its_status() -> None:
    responses = error_responses(CONFLICT, QUOTA_FULL, NOT_FOUND)
    assert set(responses) == {404, 409}
    assert "`conflict`" in responses[409]["description"]
    assert "`quota_full`" in responses[409]["description"]


def test_message_with_missing_params_falls_back_to_the_template() -> None:
    assert QUOTA_FULL.message("en", {"other": 1}) == QUOTA_FULL.en


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (None, False),  # API clients that send nothing
        ("*/*", False),  # httpx, curl
        ("application/json", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # Chrome, Firefox
        ("text/html;q=0.5, application/json", False),
        ("application/json;q=0.5, text/html", True),
        ("text/html;q=0", False),
        ("text/html;q=bogus, */*", False),
        ("text/html; charset=utf-8; q=0.9, */*;q=0.1", True),
    ],
)
def test_prefers_html(accept: str | None, html: bool) -> None:
    assert prefers_html(accept) is html


def test_the_html_check_refuses_what_browsers_would_have_to_repair() -> None:
    assert_valid_html('<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>t</title></head></html>')
    for broken in (
        "<p>no doctype</p>",
        "<!DOCTYPE html><title>t</title><p><b>misnested</p></b>",
        "<!DOCTYPE html><title>t</title><table><p>outside a cell</table>",
    ):
        with pytest.raises(ParseError):
            assert_valid_html(broken)
