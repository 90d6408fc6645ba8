"""Real-name verification (V5, V6): a provider behind an interface, asked asynchronously by a
background job on the injected clock; outcomes raise ``volunteer.verified`` (with the national
volunteer number, assigned once) or ``volunteer.verification_changed``.

Operators plug in the public-security check with ``IDENTITY_VERIFICATION_PROVIDER=module:factory``
(``factory(settings)`` returns a :class:`VerificationProvider`). The development provider
decides from rules on the real name (``IDENTITY_DEV_VERIFICATION_RULES``), so tests steer it.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from sqlalchemy import text

from identity.config import IdentitySettings
from identity.crypto import Sealed, id_number_context
from identity.domain import documents, numbers
from identity.models import Account
from identity.repository import Accounts
from shared.clock import local_today
from shared.contracts.identity import VolunteerVerificationChanged, VolunteerVerified
from shared.db import UnitOfWork
from shared.logging import get_logger

if TYPE_CHECKING:
    from identity.bootstrap import IdentityRuntime

log = get_logger("identity.verification")

STATUS_PENDING = "pending"
STATUS_VERIFIED = "verified"
STATUS_FAILED = "failed"
STATUS_MANUAL_REVIEW = "manual_review"

Outcome = Literal["verified", "failed", "manual_review"]


@dataclass(frozen=True)
class VerificationRequest:
    document_type: str
    id_number: str
    real_name: str


@dataclass(frozen=True)
class VerificationResult:
    outcome: Outcome
    reason: str | None = None


class VerificationProvider(Protocol):
    async def verify(self, request: VerificationRequest) -> VerificationResult:
        """Decide; raise on a transient failure (the job retries later)."""
        ...


class DevelopmentProvider:
    """Verifies everyone except names containing a configured key."""

    def __init__(self, rules: dict[str, str]) -> None:
        self.rules = rules

    async def verify(self, request: VerificationRequest) -> VerificationResult:
        for key, outcome in self.rules.items():
            if key and key in request.real_name:
                if outcome == STATUS_FAILED:
                    return VerificationResult("failed", "姓名与证件号码不匹配")
                if outcome == STATUS_MANUAL_REVIEW:
                    return VerificationResult("manual_review", "需要人工核验")
                if outcome == "error":
                    raise ConnectionError("development provider told to fail")
        return VerificationResult("verified")


def build_provider(settings: IdentitySettings) -> VerificationProvider:
    if settings.verification_provider == "development":
        return DevelopmentProvider(settings.dev_verification_rules)
    module_name, _, factory_name = settings.verification_provider.partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    provider: VerificationProvider = factory(settings)
    return provider


def begin(account: Account, uow: UnitOfWork, *, delay_seconds: float) -> None:
    """Queue (again) the automatic check of the account's identity."""
    now = uow.clock.now()
    account.verification_status = STATUS_PENDING
    account.verification_reason = None
    account.verification_requested_on = local_today(uow.clock)
    account.verification_due_at = now + timedelta(seconds=delay_seconds)
    account.verification_attempts = 0


async def next_volunteer_number(uow: UnitOfWork) -> str:
    value = (await uow.session.execute(text("SELECT nextval('volunteer_number_seq')"))).scalar_one()
    return numbers.render(int(value))


async def apply_outcome(
    uow: UnitOfWork, account: Account, outcome: Outcome, reason: str | None, *, manual: bool
) -> None:
    now = uow.clock.now()
    account.verification_due_at = None
    account.verification_reason = reason
    if outcome == STATUS_VERIFIED:
        account.verification_status = STATUS_VERIFIED
        account.verified_at = now
        if account.volunteer_number is None:  # assigned once, never changed
            account.volunteer_number = await next_volunteer_number(uow)
        record = account.record
        account.raise_event(
            VolunteerVerified(
                account_id=account.id,
                volunteer_number=account.volunteer_number,
                masked_name=documents.mask_name(record.real_name if record else account.display_name),
                region_code=account.region_code or "",
                verified_at=now,
                manual=manual,
            )
        )
    else:
        account.verification_status = outcome
        if outcome == STATUS_MANUAL_REVIEW:
            account.verification_requested_on = local_today(uow.clock)
    account.raise_event(
        VolunteerVerificationChanged(account_id=account.id, status=outcome, reason=reason, manual=manual)
    )
    log.info("verification_outcome", account_id=str(account.id), outcome=outcome, manual=manual)


async def verify_due(runtime: IdentityRuntime, *, limit: int = 20) -> int:
    """Ask the provider about accounts whose check is due; returns how many were handled.

    ``FOR UPDATE SKIP LOCKED``: several workers share the queue without asking twice.
    """
    settings = runtime.settings
    async with runtime.uow() as uow:
        now = uow.clock.now()
        due = await Accounts(uow.session).due_for_verification(now, limit)
        for account in due:
            record = account.record
            if record is None:
                account.verification_due_at = None
                continue
            number = runtime.cipher.open(
                Sealed(record.id_key_id, record.id_ciphertext), context=id_number_context(record.document_type)
            ).decode()
            request = VerificationRequest(record.document_type, number, record.real_name)
            try:
                result = await asyncio.wait_for(
                    runtime.verification_provider.verify(request), settings.verification_timeout_seconds
                )
            except Exception as exc:
                account.verification_attempts += 1
                backoff = min(3600.0, settings.verification_retry_seconds * 2 ** (account.verification_attempts - 1))
                account.verification_due_at = now + timedelta(seconds=backoff)
                log.warning("verification_provider_failed", account_id=str(account.id), error=type(exc).__name__)
                continue
            await apply_outcome(uow, account, result.outcome, result.reason, manual=False)
    return len(due)


async def run_verifier(runtime: IdentityRuntime) -> None:
    """The background job: poll for due checks, forever."""
    poll = runtime.settings.verification_poll_seconds
    while True:
        try:
            handled = await verify_due(runtime)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("verification_job_failed", error=type(exc).__name__)
            handled = 0
        if handled == 0:
            await asyncio.sleep(poll)
