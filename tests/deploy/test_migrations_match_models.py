"""Each service's migrations build exactly the schema its models describe: a column or an index
added to a model without a migration (or the other way round) would only show in a deployment."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.db import make_engine
from shared.migrations import upgrade_head

SERVICES = ["identity", "teams", "projects", "notifications"]


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_build_the_schema_the_models_describe(
    service: str, database_factory: Callable[[str], Awaitable[str]]
) -> None:
    models = importlib.import_module(f"{service}.models")
    bootstrap = importlib.import_module(f"{service}.bootstrap")
    engine = make_engine(await database_factory(f"schema_{service}"), pool_size=1, max_overflow=0)
    try:
        await upgrade_head(engine, bootstrap.SERVICE_ROOT)

        def differences(connection: Any) -> list[Any]:
            context = MigrationContext.configure(connection, opts={"compare_server_default": False})
            return [d for d in compare_metadata(context, models.metadata) if not _alembic_own(d)]

        async with engine.connect() as conn:
            diff = await conn.run_sync(differences)
    finally:
        await engine.dispose()
    assert diff == [], f"{service}: migrations and models differ"


def _alembic_own(difference: Any) -> bool:
    # alembic's own bookkeeping table is in the database but in no model
    return bool(
        isinstance(difference, tuple) and difference[0] == "remove_table" and difference[1].name == "alembic_version"
    )
