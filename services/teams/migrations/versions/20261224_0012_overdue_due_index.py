"""the overdue sweep reads the registrations still to escalate, not the whole queue

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 03:10:00

The T5 sweep (every replica, every 5 minutes) asks for pending registrations submitted over 7
days ago and not escalated yet. The queue's index holds every pending registration, so those
escalated and still undecided, which pile up, were read again by every pass: 50 000 of them made
each pass, idle ones too, read 50 151 rows. This index holds only those still to escalate.

``if_not_exists``: on a big database the index may be built beforehand with ``CREATE INDEX
CONCURRENTLY`` and the same definition.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import drop_invalid_indexes

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    drop_invalid_indexes("ix_teams_overdue_due")
    op.create_index(
        "ix_teams_overdue_due",
        "teams",
        ["submitted_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending' AND overdue_raised_at IS NULL"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_teams_overdue_due", table_name="teams")
