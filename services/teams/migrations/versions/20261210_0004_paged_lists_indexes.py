"""paged lists read a page by an index: reviews, the team directory, member lists

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 10:00:00

The review queue is paged by (submitted_at, id), for region admins over all pending teams (the
index of the overdue sweep, which only had submitted_at, gains id) and for a liaison team's admins
over its own pending sub-teams. The public directory of approved teams (by name, id) and a team's
member list (by joined_at, account_id) sorted the whole table or team for each page: 20,000 rows
read for a page of 51.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_teams_pending_submitted", table_name="teams", postgresql_where=PENDING)
    op.create_index("ix_teams_pending_submitted_id", "teams", ["submitted_at", "id"], postgresql_where=PENDING)
    op.create_index(
        "ix_teams_pending_liaison", "teams", ["liaison_team_id", "submitted_at", "id"], postgresql_where=PENDING
    )
    op.create_index(
        "ix_teams_approved_name", "teams", ["name", "id"], postgresql_where=sa.text("status = 'approved'")
    )
    op.create_index("ix_memberships_team_joined", "memberships", ["team_id", "joined_at", "account_id"])


def downgrade() -> None:
    op.drop_index("ix_memberships_team_joined", table_name="memberships")
    op.drop_index("ix_teams_approved_name", table_name="teams", postgresql_where=sa.text("status = 'approved'"))
    op.drop_index("ix_teams_pending_liaison", table_name="teams", postgresql_where=PENDING)
    op.drop_index("ix_teams_pending_submitted_id", table_name="teams", postgresql_where=PENDING)
    op.create_index("ix_teams_pending_submitted", "teams", ["submitted_at"], postgresql_where=PENDING)
