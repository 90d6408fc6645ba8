"""``python -m notifications serve|worker|migrate``."""

from __future__ import annotations

from collections.abc import Sequence

from notifications.bootstrap import SERVICE_ROOT, build_runtime
from notifications.config import NotificationsSettings
from shared.service import main


def run(argv: Sequence[str] | None = None) -> None:
    main(
        service="notifications",
        settings_factory=NotificationsSettings,
        app_factory="notifications.main:create_app",
        runtime_factory=build_runtime,  # type: ignore[arg-type]
        service_root=SERVICE_ROOT,
        default_port=8004,
        argv=argv,
    )


if __name__ == "__main__":
    run()
