"""the public project list is in order of publication

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 02:00:00

The public list put projects in order of creation: a project drafted in March and published in
November sat behind everything drafted since, out of sight of the volunteers looking for new ones.
It now reads newest publication first. Listed projects (published, closed) are those that were
published, so ``published_at`` is now required of them (a check; rows without one, written by hand,
take their creation time). The listed indexes are rebuilt on the publication time, and a team's
listed projects get one of their own (its index by creation stays for 我的项目, drafts included).

``if_not_exists``: on a big database the new indexes may be built beforehand with
``CREATE INDEX CONCURRENTLY`` and the same definitions; this migration then only drops the old ones.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import drop_invalid_indexes

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LISTED = sa.text("status IN ('published', 'closed')")


def upgrade() -> None:
    op.execute("UPDATE projects SET published_at = created_at WHERE status <> 'draft' AND published_at IS NULL")
    op.create_check_constraint("published_when_listed", "projects", "status = 'draft' OR published_at IS NOT NULL")
    drop_invalid_indexes("ix_projects_published", "ix_projects_published_region", "ix_projects_team_published")
    op.create_index(
        "ix_projects_published",
        "projects",
        [sa.text("published_at DESC"), sa.text("id DESC")],
        unique=False,
        postgresql_where=LISTED,
        if_not_exists=True,
    )
    op.create_index(
        "ix_projects_published_region",
        "projects",
        ["region_code", sa.text("published_at DESC"), sa.text("id DESC")],
        unique=False,
        postgresql_ops={"region_code": "varchar_pattern_ops"},
        postgresql_where=LISTED,
        if_not_exists=True,
    )
    op.create_index(
        "ix_projects_team_published",
        "projects",
        ["team_id", sa.text("published_at DESC"), sa.text("id DESC")],
        unique=False,
        postgresql_where=LISTED,
        if_not_exists=True,
    )
    op.drop_index("ix_projects_listed", table_name="projects")
    op.drop_index("ix_projects_listed_region", table_name="projects")


def downgrade() -> None:
    op.create_index(
        "ix_projects_listed_region",
        "projects",
        ["region_code", sa.text("created_at DESC"), sa.text("id DESC")],
        unique=False,
        postgresql_ops={"region_code": "varchar_pattern_ops"},
        postgresql_where=LISTED,
    )
    op.create_index(
        "ix_projects_listed", "projects", [sa.text("created_at DESC"), sa.text("id DESC")], postgresql_where=LISTED
    )
    op.drop_index("ix_projects_team_published", table_name="projects")
    op.drop_index("ix_projects_published_region", table_name="projects")
    op.drop_index("ix_projects_published", table_name="projects")
    op.drop_constraint("published_when_listed", "projects", type_="check")
