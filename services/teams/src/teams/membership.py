"""Use cases of membership (T6–T8): join modes, applications, invitations, leaving, roles.

Each function works inside a unit of work the caller opened; none commits. Every team that
raises events is tracked by the unit of work: the session holds clean objects only weakly, and
an event must not vanish with an object the caller no longer references.
"""

from __future__ import annotations

import uuid
from typing import Literal

from shared.auth import Principal
from shared.clock import Clock
from shared.contracts.teams import (
    TeamAdminAppointed,
    TeamAdminRemoved,
    TeamMemberJoined,
    TeamMemberLeft,
    TeamProjectLeadAppointed,
    TeamProjectLeadRemoved,
)
from shared.db import UnitOfWork
from shared.errors import AppError
from teams.access import load_team, require_team_admin, require_verified
from teams.api.schemas import InvitationCreate, JoinDecision, TeamSettingsUpdate
from teams.errors import (
    ALREADY_MEMBER,
    INVITATION_ANSWERED,
    INVITATION_NOT_FOUND,
    INVITATION_PENDING,
    INVITE_TARGET_REQUIRED,
    JOIN_REQUEST_DECIDED,
    JOIN_REQUEST_NOT_FOUND,
    JOIN_REQUEST_PENDING,
    LAST_ADMIN,
    NOT_MEMBER,
    TEAM_CLOSED_TO_MEMBERS,
    TEAM_NOT_APPROVED,
    VOLUNTEER_NOT_FOUND,
)
from teams.models import (
    ACCEPTED,
    ANYONE,
    APPROVED,
    DECLINED,
    PENDING,
    REJECT_ANYONE,
    REJECTED,
    Invitation,
    JoinRequest,
    Membership,
    Team,
)
from teams.registration import set_contact
from teams.repository import TeamsRepository

Role = Literal["admin", "project_lead"]


def _require_approved(team: Team) -> None:
    if team.status != APPROVED:
        raise AppError(TEAM_NOT_APPROVED)


def _add_member(uow: UnitOfWork, clock: Clock, team: Team, account_id: uuid.UUID) -> Membership:
    membership = Membership(team_id=team.id, account_id=account_id, joined_at=clock.now())
    uow.session.add(membership)
    team.raise_event(TeamMemberJoined(team_id=team.id, account_id=account_id))
    return membership


async def update_settings(uow: UnitOfWork, principal: Principal, team_id: uuid.UUID, data: TeamSettingsUpdate) -> Team:
    repo = TeamsRepository(uow.session)
    team = await load_team(repo, team_id, for_update=True)
    await require_team_admin(repo, team, principal)
    if data.join_mode is not None:
        team.join_mode = data.join_mode
    if data.contact is not None:
        set_contact(team, data.contact)
    return team


# -- applying to join (T6, T8) -------------------------------------------------------------------
async def apply_to_join(
    uow: UnitOfWork, clock: Clock, principal: Principal, team_id: uuid.UUID, message: str | None
) -> tuple[Team, JoinRequest | None]:
    """Joins at once (anyone may join) or files an application (join after approval)."""
    repo = TeamsRepository(uow.session)
    await require_verified(repo, principal)
    team = await load_team(repo, team_id, for_update=True)
    _require_approved(team)
    if await repo.membership(team.id, principal.account_id) is not None:
        raise AppError(ALREADY_MEMBER)
    if team.join_mode == REJECT_ANYONE:
        raise AppError(TEAM_CLOSED_TO_MEMBERS)
    if team.join_mode == ANYONE:
        _add_member(uow, clock, team, principal.account_id)
        return team, None
    if await repo.pending_join_request_for(team.id, principal.account_id) is not None:
        raise AppError(JOIN_REQUEST_PENDING)
    request = JoinRequest(
        id=uuid.uuid4(), team_id=team.id, account_id=principal.account_id, message=message, created_at=clock.now()
    )
    uow.session.add(request)
    return team, request


async def withdraw_application(
    uow: UnitOfWork, principal: Principal, team_id: uuid.UUID, request_id: uuid.UUID
) -> None:
    repo = TeamsRepository(uow.session)
    request = await repo.join_request(request_id, for_update=True)
    if request is None or request.team_id != team_id or request.account_id != principal.account_id:
        raise AppError(JOIN_REQUEST_NOT_FOUND)
    if request.status != PENDING:
        raise AppError(JOIN_REQUEST_DECIDED)
    await uow.session.delete(request)


async def decide_application(
    uow: UnitOfWork,
    clock: Clock,
    principal: Principal,
    team_id: uuid.UUID,
    request_id: uuid.UUID,
    decision: JoinDecision,
) -> JoinRequest:
    repo = TeamsRepository(uow.session)
    team = await load_team(repo, team_id, for_update=True)
    await require_team_admin(repo, team, principal)
    request = await repo.join_request(request_id, for_update=True)
    if request is None or request.team_id != team.id:
        raise AppError(JOIN_REQUEST_NOT_FOUND)
    if request.status != PENDING:
        raise AppError(JOIN_REQUEST_DECIDED)
    request.decided_at = clock.now()
    request.decided_by = principal.account_id
    request.reason = decision.reason
    if decision.outcome == "rejected":
        request.status = REJECTED
        return request
    request.status = ACCEPTED
    if await repo.membership(team.id, request.account_id) is None:
        _add_member(uow, clock, team, request.account_id)
    return request


# -- invitations (T7) ----------------------------------------------------------------------------
async def invite(
    uow: UnitOfWork, clock: Clock, principal: Principal, team_id: uuid.UUID, data: InvitationCreate
) -> Invitation:
    repo = TeamsRepository(uow.session)
    if (data.account_id is None) == (data.volunteer_number is None):
        raise AppError(INVITE_TARGET_REQUIRED)
    team = await load_team(repo, team_id, for_update=True)
    await require_team_admin(repo, team, principal)
    _require_approved(team)
    volunteer = (
        await repo.volunteer(data.account_id)
        if data.account_id is not None
        else await repo.volunteer_by_number(data.volunteer_number or "")
    )
    if volunteer is None:
        raise AppError(VOLUNTEER_NOT_FOUND)
    if await repo.membership(team.id, volunteer.account_id) is not None:
        raise AppError(ALREADY_MEMBER)
    if await repo.pending_invitation_for(team.id, volunteer.account_id) is not None:
        raise AppError(INVITATION_PENDING)
    invitation = Invitation(
        id=uuid.uuid4(),
        team_id=team.id,
        account_id=volunteer.account_id,
        invited_by=principal.account_id,
        created_at=clock.now(),
    )
    uow.session.add(invitation)
    return invitation


async def answer_invitation(
    uow: UnitOfWork, clock: Clock, principal: Principal, invitation_id: uuid.UUID, accept: bool
) -> Invitation:
    repo = TeamsRepository(uow.session)
    invitation = await repo.invitation(invitation_id, for_update=True)
    if invitation is None or invitation.account_id != principal.account_id:
        raise AppError(INVITATION_NOT_FOUND)
    if invitation.status != PENDING:
        raise AppError(INVITATION_ANSWERED)
    invitation.answered_at = clock.now()
    if not accept:
        invitation.status = DECLINED
        return invitation
    team = await load_team(repo, invitation.team_id, for_update=True)
    invitation.status = ACCEPTED
    if await repo.membership(team.id, principal.account_id) is None:
        _add_member(uow, clock, team, principal.account_id)
    pending = await repo.pending_join_request_for(team.id, principal.account_id)
    if pending is not None:  # the invitation answers the application too
        pending.status, pending.decided_at, pending.decided_by = ACCEPTED, clock.now(), invitation.invited_by
    return invitation


# -- leaving and roles (T7) ------------------------------------------------------------------------
async def _remove(repo: TeamsRepository, uow: UnitOfWork, team: Team, account_id: uuid.UUID) -> None:
    membership = await repo.membership(team.id, account_id, for_update=True)
    if membership is None:
        raise AppError(NOT_MEMBER)
    if membership.is_admin:
        admins = await repo.lock_admins(team.id)
        if admins == [account_id]:
            raise AppError(LAST_ADMIN)
        team.raise_event(TeamAdminRemoved(team_id=team.id, account_id=account_id))
    if membership.is_project_lead:
        team.raise_event(TeamProjectLeadRemoved(team_id=team.id, account_id=account_id))
    await uow.session.delete(membership)
    team.raise_event(TeamMemberLeft(team_id=team.id, account_id=account_id))


async def leave(uow: UnitOfWork, principal: Principal, team_id: uuid.UUID) -> None:
    repo = TeamsRepository(uow.session)
    team = await load_team(repo, team_id, for_update=True)
    await _remove(repo, uow, team, principal.account_id)


async def remove_member(uow: UnitOfWork, principal: Principal, team_id: uuid.UUID, account_id: uuid.UUID) -> None:
    repo = TeamsRepository(uow.session)
    team = await load_team(repo, team_id, for_update=True)
    await require_team_admin(repo, team, principal)
    await _remove(repo, uow, team, account_id)


async def set_role(
    uow: UnitOfWork, principal: Principal, team_id: uuid.UUID, account_id: uuid.UUID, role: Role, on: bool
) -> Membership:
    repo = TeamsRepository(uow.session)
    team = await load_team(repo, team_id, for_update=True)
    await require_team_admin(repo, team, principal)
    membership = await repo.membership(team.id, account_id, for_update=True)
    if membership is None:
        raise AppError(NOT_MEMBER)
    if role == "admin":
        if membership.is_admin == on:
            return membership
        if not on and await repo.lock_admins(team.id) == [account_id]:
            raise AppError(LAST_ADMIN)
        membership.is_admin = on
        event_type: type[TeamAdminAppointed | TeamAdminRemoved] = TeamAdminAppointed if on else TeamAdminRemoved
        team.raise_event(event_type(team_id=team.id, account_id=account_id))
        return membership
    if membership.is_project_lead == on:
        return membership
    membership.is_project_lead = on
    lead_event: type[TeamProjectLeadAppointed | TeamProjectLeadRemoved] = (
        TeamProjectLeadAppointed if on else TeamProjectLeadRemoved
    )
    team.raise_event(lead_event(team_id=team.id, account_id=account_id))
    return membership
