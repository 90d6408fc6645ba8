"""platform roles as last changed: a withdrawn national admin loses the operator API at once

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 23:40:00

A read model of identity's ``account.roles_changed`` (queue ``notifications.platform_roles``): the
roles and admin region of every account whose roles changed, and when. A token issued before the
change is bounded by them (``shared.platform_roles``), so an operator whose national admin role was
withdrawn can no longer read or replay emails with the token they hold. Empty at first: accounts
changed before have no row and their tokens stand, as they did.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
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
