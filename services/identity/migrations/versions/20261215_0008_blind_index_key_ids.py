"""blind-index key rotation: the key id beside every stored blind index

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-15 09:00:00

``python -m identity reindex`` moves ID numbers' blind indexes to a new HMAC key; it needs to
know which key made each stored index (to count and pick the rows still under another key).
Rows written before this column existed have none: they count as "not under the current key"
and a re-index stamps them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("volunteer_records", "accounts", "duplicate_cases")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("id_blind_key_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "id_blind_key_id")
