"""attendances flagged abandoned

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 20:30:00

A sign-in whose volunteer never signed out used to stay open for good (blocking every later
sign-in) and, once signed out days later, counted all the time since up to the daily cap. Such a
session now ends unrecorded after ``sign_session_max_minutes``, flagged here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attendances", sa.Column("abandoned", sa.Boolean(), server_default=sa.text("false"), nullable=False))


def downgrade() -> None:
    op.drop_column("attendances", "abandoned")
