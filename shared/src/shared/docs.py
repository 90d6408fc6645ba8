"""Each service's interactive API documentation (``/docs``, Swagger UI), served with its scripts
and styles from the service itself.

FastAPI's own pages load them from a CDN (jsDelivr): on a government intranet or any deployment
without the internet they stayed blank. The files come from the ``fastapi-offline`` package
(Swagger UI 5, which renders the OpenAPI 3.1 FastAPI writes; the ``swagger-ui-bundle`` package
carries Swagger UI 4, which does not), served under ``/docs/static/`` with a day's caching and the
ETag StaticFiles gives them. There is no ``/redoc``: ReDoc's page loads its logo from Redocly's CDN
whatever it is given.
"""

from __future__ import annotations

import os
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

#: where the documentation page's script, style and icon are served
STATIC_PATH = "/docs/static"
ASSETS = str(files("fastapi_offline") / "static")
#: the files of the package the page names; its other ones (ReDoc's) are not served
SERVED = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"})


class _CachedStatic(StaticFiles):
    """The documentation's files, cached by browsers for a day (then revalidated by ETag): they
    change only with the package, and Swagger UI's script is 1.5 MB. Only those the page names."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        return super().lookup_path(path) if path in SERVED else ("", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 304):
                message["headers"] = [*message.get("headers", []), (b"cache-control", b"public, max-age=86400")]
            await send(message)

        await super().__call__(scope, receive, send_cached)


def install_docs(app: FastAPI, *, title: str) -> None:
    """``/docs`` for ``app`` (built with ``docs_url=None, redoc_url=None``), every file it needs served
    by the app. Paths carry the request's ``root_path``, as FastAPI's own pages do,
    so the page works behind an ingress that mounts the service under a prefix."""
    app.mount(STATIC_PATH, _CachedStatic(directory=ASSETS), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - API",
            swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_PATH}/favicon.png",
        )
