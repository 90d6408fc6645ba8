"""usernames unique ignoring case

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-21 09:00:00

V1: a username was unique only as typed, so ``zhangsan`` and ``ZHANGSAN`` could be two accounts,
which people (and login by another case) cannot tell apart. A unique index on ``lower(username)``
now refuses the second, also when both sign up at once. Usernames never change and accounts are
never deleted (V7, the ``accounts_are_permanent`` trigger), so case-twins registered before stay
as they are: all but the oldest of each (by ``created_at``, then id) are marked
``username_case_twin`` and left out of the unique index; a small index finds them for the login's
lookup. New accounts are never marked. Taken under the lock of the ALTER, no sign-up slips a new
twin in between the marking and the index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("username_case_twin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    # only the twins' rows are written (the trigger guards UPDATE OF username only)
    op.execute(
        """
        UPDATE accounts AS a SET username_case_twin = true
          FROM (SELECT id, row_number() OVER (PARTITION BY lower(username) ORDER BY created_at, id) AS n
                  FROM accounts) AS ranked
         WHERE a.id = ranked.id AND ranked.n > 1
        """
    )
    op.create_index(
        "ux_accounts_username_lower",
        "accounts",
        [sa.text("lower(username)")],
        unique=True,
        postgresql_where=sa.text("NOT username_case_twin"),
    )
    op.create_index(
        "ix_accounts_username_lower_twins",
        "accounts",
        [sa.text("lower(username)")],
        unique=False,
        postgresql_where=sa.text("username_case_twin"),
    )


def downgrade() -> None:
    op.drop_index("ix_accounts_username_lower_twins", table_name="accounts")
    op.drop_index("ux_accounts_username_lower", table_name="accounts")
    op.drop_column("accounts", "username_case_twin")
