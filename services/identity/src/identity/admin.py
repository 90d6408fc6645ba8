"""What the national admin does: roles, credentials for owners who lost everything (V10),
duplicate cases (V3); and the first national admin's bootstrap."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from identity import errors
from identity.bootstrap import IdentityRuntime
from identity.crypto import DataCipher, Sealed, id_number_context
from identity.domain import documents, usernames
from identity.domain.documents import DocumentType, blind_index_input
from identity.domain.password_policy import check_password
from identity.models import RECORD_MERGED, Account, DuplicateCase, VolunteerRecord
from identity.registration import check_email
from identity.repository import Accounts, Audit, Cases
from identity.sessions import retire_credentials
from identity.throttle import account_key
from shared import regions
from shared.auth import ROLE_NATIONAL_ADMIN, ROLE_REGIONAL_ADMIN, ROLE_VOLUNTEER, ROLES, Principal
from shared.contracts.identity import (
    AccountContactChanged,
    AccountRegistered,
    AccountRolesChanged,
    TemporaryPasswordSet,
    VolunteerMerged,
)
from shared.db import UnitOfWork
from shared.errors import AppError
from shared.logging import get_logger

log = get_logger("identity.admin")

#: temporary passwords: 12 characters from an alphabet without look-alikes (read over the phone)
_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789"


def temporary_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(12))


#: the account's login failures (identity.throttle keeps them under its username's key)
_CLEAR_LOGIN_FAILURES = text("DELETE FROM login_throttle WHERE key = :key")


async def set_temporary_password(runtime: IdentityRuntime, uow: UnitOfWork, account: Account) -> str:
    """A temporary password, changed at the next login; the old sessions and reset links end, and
    so do the account's login failures with their lock: the owner (often the one who failed, or
    someone guessing at the account) is given the password to log in with now, not minutes later.
    The client addresses' counts stay."""
    password = temporary_password()
    account.password_hash = await runtime.passwords.hash(password)
    account.must_change_password = True
    await retire_credentials(uow, account.id, uow.clock.now())
    await uow.session.execute(_CLEAR_LOGIN_FAILURES, {"key": account_key(account.username)})
    return password


#: advisory lock taken by every role change that leaves an account without national_admin
_NATIONAL_ADMINS_LOCK = 0x4E41_5449_4F4E


async def set_roles(
    uow: UnitOfWork, actor: Principal, account_id: uuid.UUID, roles: Sequence[str], admin_region: str | None
) -> Account:
    wanted = set(roles)
    if not wanted <= set(ROLES):
        raise AppError(errors.ROLE_INVALID, {"roles": sorted(wanted - set(ROLES))})
    if ROLE_REGIONAL_ADMIN in wanted:
        if not admin_region or not regions.is_valid(admin_region):
            raise AppError(errors.ROLE_INVALID, {"admin_region": admin_region})
    else:
        admin_region = None
    if ROLE_NATIONAL_ADMIN not in wanted:
        # one demotion of a national admin at a time, so two at once cannot leave none
        await uow.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _NATIONAL_ADMINS_LOCK})
    account = await Accounts(uow.session).get(account_id, for_update=True)
    if account is None:
        raise AppError(errors.ACCOUNT_NOT_FOUND)
    if ROLE_NATIONAL_ADMIN in account.roles and ROLE_NATIONAL_ADMIN not in wanted:
        others = await uow.session.scalar(
            select(func.count())
            .select_from(Account)
            .where(Account.roles.contains([ROLE_NATIONAL_ADMIN]), Account.id != account.id)
        )
        if not others:
            raise AppError(errors.LAST_NATIONAL_ADMIN)
    if account.record_id is not None:
        wanted.add(ROLE_VOLUNTEER)  # a registered volunteer stays one
    before = (sorted(account.roles), account.admin_region)
    account.roles = sorted(wanted)
    account.admin_region = admin_region
    Audit(uow.session).write(
        at=uow.clock.now(),
        actor_id=actor.account_id,
        action="roles_changed",
        subject_account_id=account.id,
        detail={"before": before[0], "after": account.roles, "admin_region": admin_region},
    )
    if before != (account.roles, admin_region):
        account.raise_event(AccountRolesChanged(account_id=account.id, roles=account.roles, region_code=admin_region))
    log.info("roles_changed", account_id=str(account.id), roles=account.roles)
    return account


@dataclass(frozen=True)
class CredentialReset:
    reason: str
    email: str | None = None
    mobile: str | None = None


async def national_reset(
    runtime: IdentityRuntime, uow: UnitOfWork, actor: Principal, account_id: uuid.UUID, reset: CredentialReset
) -> str:
    """The owner lost everything (FAQ O1): new contact details and a temporary password that
    must be changed at the next login. The password is returned once, to the admin."""
    account = await Accounts(uow.session).get(account_id, for_update=True)
    if account is None:
        raise AppError(errors.ACCOUNT_NOT_FOUND)
    password = await set_temporary_password(runtime, uow, account)
    now = uow.clock.now()
    if reset.mobile is not None:
        account.mobile = documents.check_mobile(reset.mobile)
    if reset.email is not None and check_email(reset.email) != account.email:
        account.email = check_email(reset.email)
        account.raise_event(
            AccountContactChanged(
                account_id=account.id, display_name=account.display_name, email=account.email, language=account.language
            )
        )
    account.raise_event(TemporaryPasswordSet(account_id=account.id, set_by_account_id=actor.account_id))
    Audit(uow.session).write(
        at=now,
        actor_id=actor.account_id,
        action="national_credential_reset",
        subject_account_id=account.id,
        reason=reset.reason,
        detail={"email_changed": reset.email is not None, "mobile_changed": reset.mobile is not None},
    )
    log.info("temporary_password_set", account_id=str(account.id), by="national_admin")
    return password


# -- duplicate cases (V3) ---------------------------------------------------------------------
async def case_records(uow: UnitOfWork, case: DuplicateCase, cipher: DataCipher) -> Sequence[VolunteerRecord]:
    """The records of the case's number. A case shares its index with one of its records (opened
    from them, and re-indexed along with them by identity.reindex); during a rotation of the
    blind-index key the others may be indexed under the other key, so that record's number is
    opened (in memory, never shown) and its records are looked up under both keys."""
    indexes: tuple[bytes, ...] = (case.id_blind_index,)
    if cipher.rotating_blind_index:
        query = select(VolunteerRecord).where(VolunteerRecord.id_blind_index == case.id_blind_index).limit(1)
        one = (await uow.session.execute(query)).scalar_one_or_none()
        if one is not None and one.id_key_id in cipher.key_ids:
            document_type = DocumentType(one.document_type)
            sealed = Sealed(one.id_key_id, one.id_ciphertext)
            try:
                number = cipher.open(sealed, context=id_number_context(one.document_type)).decode()
            except (InvalidTag, ValueError):
                log.warning("case_record_unreadable", case_id=str(case.id), record_id=str(one.id))
            else:
                indexes = tuple({case.id_blind_index, *cipher.blind_indexes(blind_index_input(document_type, number))})
    query = (
        select(VolunteerRecord)
        .where(VolunteerRecord.id_blind_index.in_(indexes))
        .order_by(VolunteerRecord.created_at, VolunteerRecord.id)
    )
    return (await uow.session.execute(query)).scalars().all()


async def registered_record_ids(uow: UnitOfWork, record_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    query = select(Account.record_id).where(Account.record_id.in_(record_ids))
    return {rid for rid in (await uow.session.execute(query)).scalars().all() if rid is not None}


async def resolve_case(
    uow: UnitOfWork,
    actor: Principal,
    case_id: uuid.UUID,
    keep_record_id: uuid.UUID,
    cipher: DataCipher,
    seen_record_ids: Sequence[uuid.UUID],
) -> DuplicateCase:
    """Keep one record; the others are merged into it and the other services move their
    memberships, applications and hours through ``volunteer.merged``. Only the records the admin
    saw (``seen_record_ids``, the live ones of the case view) are merged: when the number's live
    records are others now (a later import or sign-up added one, or one left), ``case_changed``."""
    # Taken before the case's row, as the importer and sign-up's case opening take it before they
    # touch a case: a batch adding a record of this number either committed before (and is seen
    # here) or waits, and then finds this case resolved and opens a new one for its record.
    await uow.session.execute(text("SELECT pg_advisory_xact_lock(hashtext('identity-import-cases'))"))
    case = await Cases(uow.session).get(case_id, for_update=True)
    if case is None:
        raise AppError(errors.CASE_NOT_FOUND)
    if case.status != "open":
        raise AppError(errors.CASE_ALREADY_RESOLVED)
    records = [r for r in await case_records(uow, case, cipher) if r.status != RECORD_MERGED]
    kept = next((r for r in records if r.id == keep_record_id), None)
    if kept is None:
        raise AppError(errors.RECORD_NOT_IN_CASE)
    live, seen = {r.id for r in records}, set(seen_record_ids)
    if live != seen:
        raise AppError(
            errors.CASE_CHANGED,
            {"added": sorted(str(i) for i in live - seen), "gone": sorted(str(i) for i in seen - live)},
        )
    registered = await registered_record_ids(uow, [r.id for r in records])
    if registered and kept.id not in registered:
        raise AppError(errors.MERGE_MUST_KEEP_REGISTERED)
    now = uow.clock.now()
    history = dict(kept.history or {})
    merged_histories = list(history.get("merged", []))
    for record in records:
        if record.id == kept.id:
            continue
        record.status = RECORD_MERGED
        record.merged_into_id = kept.id
        if record.history:
            merged_histories.append({"record_id": str(record.id), **record.history})
        uow.raise_event(VolunteerMerged(account_id=kept.id, merged_account_id=record.id, case_id=case.id))
    if merged_histories:
        history["merged"] = merged_histories
        kept.history = history
    case.status = "resolved"
    case.resolved_at = now
    case.resolved_by = actor.account_id
    case.kept_record_id = kept.id
    Audit(uow.session).write(
        at=now,
        actor_id=actor.account_id,
        action="duplicate_case_resolved",
        subject_account_id=kept.id,
        detail={"case_id": str(case.id), "merged": [str(r.id) for r in records if r.id != kept.id]},
    )
    log.info("duplicate_case_resolved", case_id=str(case.id), merged=len(records) - 1)
    return case


# -- bootstrap --------------------------------------------------------------------------------
async def create_national_admin(
    runtime: IdentityRuntime, *, username: str, password: str, email: str, display_name: str
) -> uuid.UUID:
    """The first national admin (``python -m identity create-admin``); a staff account with
    no volunteer identity. Later admins are granted roles through the API."""
    if not usernames.could_exist(username):  # what sign-up takes: the login looks up no other name
        raise AppError(errors.USERNAME_INVALID)
    check_password(password, username=username)
    password_hash = await runtime.passwords.hash(password)
    async with runtime.uow() as uow:
        account = Account(
            id=uuid.uuid4(),
            username=username,
            password_hash=password_hash,
            display_name=display_name,
            email=check_email(email),
            roles=["national_admin"],
            must_change_password=False,
            password_changed_at=uow.clock.now(),
            created_at=uow.clock.now(),
        )
        Accounts(uow.session).add(account)
        try:
            await uow.flush()
        except IntegrityError as exc:
            raise AppError(errors.USERNAME_TAKEN) from exc
        account.raise_event(
            AccountRegistered(
                account_id=account.id, username=username, display_name=display_name, email=account.email, staff=True
            )
        )
        account.raise_event(AccountRolesChanged(account_id=account.id, roles=account.roles))
        Audit(uow.session).write(
            at=uow.clock.now(), actor_id=None, action="national_admin_bootstrapped", subject_account_id=account.id
        )
    return account.id
