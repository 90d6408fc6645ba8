"""The one place the teams service is wired."""

from __future__ import annotations

from pathlib import Path

from shared.auth import TokenVerifier
from shared.clock import Clock
from shared.messaging.broker import Broker
from shared.runtime import Runtime
from teams.config import TeamsSettings
from teams.consumers import handlers
from teams.models import messaging

SERVICE_ROOT = Path(__file__).resolve().parents[2]


class TeamsRuntime(Runtime):
    settings: TeamsSettings


def build_runtime(
    settings: TeamsSettings,
    *,
    broker: Broker | None = None,
    clock: Clock | None = None,
    verifier: TokenVerifier | None = None,
) -> TeamsRuntime:
    return TeamsRuntime(settings, messaging, handlers=handlers, broker=broker, clock=clock, verifier=verifier)
