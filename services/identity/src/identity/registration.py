"""Sign-up (V1–V4) and the volunteer's own profile (V7, V8).

The unique index on ``accounts.id_blind_index`` decides races: every sign-up inserts, and
the loser of a race gets the integrity error, never a check that passed for two. During a
rotation of the blind-index key (:mod:`identity.reindex`) the number's records are looked up
under both keys, and the new account and record are indexed under the current one, like any
concurrent sign-up's: the unique index still decides between them.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from identity import errors
from identity.bootstrap import IdentityRuntime
from identity.crypto import DataCipher, id_number_context
from identity.domain import documents
from identity.domain.documents import DocumentType
from identity.domain.password_policy import check_password
from identity.domain.working_days import add_working_days
from identity.models import (
    RECORD_ACTIVE,
    RECORD_INACTIVE,
    SOURCE_REGISTRATION,
    Account,
    VolunteerRecord,
)
from identity.repository import Accounts, Records, Reviews
from identity.throttle import Policy, Throttle, sign_up_key
from identity.verification import STATUS_FAILED, STATUS_MANUAL_REVIEW, STATUS_PENDING, STATUS_VERIFIED, begin
from shared.clock import CHINA_TZ, local_today
from shared.contracts.identity import AccountContactChanged, AccountRegistered, VolunteerVerificationChanged
from shared.db import UnitOfWork
from shared.errors import AppError
from shared.logging import get_logger

log = get_logger("identity.registration")


#: V2's way out, returned in ``detail`` with ``id_number_already_registered``
ALREADY_REGISTERED_WAY_OUT = {
    "zh": (
        "请把本人证件号码和姓名告知所在单位志愿团体的管理员,由管理员邀请您已注册的账号加入本团体,"
        "并在团体“全体成员”中重置密码;再向管理员索取注册账号,用新密码登录后更新个人信息与密码。"
    ),
    "en": (
        "Give your ID number and name to an admin of your volunteer team: the admin invites your existing "
        "account into the team and resets its password from the member list; then log in with the username "
        "and temporary password the admin gives you, and update your details and password."
    ),
}


#: V3's way out (FAQ V2), returned in ``detail`` with ``id_number_conflict``: the number is held by
#: two or more records, which only the national admin can clean up (the case is already queued)
DUPLICATE_RECORDS_WAY_OUT = {
    "zh": (
        "该证件号码已被使用两次或以上,需要清理重复的记录。已为全国管理员登记待处理,"
        "请在工作日拨打全国服务电话处理(电话见“客服联系方式”)。"
    ),
    "en": (
        "This ID number is held by two or more records, which must be cleaned up. The case is queued for the "
        "national admins: call the national service line on a working day (see the support contacts)."
    ),
}


@dataclass(frozen=True)
class Guardian:
    name: str
    relation: str
    phone: str
    consented_at: datetime


@dataclass(frozen=True)
class SignUp:
    username: str
    password: str
    real_name: str
    document_type: DocumentType
    id_number: str
    mobile: str
    email: str
    region_code: str
    display_name: str | None = None
    birth_date: date | None = None
    address: str | None = None
    language: str = "zh"
    guardian: Guardian | None = None


@dataclass(frozen=True)
class SealedIdentity:
    document_type: DocumentType
    #: under the current key: what is written
    blind_index: bytes
    #: under every key in use (the current one first): what is looked up; for an old-form permit
    #: number also the index of the whole number, which records stored before its document key
    #: (:func:`~identity.domain.documents.document_key`) have until a re-index (:mod:`identity.reindex`)
    blind_indexes: tuple[bytes, ...]
    blind_key_id: str
    ciphertext: bytes
    key_id: str
    masked: str
    birth_date: date


def check_consent_time(consented_at: datetime, now: datetime, born: date) -> None:
    """The guardian's consent is a recorded fact (V1): a moment with its time zone (a naive time
    could be any of 24 hours), one that has already happened, and not before the minor was born."""
    if consented_at.utcoffset() is None:
        raise AppError(errors.GUARDIAN_CONSENT_TIME_INVALID, {"field": "guardian.consented_at", "problem": "no_zone"})
    if consented_at > now:
        raise AppError(
            errors.GUARDIAN_CONSENT_TIME_INVALID,
            {"field": "guardian.consented_at", "problem": "future", "now": now.isoformat()},
        )
    if consented_at.astimezone(CHINA_TZ).date() < born:  # the birth date is China's calendar day
        raise AppError(
            errors.GUARDIAN_CONSENT_TIME_INVALID,
            {"field": "guardian.consented_at", "problem": "before_birth", "birth_date": born.isoformat()},
        )


def check_email(email: str) -> str:
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise AppError(errors.EMAIL_INVALID) from exc


def seal_identity(
    cipher: DataCipher,
    document_type: DocumentType,
    id_number: str,
    birth_date: date | None,
    today: date | None = None,
) -> SealedIdentity:
    """The checked number sealed as typed (normalised), with its blind indexes, which hash the
    number's :func:`~identity.domain.documents.document_key` (one for every form of a permit)."""
    number, born = documents.check_document(document_type, id_number, birth_date, today)
    sealed = cipher.seal(number.encode(), context=id_number_context(document_type))
    indexes = cipher.blind_indexes(documents.blind_index_input(document_type, number))
    lookups = indexes
    if documents.document_key(document_type, number) != number:
        # stored before numbers had a document key, under the whole number: still found by it
        whole = cipher.blind_indexes(f"{document_type.value}:{number}")
        lookups += tuple(index for index in whole if index not in indexes)
    return SealedIdentity(
        document_type=document_type,
        blind_index=indexes[0],
        blind_indexes=lookups,
        blind_key_id=cipher.blind_key_id,
        ciphertext=sealed.data,
        key_id=sealed.key_id,
        masked=documents.mask_number(document_type, number),
        birth_date=born,
    )


class _Duplicates(Exception):
    def __init__(self, identity: SealedIdentity) -> None:
        super().__init__("duplicate records")
        self.identity = identity


class _RecordAppeared(Exception):
    """A record with the number was committed (an import) after this sign-up looked: look again."""


#: the refusals that say what an ID number is (registered, held twice, imported under another name
#: or birth date): given only to a sign-up that would otherwise create the account (``_register``
#: checks the username first, ``sign_up`` everything else), and only so often per client address
IDENTITY_ANSWERS = frozenset(
    spec.code
    for spec in (
        errors.ID_NUMBER_ALREADY_REGISTERED,
        errors.ID_NUMBER_CONFLICT,
        errors.IMPORTED_NAME_MISMATCH,
        errors.IMPORTED_BIRTH_DATE_MISMATCH,
    )
)


async def sign_up(runtime: IdentityRuntime, data: SignUp, *, address: str) -> Account:
    """A new account, or a refusal. ``address`` is the client's (throttling its identity answers)."""
    settings, clock = runtime.settings, runtime.clock
    check_password(data.password, username=data.username)
    today = local_today(clock)
    identity = seal_identity(runtime.cipher, data.document_type, data.id_number, data.birth_date, today)
    # The age and guardian checks run on this birth date; claiming an imported record (V4) needs
    # the record's to be the same (_register), so they ran on the record's too.
    age = documents.check_age(identity.birth_date, today, minimum_age=settings.minimum_age)
    if age < settings.guardian_consent_below_age and data.guardian is None:
        raise AppError(errors.GUARDIAN_CONSENT_REQUIRED)
    if data.guardian is not None:
        check_consent_time(data.guardian.consented_at, clock.now(), identity.birth_date)
    mobile = documents.check_mobile(data.mobile)
    email = check_email(data.email)
    region = documents.check_region(data.region_code)
    guardian_phone = documents.check_mobile(data.guardian.phone) if data.guardian else None
    # Counted before the number is looked up, as a login before its password is checked:
    # simultaneous probes cannot outrun the budget. Only an identity answer keeps its count.
    throttle = Throttle(
        runtime.engine, Policy.for_sign_ups(settings), refusal=errors.TOO_MANY_SIGN_UP_ATTEMPTS, what="sign_up"
    )
    reservation = await throttle.attempt([sign_up_key(address)], clock.now())
    try:
        account = await _sign_up(runtime, data, identity, mobile, email, region, guardian_phone)
    except AppError as exc:
        if exc.spec.code in IDENTITY_ANSWERS:
            log.info("sign_up_identity_answered", code=exc.spec.code)
            raise
        with contextlib.suppress(Exception):
            await throttle.give_back(reservation)
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            await throttle.give_back(reservation)
        raise
    with contextlib.suppress(Exception):  # the account exists: a count left over is no reason to say otherwise
        await throttle.give_back(reservation)
    return account


async def _sign_up(
    runtime: IdentityRuntime,
    data: SignUp,
    identity: SealedIdentity,
    mobile: str,
    email: str,
    region: str,
    guardian_phone: str | None,
) -> Account:
    settings = runtime.settings
    password_hash = await runtime.passwords.hash(data.password)
    try:
        for looks in (1, 2):
            try:
                async with runtime.uow() as uow:
                    account = await _register(
                        uow,
                        data,
                        identity,
                        password_hash,
                        mobile,
                        email,
                        region,
                        guardian_phone,
                        settings.verification_delay_seconds,
                    )
                break
            except _RecordAppeared:
                # looked again, the imported record is claimed (V4) or the name refused; a record
                # appearing a second time makes the number's records a case for the national admin
                if looks == 2:
                    raise _Duplicates(identity) from None
    except _Duplicates as dup:
        await open_duplicate_case(runtime, dup.identity, opened_by="registration")
        raise AppError(errors.ID_NUMBER_CONFLICT, {"way_out": DUPLICATE_RECORDS_WAY_OUT}) from None
    # claimed: the account took over an imported record (V4); a new record was made otherwise
    claimed = account.record is not None and account.record.claimed_at is not None
    log.info("account_registered", account_id=str(account.id), claimed=claimed)
    return account


_IMPORT_PROBE_SHARED = text("SELECT pg_advisory_xact_lock_shared(hashtext('identity-import-probe'))")

#: the constraints a concurrent sign-up with the same ID number (or claiming the same imported
#: record, whose id the account takes) runs into; any other violation is a bug, not a duplicate
_ONE_ACCOUNT_PER_PERSON = ("ux_accounts_id_blind_index", "pk_accounts", "uq_accounts_record_id")
#: the username as typed, and ignoring case (``ZhangSan`` once ``zhangsan`` exists, V1): both are
#: the database's word, so two sign-ups differing only in case at the same moment give one account
_ONE_ACCOUNT_PER_USERNAME = ("uq_accounts_username", "ux_accounts_username_lower")


async def _register(
    uow: UnitOfWork,
    data: SignUp,
    identity: SealedIdentity,
    password_hash: str,
    mobile: str,
    email: str,
    region: str,
    guardian_phone: str | None,
    delay_seconds: float,
) -> Account:
    now = uow.clock.now()
    # The username before the number: a sign-up that could not create the account (a taken name
    # is the cheapest way to make sure of that) learns nothing about the number. The unique
    # indexes still decide between sign-ups at the same moment.
    if await Accounts(uow.session).username_taken(data.username):
        raise AppError(errors.USERNAME_TAKEN)
    records = await Records(uow.session).live_by_blind_index(identity.blind_indexes)
    if len(records) >= 2:
        raise _Duplicates(identity)
    if records and records[0].status == RECORD_ACTIVE:
        raise AppError(errors.ID_NUMBER_ALREADY_REGISTERED, {"way_out": ALREADY_REGISTERED_WAY_OUT})
    if records and records[0].status == RECORD_INACTIVE:
        record = records[0]
        if not documents.same_name(record.real_name, data.real_name):
            raise AppError(errors.IMPORTED_NAME_MISMATCH)
        if record.birth_date is not None and record.birth_date != identity.birth_date:
            # the sign-up's age and guardian checks ran on its own birth date: the record keeps
            # the imported one, so they must be the same (a resident ID number's always are)
            raise AppError(errors.IMPORTED_BIRTH_DATE_MISMATCH)
        # V4: the imported record becomes this account, keeping its id and history.
        record.status = RECORD_ACTIVE
        record.claimed_at = now
        record.birth_date = record.birth_date or identity.birth_date
    else:
        record = VolunteerRecord(
            id=uuid.uuid4(),
            document_type=identity.document_type.value,
            id_blind_index=identity.blind_index,
            id_blind_key_id=identity.blind_key_id,
            id_ciphertext=identity.ciphertext,
            id_key_id=identity.key_id,
            id_masked=identity.masked,
            real_name=data.real_name.strip(),
            birth_date=identity.birth_date,
            source=SOURCE_REGISTRATION,
            status=RECORD_ACTIVE,
        )
        Records(uow.session).add(record)
    guardian = data.guardian
    account = Account(
        id=record.id,
        username=data.username,
        password_hash=password_hash,
        display_name=(data.display_name or data.real_name).strip(),
        email=email,
        mobile=mobile,
        address=data.address,
        region_code=region,
        language=data.language,
        record=record,
        id_blind_index=identity.blind_index,
        id_blind_key_id=identity.blind_key_id,
        guardian_name=guardian.name if guardian else None,
        guardian_relation=guardian.relation if guardian else None,
        guardian_phone=guardian_phone,
        guardian_consented_at=guardian.consented_at if guardian else None,
        roles=["volunteer"],
        must_change_password=False,
        password_changed_at=now,
        created_at=now,
    )
    begin(account, uow, delay_seconds=delay_seconds)
    Accounts(uow.session).add(account)
    try:
        await uow.flush()
    except IntegrityError as exc:
        if any(name in str(exc.orig) for name in _ONE_ACCOUNT_PER_USERNAME):
            raise AppError(errors.USERNAME_TAKEN) from None
        if any(name in str(exc.orig) for name in _ONE_ACCOUNT_PER_PERSON):
            raise AppError(errors.ID_NUMBER_ALREADY_REGISTERED, {"way_out": ALREADY_REGISTERED_WAY_OUT}) from None
        raise
    # An import committing a record with this number after the look above: its duplicate probe
    # ran before this sign-up commits and saw one record, and this sign-up saw none. The probe
    # holds this lock exclusively until its commit, so each side sees the other: the probe waits
    # for this sign-up, or this sign-up for the probe, and looks again. Shared: sign-ups do not
    # wait for each other, nor for a large import's final sweep (see importer._load_batch).
    await uow.session.execute(_IMPORT_PROBE_SHARED)
    if len(await Records(uow.session).live_by_blind_index(identity.blind_indexes)) > 1:
        raise _RecordAppeared
    account.raise_event(
        AccountRegistered(
            account_id=account.id,
            username=account.username,
            display_name=account.display_name,
            email=account.email,
            language=account.language,
            region_code=region,
        )
    )
    return account


#: V3: the case takes the index (and key id) of one of the number's live records, the current
#: key's if any has it, so a case always shares its index with a record (identity.admin.case_records
#: finds the others from it); locked FOR SHARE, so a re-index moving that record (and the number's
#: cases with it) either sees this case or is waited for. No case is opened while one is open under
#: any of the number's indexes.
_OPEN_CASE = text(
    "INSERT INTO duplicate_cases (id, id_blind_index, id_blind_key_id, id_masked, status, opened_by, opened_at) "
    "SELECT :id, r.id_blind_index, r.id_blind_key_id, :masked, 'open', :by, :now FROM volunteer_records r "
    "WHERE r.id_blind_index = ANY(CAST(:indexes AS bytea[])) AND r.status <> 'merged' AND NOT EXISTS ("
    "  SELECT 1 FROM duplicate_cases c WHERE c.status = 'open' AND c.id_blind_index = ANY(CAST(:indexes AS bytea[]))"
    ") ORDER BY r.id_blind_index = :current DESC, r.created_at, r.id LIMIT 1 FOR SHARE OF r "
    "ON CONFLICT (id_blind_index) WHERE status = 'open' DO NOTHING"
)


async def open_duplicate_case(runtime: IdentityRuntime, identity: SealedIdentity, *, opened_by: str) -> None:
    """Queue the number for the national admin (V3); one open case per number."""
    async with runtime.uow() as uow:
        if len(identity.blind_indexes) > 1:
            # During a rotation two openers may pick different indexes of one number, which the
            # unique index cannot tell apart: they take turns with the importer's (identity.importer).
            await uow.session.execute(text("SELECT pg_advisory_xact_lock(hashtext('identity-import-cases'))"))
        await uow.session.execute(
            _OPEN_CASE,
            {
                "id": uuid.uuid4(),
                "indexes": list(identity.blind_indexes),
                "current": identity.blind_index,
                "masked": identity.masked,
                "by": opened_by,
                "now": uow.clock.now(),
            },
        )


def expected_verification_window(account: Account) -> tuple[date, date] | None:
    """3–5 Chinese working days after sign-up (FAQ V4), for a verification still under way."""
    if account.verification_status not in (STATUS_PENDING, STATUS_MANUAL_REVIEW):
        return None
    start = account.verification_requested_on or account.created_at.astimezone(CHINA_TZ).date()
    return add_working_days(start, 3), add_working_days(start, 5)


@dataclass(frozen=True)
class ProfileChange:
    mobile: str | None = None
    email: str | None = None
    address: str | None = None
    display_name: str | None = None
    language: str | None = None
    real_name: str | None = None


async def change_profile(
    uow: UnitOfWork, account_id: uuid.UUID, change: ProfileChange, *, delay_seconds: float = 0
) -> Account:
    account = await Accounts(uow.session).get(account_id, for_update=True)
    if account is None:
        raise AppError(errors.ACCOUNT_NOT_FOUND)
    if change.real_name is not None:
        record = account.record
        if record is None:
            raise AppError(errors.NOT_A_VOLUNTEER)
        if account.verification_status == STATUS_VERIFIED:
            raise AppError(errors.NAME_LOCKED_AFTER_VERIFICATION)
        # any edit, a middle dot or a space too (the provider compares as written; ``same_name``
        # is for recognising one person, not for what the volunteer asked to store)
        if change.real_name.strip() != record.real_name:
            record.rename(change.real_name.strip())
            if account.verification_status in (STATUS_FAILED, STATUS_MANUAL_REVIEW):
                await _recheck_under_new_name(uow, account, delay_seconds)
    if change.mobile is not None:
        account.mobile = documents.check_mobile(change.mobile)
    if change.address is not None:
        account.address = change.address
    contact_before = (account.email, account.display_name, account.language)
    if change.email is not None:
        account.email = check_email(change.email)
    if change.display_name is not None:
        account.display_name = change.display_name.strip()
    if change.language is not None:
        account.language = change.language
    if (account.email, account.display_name, account.language) != contact_before:
        account.raise_event(
            AccountContactChanged(
                account_id=account.id,
                display_name=account.display_name,
                email=account.email,
                language=account.language,
            )
        )
    return account


async def _recheck_under_new_name(uow: UnitOfWork, account: Account, delay_seconds: float) -> None:
    """A corrected name is worth another automatic check. An ID-card upload waiting for review
    was made under the old name: it is withdrawn (``superseded``), so no reviewer approves a name
    they did not see; if the new name fails too, the volunteer uploads again under it (V6).
    The caller holds the account's row lock, which an upload and a decision take first, so a
    decision either came before the change (a verified name is then locked) or finds the upload
    withdrawn."""
    await Reviews(uow.session).supersede_pending(account.id)
    begin(account, uow, delay_seconds=delay_seconds)
    account.raise_event(VolunteerVerificationChanged(account_id=account.id, status=STATUS_PENDING, manual=False))
