"""structlog for every service: JSON in deployment, console in development.

stdlib loggers (uvicorn, sqlalchemy, aio-pika) are routed through the same processors,
and a last processor masks anything shaped like an ID number, a mobile number or an
email address: code must not log personal data, and this catches what slips through.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from pydantic import ValidationError
from structlog.types import EventDict, Processor

# 18-digit resident ID (last may be X), 15-digit legacy ID (also glued to letters: "ID1101..."),
# mainland mobile (also written 138 1234 5678 or 138-1234-5678) and any other in international form
# (+852 9123 4567), email (also internationalised,
# and percent-encoded as a query string carries it: zhang%40example.org).
_ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dXx](?![0-9A-Za-z])|(?<!\d)\d{15}(?!\d)")
_MOBILE = re.compile(
    r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?!\d)"
    r"|(?:\+|%2[Bb])[1-9](?:[- ]?\d){6,14}(?!\d)"  # any other country's, in international form
)
_EMAIL = re.compile(r"[\w.%+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.\w{2,}", re.IGNORECASE)
#: containers deeper than this are logged as their (masked) text
_MAX_DEPTH = 8


def mask_personal_data(text: str) -> str:
    text = _ID_NUMBER.sub("[id-number]", text)
    text = _MOBILE.sub("[mobile]", text)
    return _EMAIL.sub("[email]", text)


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """An error for a log line: its type and message, masked before it is cut (a cut could leave
    part of an ID number the mask no longer recognises), and for a validation error without the
    input values (pydantic quotes them: a name or an address in an event's payload)."""
    if isinstance(exc, ValidationError):
        problems = [(p["loc"], p["type"]) for p in exc.errors(include_input=False, include_url=False)]
        return mask_personal_data(f"ValidationError({exc.title}, {problems})")[:limit]
    return mask_personal_data(repr(exc))[:limit]


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return mask_personal_data(value)
    if isinstance(value, bool) or not isinstance(value, int | dict | list | tuple | set | frozenset):
        return value
    if isinstance(value, int):  # a phone or ID number logged as a number
        text = str(value)
        masked = mask_personal_data(text)
        return value if masked == text else masked
    if depth >= _MAX_DEPTH:
        return mask_personal_data(repr(value))
    if isinstance(value, dict):
        return {k: _scrub(v, depth + 1) for k, v in value.items()}
    items = [_scrub(v, depth + 1) for v in value]
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*items)
    return type(value)(items)


def scrub_personal_data(_: Any, __: str, event_dict: EventDict) -> EventDict:
    return {key: _scrub(value) for key, value in event_dict.items()}


def configure_logging(service: str, fmt: str = "console", level: str = "INFO") -> None:
    """Configure structlog and route stdlib logging through it. Safe to call twice."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            scrub_personal_data,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.set_name("vs-structlog")
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != "vs-structlog"]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # uvicorn's access line quotes the raw path and query string (an address searched for, a card
    # check's token): the services' own line (shared.web) names the route template instead
    logging.getLogger("uvicorn.access").disabled = True
    # aiormq logs every reconnect attempt at WARNING with a traceback; keep them, once.
    logging.getLogger("aiormq").setLevel(logging.ERROR)
    # httpx writes each outgoing request's whole URL at INFO (a query string can name a person)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
