"""positions keep the order the team gave them

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08 03:20:00

A project's positions were listed by name: 组员, 组长, 安全员 given in that order came back as 安全员,
组员, 组长, in every view and in copies. ``seq`` numbers them as they are created (an identity,
which replicas of the release before fill too); existing positions take the table's order, which is
the order they were written in for all but rows moved by updates (their project's own order may
differ there: it was lost already).

Adding an identity column writes the table anew under its lock: positions are few beside
applications and hours (a few seconds for millions), but run it at a quiet hour.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("positions", sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False))


def downgrade() -> None:
    op.drop_column("positions", "seq")
