"""indexes that let a page read a page

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 09:00:00

Paged lists read the whole table or the whole project before returning a page: the public project
list (20,000 projects: every row read and sorted for 51), a project's applicants and hours records
(20,000 of a project read for a page). Each index below is in the order of its list:

- projects: listed ones (published, closed) newest first; a team's, newest first (replaces the
  index on team_id alone, which it serves too); listed ones by region prefix (``LIKE '33%'``).
- applications: a project's in order of application (replaces the index on project_id alone); the
  pages of a project's volunteer totals go through it too.
- hours_records: a project's in recording order (replaces the index on project_id alone: every
  bulk recording pays for each index of hours_records, and their number stays four).

``if_not_exists``: on a big database the new indexes may be built beforehand, without blocking
writes, with ``CREATE INDEX CONCURRENTLY`` and the same definitions; this migration then only
drops the old ones.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import drop_invalid_indexes

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LISTED = sa.text("status IN ('published', 'closed')")


def upgrade() -> None:
    # one left INVALID by a failed concurrent build beforehand is built again, not taken as built
    drop_invalid_indexes(
        "ix_projects_listed",
        "ix_projects_team",
        "ix_projects_listed_region",
        "ix_applications_project_seq",
        "ix_hours_records_project_recorded",
    )
    op.create_index(
        "ix_projects_listed",
        "projects",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        unique=False,
        postgresql_where=LISTED,
        if_not_exists=True,
    )
    op.create_index(
        "ix_projects_team",
        "projects",
        ["team_id", sa.text("created_at DESC"), sa.text("id DESC")],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ix_projects_listed_region",
        "projects",
        ["region_code", sa.text("created_at DESC"), sa.text("id DESC")],
        unique=False,
        postgresql_ops={"region_code": "varchar_pattern_ops"},
        postgresql_where=LISTED,
        if_not_exists=True,
    )
    op.drop_index("ix_projects_team_id", table_name="projects")
    op.create_index(
        "ix_applications_project_seq", "applications", ["project_id", "seq"], unique=False, if_not_exists=True
    )
    op.drop_index("ix_applications_project_id", table_name="applications")
    op.create_index(
        "ix_hours_records_project_recorded",
        "hours_records",
        ["project_id", "recorded_at", "id"],
        unique=False,
        if_not_exists=True,
    )
    op.drop_index("ix_hours_records_project_id", table_name="hours_records")


def downgrade() -> None:
    op.create_index("ix_hours_records_project_id", "hours_records", ["project_id"], unique=False)
    op.drop_index("ix_hours_records_project_recorded", table_name="hours_records")
    op.create_index("ix_applications_project_id", "applications", ["project_id"], unique=False)
    op.drop_index("ix_applications_project_seq", table_name="applications")
    op.create_index("ix_projects_team_id", "projects", ["team_id"], unique=False)
    op.drop_index("ix_projects_listed_region", table_name="projects")
    op.drop_index("ix_projects_team", table_name="projects")
    op.drop_index("ix_projects_listed", table_name="projects")
