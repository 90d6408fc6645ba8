"""What every service's FastAPI app has: error rendering, request context, limits, health, metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar
from typing import Any

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import bearer_token
from shared.errors import (
    INTERNAL_ERROR,
    MALFORMED_BODY,
    MALFORMED_JSON,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    REQUEST_TIMEOUT,
    SERVICE_UNAVAILABLE,
    UNAUTHENTICATED,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION_FAILED,
    AppError,
    ErrorSpec,
    preferred_language,
)
from shared.logging import get_logger
from shared.settings import BODY_MAX_SECONDS, BODY_MIN_RATE, BODY_TIMEOUT_SECONDS

_LOGGER_NAME = "shared.web"
log = get_logger(_LOGGER_NAME)

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)

REQUESTS = Counter("vs_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "vs_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    asyncpg.PostgresConnectionStatusError if hasattr(asyncpg, "PostgresConnectionStatusError") else OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    # the server is full (max_connections): a capacity outage, not a bug in the request
    asyncpg.exceptions.TooManyConnectionsError,
    # the service's database is not there (yet): a deployment outage, not a bug in the request
    asyncpg.exceptions.InvalidCatalogNameError,
    ConnectionError,
    OSError,
)


def render_error(
    request: Request,
    spec: ErrorSpec,
    detail: Any = None,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    lang = preferred_language(request.headers.get("accept-language"))
    body = {"code": spec.code, "message": spec.message(lang, params), "detail": detail}
    response = JSONResponse(body, status_code=spec.status, headers=headers)
    response.headers["Content-Language"] = "en" if lang == "en" else "zh-CN"
    # a cache between (a CDN, the browser's) keeps one answer per language, not the first asked
    response.headers.append("Vary", "Accept-Language")
    return response


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _CONNECTION_ERRORS):
            return True
        current = current.__cause__ or current.__context__
    return False


def refusal(request: Request, exc: AppError) -> JSONResponse:
    """The answer to an :class:`AppError`, wherever it is caught."""
    return render_error(request, exc.spec, exc.detail, exc.params, exc.headers or None)


def install_error_handlers(app: FastAPI) -> None:
    async def app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        return refusal(request, exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return render_error(request, MALFORMED_JSON)
        lang = preferred_language(request.headers.get("accept-language"))
        detail = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": _problem(e, lang)} for e in errors]
        return render_error(request, VALIDATION_FAILED, detail)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            return render_error(request, MALFORMED_BODY)  # e.g. a form body that does not parse
        if exc.status_code == 404:
            return render_error(request, NOT_FOUND)
        if exc.status_code == 405:  # with the route's Allow header (RFC 9110)
            return render_error(request, METHOD_NOT_ALLOWED, headers=dict(exc.headers or {}))
        if exc.status_code == 413:
            return render_error(request, PAYLOAD_TOO_LARGE)
        spec = ErrorSpec(f"http_{exc.status_code}", exc.status_code, str(exc.detail), str(exc.detail))
        return render_error(request, spec)

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    # Anything else is rendered by RequestContextMiddleware (503 for a lost database, else 500).


#: pydantic's problems in Chinese (its own text is English), by its stable ``type``, with its ``ctx``
_PROBLEMS_ZH = {
    "missing": "必填",
    "extra_forbidden": "不接受该字段",
    "string_type": "应为文本",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "最多 {max_length} 个字符",
    "string_pattern_mismatch": "格式不正确",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数",
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应不小于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应不大于 {le}",
    "multiple_of": "应为 {multiple_of} 的倍数",
    "too_short": "至少 {min_length} 项",
    "too_long": "最多 {max_length} 项",
    "list_type": "应为列表",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "model_attributes_type": "应为对象",
    "date_type": "应为日期(如 2026-01-05)",
    "date_parsing": "应为日期(如 2026-01-05)",
    "date_from_datetime_parsing": "应为日期(如 2026-01-05)",
    "date_from_datetime_inexact": "应为日期,不带时间",
    "datetime_type": "应为带时区的时间(如 2026-01-05T09:30:00+08:00)",
    "datetime_parsing": "应为带时区的时间(如 2026-01-05T09:30:00+08:00)",
    "datetime_from_date_parsing": "应为带时区的时间(如 2026-01-05T09:30:00+08:00)",
    "timezone_aware": "时间应带时区(如 +08:00)",
    "uuid_type": "应为 UUID",
    "uuid_parsing": "应为 UUID",
    "uuid_version": "应为 UUID",
    "literal_error": "应为以下之一:{expected}",
    "enum": "应为以下之一:{expected}",
    "url_parsing": "应为网址",
    "url_scheme": "网址应以 {expected_schemes} 开头",
    "value_error": "取值不正确",
    "assertion_error": "取值不正确",
    "json_type": "应为 JSON",
}


def _problem(error: Any, lang: str) -> str:
    """One field's problem in the answer's language: pydantic's text in English, ours in Chinese
    (a problem of a kind not listed here says the value is not accepted)."""
    if lang == "en":
        return str(error.get("msg", ""))
    template = _PROBLEMS_ZH.get(str(error.get("type")), "取值不正确")
    try:
        return template.format(**(error.get("ctx") or {}))
    except (KeyError, IndexError, ValueError):  # a ctx without what the text names
        return "取值不正确"


_BODY_TYPES = (
    "application/json",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
    "text/csv",
    "application/octet-stream",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "image/jpeg",
    "image/png",
)


#: the Content-Security-Policy of a self-contained page the services render (the card check, the
#: mailbox list): no script, nothing loaded from anywhere, not framed; only its own inline style and
#: an empty ``data:`` icon (without an icon of its own, a browser asks for /favicon.ico, which this
#: policy would refuse, and Firefox logs the refusal)
SELF_CONTAINED_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


#: request and correlation ids callers may pass: what tracing systems send (UUIDs, W3C and B3 trace
#: ids), nothing longer than the outbox keeps or able to forge a log line
_TRACE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,120}")


class RequestContextMiddleware:
    """Request id, correlation id, body size, pace and content-type limits, access log and metrics.

    A pure ASGI middleware so the body's limits apply while it streams in (uvicorn itself waits for
    a body as long as the client keeps the connection open). Per request it reads
    the raw headers once; a :class:`Request` is built only to render a refusal, the metric children
    of a (method, route, status) are looked up once, and the access line is built only when the
    logger would write it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_body_bytes: int,
        body_limits: dict[str, int] | None = None,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
        body_min_rate: int = BODY_MIN_RATE,
        body_max_seconds: float = BODY_MAX_SECONDS,
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.body_limits = body_limits or {}
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
        self.body_max_seconds = body_max_seconds
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._access_log = logging.getLogger(_LOGGER_NAME)

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.body_limits.items():
            # the path itself or one below it ("/api/v1/imports/..."), not "/api/v1/importsX"
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = correlation_id = length = content_type = None
        chunked = False
        for name, value in scope["headers"]:
            # the first of each, as ``Request.headers.get`` would answer
            if name == b"x-request-id":
                if request_id is None:
                    request_id = value.decode("latin-1")
            elif name == b"x-correlation-id":
                if correlation_id is None:
                    correlation_id = value.decode("latin-1")
            elif name == b"content-length":
                if length is None:
                    length = value.decode("latin-1")
            elif name == b"content-type":
                if content_type is None:
                    content_type = value.decode("latin-1")
            elif name == b"transfer-encoding":
                chunked = True
        # a caller's id is kept only if it looks like one: it goes into logs, response headers and
        # every event the request raises (120 characters in the outbox)
        if request_id is None or not _TRACE_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        if correlation_id is None or not _TRACE_ID.fullmatch(correlation_id):
            correlation_id = request_id
        token = correlation_id_var.set(correlation_id)
        structlog.contextvars.bind_contextvars(
            service=self.service, request_id=request_id, correlation_id=correlation_id
        )
        started = time.perf_counter()
        status_holder = {"status": 500}
        limit = self._limit_for(scope["path"])
        request_id_header = (b"x-request-id", request_id.encode())
        #: the request's body may still be coming: set while one is declared and not read to its end
        unread = {"body": chunked or length not in (None, "0")}
        #: a body of no told length, or a large one, which the server would go on taking in
        open_ended = chunked or not (length or "0").isdigit() or int(length or 0) > _SMALL_BODY

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["started"] = 1
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append(request_id_header)
                if not any(name.lower() == b"x-content-type-options" for name, _ in headers):
                    # a browser takes every answer as the type it says (an ID-card image as an
                    # image, JSON as JSON), never as a page it sniffs out of the bytes
                    headers.append(_NOSNIFF)
                if unread["body"] and (open_ended or message["status"] >= 400):
                    # an answer before the body's end (a refusal, a 404, a long body a route never
                    # reads): without this the server would keep the connection and take the rest
                    # in, past every limit here (a short body a route ignores is let be)
                    headers.append(_CLOSE)
                message["headers"] = headers
            await send(message)

        try:
            try:
                early = self._refuse_early(scope, limit, length, content_type)
                if early is None and limit > self.max_body_bytes and scope["method"] in _WITH_BODY:
                    early = await self._refuse_anonymous_upload(scope)
            except Exception as exc:  # the token check's key fetch, say: the services' own 503 or 500
                early = self._failure(scope, exc)
            if early is not None:
                await early(scope, receive, send_wrapper)
                return
            received = 0
            body_done = False
            #: why the body was cut off (the refusal that replaces whatever the app answers)
            cut: Response | None = None
            # the body's pace: its first bytes within body_timeout of the headers, no later gap
            # without bytes longer than that, each byte received giving 1/body_min_rate seconds
            # more, and the whole body within body_max_seconds: a client that stalls or trickles
            # is let go instead of holding a connection and a task for as long as it likes
            started_at = last_bytes_at = time.monotonic()

            async def limited_receive() -> Message:
                nonlocal received, body_done, cut, last_bytes_at
                if body_done:
                    return await receive()  # after the body only a disconnect comes, whenever
                deadline = min(
                    started_at + self.body_timeout + received / self.body_min_rate,
                    last_bytes_at + self.body_timeout,
                    started_at + self.body_max_seconds,
                )
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        message = await receive()
                except TimeoutError:
                    log.warning("request_body_too_slow", received_bytes=received)
                    cut = render_error(
                        Request(scope),
                        REQUEST_TIMEOUT,
                        {
                            "timeout_seconds": self.body_timeout,
                            "min_rate_bytes_per_second": self.body_min_rate,
                            "max_seconds": self.body_max_seconds,
                        },
                    )
                    raise _BodyCut from None
                if message["type"] == "http.request":
                    if message.get("body"):
                        received += len(message["body"])
                        last_bytes_at = time.monotonic()
                    body_done = not message.get("more_body", False)
                    if body_done:
                        unread["body"] = False
                    if received > limit:
                        cut = render_error(Request(scope), PAYLOAD_TOO_LARGE, {"limit_bytes": limit})
                        raise _BodyCut
                return message

            async def guarded_send(message: Message) -> None:
                # FastAPI turns any failure while reading the body into its own 400; once we cut a
                # body off, whatever the app answers is replaced by our refusal.
                if cut is None:
                    await send_wrapper(message)

            try:
                await self.app(scope, limited_receive, guarded_send)
                if cut is not None:
                    raise _BodyCut
            except _BodyCut:
                assert cut is not None
                if status_holder.get("started"):
                    # an answer already under way (streamed while the body came) cannot become a
                    # refusal: it stays cut short, and the server closes the connection
                    return
                await cut(scope, receive, send_wrapper)
            except Exception as exc:
                if cut is not None and not status_holder.get("started"):
                    await cut(scope, receive, send_wrapper)
                    return
                if status_holder.get("started"):
                    raise
                await self._failure(scope, exc)(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            status = status_holder["status"]
            key = (scope["method"], route_path, status)
            children = self._metrics.get(key)
            if children is None:
                children = self._metrics[key] = (
                    REQUESTS.labels(self.service, scope["method"], route_path, str(status)),
                    LATENCY.labels(self.service, scope["method"], route_path),
                )
            children[0].inc()
            children[1].observe(elapsed)
            if self._access_log.isEnabledFor(logging.INFO):
                log.info(
                    "http_request", method=scope["method"], route=route_path, status=status, ms=round(elapsed * 1000, 1)
                )
            structlog.contextvars.unbind_contextvars("request_id", "correlation_id")
            correlation_id_var.reset(token)

    @staticmethod
    def _failure(scope: Scope, exc: Exception) -> Response:
        """The answer to an error no refusal expected: 503 with ``Retry-After`` when a dependency
        (database, broker, key set) is out of reach, logged with its type only; else 500, logged
        with its traceback (masked like every log line)."""
        if _is_connection_error(exc):
            log.warning("dependency_unavailable", error=type(exc).__name__)
            return render_error(Request(scope), SERVICE_UNAVAILABLE, headers={"Retry-After": "2"})
        log.exception("unhandled_error", error=type(exc).__name__)
        return render_error(Request(scope), INTERNAL_ERROR)

    @staticmethod
    async def _refuse_anonymous_upload(scope: Scope) -> Response | None:
        """A route allowed a larger body than the rest (an upload: an import file, an ID card's
        image) takes it only from a caller with a valid token. FastAPI reads, and spools to disk,
        a request's body before the route's own checks run, so an anonymous client could otherwise
        push that much per request. Which roles may upload stays the route's to check."""
        request = Request(scope)
        try:
            token = bearer_token(request)
            if token is None:
                raise AppError(UNAUTHENTICATED)
            await scope["app"].state.verifier.verify(token)
        except AppError as exc:
            return refusal(request, exc)
        return None

    def _refuse_early(self, scope: Scope, limit: int, length: str | None, content_type: str | None) -> Response | None:
        if length is not None:
            try:
                if int(length) > limit:
                    return render_error(Request(scope), PAYLOAD_TOO_LARGE, {"limit_bytes": limit})
            except ValueError:
                return render_error(Request(scope), VALIDATION_FAILED, {"reason": "content-length"})
        if scope["method"] in _WITH_BODY and length not in (None, "0"):
            ctype = (content_type or "").split(";")[0].strip().lower()
            if ctype and not ctype.startswith(_BODY_TYPES):
                return render_error(Request(scope), UNSUPPORTED_MEDIA_TYPE, {"content_type": ctype})
        return None


_CLOSE = (b"connection", b"close")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
#: a body up to this long that a route leaves unread is let be: the server drops it in passing
_SMALL_BODY = 64 * 1024
#: methods whose requests carry a body the routes read
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class _BodyCut(Exception):
    """The body was cut off (too large, too slow): the middleware answers with its refusal."""


ReadinessCheck = Callable[[], Awaitable[bool]]


def health_router(checks: dict[str, ReadinessCheck], *, degrading: Collection[str] = ()) -> APIRouter:
    """``/healthz``, ``/readyz`` and ``/metrics``. ``/readyz`` is 503 when a check fails, except the
    ``degrading`` ones: those the API serves without (the broker: requests write their events to
    the outbox, which the relay publishes once it is back), which make it ``degraded`` and stay 200,
    so a broker outage delays events instead of taking every replica out of the load balancer."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Database reachable (503 otherwise); broker reachable and consumers running (else degraded)",
        responses={503: {"description": "Not ready"}},
    )
    async def readyz() -> Response:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = await check()
            except Exception:
                results[name] = False
        failed = {name for name, ok in results.items() if not ok}
        ready = failed <= set(degrading)
        status = "not_ready" if not ready else "degraded" if failed else "ready"
        return JSONResponse({"status": status, "checks": results}, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


#: how long the readiness probe waits for the database: a server that stops answering (a frozen
#: host, a partition) makes the pod unready within a probe's time instead of hanging the probe
DATABASE_CHECK_SECONDS = 3.0


def database_check(engine: Any) -> ReadinessCheck:
    async def check() -> bool:
        async def select_one() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        await asyncio.wait_for(select_one(), DATABASE_CHECK_SECONDS)
        return True

    return check


def configure_app(
    app: FastAPI,
    *,
    service: str,
    cors_origins: list[str],
    max_body_bytes: int,
    body_limits: dict[str, int] | None = None,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    body_min_rate: int = BODY_MIN_RATE,
    body_max_seconds: float = BODY_MAX_SECONDS,
) -> None:
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        service=service,
        max_body_bytes=max_body_bytes,
        body_limits=body_limits,
        body_timeout=body_timeout,
        body_min_rate=body_min_rate,
        body_max_seconds=body_max_seconds,
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            # what a browser's script may read: the request's id, a replayed answer's mark
            # (Idempotency-Key), when to try again and what a 405 takes
            expose_headers=["x-request-id", "idempotent-replayed", "retry-after", "allow", "content-language"],
            allow_credentials=False,
        )
