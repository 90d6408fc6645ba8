"""The services' API documentation page (/docs) needs nothing from outside the service: every
script, style and icon it names is served by the service itself, so they work on an intranet."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from shared.docs import install_docs
from shared.testing import assert_valid_html
from shared.web import configure_app


def make_app() -> FastAPI:
    app = FastAPI(title="测试服务", docs_url=None, redoc_url=None)
    configure_app(app, service="docstest", cors_origins=[], max_body_bytes=1024)  # the services' refusals
    install_docs(app, title="测试服务")

    @app.get("/api/v1/things")
    async def things() -> list[str]:
        return []

    return app


def referenced(page: str) -> list[str]:
    """Every URL the page loads: src and href attributes, and the OpenAPI document its script reads."""
    return re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r"""url:\s*'([^']+)'""", page)


async def fetch_page(root_path: str, page: str) -> tuple[str, list[httpx.Response]]:
    transport = httpx.ASGITransport(app=make_app(), root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        html = await c.get(f"{root_path}{page}")
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert_valid_html(html.text)
        urls = referenced(html.text)
        assert urls, html.text
        for url in urls:
            assert url.startswith(f"{root_path}/"), f"{url} is not served by the service"
        return html.text, [await c.get(url) for url in urls]


@pytest.mark.parametrize("root_path", ["", "/identity"])
async def test_swagger_ui_loads_only_from_the_service(root_path: str) -> None:
    page, assets = await fetch_page(root_path, "/docs")
    by_path = {r.request.url.path: r for r in assets}
    assert {r.status_code for r in assets} == {200}, [(r.request.url.path, r.status_code) for r in assets]
    script = by_path[f"{root_path}/docs/static/swagger-ui-bundle.js"]
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "public, max-age=86400"
    assert "etag" in script.headers
    assert by_path[f"{root_path}/docs/static/swagger-ui.css"].headers["content-type"].startswith("text/css")
    assert by_path[f"{root_path}/openapi.json"].json()["paths"].keys() == {"/api/v1/things"}
    # Swagger UI 5: the first major version that renders the OpenAPI 3.1 documents FastAPI writes
    assert by_path[f"{root_path}/openapi.json"].json()["openapi"].startswith("3.1")
    version = re.search(rb'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', script.content)
    assert version is not None
    assert int(version[1]) >= 5
    assert "测试服务 - API" in page
    # the page's language and charset are its own (the messages it shows are Chinese)
    assert '<html lang="zh-CN">' in page
    assert re.search(r'<head>\s*<meta charset="utf-8">', page), page[:300]


async def test_the_docs_page_is_not_framed_by_another_site_and_nothing_is_sniffed() -> None:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        page = await c.get("/docs")
        assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert page.headers["x-frame-options"] == "DENY"
        for path in ("/docs", "/openapi.json", "/api/v1/things", "/api/v1/nowhere"):
            response = await c.get(path)
            assert response.headers["x-content-type-options"] == "nosniff", path


async def test_there_is_no_redoc_page_to_load_from_a_cdn() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as c:
        assert (await c.get("/redoc")).status_code == 404


async def test_only_the_files_the_page_names_are_served() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as c:
        for path in ("redoc.standalone.js", "../__init__.py", "", "nothing.js"):
            response = await c.get(f"/docs/static/{path}")
            assert response.status_code == 404, path
            assert response.json()["code"] == "not_found"


async def test_a_revalidated_file_is_not_sent_again() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as c:
        first = await c.get("/docs/static/swagger-ui.css")
        again = await c.get("/docs/static/swagger-ui.css", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_the_docs_are_not_in_the_api_description() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as c:
        paths = (await c.get("/openapi.json")).json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc")) for p in paths)
