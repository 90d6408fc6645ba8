"""HTTP routes of the teams service: regions, teams, liaison, review. Thin: parse, call, shape."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from shared import regions
from shared.auth import CurrentPrincipal, OptionalPrincipal, RegionalOrNationalAdmin, region_prefix
from shared.errors import AppError, error_responses, preferred_language
from shared.pagination import CURSOR_INVALID, decode_cursor, encode_cursor, time_cursor
from teams import errors as E
from teams import registration
from teams.access import load_visible_team
from teams.api.deps import Runtime, UoW
from teams.api.membership_routes import router as membership_router
from teams.api.schemas import (
    HistoryEntry,
    HistoryPage,
    LiaisonAuthorisationOut,
    LiaisonCandidate,
    LiaisonCandidates,
    RegionDetail,
    RegionOut,
    ReminderOut,
    ReviewDecision,
    ReviewStatus,
    RootTeamCreate,
    TeamOut,
    TeamPage,
    TeamRegistration,
)
from teams.api.views import team_out
from teams.domain import review
from teams.models import PENDING
from teams.repository import TeamsRepository
from teams.support import SupportContactsOut, support_lines

router = APIRouter(prefix="/api/v1")


def _region_out(region: regions.Region) -> RegionOut:
    return RegionOut(code=region.code, name=region.name, level=region.level, parent_code=region.parent_code)


# -- regions ------------------------------------------------------------------------------------
@router.get("/regions", response_model=list[RegionOut], tags=["regions"], summary="Provinces")
async def provinces() -> list[RegionOut]:
    return [_region_out(r) for r in regions.children(None)]


@router.get(
    "/regions/{code}",
    response_model=RegionDetail,
    tags=["regions"],
    summary="A region with its sub-regions (cities, counties, townships)",
    responses=error_responses(E.REGION_NOT_FOUND),
)
async def region(code: str) -> RegionDetail:
    found = regions.get(code) if code.isdigit() else None
    if found is None:
        raise AppError(E.REGION_NOT_FOUND)
    return RegionDetail(
        **_region_out(found).model_dump(), children=[_region_out(r) for r in regions.children(found.code)]
    )


# -- support contacts (X2) ----------------------------------------------------------------------
@router.get(
    "/support-contacts",
    response_model=SupportContactsOut,
    tags=["support"],
    summary=(
        "Who to call or write to, for what, and when: the national line, the data-import contact, provinces; "
        "and the browsers the system recommends"
    ),
    responses=error_responses(E.REGION_NOT_FOUND),
)
async def support_contacts(
    runtime: Runtime,
    response: Response,
    region_code: Annotated[
        str | None, Query(pattern=r"^\d{6}(\d{3})?$", description="only the provincial line of this region's province")
    ] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> SupportContactsOut:
    """Public: someone locked out of their account needs it most. The lines come from the
    deployment's settings (``TEAMS_SUPPORT_CONTACTS``); a line not configured is left out."""
    if region_code is not None and regions.get(region_code) is None:
        raise AppError(E.REGION_NOT_FOUND)
    lang = preferred_language(accept_language)
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Vary"] = "Accept-Language"
    response.headers["Content-Language"] = "en" if lang == "en" else "zh-CN"
    return support_lines(runtime.settings.support_contacts, lang, region_code)


# -- teams --------------------------------------------------------------------------------------
#: the refusals of a team's name (T2) and kind (T1), for registered and root teams alike
_NAME_AND_KIND_ERRORS = (
    E.TEAM_NAME_NOT_ALLOWED,
    E.TEAM_NAME_FORM_REQUIRED,
    E.TEAM_NAME_LENGTH,
    E.TEAM_NAME_TAKEN,
    E.USCC_REQUIRED,
    E.USCC_INVALID,
    E.USCC_NOT_CIVIL_AFFAIRS,
    E.USCC_KIND_MISMATCH,
    E.USCC_AUTHORITY_MISMATCH,
    E.USCC_TAKEN,
    E.USCC_NOT_ALLOWED,
)


@router.post(
    "/teams",
    status_code=201,
    response_model=TeamOut,
    tags=["teams"],
    summary="Register a team (verified volunteers); the applicant becomes its first admin",
    responses=error_responses(
        E.VOLUNTEER_NOT_VERIFIED,
        *_NAME_AND_KIND_ERRORS,
        E.REGION_INVALID,
        E.LIAISON_REQUIRED,
        E.LIAISON_NOT_FOUND,
        E.LIAISON_NOT_AUTHORISED,
        E.LIAISON_CROSS_CITY,
        E.LIAISON_CROSS_LEVEL,
        E.LIAISON_OUTSIDE_REGION,
        E.LIAISON_NOT_AVAILABLE,
    ),
)
async def register_team(body: TeamRegistration, principal: CurrentPrincipal, runtime: Runtime, uow: UoW) -> TeamOut:
    async with uow:
        team = await registration.register_team(uow, runtime.clock, principal, body)
    return team_out(team)


@router.post(
    "/root-teams",
    status_code=201,
    response_model=TeamOut,
    tags=["teams"],
    summary="Create a root liaison team of a region (regional admin of that region, or national admin)",
    responses=error_responses(
        E.NOT_REGION_ADMIN,
        E.REGION_INVALID,
        *_NAME_AND_KIND_ERRORS,
        E.VOLUNTEER_NOT_FOUND,
    ),
)
async def create_root_team(
    body: RootTeamCreate, principal: RegionalOrNationalAdmin, runtime: Runtime, uow: UoW
) -> TeamOut:
    async with uow:
        team = await registration.create_root_team(uow, runtime.clock, principal, body)
    return team_out(team)


@router.get(
    "/teams",
    response_model=TeamPage,
    tags=["teams"],
    summary="Approved teams, optionally within a region",
    responses=error_responses(CURSOR_INVALID),
)
async def list_teams(
    uow: UoW,
    region_code: str | None = Query(None, pattern=r"^\d{2,12}$"),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=400),
) -> TeamPage:
    after = decode_cursor(cursor, str, uuid.UUID) if cursor else None
    async with uow:
        rows = await TeamsRepository(uow.session).list_teams(
            region_prefix=region_prefix(region_code) if region_code else None, after=after, limit=limit + 1
        )
    items = [team_out(t) for t in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].name, rows[limit - 1].id) if len(rows) > limit else None
    return TeamPage(items=items, next_cursor=next_cursor)


@router.get(
    "/teams/{team_id}",
    response_model=TeamOut,
    tags=["teams"],
    summary="A team (one under review only to its applicant, admins and reviewers)",
    responses=error_responses(E.TEAM_NOT_FOUND),
)
async def get_team(team_id: uuid.UUID, principal: OptionalPrincipal, uow: UoW) -> TeamOut:
    async with uow:
        repo = TeamsRepository(uow.session)
        team = await load_visible_team(repo, team_id, principal)
        applicants = await repo.volunteers([team.applicant_account_id]) if team.status == PENDING else {}
    return team_out(team, applicants)


@router.get(
    "/teams/{team_id}/history",
    response_model=HistoryPage,
    tags=["teams"],
    summary="The team's facts in order (its admins, and admins of its region)",
    responses=error_responses(E.TEAM_NOT_FOUND, E.NOT_TEAM_ADMIN, CURSOR_INVALID),
)
async def team_history(
    team_id: uuid.UUID,
    principal: CurrentPrincipal,
    uow: UoW,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=400),
) -> HistoryPage:
    after = time_cursor(cursor) if cursor else None
    async with uow:
        repo = TeamsRepository(uow.session)
        team = await load_visible_team(repo, team_id, principal)
        if not principal.administers_region(team.region_code):
            membership = await repo.membership(team.id, principal.account_id)
            if membership is None or not membership.is_admin:
                raise AppError(E.NOT_TEAM_ADMIN)
        rows = await repo.history_page(team.id, after=after, limit=limit + 1)
    items = [
        HistoryEntry(event_id=h.event_id, event_type=h.event_type, occurred_at=h.occurred_at, payload=h.payload)
        for h in rows[:limit]
    ]
    last = rows[limit - 1] if len(rows) > limit else None
    return HistoryPage(items=items, next_cursor=encode_cursor(last.occurred_at, last.event_id) if last else None)


# -- liaison (T3, T4) ---------------------------------------------------------------------------
@router.get(
    "/liaison-candidates",
    response_model=LiaisonCandidates,
    tags=["liaison"],
    summary="The teams a new team in this region may choose as liaison (authorised, one level up, same city)",
    responses=error_responses(E.REGION_INVALID),
)
async def liaison_candidates(uow: UoW, region_code: str = Query(pattern=r"^\d{6}(\d{3})?$")) -> LiaisonCandidates:
    async with uow:
        parent, teams = await registration.liaison_choices(uow, region_code)
    items = [
        LiaisonCandidate(
            id=t.id,
            name=t.name,
            region_code=t.region_code,
            region_name=(r.name if (r := regions.get(t.region_code)) else None),
        )
        for t in teams
    ]
    return LiaisonCandidates(region_code=region_code, liaison_region_code=parent, items=items)


_AUTH_ERRORS = error_responses(E.TEAM_NOT_FOUND, E.NOT_REGION_ADMIN, E.TEAM_NOT_APPROVED)


@router.put(
    "/teams/{team_id}/liaison-authorisation",
    response_model=LiaisonAuthorisationOut,
    tags=["liaison"],
    summary="Authorise a team to take sub-teams (regional admin of its region)",
    responses=_AUTH_ERRORS,
)
async def authorise_liaison(
    team_id: uuid.UUID, principal: RegionalOrNationalAdmin, uow: UoW
) -> LiaisonAuthorisationOut:
    async with uow:
        team = await registration.set_liaison_authorisation(uow, principal, team_id, True)
    return LiaisonAuthorisationOut(team_id=team.id, liaison_authorised=team.liaison_authorised)


@router.delete(
    "/teams/{team_id}/liaison-authorisation",
    response_model=LiaisonAuthorisationOut,
    tags=["liaison"],
    summary="Withdraw a team's right to take sub-teams (regional admin of its region)",
    responses=_AUTH_ERRORS,
)
async def withdraw_liaison(team_id: uuid.UUID, principal: RegionalOrNationalAdmin, uow: UoW) -> LiaisonAuthorisationOut:
    async with uow:
        team = await registration.set_liaison_authorisation(uow, principal, team_id, False)
    return LiaisonAuthorisationOut(team_id=team.id, liaison_authorised=team.liaison_authorised)


# -- review (T5) --------------------------------------------------------------------------------
@router.get(
    "/reviews",
    response_model=TeamPage,
    tags=["review"],
    summary="Teams waiting for my review (as liaison team admin, as registration authority, or as admin of "
    "the region of a liaison team with no other admin); never my own registrations",
    description="Oldest first, `limit` (50, at most 200) a page; `next_cursor`, passed as `cursor`, gives "
    "the next page (null on the last).",
    responses=error_responses(CURSOR_INVALID),
)
async def my_reviews(
    principal: CurrentPrincipal,
    uow: UoW,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=400),
) -> TeamPage:
    after = time_cursor(cursor) if cursor else None
    async with uow:
        rows = await registration.reviews_waiting_for(uow, principal, after=after, limit=limit + 1)
        applicants = await TeamsRepository(uow.session).volunteers(t.applicant_account_id for t in rows[:limit])
    last = rows[limit - 1] if len(rows) > limit else None
    return TeamPage(
        items=[team_out(t, applicants) for t in rows[:limit]],
        next_cursor=encode_cursor(last.submitted_at, last.id) if last else None,
    )


@router.get(
    "/teams/{team_id}/review",
    response_model=ReviewStatus,
    tags=["review"],
    summary="Review status for the applicant: reminder availability; reviewer contact from day 7",
    responses=error_responses(E.TEAM_NOT_FOUND, E.NOT_APPLICANT),
)
async def review_status(
    team_id: uuid.UUID,
    principal: CurrentPrincipal,
    runtime: Runtime,
    uow: UoW,
    response: Response,
    accept_language: Annotated[str | None, Header()] = None,
) -> ReviewStatus:
    lang = preferred_language(accept_language)
    response.headers["Vary"] = "Accept-Language"  # the reviewer's name is in the answer's language
    response.headers["Content-Language"] = "en" if lang == "en" else "zh-CN"
    async with uow:
        view = await registration.review_status(uow, runtime.clock, runtime.settings, principal, team_id, lang)
    team, now = view.team, view.now
    pending = team.status == PENDING
    verdict = review.reminder_decision(team.submitted_at, team.last_reminder_at, now)
    return ReviewStatus(
        team_id=team.id,
        status=team.status,
        submitted_at=team.submitted_at,
        days_waiting=review.days_waiting(team.submitted_at, team.decided_at or now),
        decided_at=team.decided_at,
        reason=team.decision_reason,
        can_remind=pending and verdict.allowed,
        next_reminder_at=review.next_reminder_at(team.submitted_at, team.last_reminder_at) if pending else None,
        last_reminder_at=team.last_reminder_at,
        overdue=pending and review.is_overdue(team.submitted_at, now),
        reviewer=view.reviewer,
    )


@router.post(
    "/teams/{team_id}/review/reminders",
    status_code=202,
    response_model=ReminderOut,
    tags=["review"],
    summary="提醒审核: remind the reviewers (from 4 days without a decision, at most once a day)",
    responses=error_responses(
        E.TEAM_NOT_FOUND,
        E.NOT_APPLICANT,
        E.TEAM_ALREADY_REVIEWED,
        E.TEAM_WITHDRAWN,
        E.REMINDER_TOO_EARLY,
        E.REMINDER_ALREADY_SENT_TODAY,
    ),
)
async def remind_review(team_id: uuid.UUID, principal: CurrentPrincipal, runtime: Runtime, uow: UoW) -> ReminderOut:
    async with uow:
        team = await registration.remind(uow, runtime.clock, principal, team_id)
    assert team.last_reminder_at is not None
    return ReminderOut(
        team_id=team.id,
        requested_at=team.last_reminder_at,
        next_reminder_at=review.next_reminder_at(team.submitted_at, team.last_reminder_at),
    )


@router.post(
    "/teams/{team_id}/review/decision",
    response_model=TeamOut,
    tags=["review"],
    summary="Approve or reject a team (its liaison team's admins, or its registration authority)",
    responses=error_responses(
        E.TEAM_NOT_FOUND, E.NOT_REVIEWER, E.TEAM_ALREADY_REVIEWED, E.TEAM_WITHDRAWN, E.REJECTION_REASON_REQUIRED
    ),
)
async def decide_review(
    team_id: uuid.UUID, body: ReviewDecision, principal: CurrentPrincipal, runtime: Runtime, uow: UoW
) -> TeamOut:
    async with uow:
        team = await registration.decide(uow, runtime.clock, principal, team_id, body)
    return team_out(team)


@router.post(
    "/teams/{team_id}/withdrawal",
    response_model=TeamOut,
    tags=["review"],
    summary="Withdraw my registration while it is under review (the applicant): status `withdrawn`, its name "
    "and credit code free to register again, e.g. under another liaison team",
    responses=error_responses(E.TEAM_NOT_FOUND, E.NOT_APPLICANT, E.TEAM_ALREADY_REVIEWED),
)
async def withdraw_registration(team_id: uuid.UUID, principal: CurrentPrincipal, runtime: Runtime, uow: UoW) -> TeamOut:
    async with uow:
        team = await registration.withdraw_registration(uow, runtime.clock, principal, team_id)
    return team_out(team)


router.include_router(membership_router)
