"""platform roles as last changed: a withdrawn national admin's token stops working at once

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 23:40:00

A read model of identity's ``account.roles_changed`` (queue ``projects.platform_roles``): the roles
and admin region of every account whose roles changed, and when. A token issued before the change is
bounded by them (``shared.platform_roles``), so a national admin whose role was withdrawn can no
longer extend a project late with the token they hold. Empty at first: accounts changed before have
no row and their tokens stand, as they did.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "platform_roles",
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("roles", postgresql.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_platform_roles")),
    )


def downgrade() -> None:
    op.drop_table("platform_roles")
