"""a project's contact email as long as an address may be

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-18 09:00:00

The API accepts any valid address (up to 254 characters, RFC 5321), as identity and teams store
them; the column held 200, so a longer one was a 500. Widening a varchar is a change of the
catalogue only: no rewrite, no long lock. Downgrading cuts longer addresses to 200.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("projects", "contact_email", type_=sa.String(254), existing_type=sa.String(200))


def downgrade() -> None:
    op.alter_column(
        "projects",
        "contact_email",
        type_=sa.String(200),
        existing_type=sa.String(254),
        postgresql_using="left(contact_email, 200)",
    )
