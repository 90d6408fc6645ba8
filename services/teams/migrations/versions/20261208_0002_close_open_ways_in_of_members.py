"""close the open applications and invitations of members

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08 10:00:00

Joining a team by one route now closes the account's other open application and invitation for
that team (answered after the member left or was removed, they let them back in without anyone's
consent). Those left open by earlier versions for today's members are closed here. Data only.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE join_requests r SET status = 'closed', decided_at = now()
        WHERE r.status = 'pending'
          AND EXISTS (SELECT 1 FROM memberships m WHERE m.team_id = r.team_id AND m.account_id = r.account_id)
        """
    )
    op.execute(
        """
        UPDATE invitations i SET status = 'closed', answered_at = now()
        WHERE i.status = 'pending'
          AND EXISTS (SELECT 1 FROM memberships m WHERE m.team_id = i.team_id AND m.account_id = i.account_id)
        """
    )


def downgrade() -> None:
    pass  # the closed ones stay closed: reopening them would reopen the way back in
