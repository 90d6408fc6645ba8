"""The projects service's FastAPI app."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from projects.api.routes import router
from projects.bootstrap import SERVICE_ROOT, ProjectsRuntime, build_runtime
from projects.config import ProjectsSettings
from shared.service import build_app

_heap_frozen = False


async def freeze_startup_heap() -> None:
    """Once per process, after start-up: the objects alive now (modules, the app, its routes and
    models, the engine) are moved out of the collector's sight. They live as long as the process, yet
    every full collection walked them all: about 160,000 objects, 100 ms on the benchmark's machine,
    triggered every few bulk recordings by the objects a 500-row request allocates (``gc.freeze`` is
    the documented remedy). Later objects are collected as before."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


def create_app(settings: ProjectsSettings | None = None, runtime: ProjectsRuntime | None = None) -> FastAPI:
    settings = settings or ProjectsSettings()
    runtime = runtime or build_runtime(settings)
    return build_app(
        runtime,
        title="Projects service",
        description="Projects, positions, applications and admission, service hours, closing and extension.",
        routers=[router],
        service_root=SERVICE_ROOT,
        on_startup=freeze_startup_heap,
    )
