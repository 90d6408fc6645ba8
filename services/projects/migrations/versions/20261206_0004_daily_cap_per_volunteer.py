"""hours indexed by volunteer and day

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 20:45:00

The daily cap counts a volunteer's minutes on a day over every position and project (it counted
per application, so a volunteer admitted to two positions could be credited twice the cap). The
index on the account alone becomes one on (account, day), which serves both; the index on the
application alone goes, (application, day) already serves it. One index fewer per recorded row.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_hours_records_account_day", "hours_records", ["account_id", "service_date"], unique=False)
    op.drop_index("ix_hours_records_account_id", table_name="hours_records")
    op.drop_index("ix_hours_records_application_id", table_name="hours_records")


def downgrade() -> None:
    op.create_index("ix_hours_records_application_id", "hours_records", ["application_id"], unique=False)
    op.create_index("ix_hours_records_account_id", "hours_records", ["account_id"], unique=False)
    op.drop_index("ix_hours_records_account_day", table_name="hours_records")
