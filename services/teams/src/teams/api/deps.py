"""Dependencies and small helpers of the teams routes."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from shared.auth import Principal, TokenVerifier
from shared.db import UnitOfWork
from shared.errors import TOKEN_INVALID, AppError
from teams.bootstrap import TeamsRuntime
from teams.errors import CURSOR_INVALID


def get_runtime(request: Request) -> TeamsRuntime:
    runtime: TeamsRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[TeamsRuntime, Depends(get_runtime)]


def get_uow(runtime: Runtime) -> UnitOfWork:
    return runtime.uow()


UoW = Annotated[UnitOfWork, Depends(get_uow)]


async def maybe_principal(request: Request) -> Principal | None:
    """The caller when a token is given (a bad one is still 401), else None: for public reads
    that show more to some callers. Kept out of OpenAPI's security so the operation reads as public."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError(TOKEN_INVALID, {"reason": "not_bearer"})
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token.strip())


MaybePrincipal = Annotated[Principal | None, Depends(maybe_principal)]


def encode_cursor(*parts: object) -> str:
    raw = json.dumps([p.isoformat() if isinstance(p, datetime) else str(p) for p in parts])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        when, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(str(when))
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment, uuid.UUID(str(ident))
    except (ValueError, TypeError) as exc:
        raise AppError(CURSOR_INVALID) from exc


def decode_name_cursor(cursor: str) -> tuple[str, uuid.UUID]:
    try:
        name, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(name), uuid.UUID(str(ident))
    except (ValueError, TypeError) as exc:
        raise AppError(CURSOR_INVALID) from exc
