"""The identity service's FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from identity.api import (
    admin_routes,
    audit_routes,
    card_routes,
    import_routes,
    routes,
    team_routes,
    tokens,
    verification_routes,
)
from identity.bootstrap import SERVICE_ROOT, IdentityRuntime, build_runtime
from identity.config import IdentitySettings
from shared.service import build_app


def create_app(settings: IdentitySettings | None = None, runtime: IdentityRuntime | None = None) -> FastAPI:
    settings = settings or IdentitySettings()
    runtime = runtime or build_runtime(settings)
    return build_app(
        runtime,
        title="Identity service",
        description="Accounts, real-name volunteers, verification, volunteer numbers, tokens and JWKS.",
        routers=[
            routes.router,
            tokens.router,
            admin_routes.router,
            audit_routes.router,
            verification_routes.router,
            team_routes.router,
            card_routes.router,
            import_routes.router,
        ],
        service_root=SERVICE_ROOT,
        body_limits={**import_routes.BODY_LIMITS, **verification_routes.body_limits(settings)},
    )
