"""Events produced by the identity service.

Payloads carry only what consumers need. Personal data in them is limited to what the
consuming read models are allowed to keep: notifications keeps address, display name and
language; teams and projects keep a masked name and the volunteer number.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

from shared.contracts.base import Event


class _AccountEvent(Event):
    producer: ClassVar[str] = "identity"
    aggregate_type: ClassVar[str] = "account"
    aggregate_field: ClassVar[str] = "account_id"


class AccountRegistered(_AccountEvent):
    """A person signed up. Carries what notifications needs to greet them, nothing more."""

    event_type: ClassVar[str] = "account.registered"
    summary: ClassVar[str] = "An account was created by sign-up (or an imported record was claimed)"

    account_id: uuid.UUID
    username: str
    display_name: str
    email: str
    language: str = "zh"
    region_code: str | None = None
    #: a staff account with no volunteer identity (the national admin bootstrapped from the command
    #: line): kept as a recipient, not greeted as a volunteer
    staff: bool = False


class AccountContactChanged(_AccountEvent):
    """Email, display name or language changed: the recipients read models follow."""

    event_type: ClassVar[str] = "account.contact_changed"
    summary: ClassVar[str] = "An account's email, display name or language changed"

    account_id: uuid.UUID
    display_name: str
    email: str
    language: str = "zh"


class AccountRolesChanged(_AccountEvent):
    """Roles granted or withdrawn (regional admin with its region, national admin, importer)."""

    event_type: ClassVar[str] = "account.roles_changed"
    summary: ClassVar[str] = "An account's roles (and admin region) changed"

    account_id: uuid.UUID
    roles: list[str]
    region_code: str | None = None


class PasswordResetRequested(_AccountEvent):
    """A reset link to email. ``reset_url`` holds a one-use token valid until ``expires_at``."""

    event_type: ClassVar[str] = "account.password_reset_requested"
    summary: ClassVar[str] = "A password reset link was issued (30 minutes, one use)"
    secret_fields: ClassVar[tuple[str, ...]] = ("reset_url",)

    account_id: uuid.UUID
    reset_url: str
    expires_at: datetime


class TemporaryPasswordSet(_AccountEvent):
    """An admin set a temporary password; the notice never carries the password."""

    event_type: ClassVar[str] = "account.temporary_password_set"
    summary: ClassVar[str] = "A team admin or the national admin set a temporary password"

    account_id: uuid.UUID
    set_by_account_id: uuid.UUID
    by_team_id: uuid.UUID | None = None


class VolunteerVerificationChanged(_AccountEvent):
    """Verification status moved (pending, verified, failed, manual_review)."""

    event_type: ClassVar[str] = "volunteer.verification_changed"
    summary: ClassVar[str] = "Real-name verification status changed"

    account_id: uuid.UUID
    status: str
    reason: str | None = None
    manual: bool = False


class VolunteerVerified(_AccountEvent):
    """Real-name verification passed: the volunteer has a national volunteer number."""

    event_type: ClassVar[str] = "volunteer.verified"
    summary: ClassVar[str] = "A volunteer's real name was verified and a volunteer number assigned"

    account_id: uuid.UUID
    volunteer_number: str
    masked_name: str
    region_code: str
    verified_at: datetime
    manual: bool = False


class VolunteerMerged(_AccountEvent):
    """Duplicate records resolved: ``merged_account_id`` now lives on as ``account_id``.
    Consumers move memberships, applications and hours to the kept account."""

    event_type: ClassVar[str] = "volunteer.merged"
    summary: ClassVar[str] = "A duplicate record was merged into the kept one"

    account_id: uuid.UUID
    merged_account_id: uuid.UUID
    case_id: uuid.UUID
