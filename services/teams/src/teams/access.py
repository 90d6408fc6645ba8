"""Who may do what with a team: its admins, its reviewers, regional admins of its region."""

from __future__ import annotations

import uuid

from shared.auth import ROLE_REGIONAL_ADMIN, Principal
from shared.errors import AppError
from teams.errors import NOT_REGION_ADMIN, NOT_TEAM_ADMIN, TEAM_NOT_FOUND, VOLUNTEER_NOT_VERIFIED
from teams.models import APPROVED, Membership, Team, Volunteer
from teams.repository import TeamsRepository


async def load_team(repo: TeamsRepository, team_id: uuid.UUID, *, for_update: bool = False) -> Team:
    team = await repo.team(team_id, for_update=for_update)
    if team is None:
        raise AppError(TEAM_NOT_FOUND)
    return team


async def load_visible_team(
    repo: TeamsRepository, team_id: uuid.UUID, principal: Principal | None, *, for_update: bool = False
) -> Team:
    """The team, or ``team_not_found`` when ``principal`` may not see it (``can_see``), before any
    other check: a team under review that GET hides from strangers must not show through another
    route's refusal (``team_not_approved``, ``not_team_admin``) either."""
    team = await load_team(repo, team_id, for_update=for_update)
    if not await can_see(repo, principal, team):
        raise AppError(TEAM_NOT_FOUND)
    return team


async def require_team_admin(repo: TeamsRepository, team: Team, principal: Principal) -> Membership:
    membership = await repo.membership(team.id, principal.account_id)
    if membership is None or not membership.is_admin:
        raise AppError(NOT_TEAM_ADMIN)
    return membership


async def require_verified(repo: TeamsRepository, principal: Principal) -> Volunteer:
    volunteer = await repo.volunteer(principal.account_id)
    if volunteer is None:
        raise AppError(VOLUNTEER_NOT_VERIFIED)
    return volunteer


def require_region_admin(principal: Principal, region_code: str) -> None:
    if not principal.administers_region(region_code):
        raise AppError(NOT_REGION_ADMIN, {"region_code": region_code})


def is_authority_reviewer(principal: Principal, team: Team) -> bool:
    """A regional admin acting for the registration authority (the civil-affairs bureau) of the
    region the organisation is registered in, or above it; never the applicant."""
    authority = team.registration_authority_region
    return (
        authority is not None
        and principal.account_id != team.applicant_account_id
        and ROLE_REGIONAL_ADMIN in principal.roles
        and principal.region is not None
        and principal.administers_region(authority)
    )


async def liaison_reviewer_ids(repo: TeamsRepository, team: Team) -> list[uuid.UUID]:
    """The liaison team's admins who may review ``team``: all of them but its applicant."""
    if team.liaison_team_id is None:
        return []
    return [a for a in await repo.admin_ids(team.liaison_team_id) if a != team.applicant_account_id]


async def is_reviewer(repo: TeamsRepository, principal: Principal, team: Team) -> bool:
    """T5: the registration authority for a social organisation, else the liaison team's admins.
    A liaison team with no admin but the applicant (a federation created without one, or the
    applicant's own root team) is reviewed in its place by the admins of the liaison's region
    (and national admins). The applicant never reviews their own registration.
    ``TeamsRepository.pending_reviews_page`` (the review list) says the same in SQL: change both."""
    if principal.account_id == team.applicant_account_id:
        return False
    if team.registration_authority_region is not None:
        return is_authority_reviewer(principal, team) or principal.is_national_admin
    if team.liaison_team_id is None:
        return False
    liaison_admins = await liaison_reviewer_ids(repo, team)
    if liaison_admins:
        return principal.account_id in liaison_admins
    liaison = await repo.team(team.liaison_team_id)
    return liaison is not None and principal.administers_region(liaison.region_code)  # national admins too


async def can_see(repo: TeamsRepository, principal: Principal | None, team: Team) -> bool:
    """Approved teams are public; a team under review only to its applicant, admins and reviewers."""
    if team.status == APPROVED:
        return True
    if principal is None:
        return False
    if team.applicant_account_id == principal.account_id:
        return True
    if await repo.membership(team.id, principal.account_id) is not None:
        return True
    return await is_reviewer(repo, principal, team) or principal.administers_region(team.region_code)
