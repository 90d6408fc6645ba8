"""Stable error codes with Chinese and English messages, rendered in one shape.

Every refusal is ``{"code", "message", "detail"}``; ``message`` is Chinese unless the
client's ``Accept-Language`` prefers English. Services raise :class:`AppError` with an
:class:`ErrorSpec`; they never raise ``HTTPException``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field


@dataclass(frozen=True, slots=True)
class Localised:
    """A message parameter said differently in each language (a stage's name, say): the Chinese
    message shows ``zh``, the English one ``en``."""

    zh: str
    en: str

    def in_(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: str
    status: int
    zh: str
    en: str

    def message(self, lang: str, params: dict[str, Any] | None = None) -> str:
        template = self.en if lang == "en" else self.zh
        if not params:
            return template
        try:
            return template.format(**{k: v.in_(lang) if isinstance(v, Localised) else v for k, v in params.items()})
        except (KeyError, IndexError, ValueError):
            return template


class AppError(Exception):
    """A refusal with a stable code. ``params`` fill the message; ``detail`` goes to the client."""

    def __init__(
        self,
        spec: ErrorSpec,
        detail: Any = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(spec.code)
        self.spec = spec
        self.detail = detail
        self.params = params or {}
        self.headers = headers or {}

    @property
    def code(self) -> str:
        return self.spec.code

    @property
    def status(self) -> int:
        return self.spec.status


class ErrorBody(BaseModel):
    """The one error shape of every service."""

    code: str = Field(examples=["validation_failed"])
    message: str = Field(examples=["请求参数不合法"])
    detail: Any = None


# Codes every service can answer with.
VALIDATION_FAILED = ErrorSpec("validation_failed", 422, "请求参数不合法", "The request is not valid")
MALFORMED_JSON = ErrorSpec("malformed_json", 400, "请求内容不是合法的 JSON", "The request body is not valid JSON")
MALFORMED_BODY = ErrorSpec("malformed_body", 400, "请求内容无法解析", "The request body could not be parsed")
UNSUPPORTED_MEDIA_TYPE = ErrorSpec("unsupported_media_type", 415, "不支持的请求内容类型", "Unsupported content type")
PAYLOAD_TOO_LARGE = ErrorSpec("payload_too_large", 413, "请求内容过大", "The request body is too large")
REQUEST_TIMEOUT = ErrorSpec(
    "request_timeout",
    408,
    "请求内容发送过慢,请检查网络后重试",
    "The request body arrived too slowly; check the network and retry",
)
NOT_FOUND = ErrorSpec("not_found", 404, "请求的资源不存在", "Not found")
METHOD_NOT_ALLOWED = ErrorSpec("method_not_allowed", 405, "不支持该请求方法", "Method not allowed")
UNAUTHENTICATED = ErrorSpec("unauthenticated", 401, "请先登录", "Authentication required")
TOKEN_INVALID = ErrorSpec("token_invalid", 401, "登录凭证无效", "The access token is not valid")
TOKEN_EXPIRED = ErrorSpec("token_expired", 401, "登录已过期,请重新登录", "The access token has expired")
FORBIDDEN = ErrorSpec("forbidden", 403, "没有权限执行此操作", "You are not allowed to do this")
CONFLICT = ErrorSpec("conflict", 409, "数据已被修改,请刷新后重试", "The data changed; reload and retry")
RATE_LIMITED = ErrorSpec("rate_limited", 429, "操作过于频繁,请稍后再试", "Too many requests; try again later")
SERVICE_UNAVAILABLE = ErrorSpec(
    "service_unavailable", 503, "服务暂时不可用,请稍后再试", "The service is temporarily unavailable"
)
INTERNAL_ERROR = ErrorSpec("internal_error", 500, "系统内部错误", "Internal error")


def _ranked(header: str) -> list[tuple[str, float]]:
    """An Accept-style header's values with their ``q`` (1 when not given, 0 when unreadable), in order."""
    ranked = []
    for part in header.split(","):
        piece = part.strip()
        if not piece:
            continue
        value, _, params = piece.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, number = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        ranked.append((value.strip().lower(), q))
    return ranked


def preferred_language(accept_language: str | None) -> str:
    """The best of the languages the system speaks (Chinese, English) that the client accepts:
    ``"en"`` for ``fr, en;q=0.5`` too (French is not spoken here, English is acceptable);
    ``"zh"`` when neither is (or for ``*``), the default. A ``q`` of 0 means "not this one"; one
    outside 0–1 is unreadable; of two equal, the first listed wins."""
    best_lang, best_q = "zh", 0.0
    for tag, q in _ranked(accept_language or ""):
        if not 0.0 < q <= 1.0:
            continue
        primary = tag.partition("-")[0]
        lang = "en" if primary == "en" else "zh" if primary in ("zh", "*") else None
        if lang is not None and q > best_q:
            best_lang, best_q = lang, q
    return best_lang


def prefers_html(accept: str | None) -> bool:
    """Whether the client (a browser that opened a link or a scanned QR code) ranks an HTML page
    above JSON; a tie, ``*/*`` or no header at all answers JSON, as API clients expect."""
    html = json = 0.0
    for media, q in _ranked(accept or ""):
        if media == "text/html":
            html = max(html, q)
        elif media in ("application/json", "application/*", "*/*"):
            json = max(json, q)
    return html > json


def error_responses(*specs: ErrorSpec) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route: each status with the codes it may carry."""
    by_status: dict[int, list[ErrorSpec]] = {}
    for spec in specs:
        by_status.setdefault(spec.status, []).append(spec)
    return {
        status: {
            "model": ErrorBody,
            "description": "; ".join(f"`{s.code}`: {s.zh} / {s.en}" for s in group),
        }
        for status, group in sorted(by_status.items())
    }
