"""rate limits count by mailbox, and review reminders per team

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 23:40:00

The limits counted by recipient key (the account): five accounts sharing one mailbox let it
receive five times the limit, and a liaison reviewing a fourth team within the hour lost that
team's reminder. Emails of the last two days are backfilled (rate windows are an hour by
default; the backfill is what holds the table's lock, so it is kept short); older ones keep NULL
and are counted by no window.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("emails", sa.Column("rate_key", sa.String(length=340), nullable=True))
    op.execute(
        "UPDATE emails SET rate_key = COALESCE(NULLIF(lower(trim(to_address)), ''), recipient_key) "
        "WHERE created_at > now() - interval '2 days'"
    )
    op.create_index("ix_emails_rate_key", "emails", ["rate_key", "template", "created_at"], unique=False)
    op.drop_index("ix_emails_rate", table_name="emails")


def downgrade() -> None:
    op.create_index("ix_emails_rate", "emails", ["recipient_key", "template", "created_at"], unique=False)
    op.drop_index("ix_emails_rate_key", table_name="emails")
    op.drop_column("emails", "rate_key")
