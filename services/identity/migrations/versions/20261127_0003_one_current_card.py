"""one current volunteer card per account

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 09:00:00

Two simultaneous first card requests could each issue a card, and a renewal revoked only the
newest: a replaced card's QR code still verified as current. Cards left current besides the
newest of their account are revoked first, then a partial unique index keeps it so.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE volunteer_cards AS c SET revoked_at = now()
         WHERE c.revoked_at IS NULL
           AND EXISTS (
               SELECT 1 FROM volunteer_cards AS n
                WHERE n.account_id = c.account_id AND n.revoked_at IS NULL
                  AND (n.issued_at, n.id) > (c.issued_at, c.id))
        """
    )
    op.create_index(
        "ux_volunteer_cards_current",
        "volunteer_cards",
        ["account_id"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ux_volunteer_cards_current", table_name="volunteer_cards", postgresql_where=sa.text("revoked_at IS NULL")
    )
