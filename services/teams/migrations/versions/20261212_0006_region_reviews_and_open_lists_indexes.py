"""a regional admin's reviews read their region's queue, not the country's; open invitations a page

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-12 10:00:00

A regional admin's review page walked the whole country's pending queue in order until it found a
page of their region's (20,000 rows read, 500 ms, for a city with 61 waiting). It now reads:

- teams: the social organisations registered in the region (by authority region, pending only);
  the region's teams, the liaisons whose sub-teams a regional admin may decide (by region code).
- memberships: a team's admins, for whether a liaison has an admin besides the applicant, not a
  walk of all its members.
- invitations: a team's open ones in their order (the page of 51 read all 40,000 of the team's
  invitations, open and answered, and sorted the open half). A team's open applications already
  had theirs (``ix_join_requests_team_status``: 52 rows read for a page of 51).

``if_not_exists``: on a big database the indexes may be built beforehand, without blocking writes,
with ``CREATE INDEX CONCURRENTLY`` and the same definitions.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import drop_invalid_indexes

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING_AUTHORITY = sa.text("status = 'pending' AND registration_authority_region IS NOT NULL")


def upgrade() -> None:
    # one left INVALID by a failed concurrent build beforehand is built again, not taken as built
    drop_invalid_indexes(
        "ix_teams_pending_authority",
        "ix_teams_region_code",
        "ix_memberships_team_admins",
        "ix_invitations_pending_team_created",
    )
    op.create_index(
        "ix_teams_pending_authority",
        "teams",
        ["registration_authority_region", "submitted_at", "id"],
        unique=False,
        postgresql_where=PENDING_AUTHORITY,
        if_not_exists=True,
    )
    op.create_index("ix_teams_region_code", "teams", ["region_code"], unique=False, if_not_exists=True)
    op.create_index(
        "ix_memberships_team_admins",
        "memberships",
        ["team_id", "account_id"],
        unique=False,
        postgresql_where=sa.text("is_admin"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_invitations_pending_team_created",
        "invitations",
        ["team_id", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_invitations_pending_team_created", table_name="invitations")
    op.drop_index("ix_memberships_team_admins", table_name="memberships")
    op.drop_index("ix_teams_region_code", table_name="teams")
    op.drop_index("ix_teams_pending_authority", table_name="teams")
