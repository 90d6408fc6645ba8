"""an invitation accepted when made keeps the id of the match token that brought the member in

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-17 10:00:00

A team admin who found a volunteer by ID number and name in identity brings them in with the
lookup's match token (FAQ V1). The invitation row kept for it now holds the token's ``jti``, which
identity writes into the lookup's audit row, so an operator goes from the one to the other. A
nullable column: no table rewrite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("invitations", sa.Column("match_jti", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("invitations", "match_jti")
