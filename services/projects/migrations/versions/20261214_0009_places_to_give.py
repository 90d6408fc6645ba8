"""places freed for those waiting, until their admission has run

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-14 09:00:00

A leave, a raised quota or a merge frees places of an automatic position and gives them to those
waiting once committed, in a transaction of its own. Were that admission to fail, or its process to
stop in between, the place stayed free beside the line until the next application; this table
records the freeing in the freeing transaction, the admission clears it, and the admission sweep
takes up what is left.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "places_to_give",
        sa.Column("position_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("mark", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position_id"),
    )


def downgrade() -> None:
    op.drop_table("places_to_give")
