"""The projects service's FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from projects.api.routes import router
from projects.bootstrap import SERVICE_ROOT, ProjectsRuntime, build_runtime
from projects.config import ProjectsSettings
from shared.service import build_app


def create_app(settings: ProjectsSettings | None = None, runtime: ProjectsRuntime | None = None) -> FastAPI:
    settings = settings or ProjectsSettings()
    runtime = runtime or build_runtime(settings)
    return build_app(
        runtime,
        title="Projects service",
        description="Projects, positions, applications and admission, service hours, closing and extension.",
        routers=[router],
        service_root=SERVICE_ROOT,
    )
