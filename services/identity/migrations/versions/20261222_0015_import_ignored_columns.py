"""import jobs list the columns they ignored

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-22 09:00:00

Issue 3: a header cell the importer did not recognise (a spelling no alias has) dropped its whole
column without a word, so an operator never learnt that, say, every row's legacy hours were lost.
The job now keeps the unrecognised header cells, as the file wrote them, and reports them with its
counts (a warning: the rest of the file is imported).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "import_jobs",
        sa.Column(
            "ignored_columns",
            postgresql.ARRAY(sa.String(length=100)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("import_jobs", "ignored_columns")
