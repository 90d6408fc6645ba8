"""the ID-card review queue and the audit log read a page, not the table

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 03:40:00

A national admin's page of the ID-card review queue sorted every pending upload of the country (60 000
pending and 200 000 decided: 260 052 rows read), and a province's could not use the index on the
region (a ``LIKE`` on a parameter): 120 051. The queue now has an index in its order, and a region's
codes are read as a range of one on the region and the order. The audit log's page of one action read
the whole log for a rare one (1 000 002 rows for roles_changed): an index on the action and time.
(Both lists' cursors were ORs the indexes could only filter by; they are row comparisons now.)

``if_not_exists``: on a big database the indexes may be built beforehand with ``CREATE INDEX
CONCURRENTLY`` and the same definitions; this migration then only drops the old one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import drop_invalid_indexes

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    drop_invalid_indexes("ix_id_card_uploads_pending_order", "ix_id_card_uploads_pending_region", "ix_audit_log_action_at")
    op.create_index(
        "ix_id_card_uploads_pending_order",
        "id_card_uploads",
        ["uploaded_at", "id"],
        unique=False,
        postgresql_where=PENDING,
        if_not_exists=True,
    )
    op.create_index(
        "ix_id_card_uploads_pending_region",
        "id_card_uploads",
        ["region_code", "uploaded_at", "id"],
        unique=False,
        postgresql_where=PENDING,
        if_not_exists=True,
    )
    op.drop_index("ix_id_card_uploads_pending", table_name="id_card_uploads")
    op.create_index("ix_audit_log_action_at", "audit_log", ["action", "at", "id"], unique=False, if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_audit_log_action_at", table_name="audit_log")
    op.create_index(
        "ix_id_card_uploads_pending", "id_card_uploads", ["region_code", "uploaded_at"], postgresql_where=PENDING
    )
    op.drop_index("ix_id_card_uploads_pending_region", table_name="id_card_uploads")
    op.drop_index("ix_id_card_uploads_pending_order", table_name="id_card_uploads")
