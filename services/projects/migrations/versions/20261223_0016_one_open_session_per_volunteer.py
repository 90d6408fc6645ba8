"""one open sign-in session per volunteer, over every project

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-23 10:00:00

A volunteer could sign in to two projects at once (one open session per application only), and
signing out of both counted the same hours twice. Sessions now carry their volunteer
(``account_id``, filled from their applications), and a partial unique index allows one open
session per volunteer: a sign-in elsewhere is ``signed_in_elsewhere``, and of two at once only one
commits.

During a rolling update, replicas of the release before open sessions without their volunteer: a
trigger fills a missing ``account_id`` from the session's application (``account_filled``), so their
sign-ins are not refused by the column's NOT NULL and meet the new index as new ones do.

Open sessions that already overlap would make the index fail. A volunteer is in one place at a
time, so the latest sign-in stays open (where they went last), and each earlier one ends at that
sign-in, flagged abandoned with nothing recorded: as for a forgotten sign-out, its lead records
that time by hand (a recording here would add records, day totals and events in a migration).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("signed_out_at IS NULL")


def upgrade() -> None:
    op.add_column("attendances", sa.Column("account_id", sa.UUID(), nullable=True))
    op.execute("UPDATE attendances t SET account_id = a.account_id FROM applications a WHERE a.id = t.application_id")
    op.alter_column("attendances", "account_id", nullable=False)
    op.execute(
        """
        CREATE FUNCTION attendances_account_filled() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.account_id IS NULL THEN
                SELECT account_id INTO NEW.account_id FROM applications WHERE id = NEW.application_id;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER account_filled BEFORE INSERT ON attendances"
        " FOR EACH ROW EXECUTE FUNCTION attendances_account_filled()"
    )
    op.execute(
        """
        WITH open AS (
            SELECT id,
                   row_number() OVER (PARTITION BY account_id ORDER BY signed_in_at DESC, id DESC) AS n,
                   max(signed_in_at) OVER (PARTITION BY account_id) AS latest
            FROM attendances WHERE signed_out_at IS NULL
        )
        UPDATE attendances t SET signed_out_at = o.latest, abandoned = true
        FROM open o WHERE t.id = o.id AND o.n > 1
        """
    )
    op.create_index("uq_attendances_open_account", "attendances", ["account_id"], unique=True, postgresql_where=OPEN)


def downgrade() -> None:
    op.execute("DROP TRIGGER account_filled ON attendances")
    op.execute("DROP FUNCTION attendances_account_filled()")
    op.drop_index("uq_attendances_open_account", table_name="attendances", postgresql_where=OPEN)
    op.drop_column("attendances", "account_id")
