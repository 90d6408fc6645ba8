"""Identity's platform roles as another service knows them, so a withdrawn role stops working at once.

Tokens carry their roles for their whole life (15 minutes). A service other than identity keeps a
read model of ``account.roles_changed``: one row per account whose roles changed, with the roles,
the admin region and when identity changed them. ``get_principal`` bounds a privileged caller's
token by that row when the change came after the token was issued (``shared.auth.KnownRoles``); an
account never changed has no row and its tokens stand. Plain volunteers are never looked up.

The table is the service's own (``define_platform_roles_table``, or a table of its own with the same
columns); the handler of ``account.roles_changed`` calls :func:`keep_platform_roles` in the inbox's
transaction, and the runtime's ``principal_roles`` is :func:`platform_roles_lookup`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, bindparam, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.auth import ROLE_REGIONAL_ADMIN, KnownRoles, RolesLookup
from shared.contracts.identity import AccountRolesChanged


def define_platform_roles_table(metadata: MetaData) -> Table:
    """``platform_roles``: the accounts whose roles identity changed, as last changed."""
    return Table(
        "platform_roles",
        metadata,
        Column("account_id", UUID(as_uuid=True), primary_key=True),
        Column("roles", ARRAY(String(32)), nullable=False),
        #: the regional admin's region; null without that role
        Column("region_code", String(12), nullable=True),
        #: the event's occurred_at: a token issued before it is bounded by this row
        Column("changed_at", DateTime(timezone=True), nullable=False),
    )


async def keep_platform_roles(
    session: AsyncSession, table: Table, event: AccountRolesChanged, occurred_at: datetime, **extra: Any
) -> None:
    """The account's row as the event says, unless the row already holds a later change (an older
    event arriving after a newer one changes nothing). ``extra``: the table's own columns (teams keeps
    more per admin)."""
    values: dict[str, Any] = {
        "account_id": event.account_id,
        "roles": sorted(set(event.roles)),
        "region_code": (event.region_code or None) if ROLE_REGIONAL_ADMIN in event.roles else None,
        "changed_at": occurred_at,
        **extra,
    }
    stmt = pg_insert(table).values(**values)
    changed_at = table.c.changed_at
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c.account_id],
            set_={name: stmt.excluded[name] for name in values if name != "account_id"},
            where=or_(changed_at.is_(None), changed_at <= stmt.excluded.changed_at),
        )
    )


def platform_roles_lookup(engine: AsyncEngine, table: Table) -> RolesLookup:
    """The ``principal_roles`` of a service keeping ``table``: one primary-key read per privileged
    request, on a pooled connection given back before the request's own work starts."""
    query = select(table.c.roles, table.c.region_code, table.c.changed_at).where(
        table.c.account_id == bindparam("account_id")
    )

    async def lookup(account_id: uuid.UUID) -> KnownRoles | None:
        async with engine.connect() as conn:
            row = (await conn.execute(query, {"account_id": account_id})).first()
        if row is None or row.changed_at is None:  # never changed (or not since this read model began)
            return None
        return KnownRoles(roles=frozenset(row.roles), region=row.region_code, changed_at=row.changed_at)

    return lookup
