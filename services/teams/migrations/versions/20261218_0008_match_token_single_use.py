"""a match token brings its volunteer into one team, once

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-18 10:00:00

The token identity's volunteer lookup answers (FAQ V1) could be used for 10 minutes by its admin
to bring the volunteer into each team they administer. Its ``jti``, kept on the invitation it made,
is now unique: a token is used once, and a second use is refused (``volunteer_match_used``).

Uses of one token beyond its first, possible before this revision, keep its id with ``#2``,
``#3`` ... appended in the order they were made, so each still leads to identity's audit row of the
lookup (its ``match_jti`` is the part before ``#``); a downgrade leaves the suffixes. The index is
partial (only invitations a token made) and small, built here after those renames: built beforehand,
on duplicates, it would fail and be left invalid.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE invitations i SET match_jti = i.match_jti || '#' || d.n
        FROM (
            SELECT id, row_number() OVER (PARTITION BY match_jti ORDER BY created_at, id) AS n
            FROM invitations WHERE match_jti IS NOT NULL
        ) d
        WHERE i.id = d.id AND d.n > 1
        """
    )
    op.create_index(
        "uq_invitations_match_jti",
        "invitations",
        ["match_jti"],
        unique=True,
        postgresql_where=sa.text("match_jti IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_invitations_match_jti", table_name="invitations")
