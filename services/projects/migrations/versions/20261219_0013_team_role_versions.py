"""the teams event each team role was last set by

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-19 10:00:00

A team role is granted and revoked by teams' events, which arrive in order; one delivered late (an
operator replaying a dead letter after the role changed again) undid the newer change: a removed
admin's appointment made them an admin again. Each role now remembers the outbox sequence of the
event that last set it, and an older event changes nothing. A new empty table: roles set before
take the next event as newer.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "team_role_versions",
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "account_id", "role", name=op.f("pk_team_role_versions")),
    )


def downgrade() -> None:
    op.drop_table("team_role_versions")
