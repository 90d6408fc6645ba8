"""National admin routes: roles, credential resets (V10), duplicate cases (V3)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response

from identity import admin, errors
from identity.api.deps import Runtime, UoW
from identity.api.schemas import (
    AccountOut,
    CaseRecordOut,
    CredentialResetIn,
    DuplicateCaseOut,
    DuplicateCasePage,
    ResolutionIn,
    RolesIn,
    TemporaryPasswordOut,
)
from identity.api.views import account_out, legacy_out
from identity.crypto import DataCipher
from identity.domain.documents import mask_name
from identity.models import DuplicateCase, VolunteerRecord
from identity.repository import Cases, Reviews
from shared.auth import NationalAdmin
from shared.db import UnitOfWork
from shared.errors import FORBIDDEN, TOKEN_INVALID, UNAUTHENTICATED, VALIDATION_FAILED, error_responses
from shared.pagination import CURSOR_INVALID, encode_cursor, time_cursor

router = APIRouter(tags=["administration"])
AUTH_ERRORS = (UNAUTHENTICATED, TOKEN_INVALID, FORBIDDEN)


@router.put(
    "/api/v1/admin/accounts/{account_id}/roles",
    response_model=AccountOut,
    summary="Grant or withdraw roles (regional admin with its region, national admin, data importer)",
    responses=error_responses(
        *AUTH_ERRORS, errors.ACCOUNT_NOT_FOUND, errors.ROLE_INVALID, errors.LAST_NATIONAL_ADMIN, VALIDATION_FAILED
    ),
)
async def set_roles(account_id: uuid.UUID, body: RolesIn, principal: NationalAdmin, uow: UoW) -> AccountOut:
    async with uow:
        account = await admin.set_roles(uow, principal, account_id, body.roles, body.admin_region)
        pending = await Reviews(uow.session).has_pending(account.id)
    return account_out(account, id_card_pending=pending)


@router.post(
    "/api/v1/admin/accounts/{account_id}/temporary-passwords",
    response_model=TemporaryPasswordOut,
    status_code=201,
    summary="Reset the credentials of an owner who lost everything: a temporary password to change at next login",
    responses=error_responses(
        *AUTH_ERRORS, errors.ACCOUNT_NOT_FOUND, errors.EMAIL_INVALID, errors.MOBILE_INVALID, VALIDATION_FAILED
    ),
)
async def national_reset(
    account_id: uuid.UUID,
    body: CredentialResetIn,
    principal: NationalAdmin,
    uow: UoW,
    runtime: Runtime,
    response: Response,
) -> TemporaryPasswordOut:
    # a password in the body: no cache (a proxy's, the browser's) may keep the answer
    response.headers["Cache-Control"] = "no-store"
    async with uow:
        password = await admin.national_reset(
            runtime,
            uow,
            principal,
            account_id,
            admin.CredentialReset(reason=body.reason, email=body.email, mobile=body.mobile),
        )
    return TemporaryPasswordOut(account_id=account_id, temporary_password=password)


def _case_record_out(record: VolunteerRecord, registered: bool) -> CaseRecordOut:
    """What tells the number's records apart (the name stays masked: see ``CaseRecordOut``)."""
    loaded = (record.history or {}).get("import")
    loaded = loaded if isinstance(loaded, dict) else {}
    job_id, line = loaded.get("job_id"), loaded.get("line")
    try:
        import_job_id = uuid.UUID(job_id) if isinstance(job_id, str) else None
    except ValueError:
        import_job_id = None
    return CaseRecordOut(
        record_id=record.id,
        masked_name=mask_name(record.real_name),
        source=record.source,
        status=record.status,
        registered=registered,
        birth_date=record.birth_date,
        legacy=legacy_out(record.history),
        import_job_id=import_job_id,
        import_line=line if isinstance(line, int) else None,
        claimed_at=record.claimed_at,
        created_at=record.created_at,
    )


async def _case_out(uow: UnitOfWork, case: DuplicateCase, cipher: DataCipher) -> DuplicateCaseOut:
    records = await admin.case_records(uow, case, cipher)
    registered = await admin.registered_record_ids(uow, [r.id for r in records])
    return DuplicateCaseOut(
        id=case.id,
        id_number_masked=case.id_masked,
        status=case.status,
        opened_by=case.opened_by,
        opened_at=case.opened_at,
        resolved_at=case.resolved_at,
        kept_record_id=case.kept_record_id,
        records=[_case_record_out(r, r.id in registered) for r in records],
    )


@router.get(
    "/api/v1/admin/duplicate-cases",
    response_model=DuplicateCasePage,
    summary="Duplicate ID-number cases waiting for the national admin (oldest first)",
    responses=error_responses(*AUTH_ERRORS, VALIDATION_FAILED, CURSOR_INVALID),
)
async def list_cases(
    principal: NationalAdmin,
    uow: UoW,
    runtime: Runtime,
    status: str | None = Query("open", pattern="^(open|resolved)$"),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=200),
) -> DuplicateCasePage:
    after = time_cursor(cursor) if cursor else None
    async with uow:
        cases = await Cases(uow.session).page(status=status, after=after, limit=limit + 1)
        items = [await _case_out(uow, c, runtime.cipher) for c in cases[:limit]]
    last = cases[limit - 1] if len(cases) > limit else None
    next_cursor = encode_cursor(last.opened_at, last.id) if last else None
    return DuplicateCasePage(items=items, next_cursor=next_cursor)


@router.post(
    "/api/v1/admin/duplicate-cases/{case_id}/resolution",
    response_model=DuplicateCaseOut,
    summary="Resolve a case: keep one record, merge the others into it (volunteer.merged)",
    description=(
        "`record_ids` are the records the admin looked at (every record of the case view not `merged`): "
        "when the number's live records differ now, `case_changed` and nothing is merged."
    ),
    responses=error_responses(
        *AUTH_ERRORS,
        errors.CASE_NOT_FOUND,
        errors.CASE_ALREADY_RESOLVED,
        errors.RECORD_NOT_IN_CASE,
        errors.CASE_CHANGED,
        errors.MERGE_MUST_KEEP_REGISTERED,
        VALIDATION_FAILED,
    ),
)
async def resolve_case(
    case_id: uuid.UUID, body: ResolutionIn, principal: NationalAdmin, uow: UoW, runtime: Runtime
) -> DuplicateCaseOut:
    async with uow:
        case = await admin.resolve_case(
            uow, principal, case_id, body.keep_record_id, runtime.cipher, seen_record_ids=body.record_ids
        )
        return await _case_out(uow, case, runtime.cipher)
