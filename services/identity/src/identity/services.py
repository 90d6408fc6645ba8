"""Use cases of the identity service. They load, decide, and leave committing to the caller."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from identity.errors import INVALID_CREDENTIALS, USERNAME_TAKEN
from identity.models import Account
from identity.passwords import Passwords
from identity.repository import Accounts
from shared.auth import ROLE_VOLUNTEER, TokenSigner
from shared.contracts.identity import AccountRegistered
from shared.db import UnitOfWork
from shared.errors import AppError


async def sign_up(
    uow: UnitOfWork,
    passwords: Passwords,
    *,
    username: str,
    password: str,
    display_name: str,
    email: str,
    language: str,
) -> Account:
    account = Account(
        id=uuid.uuid4(),
        username=username,
        password_hash=await passwords.hash(password),
        display_name=display_name,
        email=email,
        language=language,
    )
    Accounts(uow.session).add(account)
    try:
        await uow.flush()
    except IntegrityError as exc:
        raise AppError(USERNAME_TAKEN) from exc
    account.raise_event(
        AccountRegistered(
            account_id=account.id,
            username=username,
            display_name=display_name,
            email=email,
            language=language,
        )
    )
    return account


async def log_in(
    uow: UnitOfWork, passwords: Passwords, signer: TokenSigner, *, username: str, password: str, minutes: int
) -> str:
    account = await Accounts(uow.session).by_username(username)
    if account is None or not await passwords.verify(account.password_hash, password):
        raise AppError(INVALID_CREDENTIALS)
    return signer.issue(account.id, roles=[ROLE_VOLUNTEER], ttl=timedelta(minutes=minutes))
