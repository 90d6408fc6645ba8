"""``python -m identity serve|worker|migrate``."""

from __future__ import annotations

from collections.abc import Sequence

from identity.bootstrap import SERVICE_ROOT, build_runtime
from identity.config import IdentitySettings
from shared.service import main


def run(argv: Sequence[str] | None = None) -> None:
    main(
        service="identity",
        settings_factory=IdentitySettings,
        app_factory="identity.main:create_app",
        runtime_factory=build_runtime,  # type: ignore[arg-type]
        service_root=SERVICE_ROOT,
        default_port=8001,
        argv=argv,
    )


if __name__ == "__main__":
    run()
