"""What a team admin does in identity (T7): find an existing volunteer to invite (ID number
and name must both match), and set a temporary password for a member of their team.

Who administers which team, and who belongs to it, identity knows from teams' events (the
``team_memberships`` read model), never by calling teams.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from identity import errors
from identity.admin import set_temporary_password
from identity.bootstrap import IdentityRuntime
from identity.domain import documents
from identity.domain.documents import DocumentType
from identity.models import Account
from identity.repository import Accounts, Audit, Lookups, Memberships
from shared.auth import ROLE_VOLUNTEER, Principal, issue_volunteer_match
from shared.contracts.identity import TemporaryPasswordSet
from shared.db import UnitOfWork
from shared.errors import AppError
from shared.logging import get_logger

log = get_logger("identity.invitations")


@dataclass(frozen=True)
class Found:
    volunteer_id: uuid.UUID
    masked_name: str
    volunteer_number: str | None
    #: for teams to bring the volunteer into one of this admin's teams (FAQ V1); its id is audited
    match_token: str
    match_expires_at: datetime


async def look_up(
    runtime: IdentityRuntime,
    uow: UnitOfWork,
    principal: Principal,
    *,
    document_type: DocumentType,
    id_number: str,
    real_name: str,
) -> Found | None:
    """The volunteer, or None (the caller refuses after the audit row is committed)."""
    if not await Memberships(uow.session).is_admin_of_any(principal.account_id):
        log.info("lookup_refused_not_team_admin", actor_id=str(principal.account_id))
        raise AppError(errors.NOT_TEAM_ADMIN)
    now = uow.clock.now()
    limit = runtime.settings.lookup_per_hour
    if await Lookups(uow.session).recent(principal.account_id, now) >= limit:
        log.info("lookup_throttled", actor_id=str(principal.account_id))
        raise AppError(errors.TOO_MANY_LOOKUPS, {"per_hour": limit})
    number = documents.normalise_number(document_type, id_number)
    # under every blind-index key in use: a rotation (identity.reindex) leaves no one unfound
    blind_indexes = runtime.cipher.blind_indexes(documents.blind_index_input(document_type, number))
    account = await Accounts(uow.session).by_blind_index(blind_indexes)
    record = account.record if account is not None else None
    matched = account is not None and record is not None and documents.same_name(record.real_name, real_name)
    found: Found | None = None
    detail: dict[str, object] = {"found": matched}
    if matched and account is not None and record is not None:
        token, expires_at, token_id = issue_volunteer_match(runtime.signer, account.id, principal.account_id)
        detail["match_jti"] = token_id  # teams keeps it with the member it brings in
        found = Found(account.id, documents.mask_name(record.real_name), account.volunteer_number, token, expires_at)
    # Every lookup counts and is audited, found or not (the audit row is the budget).
    Audit(uow.session).write(
        at=now,
        actor_id=principal.account_id,
        action="volunteer_lookup",
        subject_account_id=found.volunteer_id if found is not None else None,
        detail=detail,
    )
    return found


#: how long after finding a volunteer by ID number and name an admin's reset also gives the username
USERNAME_AFTER_LOOKUP = timedelta(hours=1)


async def team_admin_reset(
    runtime: IdentityRuntime, uow: UnitOfWork, principal: Principal, team_id: uuid.UUID, account_id: uuid.UUID
) -> tuple[str | None, str]:
    """A temporary password for a plain member of the admin's team: (the username, the password).

    The username only to an admin who found this account by its ID number and name within
    :data:`USERNAME_AFTER_LOOKUP` (FAQ V1: the owner, told "already registered", came to them and
    does not know it); a member who can log in knows their own, and the admin needs no way into
    their account."""
    memberships = Memberships(uow.session)
    actor = await memberships.get(team_id, principal.account_id)
    if actor is None or not actor.admin:
        log.info("team_reset_refused_not_admin", actor_id=str(principal.account_id), team_id=str(team_id))
        raise AppError(errors.NOT_TEAM_ADMIN)
    member = await memberships.get(team_id, account_id)
    if member is None or not member.member:
        raise AppError(errors.NOT_TEAM_MEMBER)
    account = await Accounts(uow.session).get(account_id, for_update=True)
    if account is None:
        raise AppError(errors.NOT_TEAM_MEMBER)
    _check_resettable_by_team_admin(principal, team_id, account, await memberships.team_role_of(account.id))
    now = uow.clock.now()
    found = await Audit(uow.session).did_since(
        principal.account_id, "volunteer_lookup", account.id, now - USERNAME_AFTER_LOOKUP
    )
    password = await set_temporary_password(runtime, uow, account)
    account.raise_event(
        TemporaryPasswordSet(account_id=account.id, set_by_account_id=principal.account_id, by_team_id=team_id)
    )
    Audit(uow.session).write(
        at=now,
        actor_id=principal.account_id,
        action="team_admin_password_reset",
        subject_account_id=account.id,
        detail={"team_id": str(team_id), "username_given": found},
    )
    log.info("temporary_password_set", account_id=str(account.id), by="team_admin", team_id=str(team_id))
    return (account.username if found else None), password


def _check_resettable_by_team_admin(
    principal: Principal, team_id: uuid.UUID, account: Account, team_role: str | None
) -> None:
    """A team admin resets only plain members (T7). An account holding any role beyond volunteer
    (regional, national admin, data importer, or a role added later), or administering or leading
    projects of any team (``team_role``: this team or another, since an admin may bring in whoever's
    ID number and name they know, FAQ V1), would be taken over by whoever administers a team it
    joined, and that team or those projects with it: such accounts go through the national admin's
    reset (V10)."""
    operator_roles = sorted(set(account.roles) - {ROLE_VOLUNTEER})
    if not operator_roles and team_role is None:
        return
    because = "operator_role" if operator_roles else team_role
    log.warning(
        "team_reset_refused_privileged_account",
        actor_id=str(principal.account_id),
        account_id=str(account.id),
        team_id=str(team_id),
        because=because,
    )
    raise AppError(
        errors.RESET_REQUIRES_NATIONAL_ADMIN,
        {"because": because, "reset_at": f"/api/v1/admin/accounts/{account.id}/temporary-passwords"},
    )
