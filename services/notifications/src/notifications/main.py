"""The notifications service's FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from notifications.api.routes import router
from notifications.bootstrap import SERVICE_ROOT, NotificationsRuntime, build_runtime
from notifications.config import NotificationsSettings
from shared.service import build_app


def create_app(settings: NotificationsSettings | None = None, runtime: NotificationsRuntime | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    runtime = runtime or build_runtime(settings)
    return build_app(
        runtime,
        title="Notifications service",
        description="Every email the system sends, exactly once, with retries and an operator view.",
        routers=[router],
        service_root=SERVICE_ROOT,
    )
