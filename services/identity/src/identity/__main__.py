"""``python -m identity serve|worker|migrate|create-admin``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence

from identity.bootstrap import SERVICE_ROOT, build_runtime
from identity.config import IdentitySettings
from shared.errors import AppError
from shared.migrations import upgrade_head
from shared.service import main

#: where ``create-admin`` reads the password from when it is not typed in
PASSWORD_ENV = "IDENTITY_ADMIN_PASSWORD"  # noqa: S105 - the name of a variable, not a password


def run(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["create-admin"]:
        sys.exit(create_admin(args[1:]))
    main(
        service="identity",
        settings_factory=IdentitySettings,
        app_factory="identity.main:create_app",
        runtime_factory=build_runtime,  # type: ignore[arg-type]
        service_root=SERVICE_ROOT,
        default_port=8001,
        argv=args,
    )


def create_admin(argv: Sequence[str]) -> int:
    """Bootstrap the first national admin: migrate, then create the account."""
    parser = argparse.ArgumentParser(prog="python -m identity create-admin")
    parser.add_argument("--username", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--display-name", default="全国系统管理员")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV) or getpass.getpass("password: ")

    async def go() -> int:
        from identity.admin import create_national_admin

        runtime = build_runtime(IdentitySettings())
        try:
            await upgrade_head(runtime.engine, SERVICE_ROOT)
            account_id = await create_national_admin(
                runtime, username=args.username, password=password, email=args.email, display_name=args.display_name
            )
        except AppError as exc:
            print(f"refused: {exc.code}: {exc.spec.en}", file=sys.stderr)
            return 1
        finally:
            await runtime.engine.dispose()
        print(account_id)
        return 0

    return asyncio.run(go())


if __name__ == "__main__":
    run()
