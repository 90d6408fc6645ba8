"""HTTP routes of the projects service: thin, each calls one use case."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic_core import to_json

from projects import errors, idempotency, services
from projects import repository as repo
from projects.api import schemas as sch
from projects.bootstrap import ProjectsRuntime
from projects.domain import application as stages
from projects.domain import project as project_rules
from shared.auth import CurrentPrincipal, OptionalPrincipal, Principal
from shared.clock import local_today
from shared.errors import UNAUTHENTICATED, AppError, error_responses
from shared.pagination import CURSOR_INVALID, decode_cursor, encode_cursor, time_cursor

router = APIRouter(prefix="/api/v1")


async def get_runtime(request: Request) -> ProjectsRuntime:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hand-off per request
    runtime: ProjectsRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ProjectsRuntime, Depends(get_runtime)]
Limit = Annotated[int, Query(ge=1, le=200)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=idempotency.HEADER,
        pattern=idempotency.KEY_PATTERN,
        description="Any unique string (a UUID) the client keeps for this request: sent again under the "
        "same key (its answer lost to the network), it is not done twice and the first one's result "
        "comes back, with `Idempotent-Replayed: true`. Kept 24 hours.",
    ),
]


async def _claim(
    uow: Any, principal: Principal, key: str | None, scope: str, request: bytes
) -> idempotency.Answer | None:
    """The earlier answer under ``key`` (``None`` without a key, or when this request is the first)."""
    if key is None:
        return None
    now = uow.clock.now()
    return await idempotency.claim(uow.session, principal.account_id, key, scope=scope, body=request, now=now)


async def _keep(uow: Any, principal: Principal, key: str | None, answer: idempotency.Answer) -> None:
    if key is not None:
        await idempotency.keep(uow.session, principal.account_id, key, answer)


REPLAYED = {"Idempotent-Replayed": "true"}
AUTH = (UNAUTHENTICATED,)


# -- cursors ---------------------------------------------------------------------------------------
def _time_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    return time_cursor(cursor) if cursor else None


def _seq_cursor(cursor: str | None) -> int | None:
    return decode_cursor(cursor, int)[0] if cursor else None


# -- views ----------------------------------------------------------------------------------------
def _contact(row: Any) -> sch.ContactOut:
    return sch.ContactOut(name=row["contact_name"], phone=row["contact_phone"], email=row["contact_email"])


def _project_out(row: Any, positions: list[Any], today: Any) -> sch.ProjectOut:
    return sch.ProjectOut(
        id=row["id"],
        team_id=row["team_id"],
        lead_account_id=row["lead_account_id"],
        copied_from=row["copied_from"],
        title=row["title"],
        description=row["description"],
        category=row["category"],
        region_code=row["region_code"],
        address=row["address"],
        contact=_contact(row),
        requirements=row["requirements"],
        starts_on=row["starts_on"],
        ends_on=row["ends_on"],
        recruit_starts_on=row["recruit_starts_on"],
        recruit_ends_on=row["recruit_ends_on"],
        status=row["status"],
        recruiting=project_rules.is_recruiting(row["status"], services.dates_of(row), today),
        closed_at=row["closed_at"],
        extensions=row["extensions"],
        positions=[
            sch.PositionOut(
                id=p["id"],
                name=p["name"],
                description=p["description"],
                quota=p["quota"],
                admitted=p["admitted"],
                remaining=p["quota"] - p["admitted"],
                admission_mode=p["admission_mode"],
            )
            for p in positions
        ],
    )


async def _project_view(runtime: ProjectsRuntime, project_id: uuid.UUID) -> sch.ProjectOut:
    async with runtime.uow() as uow:
        row = await services.load_project(uow, project_id)
        positions = await repo.positions_of(uow.session, project_id)
        return _project_out(row, positions, local_today(uow.clock))


def _application_out(row: Any) -> sch.ApplicationOut:
    return sch.ApplicationOut(
        id=row["id"],
        project_id=row["project_id"],
        position_id=row["position_id"],
        project_title=row["project_title"],
        position_name=row["position_name"],
        stage=row["stage"],
        minutes_total=row["minutes_total"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        motivation=row.get("motivation"),
        reason=row.get("reason"),
        team_rating=row.get("team_rating"),
        team_comment=row.get("team_comment"),
        volunteer_rating=row.get("volunteer_rating"),
        volunteer_comment=row.get("volunteer_comment"),
        project_contact=_contact(row) if stages.shows_contact(row["stage"]) and "contact_name" in row else None,
    )


# -- projects -------------------------------------------------------------------------------------
@router.post(
    "/projects",
    status_code=201,
    response_model=sch.ProjectOut,
    tags=["projects"],
    summary="Create a project (draft) with its positions",
    responses=error_responses(
        *AUTH,
        errors.NOT_TEAM_MANAGER,
        errors.TEAM_NOT_APPROVED,
        errors.REGION_INVALID,
        errors.PROJECT_DATES_ORDER,
        errors.RECRUITMENT_DATES_ORDER,
        errors.RECRUITMENT_OUTSIDE_PROJECT,
        errors.PROJECT_TOO_LONG,
        errors.LEAD_NOT_IN_TEAM,
        errors.IDEMPOTENCY_KEY_REUSED,
    ),
)
async def create_project(
    body: sch.ProjectIn,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> sch.ProjectOut:
    async with runtime.uow() as uow:
        earlier = await _claim(uow, principal, idempotency_key, "projects", body.model_dump_json().encode())
        if earlier is None:
            project_id = await services.create_project(uow, principal, body.model_dump())
            await _keep(uow, principal, idempotency_key, idempotency.Answer(201, project_id.bytes))
        else:  # the project the first request made, as it is now
            project_id = uuid.UUID(bytes=earlier.body)
            response.headers.update(REPLAYED)
    return await _project_view(runtime, project_id)


@router.get(
    "/projects",
    response_model=sch.ProjectPage,
    tags=["projects"],
    summary="Published (and closed) projects, newest publication first",
    responses=error_responses(CURSOR_INVALID),
)
async def list_projects(
    runtime: RuntimeDep,
    team_id: uuid.UUID | None = None,
    region_code: Annotated[str | None, Query(pattern=r"^\d{2,12}$")] = None,
    status: Literal["published", "closed"] | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> sch.ProjectPage:
    from shared.auth import region_prefix

    statuses = [status] if status else [project_rules.PUBLISHED, project_rules.CLOSED]
    async with runtime.uow() as uow:
        rows = await repo.list_projects(
            uow.session,
            statuses=statuses,
            team_id=team_id,
            region_prefix=region_prefix(region_code) if region_code else None,
            after=_time_cursor(cursor),
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return sch.ProjectPage(
        items=[sch.ProjectSummary.model_validate(dict(r)) for r in rows],
        next_cursor=encode_cursor(rows[-1]["published_at"], rows[-1]["id"]) if more else None,
    )


@router.get(
    "/me/projects",
    response_model=sch.ManagedProjectPage,
    tags=["projects"],
    summary="我的项目: projects the caller leads or whose team it administers (drafts and closed included)",
    responses=error_responses(*AUTH, CURSOR_INVALID),
)
async def my_projects(
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    status: Literal["draft", "published", "closed"] | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> sch.ManagedProjectPage:
    async with runtime.uow() as uow:
        rows = await repo.list_managed_projects(
            uow.session, principal.account_id, status=status, after=_time_cursor(cursor), limit=limit + 1
        )
        today = local_today(uow.clock)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        sch.ManagedProject.model_validate(
            {
                **dict(r),
                "extension_open_to": project_rules.extension_open_to(
                    r["closed_at"], r["ends_on"], today, r["team_admin_extensions"]
                )
                if r["status"] == project_rules.CLOSED
                else None,
            }
        )
        for r in rows
    ]
    return sch.ManagedProjectPage(
        items=items, next_cursor=encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    )


@router.get(
    "/projects/{project_id}",
    response_model=sch.ProjectOut,
    tags=["projects"],
    summary="One project with its positions and places left (drafts: its managers only)",
    responses=error_responses(errors.PROJECT_NOT_FOUND),
)
async def get_project(project_id: uuid.UUID, principal: OptionalPrincipal, runtime: RuntimeDep) -> sch.ProjectOut:
    async with runtime.uow() as uow:
        if principal is None:
            row, insider = await services.load_project(uow, project_id), False
        else:
            found = await repo.project_with_roles(uow.session, project_id, principal.account_id)
            if found is None:
                raise AppError(errors.PROJECT_NOT_FOUND)
            row = found
            access = services.Access.of(row, principal, row["caller_roles"])
            insider = access.manages or bool(access.team_roles)
        if row["status"] == project_rules.DRAFT and not insider:
            raise AppError(errors.PROJECT_NOT_FOUND)
        positions = await repo.positions_of(uow.session, project_id)
        view = _project_out(row, positions, local_today(uow.clock))
    if not insider:
        # which account runs it is the team's business: the public sees the published contact (P8)
        view.lead_account_id = None
    return view


_DATE_ERRORS = (
    errors.PROJECT_DATES_ORDER,
    errors.RECRUITMENT_DATES_ORDER,
    errors.RECRUITMENT_OUTSIDE_PROJECT,
    errors.PROJECT_TOO_LONG,
)


@router.patch(
    "/projects/{project_id}",
    response_model=sch.ProjectOut,
    tags=["projects"],
    summary="Edit a draft (content, contact, dates; P1/P2 checked on the result); once published, "
    "its contact details, description and requirements",
    responses=error_responses(
        *AUTH,
        errors.PROJECT_NOT_FOUND,
        errors.NOT_PROJECT_MANAGER,
        errors.PUBLISHED_FIELDS_LOCKED,
        errors.REGION_INVALID,
        *_DATE_ERRORS,
    ),
)
async def edit_project(
    project_id: uuid.UUID, body: sch.ProjectPatch, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.ProjectOut:
    async with runtime.uow() as uow:
        await services.edit_draft(uow, principal, project_id, body.model_dump(exclude_unset=True, exclude_none=True))
    return await _project_view(runtime, project_id)


@router.post(
    "/projects/{project_id}/positions",
    status_code=201,
    response_model=sch.ProjectOut,
    tags=["projects"],
    summary="Add a position (岗位) to a draft or published project",
    responses=error_responses(
        *AUTH,
        errors.PROJECT_NOT_FOUND,
        errors.NOT_PROJECT_MANAGER,
        errors.PROJECT_CLOSED,
        errors.IDEMPOTENCY_KEY_REUSED,
    ),
)
async def add_position(
    project_id: uuid.UUID,
    body: sch.PositionIn,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> sch.ProjectOut:
    async with runtime.uow() as uow:
        scope = f"positions:{project_id}"
        if await _claim(uow, principal, idempotency_key, scope, body.model_dump_json().encode()) is None:
            await services.add_position(uow, principal, project_id, body.model_dump())
            await _keep(uow, principal, idempotency_key, idempotency.Answer(201, b""))
        else:  # added by the first request: the project as it is now
            response.headers.update(REPLAYED)
    return await _project_view(runtime, project_id)


@router.put(
    "/projects/{project_id}/lead",
    response_model=sch.ProjectOut,
    tags=["projects"],
    summary="Hand the project to another admin or project lead of its team (team admins)",
    responses=error_responses(*AUTH, errors.PROJECT_NOT_FOUND, errors.NOT_TEAM_ADMIN, errors.LEAD_NOT_IN_TEAM),
)
async def assign_lead(
    project_id: uuid.UUID, body: sch.LeadIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.ProjectOut:
    async with runtime.uow() as uow:
        await services.assign_lead(uow, principal, project_id, body.lead_account_id)
    return await _project_view(runtime, project_id)


@router.put(
    "/positions/{position_id}/quota",
    response_model=sch.ProjectOut,
    tags=["projects"],
    summary="Change a position's quota; never below the places already taken",
    responses=error_responses(
        *AUTH, errors.POSITION_NOT_FOUND, errors.NOT_PROJECT_MANAGER, errors.QUOTA_BELOW_ADMITTED, errors.PROJECT_CLOSED
    ),
)
async def change_quota(
    position_id: uuid.UUID, body: sch.QuotaIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.ProjectOut:
    async with runtime.uow() as uow:
        project_id = await services.change_quota(uow, principal, position_id, body.quota)
    # committed: whoever went into line meanwhile gets a place still free (services.admit_waiting)
    await services.admit_waiting_after_commit(runtime.uow(), position_id)
    return await _project_view(runtime, project_id)


@router.post(
    "/projects/{project_id}/publication",
    response_model=sch.ProjectOut,
    tags=["projects"],
    summary="Publish a draft: it recruits during its recruitment window",
    responses=error_responses(
        *AUTH,
        errors.PROJECT_NOT_FOUND,
        errors.NOT_PROJECT_MANAGER,
        errors.PROJECT_NOT_DRAFT,
        errors.PROJECT_HAS_NO_POSITIONS,
        errors.PROJECT_ALREADY_ENDED,
    ),
)
async def publish_project(project_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep) -> sch.ProjectOut:
    async with runtime.uow() as uow:
        await services.publish_project(uow, principal, project_id)
    return await _project_view(runtime, project_id)


@router.post(
    "/projects/{project_id}/copies",
    status_code=201,
    response_model=sch.ProjectOut,
    tags=["projects"],
    summary="Copy a project (P3): same content and positions, new dates, a new draft",
    responses=error_responses(
        *AUTH,
        errors.PROJECT_NOT_FOUND,
        errors.NOT_PROJECT_MANAGER,
        errors.PROJECT_DATES_ORDER,
        errors.RECRUITMENT_DATES_ORDER,
        errors.RECRUITMENT_OUTSIDE_PROJECT,
        errors.PROJECT_TOO_LONG,
    ),
)
async def copy_project(
    project_id: uuid.UUID, body: sch.ProjectDatesIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.ProjectOut:
    dates = project_rules.ProjectDates(body.starts_on, body.ends_on, body.recruit_starts_on, body.recruit_ends_on)
    async with runtime.uow() as uow:
        new_id = await services.copy_project(uow, principal, project_id, dates)
    return await _project_view(runtime, new_id)


@router.post(
    "/projects/{project_id}/extensions",
    response_model=sch.ProjectOut,
    tags=["projects"],
    summary="Extend a closed project (P4): team admin once within 30 days, national admin within 60",
    responses=error_responses(
        *AUTH,
        errors.PROJECT_NOT_FOUND,
        errors.PROJECT_NOT_CLOSED,
        errors.NOT_TEAM_MANAGER,
        errors.EXTENSION_ALREADY_USED,
        errors.EXTENSION_NEEDS_TEAM_ADMIN,
        errors.EXTENSION_NEEDS_NATIONAL_ADMIN,
        errors.EXTENSION_WINDOW_OVER,
        errors.EXTENSION_DATE_INVALID,
        errors.PROJECT_TOO_LONG,
    ),
)
async def extend_project(
    project_id: uuid.UUID, body: sch.ExtensionIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.ProjectOut:
    async with runtime.uow() as uow:
        free = await services.extend_project(uow, principal, project_id, body.new_end_date)
    for position_id in free:  # committed: places freed while it was closed go to those waiting
        await services.admit_waiting_after_commit(runtime.uow(), position_id)
    return await _project_view(runtime, project_id)


# -- applications ---------------------------------------------------------------------------------
@router.post(
    "/positions/{position_id}/applications",
    status_code=201,
    response_model=sch.ApplicationCreated,
    tags=["applications"],
    summary="Apply to a position (auto-admitting positions admit at once while places are left)",
    responses=error_responses(
        *AUTH,
        errors.POSITION_NOT_FOUND,
        errors.VOLUNTEER_NOT_VERIFIED,
        errors.PROJECT_NOT_RECRUITING,
        errors.ALREADY_APPLIED,
    ),
)
async def apply(
    position_id: uuid.UUID,
    principal: CurrentPrincipal,
    request: Request,
    body: sch.ApplyIn | None = None,
) -> Response:
    # The surge's hot path keeps FastAPI's work small: the runtime is read off the app (one dependency
    # less to solve), and the unit of work is not entered: the use case writes through single
    # statements only, so no session is opened.
    runtime: ProjectsRuntime = request.app.state.runtime
    application_id, stage = await services.apply(
        runtime.uow(), principal, position_id, body.motivation if body is not None else None, runtime.turns
    )
    # Serialised here (``ApplicationCreated``'s JSON, which ``response_model`` still documents): the
    # hot path of a surge skips FastAPI's validation and serialisation of the returned model.
    return Response(
        sch.ApplicationCreated(id=application_id, stage=stage).model_dump_json(),
        status_code=201,
        media_type="application/json",
    )


@router.get(
    "/applications/{application_id}",
    response_model=sch.ApplicationOut,
    tags=["applications"],
    summary="One application: its volunteer (with the project's contact while pending, P8) or its managers",
    responses=error_responses(*AUTH, errors.APPLICATION_NOT_FOUND),
)
async def get_application(
    application_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.ApplicationOut:
    async with runtime.uow() as uow:
        row = await services.load_application(uow, application_id)
        if row["account_id"] != principal.account_id:
            access = await services.access_to(uow, row, principal)
            if not access.manages:
                raise AppError(errors.APPLICATION_NOT_FOUND)
    return _application_out(row)


@router.delete(
    "/applications/{application_id}",
    status_code=204,
    tags=["applications"],
    summary="Delete a pending application (P6)",
    responses=error_responses(*AUTH, errors.APPLICATION_NOT_FOUND, errors.WITHDRAW_NOT_PENDING),
)
async def withdraw(application_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep) -> Response:
    async with runtime.uow() as uow:
        await services.withdraw(uow, principal, application_id)
    return Response(status_code=204)


@router.post(
    "/applications/{application_id}/leave",
    response_model=sch.ApplicationOut,
    tags=["applications"],
    summary="Leave the project (P6): admitted, no hours recorded; the lead is emailed at once",
    responses=error_responses(
        *AUTH,
        errors.APPLICATION_NOT_FOUND,
        errors.LEAVE_NOT_ADMITTED,
        errors.LEAVE_REFUSED_HOURS_RECORDED,
        errors.LEAVE_WHILE_SIGNED_IN,
    ),
)
async def leave(application_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep) -> sch.ApplicationOut:
    async with runtime.uow() as uow:
        freed = await services.leave(
            uow, principal, application_id, session_max_minutes=runtime.settings.sign_session_max_minutes
        )
    if freed is not None:  # committed: the place goes to whoever went into line meanwhile
        await services.admit_waiting_after_commit(runtime.uow(), freed)
    async with runtime.uow() as uow:
        return _application_out(await services.load_application(uow, application_id))


@router.post(
    "/applications/{application_id}/admission",
    response_model=sch.ApplicationOut,
    tags=["applications"],
    summary="Admit (录用): takes a place, refused when the position is full",
    responses=error_responses(
        *AUTH,
        errors.APPLICATION_NOT_FOUND,
        errors.NOT_PROJECT_MANAGER,
        errors.PROJECT_CLOSED,
        errors.POSITION_FULL,
        errors.STAGE_TRANSITION_NOT_ALLOWED,
    ),
)
async def admit(application_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep) -> sch.ApplicationOut:
    async with runtime.uow() as uow:
        await services.admit(uow, principal, application_id)
    async with runtime.uow() as uow:
        return _application_out(await services.load_application(uow, application_id))


@router.post(
    "/applications/{application_id}/stage",
    response_model=sch.ApplicationOut,
    tags=["applications"],
    summary="Move an application: interview, training, serving, completed, or rejected",
    responses=error_responses(
        *AUTH, errors.APPLICATION_NOT_FOUND, errors.NOT_PROJECT_MANAGER, errors.STAGE_TRANSITION_NOT_ALLOWED
    ),
)
async def move_stage(
    application_id: uuid.UUID, body: sch.StageIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.ApplicationOut:
    async with runtime.uow() as uow:
        await services.move_stage(uow, principal, application_id, body.stage, body.reason)
    async with runtime.uow() as uow:
        return _application_out(await services.load_application(uow, application_id))


@router.put(
    "/applications/{application_id}/team-rating",
    status_code=204,
    tags=["applications"],
    summary="The team rates the volunteer's service (after serving starts)",
    responses=error_responses(
        *AUTH, errors.APPLICATION_NOT_FOUND, errors.NOT_PROJECT_MANAGER, errors.RATING_NOT_ALLOWED
    ),
)
async def rate_volunteer(
    application_id: uuid.UUID, body: sch.RatingIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> Response:
    async with runtime.uow() as uow:
        await services.rate_by_team(uow, principal, application_id, body.score, body.comment)
    return Response(status_code=204)


@router.put(
    "/applications/{application_id}/volunteer-rating",
    status_code=204,
    tags=["applications"],
    summary="The volunteer rates the project (after serving starts)",
    responses=error_responses(*AUTH, errors.APPLICATION_NOT_FOUND, errors.RATING_NOT_ALLOWED),
)
async def rate_project(
    application_id: uuid.UUID, body: sch.RatingIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> Response:
    async with runtime.uow() as uow:
        await services.rate_by_volunteer(uow, principal, application_id, body.score, body.comment)
    return Response(status_code=204)


@router.get(
    "/projects/{project_id}/applications",
    response_model=sch.ApplicantPage,
    tags=["applications"],
    summary="Applicants of a project, in order of application (its lead and team admins only)",
    responses=error_responses(*AUTH, errors.PROJECT_NOT_FOUND, errors.NOT_PROJECT_MANAGER, CURSOR_INVALID),
)
async def list_applicants(
    project_id: uuid.UUID,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    stage: Literal[
        "applied", "interview", "admitted", "training", "serving", "completed", "rejected", "withdrawn", "left"
    ]
    | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> sch.ApplicantPage:
    async with runtime.uow() as uow:
        await services.managed_project(uow, principal, project_id)
        rows = await repo.list_applications(
            uow.session, project_id=project_id, stage=stage, after_seq=_seq_cursor(cursor), limit=limit + 1
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return sch.ApplicantPage(
        items=[sch.ApplicantOut.model_validate(dict(r)) for r in rows],
        next_cursor=encode_cursor(rows[-1]["seq"]) if more else None,
    )


@router.get(
    "/me/applications",
    response_model=sch.MyApplicationPage,
    tags=["applications"],
    summary="The caller's own applications",
    responses=error_responses(*AUTH, CURSOR_INVALID),
)
async def my_applications(
    principal: CurrentPrincipal, runtime: RuntimeDep, limit: Limit = 50, cursor: str | None = None
) -> sch.MyApplicationPage:
    async with runtime.uow() as uow:
        rows = await repo.list_applications(
            uow.session, account_id=principal.account_id, after_seq=_seq_cursor(cursor), limit=limit + 1
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return sch.MyApplicationPage(
        items=[_application_out(r) for r in rows],
        next_cursor=encode_cursor(rows[-1]["seq"]) if more else None,
    )


# -- service hours --------------------------------------------------------------------------------
_HOURS_ERRORS = (
    *AUTH,
    errors.PROJECT_NOT_FOUND,
    errors.NOT_PROJECT_MANAGER,
    errors.HOURS_NOT_ADMITTED,
    errors.HOURS_DATE_OUTSIDE_PROJECT,
    errors.HOURS_DAILY_CAP_EXCEEDED,
)


async def _recorded_once(
    uow: Any, principal: Principal, key: str | None, scope: str, request: bytes, record: Any
) -> Response:
    """``record()``'s 201 answer, or the one an earlier request under ``key`` got (see ``projects.idempotency``)."""
    earlier = await _claim(uow, principal, key, scope, request)
    if earlier is not None:
        return Response(earlier.body, earlier.status_code, headers=REPLAYED, media_type="application/json")
    body = await record()
    await _keep(uow, principal, key, idempotency.Answer(201, body))
    return Response(body, status_code=201, media_type="application/json")


@router.post(
    "/projects/{project_id}/hours",
    status_code=201,
    response_model=sch.HoursOut,
    tags=["hours"],
    summary="Record one volunteer's service time for a date (late recordings flagged, 补录)",
    responses=error_responses(*_HOURS_ERRORS, errors.IDEMPOTENCY_KEY_REUSED),
)
async def record_hours(
    project_id: uuid.UUID,
    body: sch.HoursIn,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def record() -> bytes:
        [row] = await services.record_hours(uow, runtime, principal, project_id, [body], source="single")
        return sch.HoursOut.model_validate(dict(row)).model_dump_json().encode()

    async with runtime.uow() as uow:
        scope = f"hours:{project_id}"
        return await _recorded_once(uow, principal, idempotency_key, scope, body.model_dump_json().encode(), record)


@router.post(
    "/projects/{project_id}/hours/bulk",
    status_code=201,
    response_model=sch.BulkHoursOut,
    tags=["hours"],
    summary="Record many rows in one request (one INSERT ... SELECT FROM unnest); all or nothing",
    responses=error_responses(
        *_HOURS_ERRORS, errors.HOURS_DUPLICATE_ROWS, errors.HOURS_BULK_TOO_LARGE, errors.IDEMPOTENCY_KEY_REUSED
    ),
)
async def record_hours_bulk(
    project_id: uuid.UUID,
    body: sch.BulkHoursIn,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    limit = runtime.settings.hours_bulk_max_rows
    if len(body.rows) > limit:
        raise AppError(errors.HOURS_BULK_TOO_LARGE, {"limit": limit}, params={"limit": limit})

    async def record() -> bytes:
        return _bulk_hours_json(
            await services.record_hours(uow, runtime, principal, project_id, body.rows, source="bulk")
        )

    async with runtime.uow() as uow:
        # the fingerprint only with a key: a sheet of 500 rows costs its JSON once more
        request = body.model_dump_json().encode() if idempotency_key is not None else b""
        return await _recorded_once(uow, principal, idempotency_key, f"hours/bulk:{project_id}", request, record)


def _bulk_hours_json(rows: list[Any]) -> bytes:
    """``BulkHoursOut``'s JSON (which ``response_model`` documents), written straight from the rows: the
    models cost about 8 ms for 500 rows (validating each row, then serialising asyncpg's UUIDs, which
    pydantic does slowly), this about 2 ms. A test checks the two give the same bytes."""
    items = [
        {
            "id": str(r["id"]),
            "application_id": str(r["application_id"]),
            "account_id": str(r["account_id"]),
            "service_date": r["service_date"],
            "minutes": r["minutes"],
            "late": r["late"],
        }
        for r in rows
    ]
    return to_json({"recorded": len(items), "late": sum(1 for i in items if i["late"]), "items": items})


def _record_out(row: Any, corrections: list[Any]) -> sch.HoursRecordOut:
    data = {k: row[k] for k in sch.HoursRecordOut.model_fields if k != "corrections"}
    return sch.HoursRecordOut(**data, corrections=[sch.CorrectionOut.model_validate(dict(c)) for c in corrections])


@router.post(
    "/hours/{record_id}/corrections",
    response_model=sch.HoursRecordOut,
    tags=["hours"],
    summary="Correct a record: the old value, who, when and why are kept",
    responses=error_responses(
        *AUTH,
        errors.HOURS_RECORD_NOT_FOUND,
        errors.NOT_PROJECT_MANAGER,
        errors.HOURS_CORRECTION_UNCHANGED,
        errors.HOURS_DAILY_CAP_EXCEEDED,
        errors.HOURS_NOT_ADMITTED,
    ),
)
async def correct_hours(
    record_id: uuid.UUID, body: sch.CorrectionIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.HoursRecordOut:
    async with runtime.uow() as uow:
        await services.correct_hours(uow, runtime, principal, record_id, body.minutes, body.reason)
    return await get_hours_record(record_id, principal, runtime)


@router.get(
    "/hours/{record_id}",
    response_model=sch.HoursRecordOut,
    tags=["hours"],
    summary="One record with its correction history (its volunteer or the project's managers)",
    responses=error_responses(*AUTH, errors.HOURS_RECORD_NOT_FOUND),
)
async def get_hours_record(
    record_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.HoursRecordOut:
    async with runtime.uow() as uow:
        row = await repo.hours_record(uow.session, record_id)
        if row is None:
            raise AppError(errors.HOURS_RECORD_NOT_FOUND)
        if row["account_id"] != principal.account_id and not (await services.access_to(uow, row, principal)).manages:
            raise AppError(errors.HOURS_RECORD_NOT_FOUND)
        corrections = await repo.corrections_of(uow.session, record_id)
    return _record_out(row, corrections)


@router.get(
    "/projects/{project_id}/hours",
    response_model=sch.HoursPage,
    tags=["hours"],
    summary="A project's hours records (its lead and team admins)",
    responses=error_responses(*AUTH, errors.PROJECT_NOT_FOUND, errors.NOT_PROJECT_MANAGER, CURSOR_INVALID),
)
async def list_project_hours(
    project_id: uuid.UUID,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    limit: Limit = 100,
    cursor: str | None = None,
) -> sch.HoursPage:
    async with runtime.uow() as uow:
        await services.managed_project(uow, principal, project_id)
        rows = await repo.list_hours(uow.session, project_id=project_id, after=_time_cursor(cursor), limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        # the history of every corrected record on the page, in one query: nothing silently overwritten
        history = await repo.corrections_of_records(uow.session, [r["id"] for r in rows if r["corrected"]])
    return sch.HoursPage(
        items=[_record_out(r, history.get(r["id"], [])) for r in rows],
        next_cursor=encode_cursor(rows[-1]["recorded_at"], rows[-1]["id"]) if more else None,
    )


@router.get(
    "/projects/{project_id}/hours/totals",
    response_model=sch.ProjectTotalsOut,
    tags=["hours"],
    summary="Total service time of a project, and a page of its volunteers' (in order of application)",
    responses=error_responses(*AUTH, errors.PROJECT_NOT_FOUND, errors.NOT_PROJECT_MANAGER, CURSOR_INVALID),
)
async def project_totals(
    project_id: uuid.UUID,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    limit: Limit = 50,
    cursor: str | None = None,
) -> sch.ProjectTotalsOut:
    after = _seq_cursor(cursor)
    async with runtime.uow() as uow:
        await services.managed_project(uow, principal, project_id)
        total = await repo.project_minutes(uow.session, project_id)
        rows = await repo.volunteer_minutes_page(uow.session, project_id=project_id, after_seq=after, limit=limit + 1)
        if len(rows) > limit:
            rows = rows[:limit]
            next_seq: int | None = rows[-1]["seq"]
        else:  # fewer found: the next page starts where this one stopped looking, if before the end
            next_seq = await repo.applications_scanned_to(uow.session, project_id=project_id, after_seq=after)
    return sch.ProjectTotalsOut(
        project_id=project_id,
        minutes=total,
        volunteers=[sch.VolunteerMinutes.model_validate(dict(r)) for r in rows],
        next_cursor=encode_cursor(next_seq) if next_seq is not None else None,
    )


@router.get(
    "/me/hours",
    response_model=sch.MyHoursOut,
    tags=["hours"],
    summary="The caller's total service time, per project",
    responses=error_responses(*AUTH),
)
async def my_hours(principal: CurrentPrincipal, runtime: RuntimeDep) -> sch.MyHoursOut:
    async with runtime.uow() as uow:
        rows = await repo.volunteer_totals(uow.session, principal.account_id)
    items = [sch.ProjectMinutes(project_id=r["project_id"], title=r["title"], minutes=int(r["minutes"])) for r in rows]
    return sch.MyHoursOut(minutes=sum(i.minutes for i in items), projects=items)


# -- sign-in / sign-out on site -------------------------------------------------------------------
@router.post(
    "/projects/{project_id}/sign-codes",
    response_model=sch.SignCodeOut,
    tags=["hours"],
    summary="A short-lived signed code (QR payload) the lead shows on site for signing in or out",
    responses=error_responses(*AUTH, errors.PROJECT_NOT_FOUND, errors.NOT_PROJECT_MANAGER),
)
async def sign_code(
    project_id: uuid.UUID,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    kind: Annotated[Literal["in", "out"], Query()] = "in",
) -> sch.SignCodeOut:
    async with runtime.uow() as uow:
        code, expires_at = await services.sign_code(uow, runtime, principal, project_id, kind)
    return sch.SignCodeOut(kind=kind, code=code, expires_at=expires_at)


@router.post(
    "/projects/{project_id}/sign-ins",
    status_code=201,
    response_model=sch.SignInOut,
    tags=["hours"],
    summary="Sign in with the code shown on site",
    responses=error_responses(
        *AUTH,
        errors.SIGN_CODE_INVALID,
        errors.SIGN_CODE_EXPIRED,
        errors.PROJECT_NOT_FOUND,
        errors.HOURS_DATE_OUTSIDE_PROJECT,
        errors.SIGN_IN_NOT_ADMITTED,
        errors.ALREADY_SIGNED_IN,
        errors.SIGNED_IN_ELSEWHERE,
    ),
)
async def sign_in(
    project_id: uuid.UUID, body: sch.SignIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.SignInOut:
    async with runtime.uow() as uow:
        at = await services.sign_in(
            uow, runtime, principal, project_id, body.code, end_other_session=body.end_other_session
        )
    return sch.SignInOut(signed_in_at=at)


@router.post(
    "/projects/{project_id}/sign-outs",
    status_code=201,
    response_model=sch.SignOutOut,
    tags=["hours"],
    summary="Sign out: the time since signing in is recorded, capped per day",
    responses=error_responses(
        *AUTH, errors.SIGN_CODE_INVALID, errors.SIGN_CODE_EXPIRED, errors.SIGN_IN_NOT_ADMITTED, errors.NOT_SIGNED_IN
    ),
)
async def sign_out(
    project_id: uuid.UUID, body: sch.SignIn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> sch.SignOutOut:
    async with runtime.uow() as uow:
        minutes, record_id, abandoned = await services.sign_out(uow, runtime, principal, project_id, body.code)
    return sch.SignOutOut(minutes=minutes, record_id=record_id, abandoned=abandoned)


@router.get(
    "/projects/{project_id}/activity",
    response_model=sch.ActivityPage,
    tags=["projects"],
    summary="The project's activity log: publishing, closing, application stages, hours (its managers)",
    responses=error_responses(*AUTH, errors.PROJECT_NOT_FOUND, errors.NOT_PROJECT_MANAGER, CURSOR_INVALID),
)
async def project_activity(
    project_id: uuid.UUID,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    limit: Limit = 100,
    cursor: str | None = None,
) -> sch.ActivityPage:
    async with runtime.uow() as uow:
        await services.managed_project(uow, principal, project_id)
        rows = await repo.activity(uow.session, project_id, _time_cursor(cursor), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return sch.ActivityPage(
        items=[sch.ActivityOut.model_validate(dict(r)) for r in rows],
        next_cursor=encode_cursor(rows[-1]["occurred_at"], rows[-1]["event_id"]) if more else None,
    )


# FastAPI tries routes in order, a few microseconds each: the hot paths of a surge (applying, bulk
# hours) are tried first. No other route matches their paths, so what matches what does not change.
_HOT_ROUTES = {
    ("POST", "/api/v1/positions/{position_id}/applications"),
    ("POST", "/api/v1/projects/{project_id}/hours/bulk"),
}
router.routes.sort(
    key=lambda route: not any((m, getattr(route, "path", None)) in _HOT_ROUTES for m in getattr(route, "methods", ()))
)
