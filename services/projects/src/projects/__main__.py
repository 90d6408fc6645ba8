"""``python -m projects serve|worker|migrate``."""

from __future__ import annotations

from collections.abc import Sequence

from projects.bootstrap import SERVICE_ROOT, build_runtime
from projects.config import ProjectsSettings
from shared.service import main


def run(argv: Sequence[str] | None = None) -> None:
    main(
        service="projects",
        settings_factory=ProjectsSettings,
        app_factory="projects.main:create_app",
        runtime_factory=build_runtime,  # type: ignore[arg-type]
        service_root=SERVICE_ROOT,
        default_port=8003,
        argv=argv,
    )


if __name__ == "__main__":
    run()
