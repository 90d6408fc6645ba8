"""``python -m identity serve|worker|migrate|create-admin|rekey|reindex``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from identity.bootstrap import SERVICE_ROOT, build_runtime
from identity.config import IdentitySettings
from identity.crypto import build_cipher
from identity.rekey import DEFAULT_BATCH_SIZE, describe_reseal, describe_usage, key_usage, reseal
from shared.db import make_engine
from shared.errors import AppError
from shared.logging import configure_logging
from shared.migrations import upgrade_head
from shared.service import main

#: where ``create-admin`` reads the password from when it is not typed in
PASSWORD_ENV = "IDENTITY_ADMIN_PASSWORD"  # noqa: S105 - the name of a variable, not a password


def run(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["create-admin"]:
        sys.exit(create_admin(args[1:]))
    if args[:1] == ["rekey"]:
        sys.exit(rekey(args[1:]))
    if args[:1] == ["reindex"]:
        sys.exit(reindex(args[1:]))
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


def _key_command(
    argv: Sequence[str], *, prog: str, description: str, epilog: str, status_help: str, batch: int, batch_help: str
) -> tuple[argparse.Namespace, IdentitySettings]:
    """What ``rekey`` and ``reindex`` share: ``--status`` and ``--batch N``, the settings, logging."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("--status", action="store_true", help=status_help)
    parser.add_argument("--batch", type=int, default=batch, metavar="N", help=batch_help)
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    settings = IdentitySettings()
    configure_logging("identity", settings.resolved_log_format, settings.log_level)
    return args, settings


def _engine(settings: IdentitySettings) -> AsyncEngine:
    return make_engine(settings.database_url, pool_size=1, max_overflow=0, pre_ping=settings.database_pre_ping)


def rekey(argv: Sequence[str]) -> int:
    """Re-seal personal data under the current data key (or, with ``--status``, count what each
    key seals), so that an old key can leave ``IDENTITY_DATA_KEYS``."""
    args, settings = _key_command(
        argv,
        prog="python -m identity rekey",
        description="Re-seal every ID number and ID-card image that is not under the current data key "
        "(IDENTITY_DATA_KEY_ID) under it, so that an old key can be removed from IDENTITY_DATA_KEYS. "
        "Runs while the service serves: each batch of rows is locked with SKIP LOCKED and committed on "
        "its own, so it can be stopped and run again, and two runs at once share the work. A value that "
        "does not open is left as it was and reported by row id. The blind index of ID numbers "
        "(IDENTITY_BLIND_INDEX_KEY) is not encrypted data and is not touched: `reindex` rotates it.",
        epilog="Exit status: 0 when no row is left under another key; 1 when a value could not be opened, "
        "or rows are left (busy, or written meanwhile by a replica still sealing with the old key: run it "
        "again); 2 when the settings are refused.",
        status_help="change nothing; print, per table, how many rows each key id seals",
        batch=DEFAULT_BATCH_SIZE,
        batch_help=f"rows per transaction (default {DEFAULT_BATCH_SIZE}; ID-card images at most 20)",
    )
    try:
        cipher = build_cipher(settings)
    except ValueError as exc:  # names a key id at most, never a key
        print(f"refused: IDENTITY_DATA_KEYS / IDENTITY_DATA_KEY_ID: {exc}", file=sys.stderr)
        return 2
    if not args.status and settings.data_keys is not None and settings.data_key_id is None and len(cipher.key_ids) > 1:
        print(
            "refused: IDENTITY_DATA_KEYS lists several keys and IDENTITY_DATA_KEY_ID is not set; "
            "set it to the key to re-seal under (the one every replica writes with)",
            file=sys.stderr,
        )
        return 2

    async def go() -> int:
        engine = _engine(settings)
        try:
            if args.status:
                print("\n".join(describe_usage(await key_usage(engine), cipher)))
                return 0
            results = await reseal(engine, cipher, batch_size=args.batch)
        finally:
            await engine.dispose()
        print("\n".join(describe_reseal(results, cipher.current_key_id)))
        unreadable = sum(len(r.unreadable) for r in results)
        left = sum(r.remaining for r in results) - unreadable
        if unreadable:
            print(
                f"rekey: {unreadable} values could not be opened and were left as they were (rows above)",
                file=sys.stderr,
            )
        if left > 0:
            print(
                f"rekey: {left} more rows are under another key: busy during the run, or written since by a "
                "replica still sealing with an old key (restart it with the new IDENTITY_DATA_KEY_ID); run rekey again",
                file=sys.stderr,
            )
        return 1 if unreadable or left > 0 else 0

    return asyncio.run(go())


def reindex(argv: Sequence[str]) -> int:
    """Index every ID number under the current blind-index key (or, with ``--status``, count
    what each key indexed), so that IDENTITY_BLIND_INDEX_PREVIOUS_KEY can be removed."""
    from identity import reindex as blind

    args, settings = _key_command(
        argv,
        prog="python -m identity reindex",
        description="Compute again, under the current IDENTITY_BLIND_INDEX_KEY, the blind index of every ID "
        "number indexed under another key (volunteer records, their accounts, their duplicate cases): each "
        "number is opened with IDENTITY_DATA_KEYS. Runs while the service serves with both keys "
        "(IDENTITY_BLIND_INDEX_PREVIOUS_KEY set to the old one): each batch of records is locked with SKIP "
        "LOCKED and committed on its own, so it can be stopped and run again. A number that does not open "
        "is left as it was and reported by record id.",
        epilog="Exit status: 0 when no stored index is left under another key; 1 when a number could not be "
        "opened or re-indexed, or rows are left (busy: run it again); 2 when the settings are refused.",
        status_help="change nothing; print, per table, how many stored indexes each blind-index key id made",
        batch=blind.DEFAULT_BATCH_SIZE,
        batch_help=f"records per transaction (default {blind.DEFAULT_BATCH_SIZE})",
    )
    try:
        cipher = build_cipher(settings)
    except ValueError as exc:  # names a key id at most, never a key
        print(f"refused: IDENTITY_DATA_KEYS / IDENTITY_BLIND_INDEX_KEY: {exc}", file=sys.stderr)
        return 2

    async def go() -> int:
        engine = _engine(settings)
        try:
            if args.status:
                print("\n".join(blind.describe_usage(await blind.key_usage(engine), cipher)))
                return 0
            result = await blind.reindex(engine, cipher, batch_size=args.batch)
        finally:
            await engine.dispose()
        print("\n".join(blind.describe_reindex(result, cipher)))
        unindexed = len(result.unindexed)
        left = sum(result.remaining.values())
        if unindexed:
            print(f"reindex: {unindexed} records were left as they were (listed above)", file=sys.stderr)
        if left > unindexed:
            print(
                "reindex: more stored indexes are under another key: busy during the run, or written since by "
                "a replica still indexing with the old key (restart it with the new IDENTITY_BLIND_INDEX_KEY); "
                "run reindex again",
                file=sys.stderr,
            )
        return 1 if unindexed or left else 0

    return asyncio.run(go())


if __name__ == "__main__":
    run()
