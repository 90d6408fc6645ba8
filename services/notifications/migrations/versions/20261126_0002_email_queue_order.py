"""emails leave in queue order: a sequence number, and the due index ordered by it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # existing rows are numbered by PostgreSQL as the column is added
    op.add_column("emails", sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False))
    op.drop_index("ix_emails_due", table_name="emails", postgresql_where=sa.text("status = 'pending'"))
    op.create_index(
        "ix_emails_due", "emails", ["next_attempt_at", "seq"], postgresql_where=sa.text("status = 'pending'")
    )


def downgrade() -> None:
    op.drop_index("ix_emails_due", table_name="emails", postgresql_where=sa.text("status = 'pending'"))
    op.create_index("ix_emails_due", "emails", ["next_attempt_at"], postgresql_where=sa.text("status = 'pending'"))
    op.drop_column("emails", "seq")
