"""The audit log and account search for admins (who read or changed whose personal data)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from identity import errors
from identity.api.deps import Runtime, UoW
from identity.api.schemas import AccountSearchIn, AccountSearchOut, AuditEntryOut, AuditPage
from identity.api.views import account_out
from identity.domain import documents
from identity.repository import Accounts, Audit, Reviews
from shared.auth import NationalAdmin, RegionalOrNationalAdmin
from shared.errors import FORBIDDEN, TOKEN_INVALID, UNAUTHENTICATED, VALIDATION_FAILED, error_responses
from shared.inputs import NO_CONTROL
from shared.pagination import CURSOR_INVALID, encode_cursor, time_cursor

router = APIRouter(tags=["administration"])
AUTH_ERRORS = (UNAUTHENTICATED, TOKEN_INVALID, FORBIDDEN)


@router.get(
    "/api/v1/admin/audit-entries",
    response_model=AuditPage,
    summary="The audit log, newest first: unmasked reads, lookups, resets, reviews, role changes",
    responses=error_responses(*AUTH_ERRORS, VALIDATION_FAILED, CURSOR_INVALID),
)
async def audit_entries(
    principal: NationalAdmin,
    uow: UoW,
    subject_account_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    action: str | None = Query(None, max_length=40, pattern=NO_CONTROL),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=200),
) -> AuditPage:
    before = time_cursor(cursor) if cursor else None
    async with uow:
        entries = await Audit(uow.session).page(
            subject_account_id=subject_account_id, actor_id=actor_id, action=action, before=before, limit=limit + 1
        )
    items = [
        AuditEntryOut(
            id=e.id,
            at=e.at,
            actor_id=e.actor_id,
            action=e.action,
            subject_account_id=e.subject_account_id,
            reason=e.reason,
            detail=e.detail,
        )
        for e in entries[:limit]
    ]
    last = entries[limit - 1] if len(entries) > limit else None
    return AuditPage(items=items, next_cursor=encode_cursor(last.at, last.id) if last else None)


@router.post(
    "/api/v1/admin/account-searches",
    response_model=AccountSearchOut,
    summary="Find an account by username or ID document, with a reason (audited; regional admins: their region)",
    description="POST, so an ID number never appears in a URL. Numbers in the answer stay masked.",
    responses=error_responses(
        *AUTH_ERRORS, errors.ID_NUMBER_INVALID, errors.DOCUMENT_NUMBER_INVALID, VALIDATION_FAILED
    ),
)
async def search_accounts(
    body: AccountSearchIn, principal: RegionalOrNationalAdmin, uow: UoW, runtime: Runtime
) -> AccountSearchOut:
    async with uow:
        accounts = Accounts(uow.session)
        if body.username is not None:
            found = await accounts.by_username(body.username)
        else:
            assert body.id_number is not None
            number = documents.normalise_number(body.document_type, body.id_number)
            found = await accounts.by_blind_index(
                runtime.cipher.blind_indexes(documents.blind_index_input(body.document_type, number))
            )
        if found is not None and not principal.administers_region(found.region_code or ""):
            found = None  # outside the admin's region: as if there were none
        Audit(uow.session).write(
            at=uow.clock.now(),
            actor_id=principal.account_id,
            action="account_search",
            subject_account_id=found.id if found else None,
            reason=body.reason,
            detail={"by": "username" if body.username is not None else "id_number", "found": found is not None},
        )
        if found is None:
            return AccountSearchOut(items=[])
        pending = await Reviews(uow.session).has_pending(found.id)
    return AccountSearchOut(items=[account_out(found, id_card_pending=pending)])
