"""a verified volunteer's masked name as long as identity's real names

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-19 09:00:00

Identity takes real names of up to 100 characters (passport names run long) and masks them
keeping their length (the first character, then one star for each other); the read model's
column held 60, so the volunteer.verified of a longer name failed every try and was
dead-lettered, and that volunteer was never known here. Widening a varchar is a change of the
catalogue only: no rewrite, no long lock. Downgrading cuts longer masks to 60.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("volunteers", "masked_name", type_=sa.String(100), existing_type=sa.String(60))


def downgrade() -> None:
    op.alter_column(
        "volunteers",
        "masked_name",
        type_=sa.String(60),
        existing_type=sa.String(100),
        postgresql_using="left(masked_name, 60)",
    )
