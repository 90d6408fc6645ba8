"""The teams service's FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import build_app
from teams.api.routes import router
from teams.bootstrap import SERVICE_ROOT, TeamsRuntime, build_runtime
from teams.config import TeamsSettings


def create_app(settings: TeamsSettings | None = None, runtime: TeamsRuntime | None = None) -> FastAPI:
    settings = settings or TeamsSettings()
    runtime = runtime or build_runtime(settings)
    return build_app(
        runtime,
        title="Teams service",
        description="Teams, the liaison hierarchy, review with reminders and escalation, membership.",
        routers=[router],
        service_root=SERVICE_ROOT,
    )
