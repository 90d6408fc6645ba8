"""region admins keep every role and when it changed: withdrawn roles stop working at once

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09 10:00:00

The read model of ``account.roles_changed`` bounds the tokens issued before a change (a withdrawn
admin's token stops working at once instead of when it expires), so it keeps the account's roles
and the event's time, and keeps an account whose admin roles were withdrawn (without region or
``is_national``) instead of deleting it. Rows kept before have no time: they bound no token, and the
next change of the account fills it. Their roles are filled from what they say.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "region_admins",
        sa.Column(
            "roles", postgresql.ARRAY(sa.String(length=32)), server_default=sa.text("'{}'"), nullable=False
        ),
    )
    op.add_column("region_admins", sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        """
        UPDATE region_admins SET roles = array_remove(ARRAY[
            CASE WHEN is_national THEN 'national_admin' END,
            CASE WHEN region_code IS NOT NULL THEN 'regional_admin' END
        ]::varchar(32)[], NULL)
        """
    )


def downgrade() -> None:
    op.execute("DELETE FROM region_admins WHERE region_code IS NULL AND NOT is_national")
    op.drop_column("region_admins", "changed_at")
    op.drop_column("region_admins", "roles")
