"""Alembic helpers: every service's ``migrations/env.py`` is two lines calling :func:`run_env`.

Migrations run at start-up under an advisory lock (so replicas starting together take turns)
or through the service's ``migrate`` command in a deployment's pre-start step.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from pathlib import Path
from typing import Any

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def alembic_config(service_root: Path, database_url: str) -> Config:
    cfg = Config(str(service_root / "alembic.ini"))
    cfg.set_main_option("script_location", str(service_root / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


#: Alembic's ``context`` and ``op`` are process-wide proxies: two migrations interleaving on one
#: event loop (several services started together in one process, as standalone mode and the
#: test stacks do) would clobber each other's context. One at a time per loop.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _process_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _LOCKS.get(loop)
    if lock is None:
        lock = _LOCKS[loop] = asyncio.Lock()
    return lock


async def upgrade_head(engine: AsyncEngine, service_root: Path) -> None:
    cfg = alembic_config(service_root, engine.url.render_as_string(hide_password=False))

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")

    async with _process_lock(), engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('alembic_migrations'))"))
        await conn.run_sync(run)


async def migrate_to(conn: AsyncConnection, service_root: Path, revision: str, *, down: bool = False) -> None:
    """The database on ``conn`` upgraded (or downgraded) to ``revision``: a migration test writes
    rows as the service of that time did, then upgrades to head."""
    cfg = alembic_config(service_root, conn.engine.url.render_as_string(hide_password=False))

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(cfg, revision)

    await conn.run_sync(run)


def run_env(target_metadata: MetaData) -> None:
    """Body of a service's ``env.py``: offline SQL, a given connection, or a URL of its own."""
    config = context.config
    # "-x url=..." on the alembic command line beats alembic.ini (the service's migrate
    # command passes its settings' URL through the config instead).
    url_override = context.get_x_argument(as_dictionary=True).get("url")
    if url_override:
        config.set_main_option("sqlalchemy.url", url_override.replace("%", "%%"))

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    connection: Any = config.attributes.get("connection")
    if connection is not None:
        do_run(connection)
        return

    async def online() -> None:
        engine = create_async_engine(str(config.get_main_option("sqlalchemy.url")), poolclass=pool.NullPool)
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('alembic_migrations'))"))
            await conn.run_sync(do_run)
        await engine.dispose()

    asyncio.run(online())


_INDEX_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def drop_invalid_indexes(*names: str) -> None:
    """For a migration that creates indexes ``if_not_exists``, so that an operator may build them
    beforehand without blocking writes (``CREATE INDEX CONCURRENTLY`` under the same names): a
    concurrent build that failed or was cancelled leaves its index INVALID (never used, still
    kept up to date on every write), which ``if_not_exists`` would take as built. Dropping such an
    index first makes the migration build it; a valid one is kept.

    A build still running shows as invalid too, and a drop queued behind any concurrent build on
    the table deadlocks with it (the build then loses its index). So when one of the names is
    invalid while any index is being built in this database, the migration stops, saying so,
    before dropping anything. Without a ``lock_timeout`` of its own, each drop waits at most 5 s
    for its lock. Call it before the ``create_index`` calls."""
    for name in names:
        if not _INDEX_NAME.fullmatch(name):
            raise ValueError(f"not an index name: {name!r}")
    # a DO block takes no parameters; each name was checked to be a plain identifier above
    indexes = ", ".join(f"to_regclass('{name}')" for name in names)
    invalid = f"SELECT 1 FROM pg_index WHERE indexrelid IN ({indexes}) AND NOT indisvalid"  # noqa: S608
    building = (
        "SELECT 1 FROM pg_stat_progress_create_index"
        " WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    drops = "".join(
        f" IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('{name}') AND NOT indisvalid)"  # noqa: S608
        f" THEN DROP INDEX {name}; END IF;"
        for name in names
    )
    listed = ", ".join(names)
    op.execute(
        "DO $$ DECLARE waited text := current_setting('lock_timeout'); BEGIN"
        f" IF EXISTS ({invalid}) THEN"
        f" IF EXISTS ({building}) THEN RAISE EXCEPTION"
        f" 'one of {listed} is not valid while an index is being built concurrently: migrate once it has ended';"
        " END IF;"
        " IF waited = '0' THEN PERFORM set_config('lock_timeout', '5s', true); END IF;"
        f"{drops}"
        " PERFORM set_config('lock_timeout', waited, true);"
        " END IF; END $$"
    )
