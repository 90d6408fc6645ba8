"""emails in a final state found by age, deleted with their replay history

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-13 09:00:00

Every email was kept forever, with its recipient's address and name. The retention's hourly purge
(``notifications.retention``, ``NOTIFICATIONS_EMAIL_RETENTION_DAYS``) deletes the sent, failed and
suppressed ones past it, a batch per transaction:

- ``ix_emails_final_age``: those emails by their last change (``next_attempt_at``), so a batch reads
  the batch, not the table (pending and awaiting emails are not in it);
- ``email_replays.email_id`` now cascades: an email's replay history goes in the transaction that
  deletes the email (replays are rare; each deleted email costs one probe of its index).

``if_not_exists``: on a big database the index may be built beforehand, without blocking writes,
with ``CREATE INDEX CONCURRENTLY`` and the same definition. The foreign key is checked again over
email_replays only (one row per replay).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import drop_invalid_indexes

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_email_replays_email_id_emails"


def upgrade() -> None:
    # one left INVALID by a failed concurrent build beforehand is built again, not taken as built
    drop_invalid_indexes("ix_emails_final_age")
    op.create_index(
        "ix_emails_final_age",
        "emails",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('sent', 'failed', 'suppressed')"),
        if_not_exists=True,
    )
    op.drop_constraint(FK, "email_replays", type_="foreignkey")
    op.create_foreign_key(FK, "email_replays", "emails", ["email_id"], ["id"], ondelete="CASCADE")


def downgrade() -> None:
    op.drop_constraint(FK, "email_replays", type_="foreignkey")
    op.create_foreign_key(FK, "email_replays", "emails", ["email_id"], ["id"])
    op.drop_index("ix_emails_final_age", table_name="emails")
