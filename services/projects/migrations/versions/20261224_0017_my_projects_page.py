"""我的项目 reads a page, not every project

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 03:00:00

``GET /me/projects`` asked for the projects the caller leads or whose team they administer in one
condition that no index serves: every request, by any volunteer, read every project and every team
role (220 000 rows for 100 000 projects). It now reads a page of each team the caller administers
and a page of those it leads: an index finds the caller's teams (team_roles' primary key starts
with the team), and a lead's projects are indexed newest first (replacing the index on the lead
alone, which it serves too).

``if_not_exists``: on a big database the index may be built beforehand with ``CREATE INDEX
CONCURRENTLY`` and the same definition.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import drop_invalid_indexes

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    drop_invalid_indexes("ix_team_roles_account", "ix_projects_lead")
    op.create_index(
        "ix_team_roles_account", "team_roles", ["account_id", "role", "team_id"], unique=False, if_not_exists=True
    )
    op.create_index(
        "ix_projects_lead",
        "projects",
        ["lead_account_id", sa.text("created_at DESC"), sa.text("id DESC")],
        unique=False,
        if_not_exists=True,
    )
    op.drop_index("ix_projects_lead_account_id", table_name="projects")


def downgrade() -> None:
    op.create_index("ix_projects_lead_account_id", "projects", ["lead_account_id"], unique=False)
    op.drop_index("ix_projects_lead", table_name="projects")
    op.drop_index("ix_team_roles_account", table_name="team_roles")
