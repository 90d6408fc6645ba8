"""Every query of the operator view: listing with filters and a keyset cursor, replaying."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.errors import EMAIL_NOT_FOUND, EMAIL_NOT_REPLAYABLE
from notifications.models import (
    AWAITING_RECIPIENT,
    EMAIL_CHANNEL,
    FAILED,
    PENDING,
    SUPPRESSED,
    Email,
    EmailReplay,
    Recipient,
)
from notifications.outbox import lock_account
from shared.errors import AppError
from shared.pagination import encode_cursor, time_cursor

REPLAYABLE = (FAILED, SUPPRESSED)


@dataclass(frozen=True)
class EmailFilter:
    status: str | None = None
    recipient: str | None = None
    account_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    template: str | None = None


def _filtered(query: Select[Email], f: EmailFilter) -> Select[Email]:
    if f.status:
        query = query.where(Email.status == f.status)
    if f.recipient:
        query = query.where(func.lower(Email.to_address) == f.recipient.strip().lower())
    if f.account_id:
        query = query.where(Email.recipient_account_id == f.account_id)
    if f.event_id:
        query = query.where(Email.event_id == f.event_id)
    if f.template:
        query = query.where(Email.template == f.template)
    return query


async def list_emails(
    session: AsyncSession, f: EmailFilter, *, limit: int, cursor: str | None
) -> tuple[list[Email], str | None]:
    """Newest first; the cursor is the (created_at, id) of the last item of the page."""
    query = _filtered(select(Email), f)
    if cursor:
        created, email_id = time_cursor(cursor)
        query = query.where(or_(Email.created_at < created, and_(Email.created_at == created, Email.id < email_id)))
    query = query.order_by(Email.created_at.desc(), Email.id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None


async def get_email(session: AsyncSession, email_id: uuid.UUID) -> Email:
    email = await session.get(Email, email_id)
    if email is None:
        raise AppError(EMAIL_NOT_FOUND)
    return email


async def replays_of(session: AsyncSession, email_id: uuid.UUID) -> list[EmailReplay]:
    query = select(EmailReplay).where(EmailReplay.email_id == email_id).order_by(EmailReplay.replayed_at)
    return list((await session.execute(query)).scalars())


async def replay(session: AsyncSession, email_id: uuid.UUID, *, by: uuid.UUID, now: datetime) -> None:
    """Back to the queue with fresh attempts, to the recipient's current address; who did it and
    what it was before are audited. An email whose recipient is still unknown (given up on as
    ``recipient_unknown``) waits for it again, the full time from now (see ``awaiting``)."""
    account_id = await session.scalar(select(Email.recipient_account_id).where(Email.id == email_id))
    if account_id is not None:
        # before the email's row, as the recipients handler takes it: a contact change committed
        # meanwhile is read below, one committed later finds the email pending and re-addresses it
        await lock_account(session, account_id)
    email = (await session.execute(select(Email).where(Email.id == email_id).with_for_update())).scalar_one_or_none()
    if email is None:
        raise AppError(EMAIL_NOT_FOUND)
    if email.status not in REPLAYABLE:
        raise AppError(EMAIL_NOT_REPLAYABLE, {"status": email.status})
    readdressed = await _current_address(session, email)
    session.add(
        EmailReplay(
            email_id=email.id,
            replayed_by_account_id=by,
            previous_status=email.status,
            previous_error=email.last_error,
            replayed_at=now,
        )
    )
    await session.execute(
        update(Email)
        .where(Email.id == email.id)
        .values(
            status=PENDING if email.to_address else AWAITING_RECIPIENT,
            attempts=0,
            last_error=None,
            # due now; or, awaiting its recipient, waiting since now
            next_attempt_at=now,
            **readdressed,
        )
    )
    await session.execute(text("SELECT pg_notify(:c, '')"), {"c": EMAIL_CHANNEL})


async def _current_address(session: AsyncSession, email: Email) -> dict[str, str]:
    """The address and name the recipients read model holds now for the email's account (the
    recipient may have corrected the one that failed); nothing when there is no account or the
    email still waits for it. Subject and body stay as rendered, in the language of the time:
    the template's variables are not kept after rendering, so it cannot be rendered again."""
    if email.recipient_account_id is None or not email.to_address:
        return {}
    current = (
        await session.execute(
            select(Recipient.email, Recipient.display_name).where(Recipient.account_id == email.recipient_account_id)
        )
    ).first()
    if current is None:
        return {}
    return {"to_address": current.email, "to_name": current.display_name}
