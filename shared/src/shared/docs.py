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

import json
import os
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import iter_route_contexts
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from shared.auth import get_optional_principal
from shared.errors import (
    FORBIDDEN,
    MALFORMED_BODY,
    MALFORMED_JSON,
    PAYLOAD_TOO_LARGE,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    UNAUTHENTICATED,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION_FAILED,
    ErrorBody,
    ErrorSpec,
)

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
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - API",
            swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_PATH}/favicon.png",
        )
        # another site may not show the page in a frame of its own (clickjacking an operator's
        # "Try it out", which sends their token)
        return HTMLResponse(
            _as_chinese_page(bytes(page.body).decode()),
            headers={"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"},
        )


def _as_chinese_page(html: str) -> str:
    """FastAPI's page declares no language nor charset: Chrome and Firefox then may draw the Chinese
    messages of the documented refusals in Japanese glyph shapes, and a page saved to disk loses its
    encoding. Both are declared, as on the system's other pages."""
    return html.replace("<html>", '<html lang="zh-CN">', 1).replace("<head>", '<head>\n<meta charset="utf-8">', 1)


#: what any route taking a token may answer (an optional one too: a bad token is refused)
AUTH_REFUSALS = (UNAUTHENTICATED, TOKEN_INVALID, TOKEN_EXPIRED)
#: what any route taking a body may answer before its own rules run
BODY_REFUSALS = (MALFORMED_JSON, MALFORMED_BODY, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, VALIDATION_FAILED)
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
_FASTAPI_422 = "Validation Error"


def document_common_refusals(app: FastAPI) -> None:
    """Every operation's OpenAPI lists the refusals the shared layers give whatever the route:
    the token's (401) where it takes one, ``forbidden`` (403) where it requires a role, the body's
    (400, 413, 415) where it takes one, and ``validation_failed`` (422) in the one error shape,
    where FastAPI documents its own ``HTTPValidationError`` (which no route answers). Routes list
    their own rules' refusals."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        by_role = _operations_depending_on(app, lambda call: getattr(call, "required_roles", None) is not None)
        # a route that reads a token when one is sent (public otherwise) refuses a bad one all the same
        optional_token = _operations_depending_on(app, lambda call: call is get_optional_principal)
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                common: list[ErrorSpec] = []
                if "security" in operation:
                    common += AUTH_REFUSALS
                elif (path, method) in optional_token:  # no token: public; a bad one: refused
                    common += (TOKEN_INVALID, TOKEN_EXPIRED)
                if (path, method) in by_role:
                    common.append(FORBIDDEN)
                if "requestBody" in operation:
                    common += BODY_REFUSALS
                elif operation.get("parameters") or "422" in operation["responses"]:
                    common.append(VALIDATION_FAILED)
                for spec in common:
                    _add_refusal(operation["responses"], spec)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
        for unused in ("HTTPValidationError", "ValidationError"):
            if unused in components and f'/{unused}"' not in json.dumps({**schema, "components": {}}):
                del components[unused]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operations_depending_on(app: FastAPI, wanted: Callable[[Any], bool]) -> set[tuple[str | None, str]]:
    """(path, method) of every route with a dependency, however deep, whose callable is ``wanted``."""
    return {
        (route.path_format, method.lower())
        for route in iter_route_contexts(app.routes)
        if isinstance(getattr(route, "dependant", None), Dependant) and _depends_on(route.dependant, wanted)
        for method in route.methods or ()
    }


def _depends_on(dependant: Dependant, wanted: Callable[[Any], bool]) -> bool:
    return any(wanted(d.call) or _depends_on(d, wanted) for d in dependant.dependencies)


def _add_refusal(responses: dict[str, Any], spec: ErrorSpec) -> None:
    line = f"`{spec.code}`: {spec.zh} / {spec.en}"
    response = responses.get(str(spec.status))
    if response is None:
        responses[str(spec.status)] = {"description": line, "content": _ERROR_CONTENT}
        return
    if "HTTPValidationError" in json.dumps(response.get("content", {})):
        response["content"] = _ERROR_CONTENT
    description = response.get("description", "")
    if description == _FASTAPI_422:
        response["description"] = line
    elif f"`{spec.code}`" not in description:
        response["description"] = f"{description}; {line}" if description else line
