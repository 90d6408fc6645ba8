"""one account's emails paged by an index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 00:40:00

The operator list filtered by account read every email (300,000 rows for an account's two).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_emails_account_created", "emails", ["recipient_account_id", "created_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_emails_account_created", table_name="emails")
