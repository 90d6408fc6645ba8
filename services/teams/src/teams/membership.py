"""Use cases of membership (T6–T8): join modes, applications, invitations, leaving, roles.

Each function works inside a unit of work the caller opened; none commits. Every team that
raises events is tracked by the unit of work: the session holds clean objects only weakly, and
an event must not vanish with an object the caller no longer references.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy.exc import IntegrityError

from shared.auth import Principal, TokenVerifier, verified_volunteer_match
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
from teams.access import load_team, load_visible_team, require_region_admin, require_team_admin, require_verified
from teams.api.schemas import InvitationCreate, JoinDecision, TeamSettingsUpdate
from teams.errors import (
    ALREADY_MEMBER,
    APPLICANT_ALREADY_MEMBER,
    INVITATION_ANSWERED,
    INVITATION_CLOSED,
    INVITATION_NOT_FOUND,
    INVITATION_PENDING,
    INVITE_TARGET_REQUIRED,
    JOIN_REQUEST_CLOSED,
    JOIN_REQUEST_DECIDED,
    JOIN_REQUEST_NOT_FOUND,
    JOIN_REQUEST_PENDING,
    LAST_ADMIN,
    NOT_MEMBER,
    TEAM_CLOSED_TO_MEMBERS,
    TEAM_HAS_ADMIN,
    TEAM_NOT_APPROVED,
    TEAM_REJECTED,
    TEAM_WITHDRAWN,
    VOLUNTEER_ALREADY_MEMBER,
    VOLUNTEER_MATCH_INVALID,
    VOLUNTEER_MATCH_USED,
    VOLUNTEER_NOT_FOUND,
)
from teams.models import (
    ACCEPTED,
    ANYONE,
    APPROVED,
    CLOSED,
    DECLINED,
    PENDING,
    REJECT_ANYONE,
    REJECTED,
    REVOKED,
    WITHDRAWN,
    Invitation,
    JoinRequest,
    Membership,
    Team,
)
from teams.registration import set_contact
from teams.repository import MergedMembership, TeamsRepository

Role = Literal["admin", "project_lead"]


def _require_live(team: Team) -> None:
    """A rejected or withdrawn registration stays as its applicant left it: a record of what was
    asked."""
    if team.status == REJECTED:
        raise AppError(TEAM_REJECTED)
    if team.status == WITHDRAWN:
        raise AppError(TEAM_WITHDRAWN)


def _require_approved(team: Team) -> None:
    """Membership facts go out only once the team is approved (after ``team.approved``)."""
    _require_live(team)
    if team.status != APPROVED:
        raise AppError(TEAM_NOT_APPROVED)


def _require_open_request(request: JoinRequest) -> None:
    if request.status == CLOSED:
        raise AppError(JOIN_REQUEST_CLOSED)
    if request.status != PENDING:
        raise AppError(JOIN_REQUEST_DECIDED)


def _require_open_invitation(invitation: Invitation) -> None:
    if invitation.status in (CLOSED, REVOKED):
        raise AppError(INVITATION_CLOSED)
    if invitation.status != PENDING:
        raise AppError(INVITATION_ANSWERED)


async def _add_member(
    repo: TeamsRepository,
    clock: Clock,
    team: Team,
    account_id: uuid.UUID,
    *,
    admin: bool = False,
    added_by: uuid.UUID | None = None,
) -> Membership:
    """``account_id`` joins ``team`` (whose row the caller holds locked). Joining by one route
    closes the account's other open application and invitation for the team: answered later,
    after the member left or was removed, they would let them back in without anyone's consent."""
    now = clock.now()
    membership = Membership(team_id=team.id, account_id=account_id, is_admin=admin, joined_at=now)
    repo.session.add(membership)
    # brought in without the volunteer's answer: the event says by whom, and notifications tells them
    team.raise_event(
        TeamMemberJoined(
            team_id=team.id,
            account_id=account_id,
            added_by_account_id=added_by,
            team_name=team.name if added_by is not None else None,
        )
    )
    if admin:
        team.raise_event(TeamAdminAppointed(team_id=team.id, account_id=account_id))
    request = await repo.pending_join_request_for(team.id, account_id)
    if request is not None and request.status == PENDING:  # not the one being accepted now
        request.status, request.decided_at = CLOSED, now
    invitation = await repo.pending_invitation_for(team.id, account_id)
    if invitation is not None and invitation.status == PENDING:
        invitation.status, invitation.answered_at = CLOSED, now
    return membership


async def update_settings(uow: UnitOfWork, principal: Principal, team_id: uuid.UUID, data: TeamSettingsUpdate) -> Team:
    repo = TeamsRepository(uow.session)
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    await require_team_admin(repo, team, principal)
    _require_live(team)  # under review, the applicant may still set its contact and join mode
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
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    await require_verified(repo, principal)
    _require_approved(team)
    if await repo.membership(team.id, principal.account_id) is not None:
        raise AppError(ALREADY_MEMBER)
    if team.join_mode == REJECT_ANYONE:
        raise AppError(TEAM_CLOSED_TO_MEMBERS)
    if team.join_mode == ANYONE:
        await _add_member(repo, clock, team, principal.account_id)
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
    _require_open_request(request)
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
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    await require_team_admin(repo, team, principal)
    _require_approved(team)
    request = await repo.join_request(request_id, for_update=True)
    if request is None or request.team_id != team.id:
        raise AppError(JOIN_REQUEST_NOT_FOUND)
    _require_open_request(request)
    if decision.outcome == "approved" and await repo.membership(team.id, request.account_id) is not None:
        raise AppError(APPLICANT_ALREADY_MEMBER)
    request.decided_at = clock.now()
    request.decided_by = principal.account_id
    request.reason = decision.reason
    if decision.outcome == "rejected":
        request.status = REJECTED
        return request
    request.status = ACCEPTED
    await _add_member(repo, clock, team, request.account_id)
    return request


# -- invitations (T7) ----------------------------------------------------------------------------
async def invite(
    uow: UnitOfWork, clock: Clock, principal: Principal, team_id: uuid.UUID, data: InvitationCreate
) -> Invitation:
    repo = TeamsRepository(uow.session)
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    if (data.account_id is None) == (data.volunteer_number is None):
        raise AppError(INVITE_TARGET_REQUIRED)
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
        raise AppError(VOLUNTEER_ALREADY_MEMBER)
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


async def add_found_volunteer(
    uow: UnitOfWork, clock: Clock, principal: Principal, team_id: uuid.UUID, match_token: str, matches: TokenVerifier
) -> Membership:
    """FAQ V1: a volunteer told "already registered" gives a team admin their ID number and name;
    the admin finds the registered account with them (identity's lookup and its match token, which
    ``matches`` checks was made for this admin) and brings it into the team at once, since its owner
    cannot log in to accept an invitation; then resets its password from the member list
    (identity). Kept as an invitation accepted when made, so the team knows which admin added whom.
    Whoever is not the team's admin is refused before the token is looked at."""
    repo = TeamsRepository(uow.session)
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    await require_team_admin(repo, team, principal)
    _require_approved(team)
    match = await verified_volunteer_match(matches, match_token, principal.account_id)
    if match is None:
        raise AppError(VOLUNTEER_MATCH_INVALID)
    volunteer = await repo.volunteer(match.volunteer_id)
    if volunteer is None:
        raise AppError(VOLUNTEER_NOT_FOUND)
    if await repo.membership(team.id, volunteer.account_id) is not None:
        raise AppError(VOLUNTEER_ALREADY_MEMBER)
    membership = await _add_member(repo, clock, team, volunteer.account_id, added_by=principal.account_id)
    now = clock.now()
    uow.session.add(
        Invitation(
            id=uuid.uuid4(),
            team_id=team.id,
            account_id=volunteer.account_id,
            invited_by=principal.account_id,
            created_at=now,
            status=ACCEPTED,
            answered_at=now,
            match_jti=match.token_id,
        )
    )
    try:  # a token used before, or at the same moment for another team: the unique index decides
        await uow.flush()
    except IntegrityError as exc:
        if "uq_invitations_match_jti" not in str(exc.orig):
            raise
        raise AppError(VOLUNTEER_MATCH_USED) from None
    return membership


async def answer_invitation(
    uow: UnitOfWork, clock: Clock, principal: Principal, invitation_id: uuid.UUID, accept: bool
) -> Invitation:
    repo = TeamsRepository(uow.session)
    found = await repo.invitation(invitation_id)
    if found is None or found.account_id != principal.account_id:
        raise AppError(INVITATION_NOT_FOUND)
    # The team first, then the invitation: the order of inviting and revoking, so none deadlocks.
    team = await load_team(repo, found.team_id, for_update=True)
    invitation = await repo.invitation(invitation_id, for_update=True)
    assert invitation is not None  # invitations are never deleted
    _require_open_invitation(invitation)
    if not accept:
        invitation.status, invitation.answered_at = DECLINED, clock.now()
        return invitation
    _require_approved(team)
    if await repo.membership(team.id, principal.account_id) is not None:
        raise AppError(ALREADY_MEMBER)
    invitation.status, invitation.answered_at = ACCEPTED, clock.now()
    await _add_member(repo, clock, team, principal.account_id)
    return invitation


async def revoke_invitation(
    uow: UnitOfWork, clock: Clock, principal: Principal, team_id: uuid.UUID, invitation_id: uuid.UUID
) -> Invitation:
    """A team admin withdraws an invitation that is still open."""
    repo = TeamsRepository(uow.session)
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    await require_team_admin(repo, team, principal)
    invitation = await repo.invitation(invitation_id, for_update=True)
    if invitation is None or invitation.team_id != team.id:
        raise AppError(INVITATION_NOT_FOUND)
    _require_open_invitation(invitation)
    invitation.status, invitation.answered_at = REVOKED, clock.now()
    return invitation


# -- leaving and roles (T7) ------------------------------------------------------------------------
async def _remove(repo: TeamsRepository, uow: UnitOfWork, team: Team, account_id: uuid.UUID) -> None:
    _require_approved(team)
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
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    await _remove(repo, uow, team, principal.account_id)


async def remove_member(uow: UnitOfWork, principal: Principal, team_id: uuid.UUID, account_id: uuid.UUID) -> None:
    repo = TeamsRepository(uow.session)
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    await require_team_admin(repo, team, principal)
    await _remove(repo, uow, team, account_id)


async def set_role(
    uow: UnitOfWork, principal: Principal, team_id: uuid.UUID, account_id: uuid.UUID, role: Role, on: bool
) -> Membership:
    repo = TeamsRepository(uow.session)
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    await require_team_admin(repo, team, principal)
    _require_approved(team)
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


async def appoint_first_admin(
    uow: UnitOfWork, clock: Clock, principal: Principal, team_id: uuid.UUID, account_id: uuid.UUID
) -> Membership:
    """A regional admin of the team's region (or a national admin) gives a team without any
    admin (a root team created without one) its first admin, a verified volunteer. From then on
    the team's admins appoint the others; asking again for the same admin changes nothing."""
    repo = TeamsRepository(uow.session)
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    require_region_admin(principal, team.region_code)
    _require_approved(team)
    admins = await repo.lock_admins(team.id)
    if admins == [account_id]:
        membership = await repo.membership(team.id, account_id)
        assert membership is not None
        return membership
    if admins:
        raise AppError(TEAM_HAS_ADMIN)
    if await repo.volunteer(account_id) is None:
        raise AppError(VOLUNTEER_NOT_FOUND)
    membership = await repo.membership(team.id, account_id, for_update=True)
    if membership is None:
        return await _add_member(repo, clock, team, account_id, admin=True)
    membership.is_admin = True
    team.raise_event(TeamAdminAppointed(team_id=team.id, account_id=account_id))
    return membership


# -- volunteer records merged by identity (V3) ------------------------------------------------------
async def merge_accounts(uow: UnitOfWork, kept: uuid.UUID, merged: uuid.UUID) -> None:
    """Move the merged record's memberships to the kept one and tell the other services, per
    approved team, what changed (projects and identity keep team admins and leads from these
    events). Each team's row is locked first, as joining, leaving and role changes lock it."""
    repo = TeamsRepository(uow.session)
    teams = {t.id: t for t in await repo.lock_teams(await repo.teams_of(merged))}
    await repo.lock_volunteer(merged)  # after the teams: a verification takes no team's lock
    changes = await repo.merge_account(kept, merged, uow.clock.now())
    if late := {c.team_id for c in changes} - teams.keys():  # joined while we were locking
        teams.update((t.id, t) for t in await repo.lock_teams(late))
    for change in changes:
        team = teams[change.team_id]
        if team.status == APPROVED:  # a team under review announces its members when approved
            _announce_merge(team, kept, merged, change)


def _announce_merge(team: Team, kept: uuid.UUID, merged: uuid.UUID, change: MergedMembership) -> None:
    # The kept record's gains first: at no moment do the other services see the team without
    # the admin it still has.
    if not change.kept_was_member:
        team.raise_event(TeamMemberJoined(team_id=team.id, account_id=kept))
    if change.merged_was_admin and not change.kept_was_admin:
        team.raise_event(TeamAdminAppointed(team_id=team.id, account_id=kept))
    if change.merged_was_lead and not change.kept_was_lead:
        team.raise_event(TeamProjectLeadAppointed(team_id=team.id, account_id=kept))
    if change.merged_was_admin:
        team.raise_event(TeamAdminRemoved(team_id=team.id, account_id=merged))
    if change.merged_was_lead:
        team.raise_event(TeamProjectLeadRemoved(team_id=team.id, account_id=merged))
    team.raise_event(TeamMemberLeft(team_id=team.id, account_id=merged))
