"""bulk import: a re-indexed record's fingerprint under the current blind-index key

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-16 09:00:00

An imported record's id is derived from its row under the blind-index key of the day, so loading
the same file again adds nothing. ``python -m identity reindex`` moves a record's index to a new key
but cannot change its id (accounts, duplicate cases and other services refer to it): it now writes
the row's fingerprint under the new key to ``import_key``, where the importer looks too. The column
is empty until a rotation, as is its partial unique index, so adding both is instant on any table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("volunteer_records", sa.Column("import_key", postgresql.UUID(as_uuid=True), nullable=True))
    op.create_index(
        "ux_volunteer_records_import_key",
        "volunteer_records",
        ["import_key"],
        unique=True,
        postgresql_where=sa.text("import_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ux_volunteer_records_import_key", table_name="volunteer_records")
    op.drop_column("volunteer_records", "import_key")
