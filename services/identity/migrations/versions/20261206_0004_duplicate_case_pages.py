"""duplicate cases paged by an index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 23:55:00

The national admin's list of duplicate-ID cases (oldest first, by status or all) sorted the whole
table for each page: 200,000 rows read for a page of 50.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_duplicate_cases_status_opened", "duplicate_cases", ["status", "opened_at", "id"], unique=False)
    op.create_index("ix_duplicate_cases_opened", "duplicate_cases", ["opened_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_duplicate_cases_opened", table_name="duplicate_cases")
    op.drop_index("ix_duplicate_cases_status_opened", table_name="duplicate_cases")
