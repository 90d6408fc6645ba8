"""Every query of the operator view: listing with filters and a keyset cursor, replaying one email
or, after an incident, every failed email a filter matches (:func:`bulk_replay`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, bindparam, func, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.errors import (
    EMAIL_LINK_NOT_KEPT,
    EMAIL_NOT_FOUND,
    EMAIL_NOT_RENDERED,
    EMAIL_NOT_REPLAYABLE,
    REPLAY_FILTER_REQUIRED,
    REPLAY_TEMPLATE_UNKNOWN,
    REPLAY_TIME_RANGE_INVALID,
)
from notifications.models import (
    AWAITING_RECIPIENT,
    EMAIL_CHANNEL,
    FAILED,
    PENDING,
    RENDER_FAILED,
    SUPPRESSED,
    WITHHELD_BODIES,
    Email,
    EmailReplay,
    Recipient,
)
from notifications.outbox import lock_account, try_lock_accounts
from notifications.templates import TEMPLATE_NAMES
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
        # a row comparison, which the index reads as a range from the cursor on (an OR of the two
        # was only a filter: a page deep in the list read every email back to the newest)
        query = query.where(tuple_(Email.created_at, Email.id) < tuple_(created, email_id))
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
    if email.template in WITHHELD_BODIES:
        raise AppError(EMAIL_LINK_NOT_KEPT)
    if _not_rendered(email.last_error):
        raise AppError(EMAIL_NOT_RENDERED)  # it would go out empty
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


def _not_rendered(last_error: str | None) -> bool:
    return last_error is not None and last_error.startswith(f"{RENDER_FAILED}:")


# -- bulk replay ---------------------------------------------------------------------------------
#: emails one bulk replay call takes at most: the operator repeats the call while some remain
BULK_REPLAY_MAX = 1000


@dataclass(frozen=True)
class ReplayFilter:
    """Which failed emails a bulk replay takes: every condition given must hold."""

    template: str | None = None
    #: the start of the failure reason: ``recipient_unknown``, an SMTP code (``550``, ``421``),
    #: ``cannot connect`` ...
    error_prefix: str | None = None
    #: queued at or after
    created_from: datetime | None = None
    #: queued before
    created_before: datetime | None = None
    event_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None

    def narrows(self) -> bool:
        return any(
            value is not None
            for value in (
                self.template,
                self.error_prefix,
                self.created_from,
                self.created_before,
                self.event_id,
                self.account_id,
            )
        )

    def check(self, *, all_failed: bool) -> None:
        """Refuse a filter that would replay everything by accident, or nothing by a typo."""
        if not self.narrows() and not all_failed:
            raise AppError(REPLAY_FILTER_REQUIRED)
        if self.created_from and self.created_before and self.created_from >= self.created_before:
            raise AppError(REPLAY_TIME_RANGE_INVALID)
        if self.template is not None and self.template not in TEMPLATE_NAMES:
            raise AppError(REPLAY_TEMPLATE_UNKNOWN, params={"template": self.template})

    def conditions(self) -> list[ColumnElement[bool]]:
        """The failed emails matching: only ``failed`` ones. A ``suppressed`` email is the rate
        limit's decision against a flood; releasing one stays a deliberate single replay."""
        # nor emails whose one-use link is not kept (WITHHELD_BODIES), nor those that could not be
        # rendered (they have nothing to send)
        where: list[ColumnElement[bool]] = [
            Email.status == FAILED,
            Email.template.not_in(WITHHELD_BODIES),
            or_(Email.last_error.is_(None), ~Email.last_error.startswith(f"{RENDER_FAILED}:", autoescape=True)),
        ]
        if self.template is not None:
            where.append(Email.template == self.template)
        if self.error_prefix is not None:
            where.append(Email.last_error.startswith(self.error_prefix, autoescape=True))
        if self.created_from is not None:
            where.append(Email.created_at >= self.created_from)
        if self.created_before is not None:
            where.append(Email.created_at < self.created_before)
        if self.event_id is not None:
            where.append(Email.event_id == self.event_id)
        if self.account_id is not None:
            where.append(Email.recipient_account_id == self.account_id)
        return where


@dataclass(frozen=True)
class BulkReplayed:
    #: the emails this call replayed (none in a dry run)
    email_ids: list[uuid.UUID]
    #: matching failed emails this call left: all of them in a dry run; otherwise those past the
    #: cap, those another replay held at that moment, and those of an account whose address was
    #: being stored at that moment (the next call takes them)
    remaining: int


async def count_failed(session: AsyncSession, f: ReplayFilter) -> int:
    return int(await session.scalar(select(func.count()).select_from(Email).where(*f.conditions())) or 0)


#: the chosen emails, audited and back in the queue, in one statement. Per email as
#: :func:`replay`: attempts afresh, due now, to the account's current address (an email still
#: without one waits for it again, the full time from now); the sender is woken at commit.
_BULK_REPLAY = text(
    f"""
    WITH chosen AS (
        SELECT e.id, e.status, e.last_error, r.email AS current_address, r.display_name AS current_name
          FROM emails e
          LEFT JOIN recipients r ON r.account_id = e.recipient_account_id AND e.to_address <> ''
         WHERE e.id = ANY(CAST(:ids AS uuid[])) AND e.status = '{FAILED}'
    ), replayed AS (
        UPDATE emails e
           SET status = CASE WHEN e.to_address = '' THEN '{AWAITING_RECIPIENT}' ELSE '{PENDING}' END,
               attempts = 0,
               last_error = NULL,
               next_attempt_at = :now,
               to_address = coalesce(c.current_address, e.to_address),
               to_name = coalesce(c.current_name, e.to_name)
          FROM chosen c
         WHERE e.id = c.id
        RETURNING e.id
    ), audited AS (
        INSERT INTO email_replays (id, email_id, replayed_by_account_id, previous_status, previous_error, replayed_at)
        SELECT gen_random_uuid(), c.id, :by, c.status, c.last_error, :now
          FROM chosen c JOIN replayed USING (id)
        RETURNING email_id
    )
    SELECT email_id, pg_notify('{EMAIL_CHANNEL}', '') FROM audited
    """  # noqa: S608 - module constants only
).bindparams(bindparam("by", type_=Email.id.type), bindparam("now", type_=Email.created_at.type))


async def bulk_replay(
    session: AsyncSession, f: ReplayFilter, *, by: uuid.UUID, now: datetime, limit: int, dry_run: bool = False
) -> BulkReplayed:
    """Replay at most ``limit`` failed emails matching the filter, oldest first, in a fixed number
    of statements whatever the count: claim, lock their accounts, replay and audit, count the rest.

    Two operators (or two replicas) running it at once take disjoint emails: the claim skips the
    rows another call holds (``SKIP LOCKED``) and the replay only changes rows still failed. The
    accounts' recipient locks (what :func:`replay` takes before the row) are taken after the rows
    here, so without waiting: an account whose address a recipients handler is storing at that
    moment has its emails left for the next call instead of risking a deadlock with it. The
    replay statement runs after the locks are held, so it reads the address any contact change
    committed before; one committed later finds the emails pending and re-addresses them."""
    if dry_run:
        return BulkReplayed(email_ids=[], remaining=await count_failed(session, f))
    claim = (
        select(Email.id, Email.recipient_account_id)
        .where(*f.conditions())
        .order_by(Email.created_at, Email.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = (await session.execute(claim)).all()
    busy = await try_lock_accounts(session, {account for _, account in claimed if account is not None})
    ids = [email_id for email_id, account in claimed if account is None or account not in busy]
    replayed: list[uuid.UUID] = []
    if ids:
        result = await session.execute(_BULK_REPLAY, {"ids": ids, "by": by, "now": now})
        replayed = [row[0] for row in result]
    return BulkReplayed(email_ids=replayed, remaining=await count_failed(session, f))
