"""team names unique by a key that ignores spaces, full width and case; registrations withdrawn

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-20 10:00:00

Names were unique per region as written, so "西湖阳光志愿服务队", "西湖 阳光志愿服务队" and
"西湖阳光f志愿服务队" beside "西湖阳光F志愿服务队" were three teams. ``teams.name_key`` holds the name
with every space removed, NFKC and case folded (``teams.domain.naming.name_key``, copied below as it
is today: a migration computes what it computed when it ran), and the unique index is on it.

Live teams (pending or approved) that already share a key keep their names: the first submitted
keeps the key, each later twin gets it with ``#2``, ``#3`` ... appended, in the order they were
submitted (as 0008 did for match tokens), so none is lost and the migration does not fail; a new
registration under any of their spellings meets the first one's key (``team_name_taken``). The
twins show in ``SELECT name, name_key FROM teams WHERE name_key LIKE '%#%'`` for the regional admins
to sort out by hand. Rejected registrations keep their plain key (they hold no name).

A registration its applicant withdrew (status ``withdrawn``, from this revision) frees its name and
credit code as a rejected one does: both unique indexes cover pending and approved teams only. The
directory's index on region and name (it was the unique one) is kept for approved teams.

During a rolling update, replicas of the release before write teams without a key: a trigger
fills a missing key in SQL (``name_key_filled``: spaces removed, NFKC, lower case; the same key for
any name but those with letters ``lower`` and ``casefold`` treat differently, ß say), so their
registrations are not refused by the column's NOT NULL and meet the unique index as new ones do.

A downgrade turns withdrawn registrations into rejected ones (what older code knows that frees a
name) and puts the unique index back on the names as written.
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "status IN ('pending', 'approved')"
BATCH = 5000


def _name_key(name: str) -> str:
    # stored names are already normalised (NFKC, invisible characters removed)
    return "".join(unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold()).split())


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("teams", sa.Column("name_key", sa.Text(), nullable=True))
    rows = bind.execute(
        sa.text(
            f"SELECT id, name, region_code, {LIVE} AS live FROM teams"  # noqa: S608
            " ORDER BY submitted_at, created_at, id"
        )
    ).all()
    seen: dict[tuple[str, str], int] = {}
    ids, keys = [], []
    for row in rows:
        key = _name_key(row.name)
        if row.live:
            n = seen[row.region_code, key] = seen.get((row.region_code, key), 0) + 1
            if n > 1:
                key = f"{key}#{n}"
        ids.append(row.id)
        keys.append(key)
    for start in range(0, len(ids), BATCH):
        bind.execute(
            sa.text(
                "UPDATE teams t SET name_key = v.k"
                " FROM unnest(CAST(:ids AS uuid[]), CAST(:keys AS text[])) AS v(id, k) WHERE t.id = v.id"
            ),
            {"ids": ids[start : start + BATCH], "keys": keys[start : start + BATCH]},
        )
    op.alter_column("teams", "name_key", nullable=False)
    op.execute(
        """
        CREATE FUNCTION teams_name_key_filled() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.name_key IS NULL THEN
                NEW.name_key := lower(regexp_replace(normalize(NEW.name, NFKC), '\\s', '', 'g'));
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER name_key_filled BEFORE INSERT ON teams FOR EACH ROW EXECUTE FUNCTION teams_name_key_filled()"
    )
    op.drop_index("uq_teams_region_name", table_name="teams")
    op.drop_index("uq_teams_uscc", table_name="teams")
    op.create_index(
        "uq_teams_region_name_key", "teams", ["region_code", "name_key"], unique=True, postgresql_where=sa.text(LIVE)
    )
    op.create_index(
        "uq_teams_uscc", "teams", ["uscc"], unique=True, postgresql_where=sa.text(f"uscc IS NOT NULL AND {LIVE}")
    )
    op.create_index(
        "ix_teams_region_name", "teams", ["region_code", "name"], postgresql_where=sa.text("status = 'approved'")
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER name_key_filled ON teams")
    op.execute("DROP FUNCTION teams_name_key_filled()")
    op.execute("UPDATE teams SET status = 'rejected' WHERE status = 'withdrawn'")
    op.drop_index("ix_teams_region_name", table_name="teams")
    op.drop_index("uq_teams_uscc", table_name="teams")
    op.drop_index("uq_teams_region_name_key", table_name="teams")
    op.create_index(
        "uq_teams_uscc",
        "teams",
        ["uscc"],
        unique=True,
        postgresql_where=sa.text("uscc IS NOT NULL AND status <> 'rejected'"),
    )
    op.create_index(
        "uq_teams_region_name",
        "teams",
        ["region_code", "name"],
        unique=True,
        postgresql_where=sa.text("status <> 'rejected'"),
    )
    op.drop_column("teams", "name_key")
