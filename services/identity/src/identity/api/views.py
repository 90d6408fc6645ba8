"""Shaping accounts into responses: ID numbers only masked, never the ciphertext."""

from __future__ import annotations

from identity.api.schemas import AccountOut, VerificationOut
from identity.models import Account
from identity.registration import expected_verification_window


def account_out(account: Account) -> AccountOut:
    record = account.record
    verification = None
    if account.verification_status is not None:
        window = expected_verification_window(account)
        verification = VerificationOut(
            status=account.verification_status,
            expected_from=window[0] if window else None,
            expected_by=window[1] if window else None,
            reason=account.verification_reason,
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
        created_at=account.created_at,
    )
