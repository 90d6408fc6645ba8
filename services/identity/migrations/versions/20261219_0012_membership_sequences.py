"""the teams event that last set each membership flag

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-19 10:00:00

Team memberships, admins and project leads come from teams' events, in order; one delivered late
(an operator replaying a dead letter after the flag changed again) undid the newer change: a
removed admin's appointment let them reset members' passwords again. Each flag now remembers the
outbox sequence of the event that last set it. Nullable columns without a default: a change of
the catalogue only; flags set before take the next event as newer.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("member_sequence", "admin_sequence", "project_lead_sequence")


def upgrade() -> None:
    for column in _COLUMNS:
        op.add_column("team_memberships", sa.Column(column, sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for column in _COLUMNS:
        op.drop_column("team_memberships", column)
