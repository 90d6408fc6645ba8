"""Dependencies and small helpers of the teams routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.db import UnitOfWork
from teams.bootstrap import TeamsRuntime


def get_runtime(request: Request) -> TeamsRuntime:
    runtime: TeamsRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[TeamsRuntime, Depends(get_runtime)]


def get_uow(runtime: Runtime) -> UnitOfWork:
    return runtime.uow()


UoW = Annotated[UnitOfWork, Depends(get_uow)]
