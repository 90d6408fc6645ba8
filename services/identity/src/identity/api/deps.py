"""Dependencies of the identity routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from identity.bootstrap import IdentityRuntime
from shared.db import UnitOfWork


def get_runtime(request: Request) -> IdentityRuntime:
    runtime: IdentityRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[IdentityRuntime, Depends(get_runtime)]


def get_uow(runtime: Runtime) -> UnitOfWork:
    return runtime.uow()


UoW = Annotated[UnitOfWork, Depends(get_uow)]


def client_address(request: Request) -> str:
    """The client's address for throttling; the proxy's header only where settings trust it."""
    runtime: IdentityRuntime = request.app.state.runtime
    if runtime.settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]
