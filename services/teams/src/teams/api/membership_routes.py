"""HTTP routes of membership (T6–T8): settings, applications, invitations, members and roles."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Query, Response

from shared.auth import CurrentPrincipal, Principal
from shared.errors import error_responses
from shared.pagination import CURSOR_INVALID, encode_cursor, time_cursor
from teams import errors as E
from teams import membership
from teams.access import load_team, load_visible_team, require_team_admin
from teams.api.deps import Runtime, UoW
from teams.api.schemas import (
    InvitationCreate,
    InvitationOut,
    JoinApplication,
    JoinDecision,
    JoinRequestOut,
    JoinRequestPage,
    JoinResult,
    MemberAdd,
    MemberOut,
    MemberPage,
    MyJoinRequest,
    MyTeam,
    TeamInvitationOut,
    TeamInvitationPage,
    TeamOut,
    TeamSettingsUpdate,
)
from teams.api.views import team_out
from teams.models import PENDING, Invitation, JoinRequest, Membership, Volunteer
from teams.registration import contact_of
from teams.repository import TeamsRepository

router = APIRouter()
ADMIN_ERRORS = (E.TEAM_NOT_FOUND, E.NOT_TEAM_ADMIN)
_ROLE_ERRORS = error_responses(
    *ADMIN_ERRORS, E.TEAM_NOT_APPROVED, E.TEAM_REJECTED, E.TEAM_WITHDRAWN, E.NOT_MEMBER, E.LAST_ADMIN
)


def _request_out(request: JoinRequest, volunteer: Volunteer | None) -> JoinRequestOut:
    return JoinRequestOut(
        id=request.id,
        team_id=request.team_id,
        account_id=request.account_id,
        masked_name=volunteer.masked_name if volunteer else None,
        volunteer_number=volunteer.volunteer_number if volunteer else None,
        message=request.message,
        status=request.status,
        created_at=request.created_at,
    )


def _member_out(member: Membership, volunteer: Volunteer | None) -> MemberOut:
    return MemberOut(
        account_id=member.account_id,
        masked_name=volunteer.masked_name if volunteer else None,
        volunteer_number=volunteer.volunteer_number if volunteer else None,
        is_admin=member.is_admin,
        is_project_lead=member.is_project_lead,
        joined_at=member.joined_at,
    )


@router.patch(
    "/teams/{team_id}",
    response_model=TeamOut,
    tags=["membership"],
    summary="Team settings: join mode (T6) and published contact details (team admins)",
    responses=error_responses(*ADMIN_ERRORS, E.TEAM_REJECTED, E.TEAM_WITHDRAWN),
)
async def update_settings(
    team_id: uuid.UUID, body: TeamSettingsUpdate, principal: CurrentPrincipal, uow: UoW
) -> TeamOut:
    async with uow:
        team = await membership.update_settings(uow, principal, team_id, body)
    return team_out(team)


# -- applications (T6, T8) ---------------------------------------------------------------------
@router.post(
    "/teams/{team_id}/join-requests",
    status_code=201,
    response_model=JoinResult,
    tags=["membership"],
    summary="Apply to join; joins at once when anyone may join; a pending applicant sees the team's contact",
    responses=error_responses(
        E.TEAM_NOT_FOUND,
        E.TEAM_NOT_APPROVED,
        E.TEAM_REJECTED,
        E.TEAM_WITHDRAWN,
        E.VOLUNTEER_NOT_VERIFIED,
        E.TEAM_CLOSED_TO_MEMBERS,
        E.ALREADY_MEMBER,
        E.JOIN_REQUEST_PENDING,
    ),
)
async def apply_to_join(
    team_id: uuid.UUID, body: JoinApplication, principal: CurrentPrincipal, runtime: Runtime, uow: UoW
) -> JoinResult:
    async with uow:
        team, request = await membership.apply_to_join(uow, runtime.clock, principal, team_id, body.message)
    if request is None:
        return JoinResult(team_id=team.id, status="member")
    return JoinResult(team_id=team.id, status="pending", request_id=request.id, team_contact=contact_of(team))


@router.get(
    "/teams/{team_id}/join-requests",
    response_model=JoinRequestPage,
    tags=["membership"],
    summary="Pending applications to join (team admins)",
    responses=error_responses(*ADMIN_ERRORS, CURSOR_INVALID),
)
async def pending_applications(
    team_id: uuid.UUID,
    principal: CurrentPrincipal,
    uow: UoW,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=400),
) -> JoinRequestPage:
    fetch = TeamsRepository.pending_join_requests
    rows, next_cursor = await _admins_page(uow, principal, team_id, cursor, limit, fetch)
    return JoinRequestPage(items=[_request_out(r, v) for r, v in rows], next_cursor=next_cursor)


@router.post(
    "/teams/{team_id}/join-requests/{request_id}/decision",
    response_model=JoinRequestOut,
    tags=["membership"],
    summary="Approve or reject an application to join (team admins)",
    responses=error_responses(
        *ADMIN_ERRORS,
        E.TEAM_NOT_APPROVED,
        E.TEAM_REJECTED,
        E.TEAM_WITHDRAWN,
        E.JOIN_REQUEST_NOT_FOUND,
        E.JOIN_REQUEST_DECIDED,
        E.JOIN_REQUEST_CLOSED,
        E.APPLICANT_ALREADY_MEMBER,
    ),
)
async def decide_application(
    team_id: uuid.UUID,
    request_id: uuid.UUID,
    body: JoinDecision,
    principal: CurrentPrincipal,
    runtime: Runtime,
    uow: UoW,
) -> JoinRequestOut:
    async with uow:
        request = await membership.decide_application(uow, runtime.clock, principal, team_id, request_id, body)
        volunteer = await TeamsRepository(uow.session).volunteer(request.account_id)
    return _request_out(request, volunteer)


@router.delete(
    "/teams/{team_id}/join-requests/{request_id}",
    status_code=204,
    tags=["membership"],
    summary="Withdraw my pending application",
    responses=error_responses(E.JOIN_REQUEST_NOT_FOUND, E.JOIN_REQUEST_DECIDED, E.JOIN_REQUEST_CLOSED),
)
async def withdraw_application(
    team_id: uuid.UUID, request_id: uuid.UUID, principal: CurrentPrincipal, uow: UoW
) -> Response:
    async with uow:
        await membership.withdraw_application(uow, principal, team_id, request_id)
    return Response(status_code=204)


@router.get(
    "/me/join-requests",
    response_model=list[MyJoinRequest],
    tags=["membership"],
    summary="My applications; a pending one shows the team's published contact details (T8)",
)
async def my_applications(principal: CurrentPrincipal, uow: UoW) -> list[MyJoinRequest]:
    async with uow:
        rows = await TeamsRepository(uow.session).my_join_requests(principal.account_id)
    return [
        MyJoinRequest(
            id=r.id,
            team_id=t.id,
            team_name=t.name,
            status=r.status,
            created_at=r.created_at,
            reason=r.reason,
            team_contact=contact_of(t) if r.status == PENDING else None,
        )
        for r, t in rows
    ]


# -- invitations (T7) --------------------------------------------------------------------------
def _invitation_out(invitation: Invitation, team_name: str) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        team_id=invitation.team_id,
        team_name=team_name,
        account_id=invitation.account_id,
        status=invitation.status,
        created_at=invitation.created_at,
    )


@router.post(
    "/teams/{team_id}/invitations",
    status_code=201,
    response_model=InvitationOut,
    tags=["membership"],
    summary="Invite an existing verified volunteer by account id or volunteer number (team admins)",
    responses=error_responses(
        *ADMIN_ERRORS,
        E.TEAM_NOT_APPROVED,
        E.TEAM_REJECTED,
        E.TEAM_WITHDRAWN,
        E.INVITE_TARGET_REQUIRED,
        E.VOLUNTEER_NOT_FOUND,
        E.VOLUNTEER_ALREADY_MEMBER,
        E.INVITATION_PENDING,
    ),
)
async def invite(
    team_id: uuid.UUID, body: InvitationCreate, principal: CurrentPrincipal, runtime: Runtime, uow: UoW
) -> InvitationOut:
    async with uow:
        invitation = await membership.invite(uow, runtime.clock, principal, team_id, body)
        team = await load_team(TeamsRepository(uow.session), team_id)
    return _invitation_out(invitation, team.name)


@router.get(
    "/teams/{team_id}/invitations",
    response_model=TeamInvitationPage,
    tags=["membership"],
    summary="The team's open invitations, oldest first (team admins)",
    responses=error_responses(*ADMIN_ERRORS, CURSOR_INVALID),
)
async def open_invitations(
    team_id: uuid.UUID,
    principal: CurrentPrincipal,
    uow: UoW,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=400),
) -> TeamInvitationPage:
    fetch = TeamsRepository.pending_invitations
    rows, next_cursor = await _admins_page(uow, principal, team_id, cursor, limit, fetch)
    items = [
        TeamInvitationOut(
            id=i.id,
            team_id=i.team_id,
            account_id=i.account_id,
            masked_name=v.masked_name if v else None,
            volunteer_number=v.volunteer_number if v else None,
            invited_by=i.invited_by,
            status=i.status,
            created_at=i.created_at,
        )
        for i, v in rows
    ]
    return TeamInvitationPage(items=items, next_cursor=next_cursor)


async def _admins_page(
    uow: Any,
    principal: Principal,
    team_id: uuid.UUID,
    cursor: str | None,
    limit: int,
    fetch: Callable[..., Awaitable[Sequence[Any]]],
) -> tuple[Sequence[Any], str | None]:
    """One page of a list only the team's admins see, oldest first: ``fetch`` gives (item, volunteer)
    rows after the cursor; returns this page's rows and the cursor of the next page, if any."""
    after = time_cursor(cursor) if cursor else None
    async with uow:
        repo = TeamsRepository(uow.session)
        team = await load_visible_team(repo, team_id, principal)
        await require_team_admin(repo, team, principal)
        rows = await fetch(repo, team.id, after=after, limit=limit + 1)
    last = rows[limit - 1][0] if len(rows) > limit else None
    return rows[:limit], encode_cursor(last.created_at, last.id) if last else None


@router.delete(
    "/teams/{team_id}/invitations/{invitation_id}",
    status_code=204,
    tags=["membership"],
    summary="Revoke an open invitation (team admins); the invitee can no longer accept it",
    responses=error_responses(*ADMIN_ERRORS, E.INVITATION_NOT_FOUND, E.INVITATION_ANSWERED, E.INVITATION_CLOSED),
)
async def revoke_invitation(
    team_id: uuid.UUID, invitation_id: uuid.UUID, principal: CurrentPrincipal, runtime: Runtime, uow: UoW
) -> Response:
    async with uow:
        await membership.revoke_invitation(uow, runtime.clock, principal, team_id, invitation_id)
    return Response(status_code=204)


@router.get("/me/invitations", response_model=list[InvitationOut], tags=["membership"], summary="My open invitations")
async def my_invitations(principal: CurrentPrincipal, uow: UoW) -> list[InvitationOut]:
    async with uow:
        rows = await TeamsRepository(uow.session).my_invitations(principal.account_id)
    return [_invitation_out(i, t.name) for i, t in rows]


async def _answer(
    invitation_id: uuid.UUID, accept: bool, principal: CurrentPrincipal, runtime: Runtime, uow: UoW
) -> InvitationOut:
    async with uow:
        invitation = await membership.answer_invitation(uow, runtime.clock, principal, invitation_id, accept)
        team = await load_team(TeamsRepository(uow.session), invitation.team_id)
    return _invitation_out(invitation, team.name)


_ANSWER_ERRORS = error_responses(
    E.INVITATION_NOT_FOUND,
    E.INVITATION_ANSWERED,
    E.INVITATION_CLOSED,
    E.TEAM_NOT_APPROVED,
    E.TEAM_REJECTED,
    E.TEAM_WITHDRAWN,
    E.ALREADY_MEMBER,
)


@router.post(
    "/invitations/{invitation_id}/accept",
    response_model=InvitationOut,
    tags=["membership"],
    summary="Accept an invitation: join the team",
    responses=_ANSWER_ERRORS,
)
async def accept_invitation(
    invitation_id: uuid.UUID, principal: CurrentPrincipal, runtime: Runtime, uow: UoW
) -> InvitationOut:
    return await _answer(invitation_id, True, principal, runtime, uow)


@router.post(
    "/invitations/{invitation_id}/decline",
    response_model=InvitationOut,
    tags=["membership"],
    summary="Decline an invitation",
    responses=_ANSWER_ERRORS,
)
async def decline_invitation(
    invitation_id: uuid.UUID, principal: CurrentPrincipal, runtime: Runtime, uow: UoW
) -> InvitationOut:
    return await _answer(invitation_id, False, principal, runtime, uow)


# -- members and roles (T7) --------------------------------------------------------------------
@router.get(
    "/teams/{team_id}/members",
    response_model=MemberPage,
    tags=["membership"],
    summary="All members with masked names and volunteer numbers (team admins)",
    responses=error_responses(*ADMIN_ERRORS, CURSOR_INVALID),
)
async def members(
    team_id: uuid.UUID,
    principal: CurrentPrincipal,
    uow: UoW,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=400),
) -> MemberPage:
    after = time_cursor(cursor) if cursor else None
    async with uow:
        repo = TeamsRepository(uow.session)
        team = await load_visible_team(repo, team_id, principal)
        await require_team_admin(repo, team, principal)
        rows = await repo.members_page(team.id, after=after, limit=limit + 1)
    items = [_member_out(m, v) for m, v in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return MemberPage(items=items, next_cursor=encode_cursor(last.joined_at, last.account_id) if last else None)


@router.post(
    "/teams/{team_id}/members",
    status_code=201,
    response_model=MemberOut,
    tags=["membership"],
    summary="Add a registered volunteer found by ID number and name, at once (team admins; FAQ V1)",
    description=(
        "For a volunteer told at sign-up that their ID number is already registered: they give a team "
        "admin their ID number and name, the admin finds the account with identity's "
        "`POST /api/v1/volunteer-lookups` and passes its `match_token` here within 10 minutes. The "
        "volunteer joins without accepting (they cannot log in), and the admin then sets a temporary "
        "password from the member list (identity's `POST /api/v1/teams/{team_id}/members/{account_id}"
        "/temporary-passwords`), which also gives the username. A token made for another admin, or "
        "expired, is `volunteer_match_invalid`; a token already used (one lookup brings a volunteer into one "
        "team) is `volunteer_match_used`. Others are invited, and accept."
    ),
    responses=error_responses(
        *ADMIN_ERRORS,
        E.TEAM_NOT_APPROVED,
        E.TEAM_REJECTED,
        E.TEAM_WITHDRAWN,
        E.VOLUNTEER_MATCH_INVALID,
        E.VOLUNTEER_MATCH_USED,
        E.VOLUNTEER_NOT_FOUND,
        E.VOLUNTEER_ALREADY_MEMBER,
    ),
)
async def add_found_volunteer(
    team_id: uuid.UUID, body: MemberAdd, principal: CurrentPrincipal, runtime: Runtime, uow: UoW
) -> MemberOut:
    async with uow:
        member = await membership.add_found_volunteer(
            uow, runtime.clock, principal, team_id, body.match_token, runtime.volunteer_matches
        )
        volunteer = await TeamsRepository(uow.session).volunteer(member.account_id)
    return _member_out(member, volunteer)


@router.delete(
    "/teams/{team_id}/members/me",
    status_code=204,
    tags=["membership"],
    summary="Leave the team",
    responses=error_responses(
        E.TEAM_NOT_FOUND, E.TEAM_NOT_APPROVED, E.TEAM_REJECTED, E.TEAM_WITHDRAWN, E.NOT_MEMBER, E.LAST_ADMIN
    ),
)
async def leave(team_id: uuid.UUID, principal: CurrentPrincipal, uow: UoW) -> Response:
    async with uow:
        await membership.leave(uow, principal, team_id)
    return Response(status_code=204)


@router.delete(
    "/teams/{team_id}/members/{account_id}",
    status_code=204,
    tags=["membership"],
    summary="Remove a member (team admins)",
    responses=_ROLE_ERRORS,
)
async def remove_member(team_id: uuid.UUID, account_id: uuid.UUID, principal: CurrentPrincipal, uow: UoW) -> Response:
    async with uow:
        await membership.remove_member(uow, principal, team_id, account_id)
    return Response(status_code=204)


async def _set_role(
    team_id: uuid.UUID, account_id: uuid.UUID, role: membership.Role, on: bool, principal: CurrentPrincipal, uow: UoW
) -> MemberOut:
    async with uow:
        member = await membership.set_role(uow, principal, team_id, account_id, role, on)
        volunteer = await TeamsRepository(uow.session).volunteer(account_id)
    return _member_out(member, volunteer)


@router.put(
    "/teams/{team_id}/admins/first/{account_id}",
    response_model=MemberOut,
    tags=["membership"],
    summary="Give a team without any admin (a root team created without one) its first admin, a verified "
    "volunteer (regional admins of its region, national admins)",
    responses=error_responses(
        E.TEAM_NOT_FOUND, E.NOT_REGION_ADMIN, E.TEAM_NOT_APPROVED, E.TEAM_HAS_ADMIN, E.VOLUNTEER_NOT_FOUND
    ),
)
async def appoint_first_admin(
    team_id: uuid.UUID, account_id: uuid.UUID, principal: CurrentPrincipal, runtime: Runtime, uow: UoW
) -> MemberOut:
    async with uow:
        member = await membership.appoint_first_admin(uow, runtime.clock, principal, team_id, account_id)
        volunteer = await TeamsRepository(uow.session).volunteer(account_id)
    return _member_out(member, volunteer)


@router.put(
    "/teams/{team_id}/admins/{account_id}",
    response_model=MemberOut,
    tags=["membership"],
    summary="Appoint a member as admin",
    responses=_ROLE_ERRORS,
)
async def appoint_admin(team_id: uuid.UUID, account_id: uuid.UUID, principal: CurrentPrincipal, uow: UoW) -> MemberOut:
    return await _set_role(team_id, account_id, "admin", True, principal, uow)


@router.delete(
    "/teams/{team_id}/admins/{account_id}",
    response_model=MemberOut,
    tags=["membership"],
    summary="Remove a member's admin role (a team keeps at least one admin)",
    responses=_ROLE_ERRORS,
)
async def remove_admin(team_id: uuid.UUID, account_id: uuid.UUID, principal: CurrentPrincipal, uow: UoW) -> MemberOut:
    return await _set_role(team_id, account_id, "admin", False, principal, uow)


@router.put(
    "/teams/{team_id}/project-leads/{account_id}",
    response_model=MemberOut,
    tags=["membership"],
    summary="Appoint a member as project lead",
    responses=_ROLE_ERRORS,
)
async def appoint_project_lead(
    team_id: uuid.UUID, account_id: uuid.UUID, principal: CurrentPrincipal, uow: UoW
) -> MemberOut:
    return await _set_role(team_id, account_id, "project_lead", True, principal, uow)


@router.delete(
    "/teams/{team_id}/project-leads/{account_id}",
    response_model=MemberOut,
    tags=["membership"],
    summary="Remove a member's project lead role",
    responses=_ROLE_ERRORS,
)
async def remove_project_lead(
    team_id: uuid.UUID, account_id: uuid.UUID, principal: CurrentPrincipal, uow: UoW
) -> MemberOut:
    return await _set_role(team_id, account_id, "project_lead", False, principal, uow)


@router.get("/me/teams", response_model=list[MyTeam], tags=["membership"], summary="Teams I belong to, with my roles")
async def my_teams(principal: CurrentPrincipal, uow: UoW) -> list[MyTeam]:
    async with uow:
        rows = await TeamsRepository(uow.session).my_memberships(principal.account_id)
    return [
        MyTeam(
            team_id=t.id,
            name=t.name,
            status=t.status,
            is_admin=m.is_admin,
            is_project_lead=m.is_project_lead,
            joined_at=m.joined_at,
        )
        for m, t in rows
    ]
