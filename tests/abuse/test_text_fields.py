"""Every piece of text any service takes (request-body fields, query and path parameters) refuses a
NUL and a lone surrogate at validation: PostgreSQL cannot store the first, UTF-8 cannot encode the
second, and either reaching the database would be a 500 instead of ``validation_failed``. Every
moment it takes refuses one at the edge of the calendar that UTC cannot hold (the driver's
conversion overflows).

Walked from the apps' own routes, so a field added tomorrow is checked too. (Projects' text fields
once had no such check: a NUL in a title, a position's name or an application's motivation was a
500; so was a guardian's consent at ``0001-01-01T00:00:00+08:00``.)
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BaseModel, FutureDatetime, NaiveDatetime, PastDatetime, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

SERVICES = ("identity", "teams", "projects", "notifications")
#: characters no text input may hold
HOSTILE = {"nul": "\x00", "lone_surrogate": "\ud800", "escape": "\x1b"}
#: parameters whose text never reaches a database as it came
DECODED_FIRST = {
    # every page cursor is decoded by shared.pagination first, which refuses whatever is not its own
    # encoding with cursor_invalid (test_pagination sends it a NUL)
    "cursor",
}
NEVER_STORED = {
    # checked against its signature only; anything else is the "cannot verify" page
    ("identity", "/api/v1/card-verifications", "token"),
    # looked up in the region table held in memory; anything else is not_found
    ("teams", "/api/v1/regions/{code}", "code"),
}


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router (FastAPI includes lazily)
            yield from api_routes(route.original_router.routes)


def models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple, set, typing.Annotated):
        for argument in typing.get_args(annotation):
            yield from models_in(argument)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation


def holds(annotation: Any, kind: type) -> bool:
    """Whether a value of ``kind`` is what the annotation takes (alone, optional or annotated)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return any(holds(argument, kind) for argument in typing.get_args(annotation))
    return annotation is kind or annotation in SPELLINGS.get(kind, ())


#: pydantic's runtime classes that stand for a type (``AwareDatetime`` is not a ``datetime`` subclass)
SPELLINGS: dict[type, tuple[Any, ...]] = {datetime: (AwareDatetime, NaiveDatetime, PastDatetime, FutureDatetime)}


def inputs_of(service: str, kind: type) -> Iterator[tuple[str, Any]]:
    """(where, check) for each input of the service taking a ``kind``: ``check(value)`` validates
    it as that field or parameter would, with its constraints (not the model's cross-field rules),
    and raises ``ValidationError`` on a refusal."""
    routes = list(api_routes(importlib.import_module(f"{service}.main").create_app().router.routes))
    for route in routes:
        for param in [*route.dependant.query_params, *route.dependant.path_params]:
            if param.name in DECODED_FIRST or (service, route.path, param.name) in NEVER_STORED:
                continue
            if holds(param.field_info.annotation, kind):
                yield f"{route.path} ?{param.name}", validator_of(param.field_info.annotation, param.field_info)
    for where, field in body_fields(routes):
        if holds(field.annotation, kind):
            yield where, validator_of(field.annotation, field)


def body_fields(routes: list[APIRoute]) -> Iterator[tuple[str, FieldInfo]]:
    """("Model.field", field) for every field of every request-body model the routes take, nested
    models included."""
    models = [
        model
        for route in routes
        for param in route.dependant.body_params
        for model in models_in(param.field_info.annotation)
    ]
    seen: set[type[BaseModel]] = set()
    while models:
        model = models.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            models += models_in(field.annotation)
            yield f"{model.__name__}.{name}", field


def validator_of(annotation: Any, field: FieldInfo) -> Any:
    return TypeAdapter(typing.Annotated[annotation, field]).validate_python


def accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except ValidationError:
        return False
    return True


#: values one of which every text input accepts as it is (the walk refuses an input none fits)
PLAIN = (
    "社区敬老志愿服务活动说明",
    "abcdefghijklmnop",
    "13800138000",
    "110105",
    "volunteer@example.org",
    "0571-88886666",
    "resolved",
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",  # a token's shape
)


@pytest.mark.parametrize("service", SERVICES)
def test_every_text_input_refuses_what_the_database_cannot_store(service: str) -> None:
    accepted: list[str] = []
    unprobed: list[str] = []
    checked = 0
    for where, check in inputs_of(service, str):
        plain = next((value for value in PLAIN if accepts(check, value)), None)
        if plain is None:
            unprobed.append(where)
            continue
        checked += 1
        middle = len(plain) // 2
        for label, char in HOSTILE.items():
            # the plain value with one character replaced: the same length, so only the character
            # itself can be why it is refused
            if accepts(check, plain[:middle] + char + plain[middle + 1 :]):
                accepted.append(f"{where} accepts {label}")
    assert checked > 0
    assert unprobed == []
    assert accepted == []


#: moments that are inside the calendar as given, and outside it once in UTC
EDGES = {"year 1 east of UTC": "0001-01-01T00:00:00+14:00", "year 9999 west of UTC": "9999-12-31T23:59:59-14:00"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_moment_input_refuses_one_the_database_cannot_store(service: str) -> None:
    accepted: list[str] = []
    for where, check in inputs_of(service, datetime):
        assert accepts(check, "2026-01-01T08:00:00+08:00"), where  # an ordinary moment passes
        for label, value in EDGES.items():
            if accepts(check, value):
                accepted.append(f"{where} accepts {label}")
    assert accepted == []


def test_the_walk_finds_the_moments_the_services_take() -> None:
    found = {where for service in SERVICES for where, _ in inputs_of(service, datetime)}
    assert {"GuardianIn.consented_at", "BulkReplayRequest.created_from"} <= found


def patterns_of(annotation: Any, field: FieldInfo) -> list[str]:
    """Every pattern a field's value must match, from its type and from ``Field(...)``."""
    found = [m.pattern for m in field.metadata if getattr(m, "pattern", None)]
    stack = [annotation]
    while stack:
        current = stack.pop()
        if typing.get_origin(current) is typing.Annotated:
            found += [m.pattern for m in typing.get_args(current)[1:] if getattr(m, "pattern", None)]
        stack += typing.get_args(current)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_no_text_field_carries_two_patterns(service: str) -> None:
    """pydantic keeps only one of them: ``Line`` with ``Field(pattern=...)`` once dropped identity's
    username pattern, and sign-up took "zhang san!" (a specific pattern already refuses control
    characters, so such a field is a plain ``str``)."""
    routes = list(api_routes(importlib.import_module(f"{service}.main").create_app().router.routes))
    fields = list(body_fields(routes))
    doubled = [where for where, field in fields if len(set(patterns_of(field.annotation, field))) > 1]
    assert fields
    assert doubled == []
