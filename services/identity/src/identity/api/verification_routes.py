"""Manual verification (V6) and admins' unmasked reads of ID numbers (audited)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query, Request, Response, UploadFile

from identity import errors, review
from identity.api.deps import Runtime, UoW
from identity.api.schemas import (
    DisclosureIn,
    DisclosureOut,
    IdCardReviewOut,
    IdCardReviewPage,
    IdCardUploadOut,
    ReviewDecisionIn,
    ReviewDecisionOut,
)
from identity.config import IdentitySettings
from identity.crypto import Sealed, id_number_context
from identity.repository import Accounts, Audit
from shared.auth import CurrentPrincipal, RegionalOrNationalAdmin
from shared.errors import (
    FORBIDDEN,
    TOKEN_INVALID,
    UNAUTHENTICATED,
    VALIDATION_FAILED,
    AppError,
    ErrorSpec,
    error_responses,
)
from shared.pagination import CURSOR_INVALID, encode_cursor, time_cursor

router = APIRouter(tags=["verification"])
UPLOAD_PATH = "/api/v1/accounts/me/id-card-images"


def _with_content(content: dict[str, Any], *specs: ErrorSpec) -> dict[int | str, dict[str, Any]]:
    responses = error_responses(*specs)
    responses[200] = {"content": content}
    return responses


def body_limits(settings: IdentitySettings) -> dict[str, int]:
    """The upload route takes an image plus the multipart envelope; the limit itself is
    enforced (with its own error code) on the file."""
    return {UPLOAD_PATH: settings.id_card_max_bytes + 64 * 1024}


AUTH_ERRORS = (UNAUTHENTICATED, TOKEN_INVALID, FORBIDDEN)


@router.post(
    UPLOAD_PATH,
    status_code=201,
    response_model=IdCardUploadOut,
    summary="After a failed verification: upload the front of the ID card (JPEG/PNG) for a regional admin",
    responses=error_responses(
        UNAUTHENTICATED,
        TOKEN_INVALID,
        errors.ID_CARD_UPLOAD_NOT_NEEDED,
        errors.ID_CARD_IMAGE_TYPE,
        errors.ID_CARD_IMAGE_TOO_LARGE,
        errors.ID_CARD_IMAGE_TOO_MANY_PIXELS,
        VALIDATION_FAILED,
    ),
)
async def upload_id_card(file: UploadFile, principal: CurrentPrincipal, uow: UoW, runtime: Runtime) -> IdCardUploadOut:
    limit = runtime.settings.id_card_max_bytes
    data = await file.read(limit + 1)  # never more than one byte past the limit in memory
    image = await review.check_image(runtime, data)
    async with uow:
        item = await review.upload(runtime, uow, principal.account_id, image)
    return IdCardUploadOut(
        id=item.id, status="pending", content_type=item.content_type, size=item.size, uploaded_at=item.uploaded_at
    )


@router.get(
    "/api/v1/admin/id-card-reviews",
    response_model=IdCardReviewPage,
    summary="ID-card uploads waiting for review in my region (national admins: all), oldest first; never my own",
    responses=error_responses(*AUTH_ERRORS, VALIDATION_FAILED, CURSOR_INVALID),
)
async def list_reviews(
    principal: RegionalOrNationalAdmin,
    uow: UoW,
    request: Request,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=200),
) -> IdCardReviewPage:
    after = time_cursor(cursor) if cursor else None
    async with uow:
        rows = await review.pending(uow, principal, after=after, limit=limit + 1)
    items = [
        IdCardReviewOut(
            id=item.id,
            account_id=account.id,
            real_name=account.record.real_name if account.record else account.display_name,
            document_type=account.record.document_type if account.record else "",
            id_number_masked=account.record.id_masked if account.record else "",
            region_code=item.region_code,
            content_type=item.content_type,
            uploaded_at=item.uploaded_at,
            image_url=f"/api/v1/admin/id-card-reviews/{item.id}/image",
        )
        for item, account in rows[:limit]
    ]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return IdCardReviewPage(items=items, next_cursor=encode_cursor(last.uploaded_at, last.id) if last else None)


@router.get(
    "/api/v1/admin/id-card-reviews/{upload_id}/image",
    summary="The uploaded ID-card image (decrypted for the reviewer; each viewing audited)",
    response_class=Response,
    responses=_with_content(
        {"image/jpeg": {}, "image/png": {}},
        *AUTH_ERRORS,
        errors.REVIEW_NOT_FOUND,
        errors.REVIEW_OUT_OF_REGION,
        errors.REVIEW_OWN_UPLOAD,
        errors.REVIEW_ALREADY_DECIDED,
        errors.REVIEW_SUPERSEDED,
    ),
)
async def review_image(
    upload_id: uuid.UUID, principal: RegionalOrNationalAdmin, uow: UoW, runtime: Runtime
) -> Response:
    async with uow:
        content_type, data = await review.image(runtime, uow, principal, upload_id)
    # nosniff: a browser shows the bytes as the image type they are stored as, never as a page
    return Response(
        content=data,
        media_type=content_type,
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.post(
    "/api/v1/admin/id-card-reviews/{upload_id}/decision",
    response_model=ReviewDecisionOut,
    summary="Approve (verified, number assigned) or reject with a reason; the outcome is emailed",
    responses=error_responses(
        *AUTH_ERRORS,
        errors.REVIEW_NOT_FOUND,
        errors.REVIEW_OUT_OF_REGION,
        errors.REVIEW_OWN_UPLOAD,
        errors.REVIEW_ALREADY_DECIDED,
        errors.REVIEW_SUPERSEDED,
        errors.REJECTION_REASON_REQUIRED,
        VALIDATION_FAILED,
    ),
)
async def decide(
    upload_id: uuid.UUID, body: ReviewDecisionIn, principal: RegionalOrNationalAdmin, uow: UoW
) -> ReviewDecisionOut:
    async with uow:
        item = await review.decide(uow, principal, upload_id, approved=body.approved, reason=body.reason)
    return ReviewDecisionOut(
        id=item.id,
        status="approved" if body.approved else "rejected",
        account_id=item.account_id,
        reason=item.reason,
    )


@router.post(
    "/api/v1/admin/accounts/{account_id}/id-number-disclosures",
    response_model=DisclosureOut,
    summary="Read a volunteer's full ID number, with a reason; every read is written to the audit log",
    responses=error_responses(
        *AUTH_ERRORS,
        errors.ACCOUNT_NOT_FOUND,
        errors.NOT_A_VOLUNTEER,
        errors.DISCLOSURE_OUT_OF_REGION,
        VALIDATION_FAILED,
    ),
)
async def disclose(
    account_id: uuid.UUID, body: DisclosureIn, principal: RegionalOrNationalAdmin, uow: UoW, runtime: Runtime
) -> DisclosureOut:
    async with uow:
        account = await Accounts(uow.session).get(account_id)
        if account is None:
            raise AppError(errors.ACCOUNT_NOT_FOUND)
        record = account.record
        if record is None:
            raise AppError(errors.NOT_A_VOLUNTEER)
        if not principal.administers_region(account.region_code or ""):
            raise AppError(errors.DISCLOSURE_OUT_OF_REGION)
        number = runtime.cipher.open(
            Sealed(record.id_key_id, record.id_ciphertext), context=id_number_context(record.document_type)
        ).decode()
        Audit(uow.session).write(
            at=uow.clock.now(),
            actor_id=principal.account_id,
            action="id_number_disclosed",
            subject_account_id=account.id,
            reason=body.reason,
        )
    return DisclosureOut(account_id=account.id, document_type=record.document_type, id_number=number)
