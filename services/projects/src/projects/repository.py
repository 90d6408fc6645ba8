"""Every query of the projects service.

The quota is guarded by one conditional update (``admitted < quota``) that takes a place in the
caller's transaction; bulk hours are one ``INSERT ... SELECT FROM unnest`` statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg
from sqlalchemy import Select, case, delete, func, insert, literal_column, select, text, true, tuple_, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from projects.domain import application as stages
from projects.models import (
    applications,
    attendances,
    hours_corrections,
    hours_records,
    messaging,
    places_to_give,
    positions,
    project_activity,
    projects,
    team_role_versions,
    team_roles,
    teams,
    volunteers,
)
from projects.unit_of_work import fetch_on_driver, fetchrow_plain

Row = RowMapping


# -- read models -----------------------------------------------------------------------------------
async def upsert_volunteer(
    s: AsyncSession, account_id: uuid.UUID, number: str, masked_name: str, region: str, verified_at: datetime
) -> None:
    stmt = pg_insert(volunteers).values(
        account_id=account_id,
        volunteer_number=number,
        masked_name=masked_name,
        region_code=region,
        verified_at=verified_at,
    )
    # an older verification delivered late (a dead letter replayed) leaves the newer one; a merged
    # record stays merged (``merged_into`` is kept)
    await s.execute(
        stmt.on_conflict_do_update(
            index_elements=[volunteers.c.account_id],
            set_={
                "volunteer_number": stmt.excluded.volunteer_number,
                "masked_name": stmt.excluded.masked_name,
                "region_code": stmt.excluded.region_code,
                "verified_at": stmt.excluded.verified_at,
            },
            where=volunteers.c.verified_at <= stmt.excluded.verified_at,
        )
    )


#: where one person held two applications to one position (as two records), which one stays: the one
#: holding a place, then the one further on, then the one with more hours, then the kept record's
_MERGE_CLASHES = text(
    """
    SELECT k.id AS kept_id, k.stage AS kept_stage, m.id AS merged_id, m.stage AS merged_stage,
           k.position_id,
           (SELECT coalesce(sum(minutes), 0) FROM hours_records WHERE application_id = k.id) AS kept_minutes,
           (SELECT coalesce(sum(minutes), 0) FROM hours_records WHERE application_id = m.id) AS merged_minutes
    FROM applications k JOIN applications m ON m.position_id = k.position_id
    WHERE k.account_id = :kept AND m.account_id = :merged
      AND k.stage <> 'withdrawn' AND m.stage <> 'withdrawn'
    ORDER BY k.position_id
    FOR UPDATE OF k, m
    """
)


_MOVE_DAYS = text(
    """
    WITH moved AS (DELETE FROM volunteer_days WHERE account_id = :merged RETURNING service_date, minutes)
    INSERT INTO volunteer_days AS d (account_id, service_date, minutes)
    SELECT :kept, service_date, minutes FROM moved ORDER BY service_date
    ON CONFLICT (account_id, service_date) DO UPDATE SET minutes = d.minutes + excluded.minutes
    """
)


#: the merged record, held and marked merged. Its own verification may not have arrived yet (it comes
#: in its account's lane, the merge in the kept one's): a row that says only that it was merged (no
#: number, name or region; never listed, since applications and hours move to the kept record) keeps
#: it from making the merged record a volunteer when it comes (its upsert never touches merged_into;
#: one inserting the row at this moment is waited for). Held before it is marked: an application
#: holds the record (``_APPLY``, key share) from its check to its commit, and the hold waits for those
#: and stops new ones, which then find the record merged. The mark does not wait for them (an update
#: of other columns and a key share do not conflict), and a hold taken after it would not either (an
#: application's key share taken meanwhile sits on the version the mark replaced).
_MERGED_TOMBSTONE = text(
    """
    WITH known AS (
        INSERT INTO volunteers (account_id, volunteer_number, masked_name, region_code, verified_at, merged_into)
        VALUES (:merged, '', '', '', TIMESTAMPTZ '1970-01-01 00:00:00+00', :kept)
        ON CONFLICT (account_id) DO NOTHING
        RETURNING account_id
    )
    SELECT count(*) FROM known
    """
)
_HOLD_MERGED = text("SELECT merged_into FROM volunteers WHERE account_id = :merged FOR UPDATE")
_MARK_MERGED = text("UPDATE volunteers SET merged_into = :kept WHERE account_id = :merged")


#: after the applications moved: the open session that stays is one whose application still holds a
#: place (one withdrawn by the merge can never be signed out), then the latest sign-in
_END_SECOND_SESSIONS = text(
    """
    WITH open AS (
        SELECT t.id, row_number() OVER (
                   ORDER BY a.stage IN ('admitted', 'training', 'serving', 'completed') DESC,
                            t.signed_in_at DESC, t.id DESC
               ) AS n
        FROM attendances t JOIN applications a ON a.id = t.application_id
        WHERE t.account_id IN (:kept, :merged) AND t.signed_out_at IS NULL
    )
    UPDATE attendances t SET signed_out_at = :now, abandoned = true
    FROM open o WHERE t.id = o.id AND o.n > 1
    """
)
#: the merged record's sessions, found through the applications now the kept record's (its index)
_MOVE_SESSIONS = text(
    """
    UPDATE attendances SET account_id = :kept
    WHERE account_id = :merged AND application_id IN (SELECT id FROM applications WHERE account_id = :kept)
    """
)


def _standing(stage: str, minutes: int, kept: bool) -> tuple[bool, int, int, bool]:
    holds_place = stage in stages.HOLDS_PLACE
    return (holds_place, stages.STAGES.index(stage) if holds_place else 0, minutes, kept)


async def merge_volunteer(s: AsyncSession, kept: uuid.UUID, merged: uuid.UUID, now: datetime) -> list[uuid.UUID]:
    """Move applications and hours of ``merged`` to ``kept``. Where both records applied to one position
    one application stays (see ``_MERGE_CLASHES``), taking the other's hours, and the other is withdrawn;
    if both held a place, the withdrawn one's place is given back. Returns the positions that got a
    place back: nobody waiting is admitted here (a waiter is locked before the position's row, held
    here from the release on); once this has committed the caller gives the places to those waiting
    (``services.admit_waiting``)."""
    # First the merged record (``_MERGED_TOMBSTONE``): an application it makes from now on waits for
    # this merge and finds it merged; one it made already has committed when the hold is granted, and
    # is moved below with the others
    params = {"kept": kept, "merged": merged}
    if not (await s.execute(_MERGED_TOMBSTONE, params)).scalar_one():
        await s.execute(_HOLD_MERGED, params)
        await s.execute(_MARK_MERGED, params)
    freed: list[uuid.UUID] = []
    for clash in (await s.execute(_MERGE_CLASHES, {"kept": kept, "merged": merged})).mappings():
        keep_kept = _standing(clash["kept_stage"], clash["kept_minutes"], True) > _standing(
            clash["merged_stage"], clash["merged_minutes"], False
        )
        winner, loser = (clash["kept_id"], clash["merged_id"]) if keep_kept else (clash["merged_id"], clash["kept_id"])
        loser_stage = clash["merged_stage"] if keep_kept else clash["kept_stage"]
        await s.execute(
            update(hours_records).where(hours_records.c.application_id == loser).values(application_id=winner)
        )
        if loser_stage in stages.HOLDS_PLACE:  # the winner holds one too: one person, one place
            # the position before the stage, as a leave (an application takes them in that order)
            await release_place(s, clash["position_id"])
            freed.append(clash["position_id"])
        await s.execute(update(applications).where(applications.c.id == loser).values(stage=stages.WITHDRAWN))
    await s.execute(update(applications).where(applications.c.account_id == merged).values(account_id=kept))
    await s.execute(update(hours_records).where(hours_records.c.account_id == merged).values(account_id=kept))
    # one open session per volunteer (``uq_attendances_open_account``): of both records' open
    # sessions, one stays, the others end unrecorded (abandoned: their leads record that time). A
    # sign-in of the kept record committing between these two statements makes the move a unique
    # violation: the merge fails and its redelivery ends that session or this one
    await s.execute(_END_SECOND_SESSIONS, {"kept": kept, "merged": merged, "now": now})
    await s.execute(_MOVE_SESSIONS, {"kept": kept, "merged": merged})
    # after the applications, like a recording (``add_to_days``): the two never deadlock
    await s.execute(_MOVE_DAYS, {"kept": kept, "merged": merged})
    return freed


async def upsert_team(s: AsyncSession, team_id: uuid.UUID, name: str, region: str) -> None:
    stmt = pg_insert(teams).values(team_id=team_id, name=name, region_code=region, approved=True)
    await s.execute(
        stmt.on_conflict_do_update(
            index_elements=[teams.c.team_id],
            set_={"name": stmt.excluded.name, "region_code": stmt.excluded.region_code, "approved": True},
        )
    )


async def _newer_team_role_event(
    s: AsyncSession, team_id: uuid.UUID, account_id: uuid.UUID, role: str, sequence: int | None
) -> bool:
    """Whether the teams event at ``sequence`` is newer than the last one that set this role (and
    record it as the last); an event without a sequence (not from an outbox) is taken as newer."""
    if sequence is None:
        return True
    stmt = pg_insert(team_role_versions).values(team_id=team_id, account_id=account_id, role=role, sequence=sequence)
    stmt = stmt.on_conflict_do_update(
        index_elements=[team_role_versions.c.team_id, team_role_versions.c.account_id, team_role_versions.c.role],
        set_={"sequence": stmt.excluded.sequence},
        where=team_role_versions.c.sequence < stmt.excluded.sequence,
    )
    return (await s.execute(stmt.returning(team_role_versions.c.sequence))).first() is not None


async def grant_team_role(
    s: AsyncSession, team_id: uuid.UUID, account_id: uuid.UUID, role: str, sequence: int | None = None
) -> None:
    if await _newer_team_role_event(s, team_id, account_id, role, sequence):
        await s.execute(
            pg_insert(team_roles).values(team_id=team_id, account_id=account_id, role=role).on_conflict_do_nothing()
        )


async def revoke_team_role(
    s: AsyncSession, team_id: uuid.UUID, account_id: uuid.UUID, role: str, sequence: int | None = None
) -> None:
    if await _newer_team_role_event(s, team_id, account_id, role, sequence):
        await s.execute(
            delete(team_roles).where(
                team_roles.c.team_id == team_id, team_roles.c.account_id == account_id, team_roles.c.role == role
            )
        )


async def team(s: AsyncSession, team_id: uuid.UUID) -> Row | None:
    return (await s.execute(select(teams).where(teams.c.team_id == team_id))).mappings().first()


async def team_roles_of(s: AsyncSession, team_id: uuid.UUID, account_id: uuid.UUID) -> set[str]:
    rows = await s.execute(
        select(team_roles.c.role).where(team_roles.c.team_id == team_id, team_roles.c.account_id == account_id)
    )
    return {r[0] for r in rows}


async def team_admin_ids(s: AsyncSession, team_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The admins of each of these teams (from the team_roles read model), in a stable order."""
    rows = await s.execute(
        select(team_roles.c.team_id, team_roles.c.account_id)
        .where(team_roles.c.team_id.in_(list(set(team_ids))), team_roles.c.role == "admin")
        .order_by(team_roles.c.team_id, team_roles.c.account_id)
    )
    admins: dict[uuid.UUID, list[uuid.UUID]] = {}
    for team_id, account_id in rows:
        admins.setdefault(team_id, []).append(account_id)
    return admins


async def leads_to_tell(s: AsyncSession, projects_rows: Sequence[Any]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Who hears of each project as its lead (a leave, its closing, its extension): the lead while
    they hold a role in the project's team, else the team's admins (a lead the team withdrew no
    longer runs the project, and someone must hear that a volunteer left it)."""
    if not projects_rows:
        return {}
    pairs = {(r["team_id"], r["lead_account_id"]) for r in projects_rows}
    held = await s.execute(
        select(team_roles.c.team_id, team_roles.c.account_id)
        .where(tuple_(team_roles.c.team_id, team_roles.c.account_id).in_(list(pairs)))
        .distinct()
    )
    holding = {(team_id, account_id) for team_id, account_id in held}
    orphaned = [r["team_id"] for r in projects_rows if (r["team_id"], r["lead_account_id"]) not in holding]
    admins = await team_admin_ids(s, orphaned) if orphaned else {}
    return {
        r["id"]: [r["lead_account_id"]]
        if (r["team_id"], r["lead_account_id"]) in holding
        else admins.get(r["team_id"], [])
        for r in projects_rows
    }


async def volunteer_shown(s: AsyncSession, account_id: uuid.UUID) -> Row | None:
    """How the volunteer is shown to leads: masked name and volunteer number."""
    stmt = select(volunteers.c.masked_name, volunteers.c.volunteer_number).where(volunteers.c.account_id == account_id)
    return (await s.execute(stmt)).mappings().first()


async def is_verified(s: AsyncSession, account_id: uuid.UUID) -> bool:
    row = await s.execute(
        select(volunteers.c.account_id).where(volunteers.c.account_id == account_id, volunteers.c.merged_into.is_(None))
    )
    return row.first() is not None


async def add_activity(
    s: AsyncSession, event_id: uuid.UUID, project_id: uuid.UUID, event_type: str, at: datetime, payload: dict[str, Any]
) -> None:
    await s.execute(
        pg_insert(project_activity)
        .values(event_id=event_id, project_id=project_id, event_type=event_type, occurred_at=at, payload=payload)
        .on_conflict_do_nothing()
    )


async def activity(
    s: AsyncSession, project_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Row]:
    stmt = select(project_activity).where(project_activity.c.project_id == project_id)
    if after is not None:
        stmt = stmt.where(tuple_(project_activity.c.occurred_at, project_activity.c.event_id) > tuple_(*after))
    stmt = stmt.order_by(project_activity.c.occurred_at, project_activity.c.event_id).limit(limit)
    return list((await s.execute(stmt)).mappings())


# -- projects -------------------------------------------------------------------------------------
async def insert_project(s: AsyncSession, values: dict[str, Any]) -> None:
    await s.execute(insert(projects).values(**values))


async def insert_positions(s: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await s.execute(insert(positions), rows)


_PROJECT_WITH_ROLES = """
    SELECT p.*, ARRAY(SELECT r.role FROM team_roles r WHERE r.team_id = p.team_id AND r.account_id = :account_id)
           AS caller_roles
    FROM projects p WHERE p.id = :project_id
"""
_PROJECT_WITH_ROLES_READ = text(_PROJECT_WITH_ROLES)
_PROJECT_WITH_ROLES_LOCKED = text(_PROJECT_WITH_ROLES + " FOR UPDATE OF p")


async def project_with_roles(
    s: AsyncSession, project_id: uuid.UUID, account_id: uuid.UUID, *, for_update: bool = False
) -> Row | None:
    """A project's row with the caller's roles in its team (``caller_roles``): what every use case run
    by a project's managers reads first, in one round trip on the driver (see ``fetch_on_driver``)
    instead of two statements built by SQLAlchemy."""
    stmt = _PROJECT_WITH_ROLES_LOCKED if for_update else _PROJECT_WITH_ROLES_READ
    rows = await fetch_on_driver(s, stmt, {"project_id": project_id, "account_id": account_id})
    return rows[0] if rows else None


async def project(s: AsyncSession, project_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
    stmt = select(projects).where(projects.c.id == project_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await s.execute(stmt)).mappings().first()


async def hold_project_status(s: AsyncSession, project_id: uuid.UUID) -> str:
    """The project's status, held (``FOR SHARE``) until the caller's commit: a path that admits
    (an admission, a leave's next in line, a raised quota, the line after a freed place) decides on
    a status the close sweep and an extension, which write it, wait for, and they for it; such
    paths only share the row, so they do not wait for each other."""
    status: str = (
        await s.execute(text("SELECT status FROM projects WHERE id = :id FOR SHARE"), {"id": project_id})
    ).scalar_one()
    return status


async def position(s: AsyncSession, position_id: uuid.UUID) -> Row | None:
    stmt = (
        select(
            positions,
            positions.c.id.label("position_id"),
            positions.c.name.label("position_name"),
            projects.c.team_id,
            projects.c.lead_account_id,
            projects.c.status,
            projects.c.title.label("project_title"),
        )
        .select_from(positions.join(projects, projects.c.id == positions.c.project_id))
        .where(positions.c.id == position_id)
    )
    return (await s.execute(stmt)).mappings().first()


async def automatic_positions_with_free_places(s: AsyncSession, project_id: uuid.UUID) -> list[uuid.UUID]:
    stmt = select(positions.c.id).where(
        positions.c.project_id == project_id,
        positions.c.admission_mode == "auto",
        positions.c.admitted < positions.c.quota,
    )
    return list((await s.execute(stmt.order_by(positions.c.id))).scalars())


async def set_quota(s: AsyncSession, position_id: uuid.UUID, quota: int) -> int | None:
    """A quota never drops below the places already taken (same guard as admission: one statement)."""
    result = await s.execute(
        text("UPDATE positions SET quota = :quota WHERE id = :id AND admitted <= :quota RETURNING admitted"),
        {"id": position_id, "quota": quota},
    )
    row = result.first()
    return None if row is None else int(row[0])


async def positions_of(s: AsyncSession, project_id: uuid.UUID) -> list[Row]:
    rows = await s.execute(select(positions).where(positions.c.project_id == project_id).order_by(positions.c.seq))
    return list(rows.mappings())


async def update_project(s: AsyncSession, project_id: uuid.UUID, **values: Any) -> None:
    await s.execute(update(projects).where(projects.c.id == project_id).values(**values))


#: statuses of the public project list (those ``ix_projects_listed`` covers)
LISTED_STATUSES = frozenset({"published", "closed"})


async def list_projects(
    s: AsyncSession,
    *,
    statuses: Sequence[str],
    team_id: uuid.UUID | None,
    region_prefix: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Row]:
    """Listed projects, newest publication first, a page read in the order of ``ix_projects_published``
    (or of a team's or a region's index). The statuses are written into the SQL, not sent as parameters: the indexes
    cover listed projects only, and a plan may use them only where the statement itself says the
    rows are listed ones (a prepared statement's generic plan knows no parameter's value)."""
    unknown = set(statuses) - LISTED_STATUSES
    if unknown:
        raise ValueError(f"not a listed status: {sorted(unknown)}")
    listed: list[Any] = [literal_column(f"'{status}'") for status in sorted(statuses)]
    stmt = select(projects).where(projects.c.status.in_(listed))
    if team_id is not None:
        stmt = stmt.where(projects.c.team_id == team_id)
    if region_prefix:
        stmt = stmt.where(projects.c.region_code.startswith(region_prefix))
    if after is not None:
        stmt = stmt.where(tuple_(projects.c.published_at, projects.c.id) < tuple_(*after))
    stmt = stmt.order_by(projects.c.published_at.desc(), projects.c.id.desc()).limit(limit)
    return list((await s.execute(stmt)).mappings())


async def list_managed_projects(
    s: AsyncSession,
    account_id: uuid.UUID,
    *,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Row]:
    """我的项目: projects the account leads while holding a role in their team, or whose team it
    administers; every status (a lead the team withdrew no longer runs, nor sees, its drafts).

    A page of each team the account administers (``ix_projects_team``, an index range each) and a
    page of those it leads (``ix_projects_lead``), the newest of their union: what a page
    reads grows with the page and the caller's teams, not with the country's projects (one
    condition over both ways read every project and every team role, for any caller)."""

    def page(stmt: Select[Any]) -> Select[Any]:
        if status is not None:
            stmt = stmt.where(projects.c.status == status)
        if after is not None:
            stmt = stmt.where(tuple_(projects.c.created_at, projects.c.id) < tuple_(*after))
        return stmt.order_by(projects.c.created_at.desc(), projects.c.id.desc()).limit(limit)

    roles = team_roles.c
    administered = select(roles.team_id).where(roles.account_id == account_id, roles.role == "admin").subquery()
    of_team = page(select(projects.c.id).where(projects.c.team_id == administered.c.team_id)).lateral()
    in_team_of = select(roles.team_id).where(roles.account_id == account_id)
    led = page(
        select(projects.c.id).where(projects.c.lead_account_id == account_id, projects.c.team_id.in_(in_team_of))
    )
    ids = union(select(of_team.c.id).select_from(administered).join(of_team, true()), led).subquery()
    stmt = page(select(projects).join(ids, ids.c.id == projects.c.id))
    return list((await s.execute(stmt)).mappings())


async def close_due_projects(s: AsyncSession, *, today: date, now: datetime, batch: int) -> list[Row]:
    """自动结项 of one batch. ``SKIP LOCKED``: replicas sweeping at once each close different rows,
    and a row one closed no longer matches ``status = 'published'`` for the other."""
    result = await s.execute(
        text(
            """
            WITH due AS (
                SELECT id FROM projects
                WHERE status = 'published' AND ends_on < :today
                ORDER BY ends_on LIMIT :batch
                FOR UPDATE SKIP LOCKED
            )
            UPDATE projects p
            SET status = 'closed', closed_at = :now, closed_automatically = true
            FROM due WHERE p.id = due.id AND p.status = 'published'
            RETURNING p.id, p.team_id, p.title, p.lead_account_id, p.closed_at, p.ends_on, p.team_admin_extensions
            """
        ),
        {"today": today, "now": now, "batch": batch},
    )
    return list(result.mappings())


# -- positions and applications ---------------------------------------------------------------------
_APPLY = text(
    """
    WITH volunteer AS (
        -- held until commit: a merge of this record (``merge_volunteer``) waits for this application
        -- and moves it, or this waits for the merge and finds the record merged (no longer verified)
        SELECT merged_into FROM volunteers WHERE account_id = :account_id FOR KEY SHARE
    ),
    context AS (
        SELECT pos.id AS position_id, pos.name AS position_name, pos.admission_mode,
               p.id AS project_id, p.title AS project_title, p.status, p.team_id,
               p.starts_on, p.ends_on, p.recruit_starts_on, p.recruit_ends_on,
               EXISTS (SELECT 1 FROM volunteer WHERE merged_into IS NULL) AS verified
        FROM positions pos JOIN projects p ON p.id = pos.project_id
        WHERE pos.id = :position_id
    ),
    -- the rules of ``services.apply`` (verified volunteer, ``project_rules.is_recruiting``): nothing
    -- is written unless they hold, and the caller reads the context to say which one did not
    eligible AS (
        SELECT * FROM context
        WHERE verified AND status = 'published' AND recruit_starts_on <= :today AND :today <= recruit_ends_on
    ),
    taken AS (
        UPDATE positions SET admitted = admitted + 1
        WHERE id = :position_id AND admitted < quota
          AND EXISTS (SELECT 1 FROM eligible WHERE admission_mode = 'auto')
          -- in order of application: a place left free beside someone waiting is theirs
          AND NOT EXISTS (SELECT 1 FROM applications w WHERE w.position_id = :position_id AND w.stage = 'applied')
        RETURNING id
    ),
    inserted AS (
        INSERT INTO applications (id, position_id, project_id, account_id, stage, motivation, created_at, updated_at)
        SELECT :id, e.position_id, e.project_id, :account_id,
               CASE WHEN EXISTS (SELECT 1 FROM taken) THEN 'admitted' ELSE 'applied' END,
               :motivation, :now, :now
        FROM eligible e
        ON CONFLICT (position_id, account_id) WHERE stage <> 'withdrawn' DO NOTHING
        RETURNING stage
    ),
    written AS (
        -- application.submitted, and application.admitted when a place was taken: the payloads are
        -- ApplicationSubmitted's and ApplicationAdmitted's JSON (checked against the models by a test)
        INSERT INTO outbox (id, event_type, schema_version, aggregate_type, aggregate_id, payload,
                            producer, correlation_id, causation_id, occurred_at)
        SELECT t.id, t.event_type, t.schema_version, :ob_aggregate_type, CAST(:id AS text),
               jsonb_build_object(
                   'application_id', CAST(:id AS uuid), 'project_id', e.project_id, 'position_id', e.position_id,
                   'account_id', CAST(:account_id AS uuid), 'project_title', e.project_title,
                   'position_name', e.position_name
               ) || t.extra,
               :ob_producer, :ob_correlation_id, :ob_causation_id, :ob_occurred_at
        FROM eligible e CROSS JOIN inserted i
        CROSS JOIN (VALUES
            (1, CAST(:submitted_id AS uuid), CAST(:submitted_type AS text), CAST(:submitted_version AS int),
             '{}'::jsonb, false),
            (2, CAST(:admitted_id AS uuid), CAST(:admitted_type AS text), CAST(:admitted_version AS int),
             '{"automatic": true}'::jsonb, true)
        ) AS t(n, id, event_type, schema_version, extra, on_admission)
        WHERE NOT t.on_admission OR i.stage = 'admitted'
        ORDER BY t.n
        RETURNING 1
    )
    SELECT c.*, (SELECT stage FROM inserted) AS stage,
           -- eligible but no application row (the volunteer already applied): 1/0 fails the
           -- statement, so neither the place nor the outbox rows are kept
           1 / CASE WHEN EXISTS (SELECT 1 FROM eligible) THEN (SELECT count(*) FROM inserted)::int ELSE 1 END
               AS guard,
           (SELECT pg_notify(:channel, '') FROM inserted) AS notified
    FROM context c
    """
)


async def apply(
    conn: asyncpg.Connection,
    *,
    application_id: uuid.UUID,
    position_id: uuid.UUID,
    account_id: uuid.UUID,
    motivation: str | None,
    today: date,
    now: datetime,
    events: dict[str, Any],
) -> tuple[Any, bool]:
    """An application in one statement, its own transaction: the position and project it needs and
    whether the volunteer is verified (the context; the volunteer's row held, key share, against a
    merge: ``merge_volunteer``), then, if the rules hold, the place (auto admission: the same
    conditional update as ``take_place``, taken only while nobody waits: a place left free beside a
    waiter, whose admission after a leave, raise or merge has not run yet or was lost with its process,
    is the waiter's; this application then goes into line and, finding the place free after commit,
    admits the line in order, see ``services.apply``), the application row and its outbox rows, so the
    position's row is locked for one statement.

    Returns the context with the application's ``stage`` (None when the rules refused it and nothing
    was written), or None when the position does not exist; and whether the volunteer had already
    applied (the statement then fails as a whole and has written nothing). ``events``: the outbox
    rows' ids, types and versions (``submitted_*``, ``admitted_*``) and the columns of
    ``unit_of_work.event_row_params``."""
    params = {
        "id": application_id,
        "position_id": position_id,
        "account_id": account_id,
        "motivation": motivation,
        "today": today,
        "now": now,
        "channel": messaging.channel,
        **events,
    }
    try:
        return await fetchrow_plain(conn, _APPLY, params), False
    except asyncpg.DivisionByZeroError:
        return None, True


async def existing_stage(conn: asyncpg.Connection, position_id: uuid.UUID, account_id: uuid.UUID) -> str | None:
    """The stage of the volunteer's application to the position that is not withdrawn, if any."""
    stage: str | None = await conn.fetchval(
        "SELECT stage FROM applications WHERE position_id = $1 AND account_id = $2 AND stage <> 'withdrawn'",
        position_id,
        account_id,
    )
    return stage


_TAKE_PLACE = text(
    "UPDATE positions SET admitted = admitted + 1 WHERE id = :position_id AND admitted < quota RETURNING admitted"
)


async def take_place(s: AsyncSession, position_id: uuid.UUID) -> bool:
    """The quota guard: a place is taken only while one is free, in the caller's transaction."""
    return (await s.execute(_TAKE_PLACE, {"position_id": position_id})).first() is not None


async def release_place(s: AsyncSession, position_id: uuid.UUID) -> None:
    await s.execute(
        text("UPDATE positions SET admitted = admitted - 1 WHERE id = :position_id AND admitted > 0"),
        {"position_id": position_id},
    )


# -- places freed for those waiting (models.places_to_give) --------------------------------------------
_MARK_PLACES = text(
    """
    INSERT INTO places_to_give (position_id, since) VALUES (:position_id, :now)
    ON CONFLICT (position_id) DO UPDATE
        SET mark = nextval(pg_get_serial_sequence('places_to_give', 'mark')), since = excluded.since
    """
)


async def mark_places_to_give(s: AsyncSession, position_id: uuid.UUID, now: datetime) -> None:
    """In the transaction that freed places of ``position_id``, after its lock of the position's row
    (every path takes this row last): they are to go to those waiting. A mark already there gets a
    new number, so an admission that began before this freeing does not clear it."""
    await s.execute(_MARK_PLACES, {"position_id": position_id, "now": now})


async def places_mark(s: AsyncSession, position_id: uuid.UUID) -> int | None:
    """The position's mark as committed now (no lock): what an admission starting now answers for."""
    mark = (await s.execute(select(places_to_give.c.mark).where(places_to_give.c.position_id == position_id))).scalar()
    return int(mark) if mark is not None else None


async def clear_places_mark(s: AsyncSession, position_id: uuid.UUID, seen: int) -> None:
    """The admission that read ``seen`` has given the places: clear the mark unless a later freeing
    renewed it (taken last, after the waiters' and the position's rows, as the freeing paths do)."""
    await s.execute(
        delete(places_to_give).where(places_to_give.c.position_id == position_id, places_to_give.c.mark <= seen)
    )


async def places_left_to_give(s: AsyncSession, before: datetime, limit: int) -> list[uuid.UUID]:
    """Positions marked before ``before`` whose admission has not cleared them, oldest first."""
    stmt = (
        select(places_to_give.c.position_id)
        .where(places_to_give.c.since < before)
        .order_by(places_to_give.c.since)
        .limit(limit)
    )
    return list((await s.execute(stmt)).scalars())


_APPLICATION_CONTEXT = """
    SELECT a.id, a.position_id, a.project_id, a.account_id, a.stage, a.seq,
           (SELECT coalesce(sum(h.minutes), 0) FROM hours_records h WHERE h.application_id = a.id)::int
               AS minutes_total,
           CASE WHEN a.stage = 'withdrawn' THEN NULL ELSE a.motivation END AS motivation,
           a.reason, a.created_at, a.updated_at,
           a.team_rating, a.team_comment, a.volunteer_rating, a.volunteer_comment,
           pos.name AS position_name, pos.admission_mode,
           p.title AS project_title, p.team_id, p.lead_account_id, p.status AS project_status,
           p.contact_name, p.contact_phone, p.contact_email
    FROM applications a
    JOIN positions pos ON pos.id = a.position_id
    JOIN projects p ON p.id = a.project_id
    WHERE a.id = :id
"""


async def application(s: AsyncSession, application_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
    sql = _APPLICATION_CONTEXT + (" FOR UPDATE OF a" if for_update else "")
    return (await s.execute(text(sql), {"id": application_id})).mappings().first()


async def forget_motivation(s: AsyncSession, application_id: uuid.UUID) -> None:
    await s.execute(update(applications).where(applications.c.id == application_id).values(motivation=None))


async def set_stage(
    s: AsyncSession, application_id: uuid.UUID, stage: str, now: datetime, reason: str | None = None
) -> None:
    values: dict[str, Any] = {"stage": stage, "updated_at": now}
    if reason is not None:
        values["reason"] = reason
    await s.execute(update(applications).where(applications.c.id == application_id).values(**values))


async def next_in_line(s: AsyncSession, position_id: uuid.UUID, n: int = 1) -> list[Row]:
    """The ``n`` oldest applications still waiting, locked. One another transaction is deciding on
    is waited for, not skipped (skipped, a free place went to a later applicant or stayed empty).
    One that stopped waiting meanwhile drops out of the locked result while still counted by the
    ``LIMIT``: the query then runs again, now past it. Callers lock waiters before the position's
    row, as an admission locks its application before taking the place."""
    if n <= 0:
        return []
    waiting = (applications.c.position_id == position_id) & (applications.c.stage == stages.APPLIED)
    stmt = (
        select(applications.c.id, applications.c.account_id)
        .where(waiting)
        .order_by(applications.c.seq)
        .limit(n)
        .with_for_update()
    )
    rows: list[Row] = []
    for _ in range(5):
        rows = list((await s.execute(stmt)).mappings())
        if len(rows) == n:
            break
        still = (await s.execute(select(func.count()).select_from(applications).where(waiting))).scalar_one()
        if still <= len(rows):
            break
    return rows


_ADMIT_WAITERS = text(
    """
    WITH admitted AS (
        UPDATE applications SET stage = 'admitted', updated_at = :now
        WHERE id = ANY(CAST(:ids AS uuid[])) AND position_id = :position_id AND stage = 'applied'
        RETURNING id
    ), moved AS (
        UPDATE positions SET admitted = admitted + (SELECT count(*) FROM admitted)
        WHERE id = :position_id
        RETURNING admitted
    )
    SELECT id FROM admitted
    """
)


async def admit_waiters(
    s: AsyncSession, position_id: uuid.UUID, application_ids: list[uuid.UUID], now: datetime
) -> set[uuid.UUID]:
    """Admit these waiting applications (locked by the caller, who holds the position's row and
    made sure each has a free place) in one statement, which also moves the position's count once.
    Returns the applications admitted. On the driver (see ``fetch_on_driver``): thousands of ids."""
    if not application_ids:
        return set()
    rows = await fetch_on_driver(s, _ADMIT_WAITERS, {"ids": application_ids, "position_id": position_id, "now": now})
    return {r["id"] for r in rows}


_FREE_PLACES = text("SELECT quota - admitted FROM positions WHERE id = :position_id FOR NO KEY UPDATE")


async def free_places(s: AsyncSession, position_id: uuid.UUID) -> int:
    """The position's free places, its row locked (as an update of it would) until the transaction ends."""
    return int((await s.execute(_FREE_PLACES, {"position_id": position_id})).scalar_one())


_HAS_FREE_PLACE = text("SELECT admitted < quota FROM positions WHERE id = :position_id")


async def has_free_place(conn: asyncpg.Connection, position_id: uuid.UUID) -> bool:
    """Whether the position has a free place now (committed state, no lock), on a connection of
    :meth:`ProjectsUnitOfWork.single_statements`."""
    row = await fetchrow_plain(conn, _HAS_FREE_PLACE, {"position_id": position_id})
    return bool(row is not None and row[0])


async def stage_of(s: AsyncSession, application_id: uuid.UUID) -> str | None:
    return (await s.execute(select(applications.c.stage).where(applications.c.id == application_id))).scalar()


async def rate(s: AsyncSession, application_id: uuid.UUID, **values: Any) -> None:
    await s.execute(update(applications).where(applications.c.id == application_id).values(**values))


def _minutes_of_application() -> Any:
    return (
        select(func.coalesce(func.sum(hours_records.c.minutes), 0))
        .where(hours_records.c.application_id == applications.c.id)
        .scalar_subquery()
    )


def _application_list_stmt() -> Any:
    return select(
        applications.c.id,
        applications.c.seq,
        applications.c.position_id,
        applications.c.project_id,
        applications.c.account_id,
        applications.c.stage,
        _minutes_of_application().label("minutes_total"),
        applications.c.created_at,
        applications.c.updated_at,
        positions.c.name.label("position_name"),
        # a withdrawn (deleted, P6) application's motivation is not shown, also one withdrawn before
        # withdrawing cleared it
        case((applications.c.stage == stages.WITHDRAWN, None), else_=applications.c.motivation).label("motivation"),
        applications.c.reason,
        applications.c.team_rating,
        applications.c.team_comment,
        applications.c.volunteer_rating,
        applications.c.volunteer_comment,
        projects.c.title.label("project_title"),
        projects.c.contact_name,
        projects.c.contact_phone,
        projects.c.contact_email,
        volunteers.c.masked_name,
        volunteers.c.volunteer_number,
    ).select_from(
        applications.join(positions, positions.c.id == applications.c.position_id)
        .join(projects, projects.c.id == applications.c.project_id)
        .outerjoin(volunteers, volunteers.c.account_id == applications.c.account_id)
    )


async def list_applications(
    s: AsyncSession,
    *,
    project_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
    stage: str | None = None,
    after_seq: int | None,
    limit: int,
) -> list[Row]:
    """Applications in order of application, a page from ``after_seq`` on. A project's are read as
    the range of ``ix_applications_project_seq`` from (project, after_seq) to the project's last
    one, ordered by (project, seq): the same rows and order as ``project_id = :p ORDER BY seq``, but
    that form also lets the plan walk every application in ``seq`` order, keeping the project's.
    PostgreSQL takes that walk when the project holds a few per cent of all applications (it
    assumes them spread evenly, when they all come after the older projects'), and a page of a big
    event's applicants then read every application made before it. A project's at one stage are read
    the same way, as the stage's range of ``ix_applications_project_stage``."""
    stmt = _application_list_stmt()
    after = after_seq if after_seq is not None else 0
    if project_id is not None and stage is not None:
        # the stage's own range of the project (``ix_applications_project_stage``): walking the
        # project's and keeping those at a rare stage read a big event's every applicant
        key = tuple_(applications.c.project_id, applications.c.stage, applications.c.seq)
        stmt = stmt.where(key > tuple_(project_id, stage, after), key <= tuple_(project_id, stage, _MAX_SEQ)).order_by(
            applications.c.project_id, applications.c.stage, applications.c.seq
        )
    elif project_id is not None:
        project_seq = tuple_(applications.c.project_id, applications.c.seq)
        stmt = stmt.where(
            project_seq > tuple_(project_id, after), project_seq <= tuple_(project_id, _MAX_SEQ)
        ).order_by(applications.c.project_id, applications.c.seq)
    else:
        if after_seq is not None:
            stmt = stmt.where(applications.c.seq > after_seq)
        stmt = stmt.order_by(applications.c.seq)
    if account_id is not None:
        stmt = stmt.where(applications.c.account_id == account_id)
    if stage is not None and project_id is None:
        stmt = stmt.where(applications.c.stage == stage)
    return list((await s.execute(stmt.limit(limit))).mappings())


#: the largest ``applications.seq`` (a bigint)
_MAX_SEQ = 2**63 - 1


async def count_admitted(s: AsyncSession, position_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        applications.c.position_id == position_id, applications.c.stage.in_(stages.HOLDS_PLACE)
    )
    return int((await s.execute(stmt)).scalar_one())


async def on_board_application(s: AsyncSession, project_id: uuid.UUID, account_id: uuid.UUID) -> Row | None:
    stmt = (
        select(applications.c.id, applications.c.stage)
        .where(
            applications.c.project_id == project_id,
            applications.c.account_id == account_id,
            applications.c.stage.in_(stages.HOLDS_PLACE),
        )
        .order_by(applications.c.seq)
        .limit(1)
        .with_for_update()
    )
    return (await s.execute(stmt)).mappings().first()


# -- service hours ----------------------------------------------------------------------------------
_RECORD_HOURS = text(
    """
    WITH input AS (
        SELECT * FROM unnest(
            CAST(:application_ids AS uuid[]), CAST(:service_dates AS date[]), CAST(:minutes AS int[]),
            CAST(:late AS boolean[]), CAST(:notes AS text[])
        ) AS t(application_id, service_date, minutes, late, note)
    ), held AS (
        SELECT a.id, a.account_id FROM applications a
        WHERE a.id IN (SELECT application_id FROM input) AND a.project_id = :project_id
          AND a.stage IN ('admitted', 'training', 'serving', 'completed')
        ORDER BY a.id
        FOR SHARE
    ), days AS (
        INSERT INTO volunteer_days AS d (account_id, service_date, minutes)
        SELECT h.account_id, i.service_date, sum(i.minutes)::int
        FROM input i JOIN held h ON h.id = i.application_id
        GROUP BY 1, 2
        ORDER BY 1, 2
        ON CONFLICT (account_id, service_date) DO UPDATE SET minutes = d.minutes + excluded.minutes
        RETURNING d.minutes
    ), recorded AS (
        INSERT INTO hours_records
            (id, application_id, project_id, account_id, service_date, minutes, late, source, note,
             recorded_by, recorded_at)
        SELECT gen_random_uuid(), i.application_id, :project_id, h.account_id, i.service_date, i.minutes, i.late,
               :source, i.note, :recorded_by, :now
        FROM input i JOIN held h ON h.id = i.application_id
        RETURNING id, application_id, account_id, service_date, minutes, late
    ), written AS (
        -- one hours.recorded event for the whole recording, listing its records, built here rather
        -- than by hundreds of Python models: the payload is HoursRecorded's JSON form (checked
        -- against the model by a test). No rows recorded, no event (the caller then refuses).
        INSERT INTO outbox (id, event_type, schema_version, aggregate_type, aggregate_id, payload,
                            producer, correlation_id, causation_id, occurred_at)
        SELECT gen_random_uuid(), :ob_event_type, :ob_schema_version, :ob_aggregate_type, CAST(:project_id AS text),
               jsonb_build_object(
                   'project_id', CAST(:project_id AS uuid), 'source', CAST(:source AS text),
                   'recorded_by', CAST(:recorded_by AS uuid),
                   'records', jsonb_agg(jsonb_build_object(
                       'record_id', r.id, 'application_id', r.application_id, 'account_id', r.account_id,
                       'service_date', r.service_date, 'minutes', r.minutes, 'late', r.late))),
               :ob_producer, :ob_correlation_id, :ob_causation_id, :ob_occurred_at
        FROM recorded r
        HAVING count(*) > 0
        RETURNING 1
    )
    SELECT r.*, (SELECT max(minutes) FROM days) AS day_minutes, (SELECT pg_notify(:channel, '')) AS notified,
           (SELECT set_config('plan_cache_mode', 'auto', true)) AS plans
    FROM recorded r
    """
)

_ADD_TO_DAYS = text(
    """
    WITH held AS (
        SELECT a.id, a.account_id FROM applications a
        WHERE a.id = ANY(CAST(:application_ids AS uuid[]))
        ORDER BY a.id
        FOR SHARE
    ), added AS (
        SELECT h.account_id, t.service_date, sum(t.minutes)::int AS minutes
        FROM unnest(CAST(:application_ids AS uuid[]), CAST(:service_dates AS date[]), CAST(:minutes AS int[]))
             AS t(application_id, service_date, minutes)
        JOIN held h ON h.id = t.application_id
        GROUP BY 1, 2
        ORDER BY 1, 2
    )
    INSERT INTO volunteer_days AS d (account_id, service_date, minutes)
    SELECT account_id, service_date, minutes FROM added
    ON CONFLICT (account_id, service_date) DO UPDATE SET minutes = d.minutes + excluded.minutes
    RETURNING d.account_id, d.service_date, d.minutes
    """
)


async def add_to_days(
    s: AsyncSession, application_ids: list[uuid.UUID], service_dates: list[date], minutes: list[int]
) -> list[Any]:
    """Add minutes to the volunteers' days (rows of ``application_ids`` with their dates); returns
    each day touched with its new total, over every position and project, which the caller checks
    against the daily cap. The applications are held first (``FOR SHARE``, in id order: a leave
    waits for the recording, and a recording for a leave), then the days' rows (in volunteer and
    date order): every path takes application locks before day rows (a sign-out holds its
    application when it gets here), so no two requests deadlock, and recordings of one volunteer's
    day take turns while other days and volunteers go on in parallel. Row locks live in the rows,
    not in PostgreSQL's shared lock table: a sheet of 1,000 rows takes no more of that table than
    one (an advisory lock per volunteer-day did, and a dozen big sheets at once filled it). On the
    driver (see ``fetch_on_driver``): SQLAlchemy's handling of hundreds of array elements costs
    more than the statement."""
    params = {"application_ids": application_ids, "service_dates": service_dates, "minutes": minutes}
    return await fetch_on_driver(s, _ADD_TO_DAYS, params)


_DAYS_OVER = text(
    """
    SELECT d.account_id, d.service_date, d.minutes
    FROM unnest(CAST(:account_ids AS uuid[]), CAST(:service_dates AS date[])) AS t(account_id, service_date)
    JOIN volunteer_days d ON d.account_id = t.account_id AND d.service_date = t.service_date
    WHERE d.minutes > :cap
    ORDER BY d.account_id, d.service_date
    """
)


async def days_over(s: AsyncSession, account_ids: list[uuid.UUID], service_dates: list[date], cap: int) -> list[Row]:
    """Which of these volunteer-days (pairs of ``account_ids`` and ``service_dates``) total more than
    ``cap`` minutes, as this transaction sees them: what a refused recording names."""
    params = {"account_ids": account_ids, "service_dates": service_dates, "cap": cap}
    return list((await s.execute(_DAYS_OVER, params)).mappings())


_CUSTOM_PLANS = text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")


async def plan_for_these_arrays(s: AsyncSession) -> None:
    """Plan the next statement for the arrays it is given (``record_hours`` puts PostgreSQL's default
    back as it ends). A prepared statement (asyncpg prepares every one) switches to a generic plan
    after five runs, and a generic plan takes ``unnest`` of a parameter for 10 rows: for the 500 rows
    of a bulk recording it chose a nested loop over the input (125,000 comparisons, about twice the
    statement's time). A custom plan costs a planning (under a millisecond) per statement, nothing
    next to a bulk recording; but the foreign-key checks of the records' inserts are prepared
    statements too, run once per row after the statement's own rows: forced to custom plans, each
    was planned again, 500 plannings per sheet."""
    await fetch_on_driver(s, _CUSTOM_PLANS, {})


async def record_hours(
    s: AsyncSession,
    *,
    project_id: uuid.UUID,
    application_ids: list[uuid.UUID],
    service_dates: list[date],
    minutes: list[int],
    late: list[bool],
    notes: list[str | None],
    source: str,
    recorded_by: uuid.UUID,
    now: datetime,
    events: dict[str, Any],
) -> list[Any]:
    """One statement (on the driver: see ``fetch_on_driver``) in four steps:

    - ``held``: the applications, ``FOR SHARE`` in id order: a concurrent leave (``FOR UPDATE``) waits
      for this recording, or this one re-reads the stage after the leave committed and leaves the row
      out; recordings do not block each other. Rows of applications not holding a place in this
      project are left out (the caller compares counts).
    - ``days``: the minutes added to the volunteers' days over every position and project, in
      volunteer and date order, after every application is held (the sums read them all): the lock
      order of ``add_to_days``. Each returned row carries the largest day total touched
      (``day_minutes``), which the caller checks against the daily cap.
    - ``recorded``: the records (``INSERT ... SELECT FROM unnest``).
    - ``written``: the recording's ``hours.recorded`` outbox row listing every record (``events``:
      see ``unit_of_work.event_row_params``).

    Its result puts ``plan_cache_mode`` back to PostgreSQL's default (``plans``): the custom plan
    ``plan_for_these_arrays`` asked for was made when the statement was bound, and the records'
    foreign-key checks, which PostgreSQL runs once per record after the statement's rows are
    produced, are then planned once and reused instead of planned for every record. Serially, in
    the benchmark's project (500 records): the checks 7.5-13 ms -> 3.4 ms, the statement 33.7 ->
    24.9 ms on a loaded machine. Nothing after the statement in the transaction needs custom plans.

    The statement's text is kept short of ``track_activity_query_size`` (1 kB) up to its days' insert,
    which operators (and a test) look for in ``pg_stat_activity``."""
    return await fetch_on_driver(
        s,
        _RECORD_HOURS,
        {
            "application_ids": application_ids,
            "service_dates": service_dates,
            "minutes": minutes,
            "late": late,
            "notes": notes,
            "project_id": project_id,
            "source": source,
            "recorded_by": recorded_by,
            "now": now,
            "channel": messaging.channel,
            **events,
        },
    )


async def recorded_minutes(s: AsyncSession, application_id: uuid.UUID) -> int:
    stmt = select(func.coalesce(func.sum(hours_records.c.minutes), 0)).where(
        hours_records.c.application_id == application_id
    )
    return int((await s.execute(stmt)).scalar_one())


async def hours_record(s: AsyncSession, record_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
    stmt = (
        select(
            hours_records,
            projects.c.team_id,
            projects.c.lead_account_id,
        )
        .select_from(hours_records.join(projects, projects.c.id == hours_records.c.project_id))
        .where(hours_records.c.id == record_id)
    )
    if for_update:
        stmt = stmt.with_for_update(of=hours_records)
    return (await s.execute(stmt)).mappings().first()


async def correct_hours(
    s: AsyncSession,
    *,
    record_id: uuid.UUID,
    previous: int,
    new: int,
    reason: str,
    by: uuid.UUID,
    now: datetime,
) -> None:
    await s.execute(update(hours_records).where(hours_records.c.id == record_id).values(minutes=new, corrected=True))
    await s.execute(
        insert(hours_corrections).values(
            id=uuid.uuid4(),
            record_id=record_id,
            previous_minutes=previous,
            new_minutes=new,
            reason=reason,
            corrected_by=by,
            corrected_at=now,
        )
    )


async def corrections_of(s: AsyncSession, record_id: uuid.UUID) -> list[Row]:
    stmt = (
        select(hours_corrections)
        .where(hours_corrections.c.record_id == record_id)
        .order_by(hours_corrections.c.corrected_at)
    )
    return list((await s.execute(stmt)).mappings())


async def corrections_of_records(s: AsyncSession, record_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Row]]:
    """The corrections of several records (a page of them), each record's oldest first."""
    if not record_ids:
        return {}
    stmt = (
        select(hours_corrections)
        .where(hours_corrections.c.record_id.in_(record_ids))
        .order_by(hours_corrections.c.record_id, hours_corrections.c.corrected_at)
    )
    found: dict[uuid.UUID, list[Row]] = {}
    for row in (await s.execute(stmt)).mappings():
        found.setdefault(row["record_id"], []).append(row)
    return found


async def list_hours(
    s: AsyncSession,
    *,
    project_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Row]:
    stmt = select(hours_records)
    if project_id is not None:
        stmt = stmt.where(hours_records.c.project_id == project_id)
    if account_id is not None:
        stmt = stmt.where(hours_records.c.account_id == account_id)
    if after is not None:
        stmt = stmt.where(tuple_(hours_records.c.recorded_at, hours_records.c.id) > tuple_(*after))
    stmt = stmt.order_by(hours_records.c.recorded_at, hours_records.c.id).limit(limit)
    return list((await s.execute(stmt)).mappings())


async def project_minutes(s: AsyncSession, project_id: uuid.UUID) -> int:
    """The project's total over every volunteer: its records' minutes, summed on their own."""
    stmt = select(func.coalesce(func.sum(hours_records.c.minutes), 0)).where(hours_records.c.project_id == project_id)
    return int((await s.execute(stmt)).scalar_one())


#: at most this many of a project's applications are looked at for one page of volunteer totals
TOTALS_SCAN = 2_000

# A project's applications after :after_seq are the range of ix_applications_project_seq from
# (project, after_seq) to (project, max_seq), not "project_id = :project_id" (see list_applications).
_VOLUNTEER_MINUTES_PAGE = text(
    """
    SELECT a.seq, a.account_id, v.masked_name, v.volunteer_number, m.minutes
    FROM (
        SELECT a.project_id, a.seq, a.account_id, a.stage FROM applications a
        WHERE (a.project_id, a.seq) > (:project_id, :after_seq) AND (a.project_id, a.seq) <= (:project_id, :max_seq)
        ORDER BY a.project_id, a.seq
        LIMIT :scan
    ) a
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(h.minutes), 0) AS minutes
        FROM applications b JOIN hours_records h ON h.application_id = b.id
        WHERE b.account_id = a.account_id AND b.project_id = a.project_id
    ) m
    LEFT JOIN volunteers v ON v.account_id = a.account_id
    WHERE a.stage IN ('admitted', 'training', 'serving', 'completed')
      AND NOT EXISTS (
          SELECT 1 FROM applications e
          WHERE e.account_id = a.account_id AND e.project_id = a.project_id AND e.seq < a.seq
            AND e.stage IN ('admitted', 'training', 'serving', 'completed')
      )
      AND m.minutes > 0
    ORDER BY a.project_id, a.seq
    LIMIT :limit
    """
)

_SCANNED_TO = text(
    """
    SELECT a.seq FROM applications a
    WHERE (a.project_id, a.seq) > (:project_id, :after_seq) AND (a.project_id, a.seq) <= (:project_id, :max_seq)
    ORDER BY a.project_id, a.seq
    OFFSET :scan - 1 LIMIT 1
    """
)


async def volunteer_minutes_page(
    s: AsyncSession, *, project_id: uuid.UUID, after_seq: int | None, limit: int, scan: int | None = None
) -> list[Row]:
    """Volunteers of the project with their minutes there, in order of application (each where
    their first application holding a place stands; ``seq``, the cursor), at most ``limit``, among
    the next ``scan`` applications of the project after ``after_seq``. Driven by the project's
    applications (``ix_applications_project_seq``) and each volunteer's records found through their
    applications (``ix_hours_records_day``): a page reads its volunteers' rows, not the project's,
    and hours_records, which every bulk recording writes, needs no index of its own for it.
    Volunteers with no minutes (none recorded yet, or all corrected away) are left out, as when
    the totals were one grouping of the project's records: pages stop at ``scan`` applications
    looked at, so where few volunteers have minutes a page may hold fewer than ``limit``."""
    params = {
        "project_id": project_id,
        "after_seq": after_seq if after_seq is not None else 0,
        "max_seq": _MAX_SEQ,
        "scan": TOTALS_SCAN if scan is None else scan,
        "limit": limit,
    }
    return list((await s.execute(_VOLUNTEER_MINUTES_PAGE, params)).mappings())


async def applications_scanned_to(
    s: AsyncSession, *, project_id: uuid.UUID, after_seq: int | None, scan: int | None = None
) -> int | None:
    """The last of the ``scan`` applications :func:`volunteer_minutes_page` looked at after
    ``after_seq``; None when the project has fewer left (the page reached its last one)."""
    params = {
        "project_id": project_id,
        "after_seq": after_seq if after_seq is not None else 0,
        "max_seq": _MAX_SEQ,
        "scan": TOTALS_SCAN if scan is None else scan,
    }
    seq = (await s.execute(_SCANNED_TO, params)).scalar()
    return None if seq is None else int(seq)


async def volunteer_totals(s: AsyncSession, account_id: uuid.UUID) -> list[Row]:
    stmt = (
        select(
            hours_records.c.project_id,
            projects.c.title,
            func.sum(hours_records.c.minutes).label("minutes"),
        )
        .select_from(hours_records.join(projects, projects.c.id == hours_records.c.project_id))
        .where(hours_records.c.account_id == account_id)
        .group_by(hours_records.c.project_id, projects.c.title)
        .order_by(projects.c.title)
    )
    return list((await s.execute(stmt)).mappings())


# -- sign-in / sign-out -----------------------------------------------------------------------------
async def open_attendance(
    s: AsyncSession, *, application_id: uuid.UUID, account_id: uuid.UUID, service_date: date, now: datetime
) -> uuid.UUID | None:
    """The session, or None when the application or the volunteer has one open already: the unique
    indexes on open sessions (``uq_attendances_open``, ``uq_attendances_open_account``) decide, so of
    two sign-ins at once, in one project or two, one opens and the other waits for it and gets None."""
    attendance_id = uuid.uuid4()
    stmt = (
        pg_insert(attendances)
        .values(
            id=attendance_id,
            application_id=application_id,
            account_id=account_id,
            service_date=service_date,
            signed_in_at=now,
        )
        .on_conflict_do_nothing()
        .returning(attendances.c.id)
    )
    return attendance_id if (await s.execute(stmt)).first() is not None else None


async def open_attendance_of(s: AsyncSession, account_id: uuid.UUID) -> Row | None:
    """The volunteer's open session in any project (at most one), locked, with its application's
    project and stage."""
    stmt = (
        select(attendances, applications.c.project_id, applications.c.stage)
        .select_from(attendances.join(applications, applications.c.id == attendances.c.application_id))
        .where(attendances.c.account_id == account_id, attendances.c.signed_out_at.is_(None))
        .with_for_update(of=attendances)
    )
    return (await s.execute(stmt)).mappings().first()


async def current_attendance(s: AsyncSession, application_id: uuid.UUID) -> Row | None:
    stmt = (
        select(attendances)
        .where(attendances.c.application_id == application_id, attendances.c.signed_out_at.is_(None))
        .with_for_update()
    )
    return (await s.execute(stmt)).mappings().first()


async def close_attendance(
    s: AsyncSession, attendance_id: uuid.UUID, now: datetime, record_id: uuid.UUID | None, *, abandoned: bool = False
) -> None:
    await s.execute(
        update(attendances)
        .where(attendances.c.id == attendance_id)
        .values(signed_out_at=now, record_id=record_id, abandoned=abandoned)
    )
