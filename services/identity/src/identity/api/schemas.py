"""Request and response models of the identity API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from identity.domain import usernames
from identity.domain.documents import DocumentType
from shared.inputs import INPUT_CONFIG, Line, PersonName, within_the_calendar

#: what ``identity.domain.documents.check_mobile`` takes; long enough for 15 digits written in groups
MOBILE_MAX_LENGTH = 32
MOBILE_DESCRIPTION = (
    "A mainland China mobile (11 digits, `+86` optional), or any other in international form: `+`, the "
    "country or region code and the number (E.164, at most 15 digits), such as `+852 9123 4567`; spaces "
    "and hyphens are dropped (else `mobile_invalid`)"
)


class _In(BaseModel):
    """Text fields are ``Line``s, or carry a pattern of their own that admits no control character:
    none (NUL above all, which PostgreSQL cannot store) in a name, number, address, password or
    reason; refused with validation_failed, never a 500, and published in the schema."""

    model_config = INPUT_CONFIG


class GuardianIn(_In):
    """A guardian's consent, required under 18."""

    name: Line = Field(min_length=1, max_length=100)
    relation: Line = Field(min_length=1, max_length=20, examples=["父亲"])
    phone: Line = Field(min_length=5, max_length=MOBILE_MAX_LENGTH, description=MOBILE_DESCRIPTION)
    consented_at: Annotated[datetime, AfterValidator(within_the_calendar)] = Field(
        description="When the guardian consented: RFC 3339 with a time zone, not in the future "
        "(else `guardian_consent_time_invalid`)",
        examples=["2026-01-01T08:00:00+08:00"],
    )


class SignUpRequest(_In):
    username: str = Field(min_length=usernames.MIN_LENGTH, max_length=usernames.MAX_LENGTH, pattern=usernames.PATTERN)
    # Length and strength are checked by the password policy, with their own error codes.
    password: Line = Field(min_length=1, max_length=1024)
    real_name: PersonName = Field(min_length=1, max_length=100, examples=["张三"])
    document_type: DocumentType = DocumentType.RESIDENT_ID
    id_number: Line = Field(min_length=5, max_length=32)
    birth_date: date | None = Field(default=None, description="Required for documents other than the resident ID")
    mobile: Line = Field(min_length=5, max_length=MOBILE_MAX_LENGTH, description=MOBILE_DESCRIPTION)
    email: Line = Field(min_length=3, max_length=254)
    region_code: str = Field(pattern=r"^\d{6}$", description="GB/T 2260 six-digit code")
    address: Line | None = Field(default=None, max_length=200)
    display_name: Line | None = Field(default=None, min_length=1, max_length=100)
    language: Literal["zh", "en"] = "zh"
    guardian: GuardianIn | None = None


class VerificationOut(BaseModel):
    status: Literal["pending", "verified", "failed", "manual_review"]
    expected_from: date | None = Field(None, description="Earliest expected date (3 Chinese working days)")
    expected_by: date | None = Field(None, description="Latest expected date (5 Chinese working days)")
    reason: str | None = None
    id_card_upload: Literal["needed", "waiting_for_review"] | None = Field(
        None,
        description="The way on after a failed check, or when the verification provider asks for a "
        "manual review (V5/V6): `needed`, upload the front of the ID card (POST "
        "/api/v1/accounts/me/id-card-images; or correct the name, which is checked again); "
        "`waiting_for_review`, an upload waits for a regional admin",
    )
    volunteer_number: str | None = None
    verified_at: datetime | None = None


class LegacyOut(BaseModel):
    """What earlier systems knew (bulk import): read-only, kept when a record is claimed or merged."""

    volunteer_numbers: list[str] = Field(
        description="The legacy systems' own volunteer numbers (not the national one), each once"
    )
    service_hours: float | None = Field(
        None, description="Legacy service hours, summed over the record and the records merged into it"
    )


class AccountOut(BaseModel):
    id: uuid.UUID
    username: str
    display_name: str
    real_name: str | None = None
    document_type: str | None = None
    id_number_masked: str | None = Field(None, examples=["110105********002X"])
    mobile: str | None = None
    email: str
    address: str | None = None
    region_code: str | None = None
    language: str
    roles: list[str]
    admin_region: str | None = None
    must_change_password: bool
    guardian_consent_recorded: bool
    verification: VerificationOut | None = None
    legacy: LegacyOut | None = Field(
        None,
        description="The legacy volunteer numbers and service hours of the imported records this account "
        "claimed or had merged into it (V3, V4); null when there are none",
    )
    created_at: datetime


class ProfilePatch(_In):
    mobile: Line | None = Field(
        default=None, min_length=5, max_length=MOBILE_MAX_LENGTH, description=MOBILE_DESCRIPTION
    )
    email: Line | None = Field(default=None, min_length=3, max_length=254)
    address: Line | None = Field(default=None, max_length=200)
    display_name: Line | None = Field(default=None, min_length=1, max_length=100)
    language: Literal["zh", "en"] | None = None
    real_name: PersonName | None = Field(default=None, min_length=1, max_length=100)


class LoginRequest(_In):
    username: Line = Field(min_length=1, max_length=64)
    password: Line = Field(min_length=1, max_length=1024)


class RefreshRequest(_In):
    refresh_token: Line = Field(min_length=10, max_length=200)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int


class PasswordChangeRequest(_In):
    username: Line = Field(min_length=1, max_length=64)
    current_password: Line = Field(min_length=1, max_length=1024)
    new_password: Line = Field(min_length=1, max_length=1024)


class PasswordResetRequest(_In):
    username: Line | None = Field(default=None, min_length=1, max_length=64)
    email: Line | None = Field(default=None, min_length=3, max_length=254)

    @model_validator(mode="after")
    def _one_of(self) -> PasswordResetRequest:
        if not self.username and not self.email:
            raise ValueError("give the username or the email address")
        return self


class PasswordResetConfirmation(_In):
    token: Line = Field(min_length=10, max_length=200)
    new_password: Line = Field(min_length=1, max_length=1024)


class AcceptedOut(BaseModel):
    status: Literal["accepted"] = "accepted"


class RolesIn(_In):
    roles: list[Literal["volunteer", "regional_admin", "national_admin", "data_importer"]]
    admin_region: str | None = Field(default=None, pattern=r"^\d{6}$")


class CredentialResetIn(_In):
    reason: Line = Field(min_length=2, max_length=500)
    email: Line | None = Field(default=None, min_length=3, max_length=254)
    mobile: Line | None = Field(
        default=None, min_length=5, max_length=MOBILE_MAX_LENGTH, description=MOBILE_DESCRIPTION
    )


class TemporaryPasswordOut(BaseModel):
    account_id: uuid.UUID
    temporary_password: str
    must_change_password: Literal[True] = True


class CaseRecordOut(BaseModel):
    """One record of the number, with what tells it apart from the others. The name stays masked:
    identity has no audited disclosure of a record's name to reuse (the ID number's is per account,
    with a reason), and what follows is what the legacy system and the import knew of the record."""

    record_id: uuid.UUID
    masked_name: str
    source: str
    status: str
    registered: bool
    birth_date: date | None = None
    legacy: LegacyOut | None = Field(
        None, description="The legacy volunteer number(s) and service hours (with those of records merged into it)"
    )
    import_job_id: uuid.UUID | None = Field(None, description="The import that loaded it (source `import`)")
    import_line: int | None = Field(None, description="Its line in that import's file")
    claimed_at: datetime | None = Field(None, description="When a sign-up claimed the imported record")
    created_at: datetime = Field(description="When it was loaded (import) or signed up (sign-up)")


class DuplicateCaseOut(BaseModel):
    id: uuid.UUID
    id_number_masked: str
    status: str
    opened_by: str
    opened_at: datetime
    resolved_at: datetime | None = None
    kept_record_id: uuid.UUID | None = None
    records: list[CaseRecordOut]


class DuplicateCasePage(BaseModel):
    items: list[DuplicateCaseOut]
    next_cursor: str | None = None


class ResolutionIn(_In):
    keep_record_id: uuid.UUID
    record_ids: list[uuid.UUID] = Field(
        min_length=1,
        max_length=1000,
        description="The ids of the case's records the admin looked at, those not `merged` (every one the case "
        "view listed): when the number's live records are not these any more (a record arrived or left since), "
        "the resolution is refused with `case_changed` and nothing is merged",
    )


# -- manual verification (V6) -------------------------------------------------------------------
class IdCardUploadOut(BaseModel):
    id: uuid.UUID
    status: Literal["pending", "approved", "rejected", "superseded"]
    content_type: str
    size: int
    uploaded_at: datetime


class IdCardReviewOut(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    real_name: str = Field(description="Shown to the reviewer only, to compare with the image")
    document_type: str
    id_number_masked: str
    region_code: str
    content_type: str
    uploaded_at: datetime
    image_url: str


class IdCardReviewPage(BaseModel):
    items: list[IdCardReviewOut]
    next_cursor: str | None = None


class ReviewDecisionIn(_In):
    approved: bool
    reason: Line | None = Field(default=None, max_length=500, description="Required when rejecting")


class ReviewDecisionOut(BaseModel):
    id: uuid.UUID
    status: Literal["approved", "rejected"]
    account_id: uuid.UUID
    reason: str | None = None


class DisclosureIn(_In):
    reason: Line = Field(min_length=4, max_length=500, description="Why the full number is needed (audited)")


class DisclosureOut(BaseModel):
    account_id: uuid.UUID
    document_type: str
    id_number: str


# -- invitations lookup and team admin resets (T7) ------------------------------------------
class LookupIn(_In):
    document_type: DocumentType = DocumentType.RESIDENT_ID
    id_number: Line = Field(min_length=5, max_length=32)
    real_name: Line = Field(min_length=1, max_length=100)


class LookupOut(BaseModel):
    volunteer_id: uuid.UUID
    masked_name: str
    volunteer_number: str | None = None
    #: identity's signed word that this admin gave this volunteer's ID number and name: teams'
    #: ``POST /api/v1/teams/{team_id}/members`` takes it to add the volunteer to one of the admin's
    #: teams at once (FAQ V1: the registered account is brought in, then its password reset)
    match_token: str
    match_expires_at: datetime


class TeamTemporaryPasswordOut(BaseModel):
    account_id: uuid.UUID
    #: the account's username, for the admin to give the member with the password (FAQ V1: someone
    #: told "already registered" may not know it); only to an admin who found this account by its
    #: ID number and name within the last hour (``POST /api/v1/volunteer-lookups``), else null
    username: str | None
    team_id: uuid.UUID
    temporary_password: str
    must_change_password: Literal[True] = True


# -- volunteer card (V9) ------------------------------------------------------------------------
class CardCheckOut(BaseModel):
    genuine: bool
    current: bool
    masked_name: str | None = None
    volunteer_number: str | None = None
    issued_on: date | None = None


# -- administration: audit log and account search ----------------------------------------------
class AuditEntryOut(BaseModel):
    id: uuid.UUID
    at: datetime
    actor_id: uuid.UUID | None = None
    action: str
    subject_account_id: uuid.UUID | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = None


class AccountSearchIn(_In):
    """Exactly one of: a username, or an ID document (type and number)."""

    username: Line | None = Field(default=None, min_length=1, max_length=64)
    document_type: DocumentType = DocumentType.RESIDENT_ID
    id_number: Line | None = Field(default=None, min_length=5, max_length=32)
    reason: Line = Field(min_length=4, max_length=500, description="Why the account is looked for (audited)")

    @model_validator(mode="after")
    def _one_of(self) -> AccountSearchIn:
        if (self.username is None) == (self.id_number is None):
            raise ValueError("give either the username or the ID number")
        return self


class AccountSearchOut(BaseModel):
    items: list[AccountOut]
