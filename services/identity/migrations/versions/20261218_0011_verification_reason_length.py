"""the reason of a verification outcome as long as a reviewer may write it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-18 09:00:00

A regional admin deciding an ID-card review may give a reason of up to 500 characters (kept whole
on the upload); the account's own copy held 200, so a longer reason was a 500 and the decision
could not be recorded. Widening a varchar is a change of the catalogue only: no rewrite, no long
lock. Downgrading cuts longer reasons to 200.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("accounts", "verification_reason", type_=sa.String(500), existing_type=sa.String(200))


def downgrade() -> None:
    op.alter_column(
        "accounts",
        "verification_reason",
        type_=sa.String(200),
        existing_type=sa.String(500),
        postgresql_using="left(verification_reason, 200)",
    )
