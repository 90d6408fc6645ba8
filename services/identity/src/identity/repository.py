"""Every query of the identity service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import (
    RECORD_MERGED,
    Account,
    AuditEntry,
    DuplicateCase,
    IdCardUpload,
    PasswordResetToken,
    RefreshToken,
    TeamMembership,
    VolunteerCard,
    VolunteerRecord,
)
from shared.auth import region_prefix


class Accounts:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, account: Account) -> None:
        self.session.add(account)

    async def get(self, account_id: uuid.UUID, *, for_update: bool = False) -> Account | None:
        query = select(Account).where(Account.id == account_id)
        if for_update:
            query = query.with_for_update(of=Account)
        return (await self.session.execute(query)).unique().scalar_one_or_none()

    async def username_taken(self, username: str) -> bool:
        """Whether a sign-up with this username would meet ``ux_accounts_username_lower`` (every
        case-twin's lower-cased name is also its oldest twin's, which that index holds)."""
        query = select(Account.id).where(
            func.lower(Account.username) == func.lower(username), ~Account.username_case_twin
        )
        return (await self.session.scalar(query.limit(1))) is not None

    async def by_username(self, username: str, *, ignoring_case: bool = True) -> Account | None:
        """The account a typed username names: the one with exactly that username, else (unless
        ``ignoring_case`` is false) the one whose username equals it ignoring case, if only one
        does (``ZhangSan`` finds ``zhangsan``).
        Case-twins registered before usernames were unique ignoring case (``username_case_twin``,
        migration 0014) are each found by their own spelling, and by no other.

        One statement, read through the indexes, whatever matches: a known name costs what an
        unknown one costs (the login says nothing about which usernames exist)."""
        folded = func.lower(Account.username) == func.lower(username)
        ways = [Account.username == username]
        if ignoring_case:
            ways += [
                and_(folded, ~Account.username_case_twin),  # ux_accounts_username_lower
                and_(folded, Account.username_case_twin),  # ix_accounts_username_lower_twins
            ]
        query = select(Account).where(or_(*ways)).order_by(case((Account.username == username, 0), else_=1)).limit(2)
        found = (await self.session.execute(query)).unique().scalars().all()
        if found and found[0].username == username:
            return found[0]
        return found[0] if len(found) == 1 else None

    async def by_email(self, email: str, *, limit: int = 5) -> Sequence[Account]:
        query = select(Account).where(func.lower(Account.email) == email.lower()).limit(limit)
        return (await self.session.execute(query)).unique().scalars().all()

    async def due_for_verification(self, now: datetime, limit: int) -> Sequence[Account]:
        query = (
            select(Account)
            .where(Account.verification_status == "pending", Account.verification_due_at <= now)
            .order_by(Account.verification_due_at)
            .limit(limit)
            .with_for_update(of=Account, skip_locked=True)
        )
        return (await self.session.execute(query)).unique().scalars().all()

    async def by_blind_index(self, blind_indexes: Sequence[bytes]) -> Account | None:
        """The account of an ID number, given its index under each key in use (DataCipher.blind_indexes)."""
        query = select(Account).where(Account.id_blind_index.in_(blind_indexes))
        return (await self.session.execute(query)).unique().scalar_one_or_none()


class Records:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, record: VolunteerRecord) -> None:
        self.session.add(record)

    async def live_by_blind_index(self, blind_indexes: Sequence[bytes]) -> Sequence[VolunteerRecord]:
        """The live records of an ID number, indexed under any key in use (DataCipher.blind_indexes)."""
        query = (
            select(VolunteerRecord)
            .where(VolunteerRecord.id_blind_index.in_(blind_indexes), VolunteerRecord.status != RECORD_MERGED)
            .order_by(VolunteerRecord.created_at, VolunteerRecord.id)
        )
        return (await self.session.execute(query)).scalars().all()


class Cases:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, case_id: uuid.UUID, *, for_update: bool = False) -> DuplicateCase | None:
        query = select(DuplicateCase).where(DuplicateCase.id == case_id)
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def page(
        self, *, status: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[DuplicateCase]:
        query = select(DuplicateCase).order_by(DuplicateCase.opened_at, DuplicateCase.id).limit(limit)
        if status:
            query = query.where(DuplicateCase.status == status)
        if after is not None:  # a row comparison: the index seeks to it
            query = query.where(tuple_(DuplicateCase.opened_at, DuplicateCase.id) > tuple_(after[0], after[1]))
        return (await self.session.execute(query)).scalars().all()


class RefreshTokens:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, token: RefreshToken) -> None:
        self.session.add(token)

    async def by_hash(self, token_hash: bytes) -> RefreshToken | None:
        query = select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_account(self, account_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.account_id == account_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )


class ResetTokens:
    """One-use password reset links (V10), stored hashed."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def spend_unused(self, account_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.account_id == account_id, PasswordResetToken.used_at.is_(None))
            .values(used_at=now)
        )


class Audit:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self,
        *,
        subject_account_id: uuid.UUID | None,
        actor_id: uuid.UUID | None,
        action: str | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[AuditEntry]:
        """Newest first."""
        query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
        if subject_account_id is not None:
            query = query.where(AuditEntry.subject_account_id == subject_account_id)
        if actor_id is not None:
            query = query.where(AuditEntry.actor_id == actor_id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if before is not None:
            # a row comparison the index reads as a range from the cursor on (an OR of the two was a
            # filter: a page half a million entries deep read all of them)
            query = query.where(tuple_(AuditEntry.at, AuditEntry.id) < tuple_(*before))
        return (await self.session.execute(query)).scalars().all()

    async def did_since(self, actor_id: uuid.UUID, action: str, subject_account_id: uuid.UUID, since: datetime) -> bool:
        """Whether ``actor_id`` did ``action`` to ``subject_account_id`` at ``since`` or later."""
        query = (
            select(AuditEntry.id)
            .where(
                AuditEntry.subject_account_id == subject_account_id,
                AuditEntry.actor_id == actor_id,
                AuditEntry.action == action,
                AuditEntry.at >= since,
            )
            .limit(1)
        )
        return (await self.session.execute(query)).first() is not None

    def write(
        self,
        *,
        at: datetime,
        actor_id: uuid.UUID | None,
        action: str,
        subject_account_id: uuid.UUID | None = None,
        reason: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        self.session.add(
            AuditEntry(
                at=at,
                actor_id=actor_id,
                action=action,
                subject_account_id=subject_account_id,
                reason=reason,
                detail=detail,
            )
        )


class Reviews:
    """ID-card uploads waiting for (or decided by) a regional admin (V6)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, item: IdCardUpload) -> None:
        self.session.add(item)

    async def get(self, upload_id: uuid.UUID, *, for_update: bool = False) -> IdCardUpload | None:
        query = select(IdCardUpload).where(IdCardUpload.id == upload_id)
        if for_update:
            # read again under the lock, not the copy an earlier read left in the session
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def has_pending(self, account_id: uuid.UUID) -> bool:
        """Whether an upload of the account waits for review."""
        query = select(IdCardUpload.id).where(IdCardUpload.account_id == account_id, IdCardUpload.status == "pending")
        return (await self.session.execute(query.limit(1))).first() is not None

    async def supersede_pending(self, account_id: uuid.UUID) -> None:
        await self.session.execute(
            update(IdCardUpload)
            .where(IdCardUpload.account_id == account_id, IdCardUpload.status == "pending")
            .values(status="superseded", image_ciphertext=None)  # nobody is to see it any more
        )

    async def pending_page(
        self,
        *,
        scope: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        excluding_account_id: uuid.UUID | None = None,
    ) -> Sequence[tuple[IdCardUpload, Account]]:
        query = (
            select(IdCardUpload, Account)
            .join(Account, Account.id == IdCardUpload.account_id)
            .where(IdCardUpload.status == "pending")
            .order_by(IdCardUpload.uploaded_at, IdCardUpload.id)
            .limit(limit)
        )
        if scope is not None:
            # the region's codes as a range of ``ix_id_card_uploads_pending_region`` (digits only: a
            # code starts with the prefix exactly when it lies between it and it filled with 9s)
            prefix = region_prefix(scope)
            query = query.where(IdCardUpload.region_code.between(prefix, prefix.ljust(12, "9")))
        if excluding_account_id is not None:
            query = query.where(IdCardUpload.account_id != excluding_account_id)
        if after is not None:
            query = query.where(tuple_(IdCardUpload.uploaded_at, IdCardUpload.id) > tuple_(*after))
        rows = (await self.session.execute(query)).unique().all()
        return [(row[0], row[1]) for row in rows]


class Memberships:
    """The local read model of team memberships and admins, fed by teams' events (T7)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def set(
        self, team_id: uuid.UUID, account_id: uuid.UUID, now: datetime, sequence: int | None, **flags: bool
    ) -> None:
        """Set ``flags`` as the teams event at outbox ``sequence`` says, each only if no later event
        set it already: an appointment replayed (a dead letter) after the removal that followed it
        leaves the admin removed. An event without a sequence (not from an outbox) is taken as newer."""
        sequences = {f"{flag}_sequence": sequence for flag in flags} if sequence is not None else {}
        statement = pg_insert(TeamMembership).values(
            team_id=team_id, account_id=account_id, updated_at=now, **flags, **sequences
        )
        changes: dict[str, Any] = {"updated_at": now}
        for flag, value in flags.items():
            if sequence is None:
                changes[flag] = value
                continue
            last = getattr(TeamMembership, f"{flag}_sequence")
            newer = or_(last.is_(None), last < sequence)
            changes[flag] = case((newer, value), else_=getattr(TeamMembership, flag))
            changes[f"{flag}_sequence"] = case((newer, sequence), else_=last)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[TeamMembership.team_id, TeamMembership.account_id], set_=changes
            )
        )

    async def is_admin_of_any(self, account_id: uuid.UUID) -> bool:
        query = select(TeamMembership.team_id).where(
            TeamMembership.account_id == account_id, TeamMembership.admin.is_(True)
        )
        return (await self.session.execute(query.limit(1))).first() is not None

    async def team_role_of(self, account_id: uuid.UUID) -> str | None:
        """``"team_admin"`` if the account administers any team, else ``"project_lead"`` if it leads
        any team's projects, else None (a plain member wherever it belongs)."""
        query = select(
            func.bool_or(TeamMembership.admin), func.bool_or(TeamMembership.member & TeamMembership.project_lead)
        ).where(TeamMembership.account_id == account_id)
        admin, lead = (await self.session.execute(query)).one()
        return "team_admin" if admin else "project_lead" if lead else None

    async def get(self, team_id: uuid.UUID, account_id: uuid.UUID) -> TeamMembership | None:
        return await self.session.get(TeamMembership, (team_id, account_id))


class Lookups:
    """The per-admin lookup budget (T7), counted from the audit log under a per-actor lock."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def recent(self, actor_id: uuid.UUID, now: datetime) -> int:
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('lookup:' || :actor))"), {"actor": str(actor_id)}
        )
        query = select(func.count()).where(
            AuditEntry.actor_id == actor_id,
            AuditEntry.action == "volunteer_lookup",
            AuditEntry.at > now - timedelta(hours=1),
        )
        return int((await self.session.execute(query)).scalar_one())


class Cards:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, card: VolunteerCard) -> None:
        self.session.add(card)

    async def get(self, card_id: uuid.UUID) -> VolunteerCard | None:
        return await self.session.get(VolunteerCard, card_id)

    async def current_for(self, account_id: uuid.UUID) -> VolunteerCard | None:
        query = select(VolunteerCard).where(VolunteerCard.account_id == account_id, VolunteerCard.revoked_at.is_(None))
        return (await self.session.execute(query)).scalar_one_or_none()

    async def revoke_current(self, account_id: uuid.UUID, now: datetime) -> None:
        """Every card of the account not yet revoked (a lost one stops being current)."""
        await self.session.execute(
            update(VolunteerCard)
            .where(VolunteerCard.account_id == account_id, VolunteerCard.revoked_at.is_(None))
            .values(revoked_at=now)
        )
