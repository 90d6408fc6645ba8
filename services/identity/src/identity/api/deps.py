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
