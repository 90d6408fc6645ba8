"""Manual verification (V6): a volunteer whose automatic check failed uploads the front of
the ID card; a regional admin of the volunteer's region approves or rejects it with a reason.

The image is encrypted at rest like the ID number, and shown only to reviewers, each viewing
written to the audit log. The outcome leaves as ``volunteer.verified`` (manual) or
``volunteer.verification_changed`` (failed, with the reason), which notifications emails.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from identity import errors
from identity.bootstrap import IdentityRuntime
from identity.crypto import Sealed, id_card_context
from identity.domain import images
from identity.models import Account, IdCardUpload
from identity.repository import Accounts, Audit, Reviews
from identity.verification import STATUS_FAILED, STATUS_MANUAL_REVIEW, apply_outcome
from shared.auth import Principal
from shared.clock import local_today
from shared.contracts.identity import VolunteerVerificationChanged
from shared.db import UnitOfWork
from shared.errors import AppError
from shared.logging import get_logger

log = get_logger("identity.review")

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class CheckedImage:
    """An upload that decoded whole as the JPEG or PNG it claims to be, encoded afresh."""

    content_type: str
    data: bytes


async def check_image(runtime: IdentityRuntime, data: bytes) -> CheckedImage:
    """The upload decoded and re-encoded (:func:`identity.domain.images.reencoded`), in a worker
    thread: a large photo takes the CPU for a while, which the event loop's other requests would
    wait for. Before any unit of work opens: no connection is held meanwhile."""
    settings = runtime.settings
    max_bytes = settings.id_card_max_bytes
    if len(data) > max_bytes:
        kib = max_bytes // 1024
        raise AppError(errors.ID_CARD_IMAGE_TOO_LARGE, {"max_kib": kib}, params={"max_kib": kib})
    content_type, encoded = await asyncio.to_thread(
        images.reencoded, data, max_pixels=settings.id_card_max_pixels, max_side=settings.id_card_max_side
    )
    return CheckedImage(content_type, encoded)


async def upload(runtime: IdentityRuntime, uow: UnitOfWork, account_id: uuid.UUID, image: CheckedImage) -> IdCardUpload:
    """Keep a checked image (:func:`check_image`) for review."""
    content_type, data = image.content_type, image.data
    account = await Accounts(uow.session).get(account_id, for_update=True)
    if account is None:
        raise AppError(errors.ACCOUNT_NOT_FOUND)
    if account.record_id is None or account.verification_status not in (STATUS_FAILED, STATUS_MANUAL_REVIEW):
        raise AppError(errors.ID_CARD_UPLOAD_NOT_NEEDED, {"status": account.verification_status})
    reviews = Reviews(uow.session)
    await reviews.supersede_pending(account.id)
    upload_id = uuid.uuid4()
    sealed = runtime.cipher.seal(data, context=id_card_context(upload_id))
    now = uow.clock.now()
    item = IdCardUpload(
        id=upload_id,
        account_id=account.id,
        region_code=account.region_code or "",
        content_type=content_type,
        size=len(data),
        image_ciphertext=sealed.data,
        key_id=sealed.key_id,
        status=PENDING,
        uploaded_at=now,
    )
    reviews.add(item)
    was = account.verification_status
    account.verification_status = STATUS_MANUAL_REVIEW
    account.verification_reason = None
    account.verification_due_at = None
    if was != STATUS_MANUAL_REVIEW:
        account.verification_requested_on = local_today(uow.clock)
    account.raise_event(VolunteerVerificationChanged(account_id=account.id, status=STATUS_MANUAL_REVIEW, manual=True))
    log.info("id_card_uploaded", account_id=str(account.id), size=len(data), content_type=content_type)
    return item


def _check_scope(principal: Principal, item: IdCardUpload) -> None:
    if not principal.administers_region(item.region_code):
        log.info("review_refused_out_of_region", actor_id=str(principal.account_id), upload_id=str(item.id))
        raise AppError(errors.REVIEW_OUT_OF_REGION)
    # An admin who is also a volunteer of the region never reviews (or sees) their own card.
    if item.account_id == principal.account_id:
        log.info("review_refused_own_upload", actor_id=str(principal.account_id), upload_id=str(item.id))
        raise AppError(errors.REVIEW_OWN_UPLOAD)


def _check_pending(item: IdCardUpload) -> None:
    if item.status == SUPERSEDED:
        # withdrawn by a name change or a newer upload: there is nothing left to decide
        raise AppError(errors.REVIEW_SUPERSEDED)
    if item.status != PENDING:
        raise AppError(errors.REVIEW_ALREADY_DECIDED, {"status": item.status})


async def pending(
    uow: UnitOfWork, principal: Principal, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> Sequence[tuple[IdCardUpload, Account]]:
    """Uploads waiting in the admin's region, leaving out the admin's own."""
    scope = None if principal.is_national_admin else principal.region
    return await Reviews(uow.session).pending_page(
        scope=scope, after=after, limit=limit, excluding_account_id=principal.account_id
    )


async def image(
    runtime: IdentityRuntime, uow: UnitOfWork, principal: Principal, upload_id: uuid.UUID
) -> tuple[str, bytes]:
    """The image of an upload waiting for review, for those who may review it (V6): once decided
    or withdrawn it is deleted (``REVIEW_ALREADY_DECIDED`` / ``REVIEW_SUPERSEDED``)."""
    item = await Reviews(uow.session).get(upload_id)
    if item is None:
        raise AppError(errors.REVIEW_NOT_FOUND)
    _check_scope(principal, item)
    _check_pending(item)
    assert item.image_ciphertext is not None  # pending uploads keep theirs
    data = runtime.cipher.open(Sealed(item.key_id, item.image_ciphertext), context=id_card_context(item.id))
    Audit(uow.session).write(
        at=uow.clock.now(),
        actor_id=principal.account_id,
        action="id_card_image_viewed",
        subject_account_id=item.account_id,
        detail={"upload_id": str(item.id)},
    )
    return item.content_type, data


async def decide(
    uow: UnitOfWork, principal: Principal, upload_id: uuid.UUID, *, approved: bool, reason: str | None
) -> IdCardUpload:
    reviews = Reviews(uow.session)
    item = await reviews.get(upload_id)
    if item is None:
        raise AppError(errors.REVIEW_NOT_FOUND)
    _check_scope(principal, item)
    _check_pending(item)
    if not approved and not (reason and reason.strip()):
        raise AppError(errors.REJECTION_REASON_REQUIRED)
    # The account's row first, as an upload and a name change lock it (one order, no deadlock);
    # the upload's status is read under that lock: a name changed since the admin opened the
    # upload has withdrawn it, and what was reviewed is never approved under another name.
    account = await Accounts(uow.session).get(item.account_id, for_update=True)
    assert account is not None
    item = await reviews.get(upload_id, for_update=True)
    assert item is not None
    _check_pending(item)
    now = uow.clock.now()
    item.status = APPROVED if approved else REJECTED
    item.reviewed_by = principal.account_id
    item.reviewed_at = now
    item.reason = reason
    item.image_ciphertext = None  # reviewed: nobody is to see it any more
    await apply_outcome(uow, account, "verified" if approved else "failed", reason, manual=True)
    Audit(uow.session).write(
        at=now,
        actor_id=principal.account_id,
        action="id_card_reviewed",
        subject_account_id=account.id,
        reason=reason,
        detail={"upload_id": str(item.id), "approved": approved},
    )
    return item
