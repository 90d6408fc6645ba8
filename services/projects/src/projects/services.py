"""Use cases: load, ask the domain, write; the unit of work commits state and events together."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from projects import errors
from projects import repository as repo
from projects.domain import application as stages
from projects.domain import hours as hours_rules
from projects.domain import project as project_rules
from projects.turns import PositionTurns
from projects.unit_of_work import ProjectsUnitOfWork, event_row_params
from shared import regions
from shared.auth import Principal
from shared.clock import local_today
from shared.contracts.projects import (
    ApplicationAdmitted,
    ApplicationLeft,
    ApplicationRejected,
    ApplicationStageChanged,
    ApplicationSubmitted,
    ApplicationWithdrawn,
    HoursCorrected,
    HoursRecorded,
    ProjectClosed,
    ProjectExtended,
    ProjectPublished,
)
from shared.db import UnitOfWork
from shared.errors import AppError, Localised
from shared.logging import get_logger

if TYPE_CHECKING:
    import asyncpg

    from projects.bootstrap import ProjectsRuntime

log = get_logger("projects.services")

ADMIN = "admin"
LEAD = "lead"


# -- access -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Access:
    """What the caller is to one project: its lead, an admin of its team, a team project lead."""

    is_lead: bool
    team_roles: frozenset[str]

    @classmethod
    def of(cls, project: repo.Row, principal: Principal, roles: Iterable[str]) -> Access:
        team_roles = frozenset(roles)
        is_lead = project["lead_account_id"] == principal.account_id and bool(team_roles)
        return cls(is_lead=is_lead, team_roles=team_roles)

    @property
    def manages(self) -> bool:
        """Leads of this project and admins of its team run it (admit, record hours)."""
        return self.is_lead or ADMIN in self.team_roles

    @property
    def is_team_admin(self) -> bool:
        return ADMIN in self.team_roles


async def access_to(uow: UnitOfWork, project: repo.Row, principal: Principal) -> Access:
    """A project's lead runs it only while still holding a role in its team: one whose admin or
    project-lead role the team withdrew keeps no access to the projects they led (a team admin
    hands them to someone else: :func:`assign_lead`)."""
    roles = await repo.team_roles_of(uow.session, project["team_id"], principal.account_id)
    return Access.of(project, principal, roles)


async def require_manager(uow: UnitOfWork, project: repo.Row, principal: Principal) -> Access:
    access = await access_to(uow, project, principal)
    if not access.manages:
        raise AppError(errors.NOT_PROJECT_MANAGER)
    return access


async def managed_project(
    uow: UnitOfWork, principal: Principal, project_id: uuid.UUID, *, for_update: bool = False
) -> tuple[repo.Row, Access]:
    """The project (locked if asked) run by the caller, with the caller's access (see :func:`access_to`);
    refused if it does not exist or the caller does not run it."""
    row = await repo.project_with_roles(uow.session, project_id, principal.account_id, for_update=for_update)
    if row is None:
        raise AppError(errors.PROJECT_NOT_FOUND)
    access = Access.of(row, principal, row["caller_roles"])
    if not access.manages:
        raise AppError(errors.NOT_PROJECT_MANAGER)
    return row, access


async def load_project(uow: UnitOfWork, project_id: uuid.UUID, *, for_update: bool = False) -> repo.Row:
    row = await repo.project(uow.session, project_id, for_update=for_update)
    if row is None:
        raise AppError(errors.PROJECT_NOT_FOUND)
    return row


def dates_of(row: Any) -> project_rules.ProjectDates:
    return project_rules.ProjectDates(
        row["starts_on"], row["ends_on"], row["recruit_starts_on"], row["recruit_ends_on"]
    )


# -- projects (P1-P4) -------------------------------------------------------------------------------
async def create_project(uow: UnitOfWork, principal: Principal, data: dict[str, Any]) -> uuid.UUID:
    s = uow.session
    team = await repo.team(s, data["team_id"])
    roles = await repo.team_roles_of(s, data["team_id"], principal.account_id)
    if not roles:
        raise AppError(errors.NOT_TEAM_MANAGER)
    if team is None or not team["approved"]:
        raise AppError(errors.TEAM_NOT_APPROVED)
    if not regions.is_valid(data["region_code"]):
        raise AppError(errors.REGION_INVALID, {"region_code": data["region_code"]})
    dates = project_rules.ProjectDates(
        data["starts_on"], data["ends_on"], data["recruit_starts_on"], data["recruit_ends_on"]
    )
    dates.check()
    lead = data.get("lead_account_id") or principal.account_id
    if lead != principal.account_id and not await repo.team_roles_of(s, data["team_id"], lead):
        raise AppError(errors.LEAD_NOT_IN_TEAM)
    project_id = uuid.uuid4()
    contact = data["contact"]
    await repo.insert_project(
        s,
        {
            "id": project_id,
            "team_id": data["team_id"],
            "lead_account_id": lead,
            "created_by": principal.account_id,
            "copied_from": data.get("copied_from"),
            "title": data["title"],
            "description": data["description"],
            "category": data["category"],
            "region_code": data["region_code"],
            "address": data["address"],
            "contact_name": contact["name"],
            "contact_phone": contact["phone"],
            "contact_email": contact.get("email"),
            "requirements": data.get("requirements") or "",
            "starts_on": dates.starts_on,
            "ends_on": dates.ends_on,
            "recruit_starts_on": dates.recruit_starts_on,
            "recruit_ends_on": dates.recruit_ends_on,
            "status": project_rules.DRAFT,
            "created_at": uow.clock.now(),
        },
    )
    await repo.insert_positions(
        s,
        [
            {
                "id": uuid.uuid4(),
                "project_id": project_id,
                "name": p["name"],
                "description": p.get("description") or "",
                "quota": p["quota"],
                "admission_mode": p["admission_mode"],
            }
            for p in data["positions"]
        ],
    )
    return project_id


async def copy_project(
    uow: UnitOfWork, principal: Principal, source_id: uuid.UUID, dates: project_rules.ProjectDates
) -> uuid.UUID:
    """P3: same content and positions, new dates; a new draft. Its lead is the source's while they
    still hold a role in the team, else whoever copies it (who may hand it on: ``assign_lead``)."""
    source, _ = await managed_project(uow, principal, source_id)
    positions = await repo.positions_of(uow.session, source_id)
    lead = source["lead_account_id"]
    if lead != principal.account_id and not await repo.team_roles_of(uow.session, source["team_id"], lead):
        lead = principal.account_id
    data: dict[str, Any] = {
        key: source[key]
        for key in ("team_id", "title", "description", "category", "region_code", "address", "requirements")
    }
    data.update(
        contact={"name": source["contact_name"], "phone": source["contact_phone"], "email": source["contact_email"]},
        lead_account_id=lead,
        copied_from=source_id,
        starts_on=dates.starts_on,
        ends_on=dates.ends_on,
        recruit_starts_on=dates.recruit_starts_on,
        recruit_ends_on=dates.recruit_ends_on,
        positions=[
            {
                "name": p["name"],
                "description": p["description"],
                "quota": p["quota"],
                "admission_mode": p["admission_mode"],
            }
            for p in positions
        ],
    )
    return await create_project(uow, principal, data)


EDITABLE = (
    "title",
    "description",
    "category",
    "region_code",
    "address",
    "requirements",
    "starts_on",
    "ends_on",
    "recruit_starts_on",
    "recruit_ends_on",
)


#: what may still change once a project is published (or closed): what people read to decide and to
#: reach its managers (P8's published contact: a changed phone number is corrected); not what
#: they applied to (title, category, place, dates: those change by an extension)
EDITABLE_PUBLISHED = frozenset({"contact", "description", "requirements"})


async def edit_draft(uow: UnitOfWork, principal: Principal, project_id: uuid.UUID, changes: dict[str, Any]) -> None:
    """A draft's content and dates may change (P1/P2 checked on the result); a published or closed
    project's contact details, description and requirements only."""
    row, _ = await managed_project(uow, principal, project_id, for_update=True)
    if row["status"] != project_rules.DRAFT and (locked := sorted(set(changes) - EDITABLE_PUBLISHED)):
        fields = ", ".join(locked)
        raise AppError(errors.PUBLISHED_FIELDS_LOCKED, {"fields": locked}, params={"fields": fields})
    merged = {**dict(row), **changes}
    dates_of(merged).check()
    if "region_code" in changes and not regions.is_valid(changes["region_code"]):
        raise AppError(errors.REGION_INVALID, {"region_code": changes["region_code"]})
    values = {k: v for k, v in changes.items() if k in EDITABLE}
    contact = changes.get("contact")
    if contact is not None:
        values.update(contact_name=contact["name"], contact_phone=contact["phone"], contact_email=contact.get("email"))
    if values:
        await repo.update_project(uow.session, project_id, **values)


async def add_position(uow: UnitOfWork, principal: Principal, project_id: uuid.UUID, data: dict[str, Any]) -> None:
    row, _ = await managed_project(uow, principal, project_id, for_update=True)
    if row["status"] == project_rules.CLOSED:
        raise AppError(errors.PROJECT_CLOSED)
    await repo.insert_positions(uow.session, [{"id": uuid.uuid4(), "project_id": project_id, **data}])


async def change_quota(uow: UnitOfWork, principal: Principal, position_id: uuid.UUID, quota: int) -> uuid.UUID:
    row = await repo.position(uow.session, position_id)
    if row is None:
        raise AppError(errors.POSITION_NOT_FOUND)
    await require_manager(uow, row, principal)
    if await repo.hold_project_status(uow.session, row["project_id"]) == project_rules.CLOSED:
        raise AppError(errors.PROJECT_CLOSED)  # as adding a position: an extension reopens it
    # the new places go to those waiting, in order of application, before any later applicant;
    # locked before the position's row (the order an admission takes them in), all in one statement
    auto = row["admission_mode"] == "auto"
    waiters = await repo.next_in_line(uow.session, position_id, quota - row["admitted"]) if auto else []
    admitted = await repo.set_quota(uow.session, position_id, quota)
    if admitted is None:
        admitted = await repo.count_admitted(uow.session, position_id)
        raise AppError(errors.QUOTA_BELOW_ADMITTED, {"admitted": admitted}, params={"admitted": admitted})
    # the position's row is held since set_quota: exactly quota - admitted places are free
    given = await _admit_waiters(uow, row, waiters[: max(0, quota - admitted)])
    if auto and quota - admitted > len(given):
        # places still free: for whoever went into line meanwhile, once committed
        await repo.mark_places_to_give(uow.session, position_id, uow.clock.now())
    project_id: uuid.UUID = row["project_id"]
    return project_id


async def admit_waiting(uow: UnitOfWork, position_id: uuid.UUID) -> set[uuid.UUID]:
    """Free places of an automatic position go to those waiting, oldest first; returns the
    applications admitted (none when nobody waits, no place is free, or the position is manual).

    Run after a commit, in a transaction of its own: after a raised quota, a leave that found
    nobody waiting or a merge that gave a place back (``consumers.on_volunteer``: a merge admits
    nobody itself), and after an application that went into line found a place free. An
    application submitted while a raise (or such a leave or merge) runs reads the position as last committed
    (full) and goes into line; the raise admits the waiters it locked, before that application
    existed. Neither sees the other until both have committed, so each looks after its commit: the
    raise admits whoever now waits for places still free (this), and an application that went into
    line checks for a free place (``repo.has_free_place``) and, finding one, runs this. Whichever
    commits last sees the other's commit. Waiters are locked before the position's row, as
    everywhere, and one locked by another request is waited for, not skipped."""
    s = uow.session
    # what the places freed so far ask for (models.places_to_give): cleared once answered, not a
    # freeing committed after this read, whose own admission (or the sweep) answers it
    seen = await repo.places_mark(s, position_id)
    admitted = await _admit_waiting(uow, position_id)
    if seen is not None:
        await repo.clear_places_mark(s, position_id, seen)
    return admitted


async def _admit_waiting(uow: UnitOfWork, position_id: uuid.UUID) -> set[uuid.UUID]:
    s = uow.session
    row = await repo.position(s, position_id)
    if row is None or row["admission_mode"] != "auto" or row["admitted"] >= row["quota"]:
        return set()
    if await repo.hold_project_status(s, row["project_id"]) == project_rules.CLOSED:
        return set()  # nobody is admitted to a closed project; its extension gives the places
    waiters = await repo.next_in_line(s, position_id, row["quota"] - row["admitted"])
    if not waiters:
        return set()
    free = await repo.free_places(s, position_id)
    return await _admit_waiters(uow, row, waiters[: max(0, free)])


async def give_places_left(runtime: ProjectsRuntime) -> int:
    """The admission sweep: positions whose freed places were marked more than
    ``admission_sweep_grace`` ago and never cleared (the admission after the freeing failed, or its
    process stopped first) get :func:`admit_waiting` now, each in a transaction of its own. Every
    replica may run it: two admissions of one position take turns on its waiters' rows. Returns
    the applications admitted."""
    before = runtime.clock.now() - timedelta(seconds=runtime.settings.admission_sweep_grace)
    async with runtime.uow() as uow:
        left = await repo.places_left_to_give(uow.session, before, runtime.settings.admission_sweep_batch)
    admitted = 0
    for position_id in left:
        admitted += len(await admit_waiting_after_commit(runtime.uow(), position_id))
    if left:
        log.info("places_given_late", positions=len(left), admitted=admitted)
    return admitted


async def admit_waiting_after_commit(uow: UnitOfWork, position_id: uuid.UUID) -> set[uuid.UUID]:
    """:func:`admit_waiting` in ``uow`` (not yet entered) for a request whose own change is already
    committed: a failure here is logged and leaves the line as it was, it does not fail the request."""
    try:
        async with uow:
            return await admit_waiting(uow, position_id)
    except Exception as exc:  # the caller's change stands; the next raise, leave or application retries
        log.warning("admit_waiting_failed", position_id=str(position_id), error=type(exc).__name__)
        return set()


async def assign_lead(uow: UnitOfWork, principal: Principal, project_id: uuid.UUID, lead: uuid.UUID) -> None:
    """A team admin hands a project to another of the team's admins or project leads (at any stage:
    a closed project still has hours to correct and ratings to give)."""
    project = await load_project(uow, project_id, for_update=True)
    access = await access_to(uow, project, principal)
    if not access.is_team_admin:
        raise AppError(errors.NOT_TEAM_ADMIN)
    if not await repo.team_roles_of(uow.session, project["team_id"], lead):
        raise AppError(errors.LEAD_NOT_IN_TEAM)
    await repo.update_project(uow.session, project_id, lead_account_id=lead)


async def publish_project(uow: UnitOfWork, principal: Principal, project_id: uuid.UUID) -> None:
    row, _ = await managed_project(uow, principal, project_id, for_update=True)
    positions = await repo.positions_of(uow.session, project_id)
    project_rules.check_publishable(row["status"], len(positions), row["ends_on"], local_today(uow.clock))
    now = uow.clock.now()
    await repo.update_project(uow.session, project_id, status=project_rules.PUBLISHED, published_at=now)
    uow.raise_event(
        ProjectPublished(
            project_id=project_id,
            team_id=row["team_id"],
            title=row["title"],
            region_code=row["region_code"],
            starts_on=row["starts_on"],
            ends_on=row["ends_on"],
        )
    )


async def close_due_projects(runtime: ProjectsRuntime) -> int:
    """自动结项 sweep: closes every published project past its end date, in batches."""
    closed = 0
    while True:
        async with runtime.uow() as uow:
            rows = await repo.close_due_projects(
                uow.session,
                today=local_today(uow.clock),
                now=uow.clock.now(),
                batch=runtime.settings.close_sweep_batch,
            )
            admins = await repo.team_admin_ids(uow.session, [row["team_id"] for row in rows]) if rows else {}
            leads = await repo.leads_to_tell(uow.session, rows)
            for row in rows:
                uow.raise_event(
                    ProjectClosed(
                        project_id=row["id"],
                        team_id=row["team_id"],
                        title=row["title"],
                        closed_at=row["closed_at"],
                        closed_on=project_rules.closing_day(row["closed_at"], row["ends_on"]),
                        automatic=True,
                        lead_account_ids=leads[row["id"]],
                        team_admin_account_ids=admins.get(row["team_id"], []),
                        team_admin_extension_used=row["team_admin_extensions"] >= 1,
                    )
                )
        closed += len(rows)
        if len(rows) < runtime.settings.close_sweep_batch:
            break
    if closed:
        log.info("projects_closed", count=closed)
    return closed


async def extend_project(
    uow: UnitOfWork, principal: Principal, project_id: uuid.UUID, new_end_date: date
) -> list[uuid.UUID]:
    """P4. Returns the automatic positions with places free (freed while the project was closed, by
    a leave): once this is committed, the caller gives them to those waiting (:func:`admit_waiting`;
    the admission sweep does it otherwise, as the positions are marked)."""
    row = await load_project(uow, project_id, for_update=True)
    access = await access_to(uow, row, principal)
    project_rules.check_extension(
        project_rules.ExtensionRequest(
            status=row["status"],
            closed_at=row["closed_at"],
            team_admin_extensions=row["team_admin_extensions"],
            starts_on=row["starts_on"],
            ends_on=row["ends_on"],
            new_end_date=new_end_date,
            today=local_today(uow.clock),
            by_team_admin=access.is_team_admin,
            by_national_admin=principal.is_national_admin,
            by_project_lead=access.is_lead,
        )
    )
    values: dict[str, Any] = {
        "status": project_rules.PUBLISHED,
        "ends_on": new_end_date,
        "closed_at": None,
        "closed_automatically": False,
        "extensions": row["extensions"] + 1,
    }
    if not principal.is_national_admin:  # the team admin's one extension is now used
        values["team_admin_extensions"] = row["team_admin_extensions"] + 1
    await repo.update_project(uow.session, project_id, **values)
    # places freed while it was closed (a leave) go to those waiting, once this has committed
    free = await repo.automatic_positions_with_free_places(uow.session, project_id)
    for position_id in free:
        await repo.mark_places_to_give(uow.session, position_id, uow.clock.now())
    uow.raise_event(
        ProjectExtended(
            project_id=project_id,
            team_id=row["team_id"],
            title=row["title"],
            new_end_date=new_end_date,
            extended_by_account_id=principal.account_id,
            by_national_admin=principal.is_national_admin,
            lead_account_ids=(await repo.leads_to_tell(uow.session, [row]))[row["id"]],
            team_admin_account_ids=[
                a
                for a in (await repo.team_admin_ids(uow.session, [row["team_id"]])).get(row["team_id"], [])
                if a != principal.account_id
            ],
        )
    )
    return free


# -- applications (P5, P6, P8) ----------------------------------------------------------------------
def _application_event_fields(row: Any, application_id: uuid.UUID, account_id: uuid.UUID) -> dict[str, Any]:
    return {
        "application_id": application_id,
        "project_id": row["project_id"],
        "position_id": row["position_id"],
        "account_id": account_id,
        "project_title": row["project_title"],
        "position_name": row["position_name"],
    }


async def apply(
    uow: ProjectsUnitOfWork,
    principal: Principal,
    position_id: uuid.UUID,
    motivation: str | None,
    turns: PositionTurns | None = None,
) -> tuple[uuid.UUID, str]:
    """A verified volunteer applies during recruitment. On an auto-admitting position the place is
    taken in the same transaction by the conditional update; when none is left the application waits
    in line (applied) and is admitted when a place frees up. Every write is one statement on a
    connection of its own (:meth:`ProjectsUnitOfWork.single_statements`): nothing goes through the
    unit of work's session, so it need not be entered (the API does not, and opens no session)."""
    # one of the replica's turns at the position (``turns``) before a connection: in a surge on one
    # position the requests beyond them wait here, not on the position's row with a pooled connection
    async with turns.turn(position_id) if turns is not None else nullcontext(), uow.single_statements() as conn:
        application_id, stage, place_free = await _apply(uow, conn, principal, position_id, motivation)
    # in line while a place is free: a raise, leave or merge committed since this application read
    # the position (see admit_waiting), or a free place was left beside those waiting (their
    # admission not run yet, or lost with its process: the line is admitted in order now); rare,
    # and the only time the unit of work's session is opened here
    if place_free and application_id in await admit_waiting_after_commit(uow, position_id):
        stage = stages.ADMITTED
    return application_id, stage


async def _apply(
    uow: ProjectsUnitOfWork,
    conn: asyncpg.Connection,
    principal: Principal,
    position_id: uuid.UUID,
    motivation: str | None,
) -> tuple[uuid.UUID, str, bool]:
    """Returns the application, its stage and whether it went into line on an automatic position
    that has a free place now. The hot path of a surge: one statement (``repo.apply``), its own
    transaction, reads the position and the volunteer, and if the rules hold takes the place, writes
    the row and the events (the admission event only if a place was taken); the position stays
    locked only while the statement runs, and nothing is written unless all of it is. The rules are
    judged here from what the statement read, to refuse with the rule's own code."""
    application_id = uuid.uuid4()
    today = local_today(uow.clock)
    ctx, already_applied = await repo.apply(
        conn,
        application_id=application_id,
        position_id=position_id,
        account_id=principal.account_id,
        motivation=motivation,
        today=today,
        now=uow.clock.now(),
        events=_apply_event_params(uow),
    )
    if already_applied:
        raise stages.already_applied(await repo.existing_stage(conn, position_id, principal.account_id))
    if ctx is None:
        raise AppError(errors.POSITION_NOT_FOUND)
    if ctx["status"] == project_rules.DRAFT:
        raise AppError(errors.POSITION_NOT_FOUND)  # a draft is seen by its team only
    if not ctx["verified"]:
        raise AppError(errors.VOLUNTEER_NOT_VERIFIED)
    if not project_rules.is_recruiting(ctx["status"], dates_of(ctx), today):
        raise AppError(
            errors.PROJECT_NOT_RECRUITING,
            {
                "recruit_starts_on": ctx["recruit_starts_on"].isoformat(),
                "recruit_ends_on": ctx["recruit_ends_on"].isoformat(),
            },
        )
    stage: str | None = ctx["stage"]
    if stage is None:  # the statement's rules and these disagree: a bug, not the caller's doing
        raise RuntimeError("the apply statement wrote nothing for an application the rules accept")
    # one more read (committed state) for an application put in line on an automatic position
    auto_in_line = stage == stages.APPLIED and ctx["admission_mode"] == "auto"
    return application_id, stage, auto_in_line and await repo.has_free_place(conn, position_id)


def _apply_event_params(uow: ProjectsUnitOfWork) -> dict[str, Any]:
    """The outbox columns of an application's events, whose payloads ``repo.apply`` builds."""
    return {
        **event_row_params(uow, ApplicationSubmitted),
        "submitted_id": uuid.uuid4(),
        "submitted_type": ApplicationSubmitted.event_type,
        "submitted_version": ApplicationSubmitted.schema_version,
        "admitted_id": uuid.uuid4(),
        "admitted_type": ApplicationAdmitted.event_type,
        "admitted_version": ApplicationAdmitted.schema_version,
    }


async def load_application(uow: UnitOfWork, application_id: uuid.UUID, *, for_update: bool = False) -> repo.Row:
    row = await repo.application(uow.session, application_id, for_update=for_update)
    if row is None:
        raise AppError(errors.APPLICATION_NOT_FOUND)
    return row


async def _managed_application(uow: UnitOfWork, principal: Principal, application_id: uuid.UUID) -> repo.Row:
    row = await load_application(uow, application_id, for_update=True)
    access = await access_to(uow, row, principal)
    if not access.manages:
        raise AppError(errors.NOT_PROJECT_MANAGER)
    return row


async def _owned_application(uow: UnitOfWork, principal: Principal, application_id: uuid.UUID) -> repo.Row:
    row = await load_application(uow, application_id, for_update=True)
    if row["account_id"] != principal.account_id:
        raise AppError(errors.APPLICATION_NOT_FOUND)  # another's application does not exist for you
    return row


async def admit(uow: UnitOfWork, principal: Principal, application_id: uuid.UUID) -> None:
    row = await _managed_application(uow, principal, application_id)
    if await repo.hold_project_status(uow.session, row["project_id"]) == project_rules.CLOSED:
        raise AppError(errors.PROJECT_CLOSED)  # an extension reopens it
    stages.check_admissible(row["stage"])
    if not await repo.take_place(uow.session, row["position_id"]):
        raise AppError(errors.POSITION_FULL)
    await repo.set_stage(uow.session, application_id, stages.ADMITTED, uow.clock.now())
    uow.raise_event(ApplicationAdmitted(**_application_event_fields(row, application_id, row["account_id"])))


async def move_stage(
    uow: UnitOfWork, principal: Principal, application_id: uuid.UUID, target: str, reason: str | None
) -> None:
    row = await _managed_application(uow, principal, application_id)
    stages.check_lead_move(row["stage"], target)
    await repo.set_stage(uow.session, application_id, target, uow.clock.now(), reason)
    fields = _application_event_fields(row, application_id, row["account_id"])
    if target == stages.REJECTED:
        uow.raise_event(ApplicationRejected(**fields, reason=reason))
    else:
        uow.raise_event(ApplicationStageChanged(**fields, stage=target))


async def withdraw(uow: UnitOfWork, principal: Principal, application_id: uuid.UUID) -> None:
    """P6: the volunteer deletes a pending application."""
    row = await _owned_application(uow, principal, application_id)
    stages.check_withdrawable(row["stage"])
    await repo.set_stage(uow.session, application_id, stages.WITHDRAWN, uow.clock.now())
    await repo.forget_motivation(uow.session, application_id)  # deleted (P6): what they wrote goes too
    uow.raise_event(ApplicationWithdrawn(**_application_event_fields(row, application_id, row["account_id"])))


async def leave(
    uow: UnitOfWork, principal: Principal, application_id: uuid.UUID, *, session_max_minutes: int
) -> uuid.UUID | None:
    """P6: an admitted volunteer with no hours leaves; the lead is emailed at once (application.left).
    The place frees up; on an auto-admitting position the next in line takes it. Returns the
    automatic position whose place nobody waiting took: once this is committed, the caller gives it
    to whoever went into line meanwhile (:func:`admit_waiting`, as after a raised quota)."""
    row = await _owned_application(uow, principal, application_id)  # locked: recordings wait or re-check
    s = uow.session
    stages.check_can_leave(row["stage"], await repo.recorded_minutes(s, application_id))
    # signed in, the volunteer is serving: no leaving (the sign-out records the session, and with
    # hours recorded they no longer may); a session forgotten long ago says nothing of service: it
    # ends unrecorded, as at a sign-out, and they may leave
    attendance = await repo.current_attendance(s, application_id)
    if attendance is not None:
        if not hours_rules.session_forgotten(attendance["signed_in_at"], uow.clock.now(), session_max_minutes):
            raise AppError(errors.LEAVE_WHILE_SIGNED_IN)
        await repo.close_attendance(s, attendance["id"], uow.clock.now(), None, abandoned=True)
    # the next in line is locked before the position's row (the order an admission takes them in);
    # nobody is admitted to a closed project (its extension gives the places)
    closed = await repo.hold_project_status(s, row["project_id"]) == project_rules.CLOSED
    automatic = row["admission_mode"] == "auto" and not closed
    waiters = await repo.next_in_line(s, row["position_id"]) if automatic else []
    # the position's row before the application's stage: an application to that position (the
    # same volunteer applying again) takes the position's row first and then checks the unique
    # index the stage is part of; the other order deadlocked the two
    await repo.release_place(s, row["position_id"])
    await repo.set_stage(s, application_id, stages.LEFT, uow.clock.now())
    admitted = await _admit_next(uow, row, waiters[0]) if waiters else None
    shown = await repo.volunteer_shown(s, row["account_id"])
    project = {"id": row["project_id"], "team_id": row["team_id"], "lead_account_id": row["lead_account_id"]}
    # the lead (or, the lead gone from the team, its admins) learns who left as projects shows
    # volunteers to leads: masked name and number
    uow.raise_event(
        ApplicationLeft(
            **_application_event_fields(row, application_id, row["account_id"]),
            lead_account_ids=(await repo.leads_to_tell(s, [project]))[row["project_id"]],
            masked_name=shown["masked_name"] if shown else None,
            volunteer_number=shown["volunteer_number"] if shown else None,
            admission_mode=row["admission_mode"],
            next_admitted=admitted is not None,
        )
    )
    if admitted is not None:
        uow.raise_event(admitted)
    freed: uuid.UUID | None = row["position_id"] if automatic and admitted is None else None
    if freed is not None:
        await repo.mark_places_to_give(s, freed, uow.clock.now())
    return freed


async def _admit_waiters(uow: UnitOfWork, row: repo.Row, waiters: list[repo.Row]) -> set[uuid.UUID]:
    """Admit ``waiters`` (locked by the caller, oldest first, each with a free place: the caller holds
    the position's row) in one statement that also moves the position's count once; one admission
    event each, in order of application, written with the transaction's other events in one
    statement at commit (``ProjectsUnitOfWork.commit``)."""
    if not waiters:
        return set()
    admitted = await repo.admit_waiters(uow.session, row["position_id"], [w["id"] for w in waiters], uow.clock.now())
    for waiter in waiters:
        if waiter["id"] in admitted:
            fields = _application_event_fields(row, waiter["id"], waiter["account_id"])
            uow.raise_event(ApplicationAdmitted(**fields, automatic=True))
    return admitted


async def _admit_next(uow: UnitOfWork, row: repo.Row, nxt: repo.Row) -> ApplicationAdmitted | None:
    """Admit ``nxt`` (a waiter the caller locked) if a place is free; returns the admission event for
    the caller to raise."""
    s = uow.session
    if not await repo.take_place(s, row["position_id"]):
        return None
    await repo.set_stage(s, nxt["id"], stages.ADMITTED, uow.clock.now())
    return ApplicationAdmitted(**_application_event_fields(row, nxt["id"], nxt["account_id"]), automatic=True)


async def rate_by_team(
    uow: UnitOfWork, principal: Principal, application_id: uuid.UUID, score: int, comment: str | None
) -> None:
    row = await _managed_application(uow, principal, application_id)
    stages.check_can_rate(row["stage"])
    await repo.rate(uow.session, application_id, team_rating=score, team_comment=comment)


async def rate_by_volunteer(
    uow: UnitOfWork, principal: Principal, application_id: uuid.UUID, score: int, comment: str | None
) -> None:
    row = await _owned_application(uow, principal, application_id)
    stages.check_can_rate(row["stage"])
    await repo.rate(uow.session, application_id, volunteer_rating=score, volunteer_comment=comment)


# -- service hours (P7) -----------------------------------------------------------------------------
class HoursInput(Protocol):
    """A row to record: the API's validated rows are taken as they are (no copy per row)."""

    @property
    def application_id(self) -> uuid.UUID: ...
    @property
    def service_date(self) -> date: ...
    @property
    def minutes(self) -> int: ...
    @property
    def note(self) -> str | None: ...


@dataclass(frozen=True)
class HoursRow:
    application_id: uuid.UUID
    service_date: date
    minutes: int
    note: str | None = None


async def record_hours(
    uow: UnitOfWork,
    runtime: ProjectsRuntime,
    principal: Principal,
    project_id: uuid.UUID,
    rows: Sequence[HoursInput],
    *,
    source: str,
) -> list[repo.Row]:
    project, _ = await managed_project(uow, principal, project_id)
    return await _record(uow, runtime, project, rows, source=source, recorded_by=principal.account_id)


async def _record(
    uow: UnitOfWork,
    runtime: ProjectsRuntime,
    project: repo.Row,
    rows: Sequence[HoursInput],
    *,
    source: str,
    recorded_by: uuid.UUID,
) -> list[repo.Row]:
    """One path for single, bulk and sign-out recordings (late ones included, flagged)."""
    settings = runtime.settings
    today = local_today(uow.clock)
    closed = project["status"] == project_rules.CLOSED
    application_ids = [r.application_id for r in rows]
    service_dates = [r.service_date for r in rows]
    minutes = [r.minutes for r in rows]
    # the date rules once per distinct date (a sheet's hundreds of rows share a few), in row order:
    # a refusal names the first row's date that breaks them, with the sheet's rows on that date (and
    # a sheet breaking the dates and the cap is refused for its dates)
    dates = dict.fromkeys(service_dates)
    sheet = source == "bulk"
    for service_date in dates:
        try:
            hours_rules.check_service_date(service_date, project["starts_on"], project["ends_on"], today)
        except AppError as refused:
            if not sheet:
                raise
            on_it = [n for n, d in enumerate(service_dates, 1) if d == service_date]
            raise AppError(refused.spec, {**refused.detail, "rows": on_it}, params=refused.params) from None
    if sheet:
        _check_no_duplicate_rows(rows)
    grace = settings.hours_late_grace_days
    late_on = {d: hours_rules.is_late(d, today, project_closed=closed, grace_days=grace) for d in dates}
    if source == "sign":  # recorded on site as the session ends: never 补录 (one past midnight, on the
        # project's last evening, is the evening's, whether or not the close sweep ran meanwhile)
        late_on = dict.fromkeys(dates, False)
    if len(rows) > 1:
        await repo.plan_for_these_arrays(uow.session)
    recorded = await repo.record_hours(
        uow.session,
        project_id=project["id"],
        application_ids=application_ids,
        service_dates=service_dates,
        minutes=minutes,
        late=[late_on[d] for d in service_dates],
        notes=[r.note for r in rows],
        source=source,
        recorded_by=recorded_by,
        now=uow.clock.now(),
        events=event_row_params(uow, HoursRecorded),
    )
    if len(recorded) != len(rows):
        found = {r["application_id"] for r in recorded}
        missing = sorted({str(a) for a in application_ids if a not in found})
        raise AppError(errors.HOURS_NOT_ADMITTED, {"application_ids": missing})
    # a row over the cap on its own puts its day over too: one check, against the days' totals
    cap = settings.hours_daily_cap_minutes
    if recorded[0]["day_minutes"] > cap:
        over = await _days_over_cap(uow, rows, recorded, cap, sheet=sheet)
        hours_rules.check_daily_cap(recorded[0]["day_minutes"], cap, over=over)
    return recorded


async def _days_over_cap(
    uow: UnitOfWork, rows: Sequence[HoursInput], recorded: list[repo.Row], cap: int, *, sheet: bool
) -> list[dict[str, Any]]:
    """Each volunteer-day a refused recording put over the cap: the volunteer, the date, the day's
    total with it, the recording's applications on that day and (a sheet) its row numbers, from 1."""
    account_of = {r["application_id"]: r["account_id"] for r in recorded}
    rows_on: dict[tuple[uuid.UUID, date], list[tuple[int, uuid.UUID]]] = {}
    for n, row in enumerate(rows, 1):
        rows_on.setdefault((account_of[row.application_id], row.service_date), []).append((n, row.application_id))
    pairs = sorted(rows_on)
    days = await repo.days_over(uow.session, [a for a, _ in pairs], [d for _, d in pairs], cap)
    over: list[dict[str, Any]] = []
    for day in days:
        on_it = rows_on[(day["account_id"], day["service_date"])]
        entry: dict[str, Any] = {
            "account_id": str(day["account_id"]),
            "service_date": day["service_date"].isoformat(),
            "minutes_that_day": day["minutes"],
            "application_ids": sorted({str(a) for _, a in on_it}),
        }
        if sheet:
            entry["rows"] = [n for n, _ in on_it]
        over.append(entry)
    return over


def _check_no_duplicate_rows(rows: Sequence[HoursInput]) -> None:
    """A sheet listing one row twice (same application, date, minutes and note) is refused, naming
    the rows (from 1), each group of copies together: a row pasted twice would count its time
    twice. Two sessions of one day (other minutes, or another note) are two rows."""
    seen: dict[tuple[Any, ...], list[int]] = {}
    for n, row in enumerate(rows, 1):
        seen.setdefault((row.application_id, row.service_date, row.minutes, row.note or None), []).append(n)
    copies = [numbers for numbers in seen.values() if len(numbers) > 1]
    if copies:
        more = len(copies) > 10
        zh = ";".join(f"第{'、'.join(map(str, numbers))}行相同" for numbers in copies[:10]) + (" ……" if more else "")
        en = "; ".join(
            f"rows {', '.join(map(str, numbers[:-1]))} and {numbers[-1]} are the same" for numbers in copies[:10]
        ) + (" …" if more else "")
        raise AppError(errors.HOURS_DUPLICATE_ROWS, {"rows": copies}, params={"rows": Localised(zh, en)})


async def correct_hours(
    uow: UnitOfWork,
    runtime: ProjectsRuntime,
    principal: Principal,
    record_id: uuid.UUID,
    minutes: int,
    reason: str,
) -> None:
    """A correction never overwrites silently: the old value, who, when and why are kept."""
    record = await repo.hours_record(uow.session, record_id, for_update=True)
    if record is None:
        raise AppError(errors.HOURS_RECORD_NOT_FOUND)
    access = await access_to(uow, record, principal)
    if not access.manages:
        raise AppError(errors.NOT_PROJECT_MANAGER)
    if minutes == record["minutes"]:  # nothing to correct: no history, no event, not marked corrected
        raise AppError(errors.HOURS_CORRECTION_UNCHANGED, {"minutes": minutes}, params={"minutes": minutes})
    cap = runtime.settings.hours_daily_cap_minutes
    hours_rules.check_daily_cap(minutes, cap)
    [day] = await repo.add_to_days(
        uow.session, [record["application_id"]], [record["service_date"]], [minutes - record["minutes"]]
    )
    # the application is held now: a volunteer who left (or never held a place) gains no minutes
    if (
        minutes > record["minutes"]
        and await repo.stage_of(uow.session, record["application_id"]) not in stages.HOLDS_PLACE
    ):
        raise AppError(errors.HOURS_NOT_ADMITTED, {"application_ids": [str(record["application_id"])]})
    await repo.correct_hours(
        uow.session,
        record_id=record_id,
        previous=record["minutes"],
        new=minutes,
        reason=reason,
        by=principal.account_id,
        now=uow.clock.now(),
    )
    if minutes > record["minutes"]:  # lowering a day already over the cap (a merge's) stays possible
        hours_rules.check_daily_cap(day["minutes"], cap)
    uow.raise_event(
        HoursCorrected(
            record_id=record_id,
            application_id=record["application_id"],
            project_id=record["project_id"],
            account_id=record["account_id"],
            service_date=record["service_date"],
            minutes=minutes,
            late=record["late"],
            previous_minutes=record["minutes"],
            reason=reason,
            corrected_by=principal.account_id,
        )
    )


def _sign_secret(runtime: ProjectsRuntime) -> bytes:
    return b"sign-code:" + runtime.settings.secret_key.get_secret_value().encode()


async def sign_code(
    uow: UnitOfWork, runtime: ProjectsRuntime, principal: Principal, project_id: uuid.UUID, kind: str
) -> tuple[str, datetime]:
    await managed_project(uow, principal, project_id)
    expires_at = uow.clock.now() + timedelta(seconds=runtime.settings.sign_code_ttl_seconds)
    return hours_rules.issue_sign_code(_sign_secret(runtime), project_id, kind, expires_at), expires_at


async def sign_in(
    uow: UnitOfWork,
    runtime: ProjectsRuntime,
    principal: Principal,
    project_id: uuid.UUID,
    code: str,
    *,
    end_other_session: bool = False,
) -> datetime:
    now = uow.clock.now()
    hours_rules.read_sign_code(_sign_secret(runtime), code, project_id=project_id, kind=hours_rules.SIGN_IN, now=now)
    project = await load_project(uow, project_id)
    today = local_today(uow.clock)
    # a session that could not be recorded is refused at the door, not at sign-out
    hours_rules.check_service_date(today, project["starts_on"], project["ends_on"], today)
    application = await repo.on_board_application(uow.session, project_id, principal.account_id)
    if application is None:
        raise AppError(errors.SIGN_IN_NOT_ADMITTED)
    # one open session per volunteer over every project: on site in one place at a time, so no
    # minute counts twice (signed in at A and B, signing out of both counted the hours twice)
    stale = await repo.open_attendance_of(uow.session, principal.account_id)
    if stale is not None:
        forgotten = hours_rules.session_forgotten(stale["signed_in_at"], now, runtime.settings.sign_session_max_minutes)
        # an earlier sign-in never signed out, or its application no longer holds a place (withdrawn
        # by a merge: nobody can sign it out), or one on another project the volunteer left without
        # signing out and says so (only its lead shows the sign-out code): it ends unrecorded, and
        # this session starts
        elsewhere = end_other_session and stale["project_id"] != project_id
        if not forgotten and not elsewhere and stale["stage"] in stages.HOLDS_PLACE:
            raise _signed_in(stale, project_id)
        await repo.close_attendance(uow.session, stale["id"], now, None, abandoned=True)
    opened = await repo.open_attendance(
        uow.session, application_id=application["id"], account_id=principal.account_id, service_date=today, now=now
    )
    if opened is None:
        # another sign-in of this volunteer, here or elsewhere, committed first (the unique indexes
        # made this one wait for it): a statement of its own sees it
        winner = await repo.open_attendance_of(uow.session, principal.account_id)
        raise _signed_in(winner, project_id) if winner is not None else AppError(errors.ALREADY_SIGNED_IN)
    return now


def _signed_in(session: repo.Row, project_id: uuid.UUID) -> AppError:
    """The refusal of a sign-in while ``session`` is open: here, or in another project (named)."""
    if session["project_id"] == project_id:
        return AppError(errors.ALREADY_SIGNED_IN)
    return AppError(
        errors.SIGNED_IN_ELSEWHERE,
        {"project_id": str(session["project_id"]), "signed_in_at": session["signed_in_at"].isoformat()},
    )


async def sign_out(
    uow: UnitOfWork, runtime: ProjectsRuntime, principal: Principal, project_id: uuid.UUID, code: str
) -> tuple[int, uuid.UUID | None, bool]:
    """The time between sign-in and sign-out counts, up to what the day's cap still allows. A session
    open too long (a forgotten sign-out) ends with nothing recorded and is flagged abandoned: the
    lead records that day by hand. Returns (minutes, record id, abandoned)."""
    now = uow.clock.now()
    hours_rules.read_sign_code(_sign_secret(runtime), code, project_id=project_id, kind=hours_rules.SIGN_OUT, now=now)
    application = await repo.on_board_application(uow.session, project_id, principal.account_id)
    if application is None:
        raise AppError(errors.SIGN_IN_NOT_ADMITTED)
    attendance = await repo.current_attendance(uow.session, application["id"])
    if attendance is None:
        raise AppError(errors.NOT_SIGNED_IN)
    if hours_rules.session_forgotten(attendance["signed_in_at"], now, runtime.settings.sign_session_max_minutes):
        await repo.close_attendance(uow.session, attendance["id"], now, None, abandoned=True)
        return 0, None, True
    day = attendance["service_date"]
    [held] = await repo.add_to_days(uow.session, [application["id"]], [day], [0])
    already = held["minutes"]
    minutes = hours_rules.capped_session_minutes(
        hours_rules.minutes_between(attendance["signed_in_at"], now), already, runtime.settings.hours_daily_cap_minutes
    )
    record_id: uuid.UUID | None = None
    if minutes > 0:
        project = await load_project(uow, project_id)
        [recorded] = await _record(
            uow,
            runtime,
            project,
            [HoursRow(application["id"], day, minutes, None)],
            source="sign",
            recorded_by=project["lead_account_id"],
        )
        record_id = recorded["id"]
    await repo.close_attendance(uow.session, attendance["id"], now, record_id)
    return minutes, record_id, False
