"""team memberships read model: who leads projects of a team

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-17 09:00:00

A team admin may bring into their team anyone whose ID number and name they know (FAQ V1), then
set the account's password. An account that leads projects of another team would be taken over
with those projects' hours, so such accounts are reset only by the national admin, as team admins
are. Identity learns who leads projects from teams' ``team.project_lead_appointed`` /
``team.project_lead_removed``. A column with a constant default: no table rewrite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "team_memberships", sa.Column("project_lead", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("team_memberships", "project_lead")
