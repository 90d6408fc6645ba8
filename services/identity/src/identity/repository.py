"""Every query of the identity service."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import Account


class Accounts:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, account: Account) -> None:
        self.session.add(account)

    async def by_username(self, username: str) -> Account | None:
        result = await self.session.execute(select(Account).where(Account.username == username))
        return result.scalar_one_or_none()
