"""an account's pending emails, found by its id: re-addressed when its contact changes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_emails_pending_account",
        "emails",
        ["recipient_account_id"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_emails_pending_account", table_name="emails", postgresql_where=sa.text("status = 'pending'"))
