"""What team admins do in identity (T7): find a volunteer to invite, reset a member's password."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from identity import errors, invitations
from identity.api.deps import Runtime, UoW
from identity.api.schemas import LookupIn, LookupOut, TeamTemporaryPasswordOut
from shared.auth import CurrentPrincipal
from shared.errors import TOKEN_INVALID, UNAUTHENTICATED, VALIDATION_FAILED, AppError, error_responses

router = APIRouter(tags=["team admins"])


@router.post(
    "/api/v1/volunteer-lookups",
    response_model=LookupOut,
    summary="Team admins: find a registered volunteer by ID number and name (both must match); audited, rate-limited",
    description=(
        "POST, so the ID number never appears in a URL or an access log. The answer carries a "
        "`match_token` (10 minutes, for this admin only) with which teams' `POST /api/v1/teams/{team_id}"
        "/members` brings the volunteer into one of the admin's teams at once (FAQ V1)."
    ),
    responses=error_responses(
        UNAUTHENTICATED,
        TOKEN_INVALID,
        errors.NOT_TEAM_ADMIN,
        errors.TOO_MANY_LOOKUPS,
        errors.VOLUNTEER_NOT_FOUND,
        VALIDATION_FAILED,
    ),
)
async def look_up(body: LookupIn, principal: CurrentPrincipal, uow: UoW, runtime: Runtime) -> LookupOut:
    async with uow:
        found = await invitations.look_up(
            runtime,
            uow,
            principal,
            document_type=body.document_type,
            id_number=body.id_number,
            real_name=body.real_name,
        )
    # Refused only now: the audit row of a lookup that found nothing is committed too.
    if found is None:
        raise AppError(errors.VOLUNTEER_NOT_FOUND)
    return LookupOut(
        volunteer_id=found.volunteer_id,
        masked_name=found.masked_name,
        volunteer_number=found.volunteer_number,
        match_token=found.match_token,
        match_expires_at=found.match_expires_at,
    )


@router.post(
    "/api/v1/teams/{team_id}/members/{account_id}/temporary-passwords",
    status_code=201,
    response_model=TeamTemporaryPasswordOut,
    summary="Team admins: set a temporary password for a member of the team (changed at next login)",
    description=(
        "Only plain members: an account holding an operator role (regional or national admin, data "
        "importer) or administering any team is refused with `reset_requires_national_admin` and "
        "goes through the national admin's reset."
    ),
    responses=error_responses(
        UNAUTHENTICATED,
        TOKEN_INVALID,
        errors.NOT_TEAM_ADMIN,
        errors.NOT_TEAM_MEMBER,
        errors.RESET_REQUIRES_NATIONAL_ADMIN,
    ),
)
async def team_reset(
    team_id: uuid.UUID,
    account_id: uuid.UUID,
    principal: CurrentPrincipal,
    uow: UoW,
    runtime: Runtime,
    response: Response,
) -> TeamTemporaryPasswordOut:
    # a password in the body: no cache (a proxy's, the browser's) may keep the answer
    response.headers["Cache-Control"] = "no-store"
    async with uow:
        username, password = await invitations.team_admin_reset(runtime, uow, principal, team_id, account_id)
    return TeamTemporaryPasswordOut(
        account_id=account_id, username=username, team_id=team_id, temporary_password=password
    )
