"""Shaping accounts into responses: ID numbers only masked, never the ciphertext."""

from __future__ import annotations

from typing import Any, Literal

from identity.api.schemas import AccountOut, LegacyOut, VerificationOut
from identity.legacy import legacy_of
from identity.models import Account
from identity.registration import expected_verification_window
from identity.verification import STATUS_FAILED, STATUS_MANUAL_REVIEW


def legacy_out(history: dict[str, Any] | None) -> LegacyOut | None:
    """A record's legacy numbers and hours, with those of the records merged into it; None: none."""
    legacy = legacy_of(history)
    if legacy.empty:
        return None
    hours = float(legacy.service_hours) if legacy.service_hours is not None else None
    return LegacyOut(volunteer_numbers=list(legacy.volunteer_numbers), service_hours=hours)


def account_out(account: Account, *, id_card_pending: bool) -> AccountOut:
    """``id_card_pending``: an upload of the account waits for review (see ``Reviews.has_pending``)."""
    record = account.record
    verification = None
    if account.verification_status is not None:
        window = expected_verification_window(account)
        upload: Literal["needed", "waiting_for_review"] | None = None
        if account.verification_status in (STATUS_FAILED, STATUS_MANUAL_REVIEW) and record is not None:
            upload = "waiting_for_review" if id_card_pending else "needed"
        verification = VerificationOut(
            status=account.verification_status,
            expected_from=window[0] if window else None,
            expected_by=window[1] if window else None,
            reason=account.verification_reason,
            id_card_upload=upload,
            volunteer_number=account.volunteer_number,
            verified_at=account.verified_at,
        )
    return AccountOut(
        id=account.id,
        username=account.username,
        display_name=account.display_name,
        real_name=record.real_name if record else None,
        document_type=record.document_type if record else None,
        id_number_masked=record.id_masked if record else None,
        mobile=account.mobile,
        email=account.email,
        address=account.address,
        region_code=account.region_code,
        language=account.language,
        roles=list(account.roles),
        admin_region=account.admin_region,
        must_change_password=account.must_change_password,
        guardian_consent_recorded=account.guardian_consented_at is not None,
        verification=verification,
        legacy=legacy_out(record.history) if record else None,
        created_at=account.created_at,
    )
