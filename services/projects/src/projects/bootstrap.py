"""The one place the projects service is wired."""

from __future__ import annotations

from pathlib import Path

from projects.config import ProjectsSettings
from projects.consumers import handlers
from projects.models import messaging, platform_roles
from projects.turns import PositionTurns
from projects.unit_of_work import ProjectsUnitOfWork
from shared.aio import every
from shared.auth import TokenVerifier
from shared.clock import Clock
from shared.logging import get_logger
from shared.messaging.broker import Broker
from shared.platform_roles import platform_roles_lookup
from shared.runtime import Runtime
from shared.web import correlation_id_var

SERVICE_ROOT = Path(__file__).resolve().parents[2]
log = get_logger("projects.bootstrap")


class ProjectsRuntime(Runtime):
    settings: ProjectsSettings
    #: this replica's turns per position for applications (``projects.turns``)
    turns: PositionTurns

    def uow(self, correlation_id: str | None = None, causation_id: str | None = None) -> ProjectsUnitOfWork:
        return ProjectsUnitOfWork(
            self.session_factory,
            self.messaging,
            producer=self.service,
            clock=self.clock,
            correlation_id=correlation_id or correlation_id_var.get(),
            causation_id=causation_id,
        )

    async def close_sweep_loop(self) -> None:
        """自动结项: every replica may run it; the sweep skips rows another replica holds."""
        from projects.services import close_due_projects

        await every(
            self.settings.close_sweep_interval, lambda: close_due_projects(self), failed="close_sweep_failed", log=log
        )

    async def admission_sweep_loop(self) -> None:
        """Places freed for those waiting whose admission never ran (``services.give_places_left``)."""
        from projects.services import give_places_left

        await every(
            self.settings.admission_sweep_interval,
            lambda: give_places_left(self),
            failed="admission_sweep_failed",
            log=log,
        )

    async def idempotency_purge_loop(self) -> None:
        """Forget ``Idempotency-Key`` answers older than a day (every replica may: batches of rows)."""
        from projects import idempotency

        await every(
            3600.0,
            lambda: idempotency.purge(self.engine, self.clock.now()),
            failed="idempotency_purge_failed",
            log=log,
        )


def build_runtime(
    settings: ProjectsSettings,
    *,
    broker: Broker | None = None,
    clock: Clock | None = None,
    verifier: TokenVerifier | None = None,
) -> ProjectsRuntime:
    runtime = ProjectsRuntime(
        settings,
        messaging,
        handlers=handlers,
        broker=broker,
        clock=clock,
        verifier=verifier,
    )
    # a withdrawn platform role (a national admin's) stops working at once, not when the token expires
    runtime.principal_roles = platform_roles_lookup(runtime.engine, platform_roles)
    runtime.turns = PositionTurns(settings.apply_turns_per_position)
    if settings.run_close_sweep:
        runtime.background.append(runtime.close_sweep_loop)
    if settings.run_admission_sweep:
        runtime.background.append(runtime.admission_sweep_loop)
    runtime.background.append(runtime.idempotency_purge_loop)
    return runtime
