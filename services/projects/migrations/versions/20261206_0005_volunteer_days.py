"""a volunteer's minutes per day, kept with the records

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 23:15:00

Recordings of one volunteer's day took turns on an advisory lock per volunteer and day: a sheet of
1,000 rows took 1,000 entries of PostgreSQL's shared lock table (6,400 by default), and a dozen such
sheets at once filled it ("out of shared memory" for every transaction). They now take turns on
the day's row here (a row lock), whose minutes the daily cap is checked against. Filled from the
records already kept.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "volunteer_days",
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "service_date", name=op.f("pk_volunteer_days")),
    )
    op.execute(
        """
        INSERT INTO volunteer_days (account_id, service_date, minutes)
        SELECT account_id, service_date, sum(minutes) FROM hours_records GROUP BY account_id, service_date
        """
    )


def downgrade() -> None:
    op.drop_table("volunteer_days")
