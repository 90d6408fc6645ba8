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
    """The client's address for throttling; the proxy's header only where settings trust it.

    Each proxy appends the address it took the request from to X-Forwarded-For: whatever stands
    left of what our proxies appended, the client wrote (and a fresh address each time would be
    a fresh throttle). So the entry ``forwarded_hops`` from the right, all the header's lines
    taken as one list."""
    runtime: IdentityRuntime = request.app.state.runtime
    settings = runtime.settings
    if settings.trust_forwarded_for:
        entries = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
        if len(entries) >= settings.forwarded_hops:
            address = entries[-settings.forwarded_hops].strip()[:64]
            if address:
                return address
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]
