"""The one place the projects service is wired."""

from __future__ import annotations

from pathlib import Path

from projects.config import ProjectsSettings
from projects.consumers import handlers
from projects.models import messaging
from shared.auth import TokenVerifier
from shared.clock import Clock
from shared.messaging.broker import Broker
from shared.runtime import Runtime

SERVICE_ROOT = Path(__file__).resolve().parents[2]


class ProjectsRuntime(Runtime):
    settings: ProjectsSettings


def build_runtime(
    settings: ProjectsSettings,
    *,
    broker: Broker | None = None,
    clock: Clock | None = None,
    verifier: TokenVerifier | None = None,
) -> ProjectsRuntime:
    return ProjectsRuntime(settings, messaging, handlers=handlers, broker=broker, clock=clock, verifier=verifier)
