"""bulk import: a queued job's heartbeat

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12 09:00:00

Uploads beyond ``IDENTITY_IMPORT_CONCURRENCY`` wait ``queued`` in the process that holds their
file, for as long as the imports ahead of them take; that process refreshes ``heartbeat_at``
once a minute, so the import watch fails only the queued jobs whose process is gone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("import_jobs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("import_jobs", "heartbeat_at")
