"""outbox payloads stored uncompressed

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 16:10:00

An ``hours.recorded`` event of a bulk sheet lists every record: about 100 kB of JSON for 500 rows,
which PostgreSQL compressed (pglz) on insert: 1.7 ms of the 11 ms statement, for a row the relay
reads once and deletes after its retention (7 days). Out-of-line storage stays; only the
compression goes (about 4x the disk for such payloads while they are kept). Small payloads are
stored inline as before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE outbox ALTER COLUMN payload SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox ALTER COLUMN payload SET STORAGE EXTENDED")
