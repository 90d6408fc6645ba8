"""records merged into another, so a verification arriving after the merge is not taken

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-19 10:00:00

A merge (volunteer.merged, in the kept account's lane) removes the merged record from the
volunteers read model; the merged record's own volunteer.verified comes in its account's lane and,
delivered after the merge, made it a volunteer again, one who could join teams. Merges from now on
are remembered here. A new empty table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "merged_volunteers",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("merged_into", sa.UUID(), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_merged_volunteers")),
    )


def downgrade() -> None:
    op.drop_table("merged_volunteers")
