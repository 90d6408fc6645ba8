"""ID-card images deleted once reviewed or withdrawn

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 23:30:00

V6: the image is shown only to those reviewing it. Decided and withdrawn uploads kept theirs for
ever, and any admin of the region (one appointed later too) could still open them. The image
becomes optional and those no longer waiting for review lose it now; the decision, its reviewer
and reason stay (and the audit). A downgrade cannot bring the images back: it leaves an empty
image on those rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("id_card_uploads", "image_ciphertext", existing_type=sa.LargeBinary(), nullable=True)
    op.execute("UPDATE id_card_uploads SET image_ciphertext = NULL WHERE status <> 'pending'")


def downgrade() -> None:
    op.execute("UPDATE id_card_uploads SET image_ciphertext = ''::bytea WHERE image_ciphertext IS NULL")
    op.alter_column("id_card_uploads", "image_ciphertext", existing_type=sa.LargeBinary(), nullable=False)
