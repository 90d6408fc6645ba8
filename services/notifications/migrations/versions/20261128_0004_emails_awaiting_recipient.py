"""emails waiting for their recipient, longest first: given up on after the longest wait, gauged

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_emails_awaiting",
        "emails",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'awaiting_recipient'"),
    )


def downgrade() -> None:
    op.drop_index("ix_emails_awaiting", table_name="emails", postgresql_where=sa.text("status = 'awaiting_recipient'"))
