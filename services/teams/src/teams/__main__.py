"""``python -m teams serve|worker|migrate``."""

from __future__ import annotations

from collections.abc import Sequence

from shared.service import main
from teams.bootstrap import SERVICE_ROOT, build_runtime
from teams.config import TeamsSettings


def run(argv: Sequence[str] | None = None) -> None:
    main(
        service="teams",
        settings_factory=TeamsSettings,
        app_factory="teams.main:create_app",
        runtime_factory=build_runtime,  # type: ignore[arg-type]
        service_root=SERVICE_ROOT,
        default_port=8002,
        argv=argv,
    )


if __name__ == "__main__":
    run()
