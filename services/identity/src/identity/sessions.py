"""Logging in and staying logged in (V10): access tokens, rotating refresh tokens, password
changes and one-use reset links."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import select, text

from identity import errors
from identity.bootstrap import IdentityRuntime
from identity.domain import usernames
from identity.domain.password_policy import check_password
from identity.models import Account, AuditEntry, PasswordResetToken, RefreshToken
from identity.repository import Accounts, RefreshTokens, ResetTokens
from identity.throttle import Policy, Throttle, account_key, address_key
from shared.contracts.identity import PasswordResetRequested
from shared.db import UnitOfWork
from shared.errors import AppError
from shared.logging import get_logger

log = get_logger("identity.sessions")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def throttle_for(runtime: IdentityRuntime) -> Throttle:
    return Throttle(runtime.engine, Policy.from_settings(runtime.settings))


def issue_pair(runtime: IdentityRuntime, uow: UnitOfWork, account: Account, family_id: uuid.UUID) -> TokenPair:
    now = runtime.clock.now()
    refresh = secrets.token_urlsafe(32)
    RefreshTokens(uow.session).add(
        RefreshToken(
            account_id=account.id,
            family_id=family_id,
            token_hash=token_hash(refresh),
            expires_at=now + timedelta(days=runtime.settings.refresh_token_days),
            created_at=now,
        )
    )
    minutes = runtime.settings.access_token_minutes
    access = runtime.signer.issue(
        account.id,
        roles=account.roles,
        region=account.admin_region,
        ttl=timedelta(minutes=minutes),
    )
    return TokenPair(access, refresh, minutes * 60)


@dataclass(frozen=True)
class Verified:
    """An account whose password was checked, with the hash it was checked against."""

    account_id: uuid.UUID
    password_hash: str


async def _authenticate(runtime: IdentityRuntime, username: str, password: str, address: str) -> Verified:
    """The account if the password is right; throttled per account and per address.

    Runs before the caller's unit of work opens and holds no connection while hashing: the
    throttle writes on its own connection (a failure must be recorded even though the login
    fails), so a request inside a transaction would hold two pooled connections at once, and
    enough simultaneous logins would starve the pool (and the relay sharing it)."""
    throttle = throttle_for(runtime)
    account_throttle, address_throttle = account_key(username), address_key(address)
    now = runtime.clock.now()
    # counted before the password is checked: attempts at the same moment cannot all be checked
    reservation = await throttle.attempt([account_throttle, address_throttle], now)
    try:
        found: Verified | None = None
        async with runtime.session_factory() as session:
            # as typed, else ignoring case if only one account has it: one statement whatever it
            # finds, and the throttle's account key ignores case too (one count for all spellings).
            # A name sign-up could not have produced is found as typed only: the database's lower()
            # would fold some of them onto a name that exists (admİn onto admin); as typed, it finds
            # a national admin created under such a name before create-admin refused them.
            account = await Accounts(session).by_username(username, ignoring_case=usernames.could_exist(username))
            found = Verified(account.id, account.password_hash) if account is not None else None
        if found is None:
            await runtime.passwords.verify(await _dummy_hash(runtime), password)  # same time for unknown names
            ok = False
        else:
            ok = await runtime.passwords.verify(found.password_hash, password)
        if ok and found is not None:
            await throttle.succeeded(reservation, account_throttle)
    except BaseException:
        # not judged (the database, the pool or the hashing failed, or the caller went): no failure
        with contextlib.suppress(Exception):
            await throttle.give_back(reservation)
        raise
    if not ok or found is None:
        log.info("login_failed", known_account=found is not None)
        raise AppError(errors.INVALID_CREDENTIALS)
    return found


async def _authenticated_account(
    runtime: IdentityRuntime, uow: UnitOfWork, verified: Verified, password: str
) -> Account:
    """The account, locked, if the password checked is still its password: one changed or reset
    while it was being checked opens nothing (a rehash of the same password does not count)."""
    account = await Accounts(uow.session).get(verified.account_id, for_update=True)
    if account is None:  # accounts are never deleted; only a concurrent merge could get here
        raise AppError(errors.INVALID_CREDENTIALS)
    if account.password_hash != verified.password_hash and not await runtime.passwords.verify(
        account.password_hash, password
    ):
        log.info("login_failed", password_changed_meanwhile=True)
        raise AppError(errors.INVALID_CREDENTIALS)
    if runtime.passwords.needs_rehash(account.password_hash):
        account.password_hash = await runtime.passwords.hash(password)
    return account


async def _token_of_locked_account(uow: UnitOfWork, token: str) -> tuple[RefreshToken, Account] | None:
    """A refresh token and its account, the account's row locked first. Every path that issues or
    revokes an account's refresh tokens, or sets its password, holds that row before touching
    them: a log-out, a replayed token or a password change at the moment of a refresh then ends
    the token the refresh issues too (it waited, or is waited for), and no two of them deadlock
    (a refresh that locked its token first met a password change that locked the account first)."""
    digest = token_hash(token)
    account_id = await uow.session.scalar(select(RefreshToken.account_id).where(RefreshToken.token_hash == digest))
    if account_id is None:
        return None
    account = await Accounts(uow.session).get(account_id, for_update=True)
    row = await RefreshTokens(uow.session).by_hash(digest)
    if account is None or row is None:
        return None
    return row, account


_DUMMY: dict[int, str] = {}


async def _dummy_hash(runtime: IdentityRuntime) -> str:
    key = id(runtime.passwords)
    if key not in _DUMMY:
        _DUMMY[key] = await runtime.passwords.hash(secrets.token_hex(8))
    return _DUMMY[key]


async def log_in(runtime: IdentityRuntime, *, username: str, password: str, address: str) -> TokenPair:
    verified = await _authenticate(runtime, username, password, address)
    async with runtime.uow() as uow:
        account = await _authenticated_account(runtime, uow, verified, password)
        if account.must_change_password:
            raise AppError(errors.PASSWORD_CHANGE_REQUIRED, {"change_at": "/api/v1/password-changes"})
        pair = issue_pair(runtime, uow, account, uuid.uuid4())
    log.info("logged_in", account_id=str(account.id))
    return pair


async def refresh(runtime: IdentityRuntime, token: str) -> TokenPair:
    reused = False
    async with runtime.uow() as uow:
        now = runtime.clock.now()
        found = await _token_of_locked_account(uow, token)
        if found is None:
            raise AppError(errors.REFRESH_TOKEN_INVALID)
        row, account = found
        if row.revoked_at is not None or row.expires_at <= now:
            raise AppError(errors.REFRESH_TOKEN_INVALID)
        if row.rotated_at is not None:
            # A rotated token shown again: stolen or replayed. End the whole chain.
            await RefreshTokens(uow.session).revoke_family(row.family_id, now)
            reused = True
            log.warning("refresh_token_reused", account_id=str(row.account_id))
        else:
            row.rotated_at = now
            pair = issue_pair(runtime, uow, account, row.family_id)
    if reused:
        raise AppError(errors.REFRESH_TOKEN_REUSED)
    return pair


async def log_out(runtime: IdentityRuntime, token: str) -> None:
    async with runtime.uow() as uow:
        found = await _token_of_locked_account(uow, token)
        if found is not None:
            await RefreshTokens(uow.session).revoke_family(found[0].family_id, runtime.clock.now())


async def retire_credentials(uow: UnitOfWork, account_id: uuid.UUID, now: datetime) -> None:
    """Whenever a password is set, by any path: every refresh token and every unused reset link
    issued before it dies with the old password (a link mailed earlier must not undo the change).
    The caller holds the account's row (see ``_token_of_locked_account``)."""
    await RefreshTokens(uow.session).revoke_account(account_id, now)
    await ResetTokens(uow.session).spend_unused(account_id, now)


async def set_password(runtime: IdentityRuntime, uow: UnitOfWork, account: Account, new_password: str) -> None:
    """A new password the owner chose."""
    check_password(new_password, username=account.username)
    now = runtime.clock.now()
    account.password_hash = await runtime.passwords.hash(new_password)
    account.must_change_password = False
    account.password_changed_at = now
    await retire_credentials(uow, account.id, now)


async def change_password(
    runtime: IdentityRuntime, *, username: str, current_password: str, new_password: str, address: str
) -> TokenPair:
    """Works with a temporary password too, which is how a forced change is done."""
    verified = await _authenticate(runtime, username, current_password, address)
    async with runtime.uow() as uow:
        account = await _authenticated_account(runtime, uow, verified, current_password)
        if new_password == current_password:
            raise AppError(errors.PASSWORD_UNCHANGED)
        await set_password(runtime, uow, account, new_password)
        pair = issue_pair(runtime, uow, account, uuid.uuid4())
    log.info("password_changed", account_id=str(account.id))
    return pair


async def request_reset(runtime: IdentityRuntime, *, username: str | None, email: str | None) -> None:
    """Issue a reset link to every account that matches; say nothing about which exist."""
    settings = runtime.settings
    async with runtime.uow() as uow:
        repo = Accounts(uow.session)
        found: list[Account] = []
        if username:
            # as the login finds it (another case too, for a name sign-up could produce)
            account = await repo.by_username(username, ignoring_case=usernames.could_exist(username))
            found = [account] if account is not None else []
        elif email:
            found = list(await repo.by_email(email))
        now = runtime.clock.now()
        expires = now + timedelta(minutes=settings.password_reset_minutes)
        for account in found:
            token = secrets.token_urlsafe(32)
            uow.session.add(
                PasswordResetToken(
                    account_id=account.id, token_hash=token_hash(token), expires_at=expires, created_at=now
                )
            )
            separator = "&" if "?" in settings.password_reset_url else "?"
            url = settings.password_reset_url + separator + urlencode({"token": token})
            account.raise_event(PasswordResetRequested(account_id=account.id, reset_url=url, expires_at=expires))
        # Every request is recorded, matched or not: operators see reset traffic, and the answer
        # costs the same durable write whether or not the account exists (no timing oracle).
        uow.session.add(
            AuditEntry(
                at=now,
                actor_id=None,
                action="password_reset_requested",
                subject_account_id=found[0].id if len(found) == 1 else None,
                detail={"matched": len(found), "by": "username" if username else "email"},
            )
        )
    log.info("password_reset_requested")


async def confirm_reset(runtime: IdentityRuntime, *, token: str, new_password: str) -> None:
    async with runtime.uow() as uow:
        now = runtime.clock.now()
        digest = token_hash(token)
        # the account first, as every path that sets a password or touches its tokens
        owner = await uow.session.scalar(
            select(PasswordResetToken.account_id).where(PasswordResetToken.token_hash == digest)
        )
        account = await Accounts(uow.session).get(owner, for_update=True) if owner is not None else None
        # One use, atomically: the UPDATE that marks it used is the check.
        spent = (
            await uow.session.execute(
                text(
                    "UPDATE password_reset_tokens SET used_at = :now "
                    "WHERE token_hash = :hash AND used_at IS NULL AND expires_at > :now RETURNING account_id"
                ),
                {"now": now, "hash": digest},
            )
        ).scalar_one_or_none()
        if spent is None or account is None:
            raise AppError(errors.RESET_TOKEN_INVALID)
        account_id = account.id
        await set_password(runtime, uow, account, new_password)
    log.info("password_reset", account_id=str(account_id))
