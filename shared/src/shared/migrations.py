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
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


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

    A build still running shows as invalid too. The migration then stops, saying so, rather than
    drop it or queue behind it: when an index build runs in this database that is this index's, or
    whose index this role may not see (another role's, without ``pg_read_all_stats``). The drop
    itself waits at most 5 s for its lock, so it never holds up the table's queries behind a build
    it could not see. Call it before the ``create_index`` calls."""
    for name in names:
        if not _INDEX_NAME.fullmatch(name):
            raise ValueError(f"not an index name: {name!r}")
        # a DO block takes no parameters; the name was checked to be a plain identifier above
        index = f"to_regclass('{name}')"
        invalid = f"SELECT 1 FROM pg_index WHERE indexrelid = {index} AND NOT indisvalid"  # noqa: S608
        building = (
            "SELECT 1 FROM pg_stat_progress_create_index"  # noqa: S608
            " WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            f" AND (index_relid IS NULL OR index_relid = {index})"
        )
        statement = (
            "DO $$ DECLARE waited text := current_setting('lock_timeout'); BEGIN"
            f" IF EXISTS ({invalid}) THEN"
            f" IF EXISTS ({building}) THEN RAISE EXCEPTION"
            f" 'index {name} is not valid while an index is being built concurrently: migrate once it has ended';"
            " END IF;"
            " PERFORM set_config('lock_timeout', '5s', true);"
            f" DROP INDEX {name};"
            " PERFORM set_config('lock_timeout', waited, true);"
            " END IF; END $$"
        )
        op.execute(statement)
