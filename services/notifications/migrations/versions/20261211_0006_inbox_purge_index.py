"""inbox marks found by age, for the purge

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 00:30:00

The inbox kept a row per consumed message and handler forever; the relay's hourly purge now
removes those older than the outbox retention (7 days), found by this index.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_inbox_processed_at", table_name="inbox")
