"""Queueing an email: one row per (event, recipient, template), inserted at most once.

An email to an account whose address the recipients read model does not hold yet (its
``account.registered`` has not arrived) is never dropped: it is stored as
``awaiting_recipient`` with the account id and the template's variables, and rendered and
made ``pending`` in the transaction that brings the account into the read model (should that
never happen, it is given up on after ``awaiting_recipient_max_hours``: ``awaiting``; one that no
longer renders is marked failed on its own, ``render_failed``, and the account is stored). When an
account's contact changes, its emails not yet sent follow to the new address
(:func:`readdress_pending`).

Per-recipient rate limits (settings ``mail_rate_limits``) keep the excess of a flood as
``suppressed`` rows with the reason, visible to operators, instead of sending them. They count by
mailbox (accounts sharing one address share its limit) and, for review reminders, per team: a
reviewer of many teams hears of each (the teams service lets a team remind once a day).
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import DateTime, Table, bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.models import (
    AWAITING_RECIPIENT,
    BODY_FORGOTTEN,
    EMAIL_CHANNEL,
    FAILED,
    PENDING,
    RENDER_FAILED,
    SUPPRESSED,
    WITHHELD_BODIES,
    Email,
    Recipient,
)
from notifications.sender import FAILED as FAILED_TOTAL
from notifications.templates import Templates
from notifications.transport import smtp_address
from shared.db import UnitOfWork
from shared.logging import get_logger
from shared.messaging.envelope import Envelope

log = get_logger("notifications.outbox")


def dedupe_key(event_id: uuid.UUID, recipient: str, template: str) -> str:
    return f"{event_id}:{recipient.strip().lower()}:{template}"


def account_key(account_id: uuid.UUID) -> str:
    return f"account:{account_id}"


def rate_key(recipient_key: str, address: str | None, scope: str | None = None) -> str:
    """What a rate limit counts by: the mailbox when its address is known, else the recipient;
    per ``scope`` when the template is limited per subject, after a space (which no address holds
    unquoted, so the scope is found again when the email is addressed later: :func:`readdressed`)."""
    base = address.strip().lower() if address else recipient_key
    return f"{base} {scope}" if scope else base


def readdressed(key: str | None, address: str) -> str:
    """The rate key of an email now addressed to ``address`` (it waited for its recipient, or the
    recipient's address changed): the new mailbox's, with the same scope."""
    _, space, scope = (key or "").partition(" ")
    return rate_key("", address, scope if space else None)


def message_id_for(key: str, domain: str) -> str:
    """A Message-ID derived from the unique key: a resend carries the same id, so mail
    clients and servers can fold the rare double delivery into one."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def _language(language: str | None) -> str:
    return "en" if language == "en" else "zh"


async def queue_for_account(
    uow: UnitOfWork,
    templates: Templates,
    envelope: Envelope,
    *,
    template: str,
    account_id: uuid.UUID,
    context: dict[str, Any],
    limited: bool = True,
    rate_scope: str | None = None,
) -> bool:
    """Queue one email to an account, addressed from the recipients read model (or kept
    awaiting the account when the read model does not know it yet). ``limited=False``: an email
    of a limited template that no user can trigger at will (the national admin's reset) is never
    held back by the template's rate limit. ``rate_scope``: the subject the limit counts per
    (see :func:`rate_key`)."""
    # Serialised with the recipients handler: otherwise this could miss a recipient committed
    # meanwhile and park the email as awaiting after the resolution already ran.
    # (Two statements on purpose: one statement's snapshot is taken before it waits for the lock.)
    await lock_recipient(uow, account_id)
    known = (await uow.session.execute(_RECIPIENT, {"account_id": account_id})).first()
    row = await _row(
        uow,
        templates,
        envelope,
        template=template,
        recipient_key=account_key(account_id),
        account_id=account_id,
        recipient=(known.email, known.display_name, known.language) if known else None,
        context=context,
        limited=limited,
        rate_scope=rate_scope,
    )
    return await _insert(uow, row)


_RECIPIENTS = cast(Table, Recipient.__table__)
_RECIPIENT = select(_RECIPIENTS.c.email, _RECIPIENTS.c.display_name, _RECIPIENTS.c.language).where(
    _RECIPIENTS.c.account_id == bindparam("account_id")
)


async def queue_for_accounts(
    uow: UnitOfWork,
    templates: Templates,
    envelope: Envelope,
    *,
    template: str,
    account_ids: list[uuid.UUID],
    context: dict[str, Any],
    rate_scope: str | None = None,
) -> int:
    """One email per distinct account (an account listed twice gets one)."""
    return await queue_for_each(
        uow,
        templates,
        envelope,
        template=template,
        contexts=dict.fromkeys(account_ids, context),
        rate_scope=rate_scope,
    )


async def queue_for_each(
    uow: UnitOfWork,
    templates: Templates,
    envelope: Envelope,
    *,
    template: str,
    contexts: dict[uuid.UUID, dict[str, Any]],
    rate_scope: str | None = None,
) -> int:
    """One email per account, each with its own variables (an account's role in the event)."""
    queued = 0
    # in the order of the locks' keys, the order the recipients handler takes them in too, so
    # concurrent handlers do not deadlock (a run lost to one anyway is run again at no attempt's cost)
    for account_id in sorted(contexts, key=lambda a: _lock_key(str(a))):
        queued += await queue_for_account(
            uow,
            templates,
            envelope,
            template=template,
            account_id=account_id,
            context=contexts[account_id],
            rate_scope=rate_scope,
        )
    return queued


async def _insert(uow: UnitOfWork, row: dict[str, Any]) -> bool:
    """Insert one email's row; False when it was already there."""
    # a pending email wakes the sender in the same round trip as its insert (and only if inserted)
    statement = _INSERT_EMAIL_AND_NOTIFY if row["status"] == PENDING else _INSERT_EMAIL
    result = await uow.session.execute(statement, row)
    return result.first() is not None


async def _row(
    uow: UnitOfWork,
    templates: Templates,
    envelope: Envelope,
    *,
    template: str,
    recipient_key: str,
    account_id: uuid.UUID | None,
    recipient: tuple[str, str, str] | None,
    context: dict[str, Any],
    limited: bool = True,
    rate_scope: str | None = None,
    earlier: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The email's row: rendered when the recipient is known, its status set by the rate limits
    (counting the ``earlier`` rows of the same batch, not inserted yet, with those stored)."""
    settings = templates.settings
    now = uow.clock.now()
    key = dedupe_key(envelope.event_id, recipient_key, template)
    domain = smtp_address(settings.mail_from_address).rpartition("@")[2]  # in its ASCII form
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "dedupe_key": key,
        "event_id": envelope.event_id,
        "event_type": envelope.event_type,
        "template": template,
        "recipient_key": recipient_key,
        "rate_key": rate_key(recipient_key, recipient[0] if recipient else None, rate_scope),
        "recipient_account_id": account_id,
        # the variables are kept only until the email can be rendered (they may hold a one-use link)
        "context": context if recipient is None else None,
        "message_id": message_id_for(key, domain),
        "created_at": now,
        "next_attempt_at": now,
        **_addressed(templates, template, context, recipient),
    }
    limits = settings.mail_rate_limits if limited else {}
    reason = await _rate_limited(uow, limits, settings.mail_rate_window_seconds, now, values, earlier)
    if reason is not None:
        values.update(status=SUPPRESSED, last_error=reason)
        if template in WITHHELD_BODIES and settings.mail_transport != "mailbox":
            # held back, its one-use link is kept nowhere (nor replayed: the person asks again)
            values.update(body_text=BODY_FORGOTTEN, body_html=BODY_FORGOTTEN, context=None)
    elif recipient is None:
        values["status"] = AWAITING_RECIPIENT
    else:
        values["status"] = PENDING
    values.setdefault("last_error", None)
    return values


@dataclass(frozen=True)
class Addressed:
    """An email to an address the event itself carries (see :func:`queue_emails`)."""

    envelope: Envelope
    template: str
    to_address: str
    to_name: str
    language: str
    context: dict[str, Any]
    #: the account it concerns, when there is one: a replay, or a contact change while it waits,
    #: then sends it to the address the account holds by then
    account_id: uuid.UUID | None = None


async def queue_emails(uow: UnitOfWork, templates: Templates, emails: list[Addressed]) -> int:
    """Queue emails to addresses their events carry (a batch's in one statement); returns how many
    were new (a redelivered event's email is already there). A batch counts for the rate limits as
    its emails would one by one (twelve sign-ups with one address in a batch are twelve welcomes):
    the limited ones' locks are taken first, in one order, so concurrent batches never wait for
    each other in a cycle."""
    limits = templates.settings.mail_rate_limits
    # a redelivered event's email (stored already, or twice in the batch) is no new email: left out
    # before counting, or it would count once stored and again as an earlier row of the batch
    keys = [dedupe_key(e.envelope.event_id, e.to_address.strip().lower(), e.template) for e in emails]
    stored = set((await uow.session.execute(_STORED_KEYS, {"keys": keys})).scalars()) if keys else set()
    fresh: dict[str, Addressed] = {}
    for key, e in zip(keys, emails, strict=True):
        if key not in stored:
            fresh.setdefault(key, e)
    emails = list(fresh.values())
    held = {
        f"{rate_key(e.to_address.strip().lower(), e.to_address)}:{e.template}" for e in emails if e.template in limits
    }
    await _lock_many(uow, _RATE_LOCKS, [_lock_key(key) for key in held])
    rows: list[dict[str, Any]] = []
    for e in emails:
        rows.append(
            await _row(
                uow,
                templates,
                e.envelope,
                template=e.template,
                recipient_key=e.to_address.strip().lower(),
                account_id=e.account_id,
                recipient=(e.to_address, e.to_name, e.language),
                context=e.context,
                earlier=rows,
            )
        )
    if not rows:
        return 0
    if len(rows) == 1:  # with the sender's wake-up in the same round trip
        return int(await _insert(uow, rows[0]))
    inserted = (await uow.session.execute(_INSERT_EMAIL_WITH_STATUS, rows)).all()
    if any(status == PENDING for _, status in inserted):
        await notify_sender(uow)
    return len(inserted)


# Core statements with bound parameters, compiled once and cached (an ORM insert with inline
# values costs a cache-key walk per email).
_EMAILS = cast(Table, Email.__table__)
_STORED_KEYS = select(_EMAILS.c.dedupe_key).where(_EMAILS.c.dedupe_key == func.any(bindparam("keys")))
_INSERTED_COLUMNS = (
    "id",
    "dedupe_key",
    "event_id",
    "event_type",
    "template",
    "recipient_key",
    "rate_key",
    "recipient_account_id",
    "context",
    "message_id",
    "created_at",
    "next_attempt_at",
    "to_address",
    "to_name",
    "language",
    "subject",
    "body_text",
    "body_html",
    "status",
    "last_error",
)
_INSERT_EMAIL = (
    pg_insert(_EMAILS)
    .values({name: bindparam(name, type_=_EMAILS.c[name].type) for name in _INSERTED_COLUMNS})
    .on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(_EMAILS.c.id)
)
_INSERT_EMAIL_WITH_STATUS = (
    pg_insert(_EMAILS)
    .values({name: bindparam(name, type_=_EMAILS.c[name].type) for name in _INSERTED_COLUMNS})
    .on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(_EMAILS.c.id, _EMAILS.c.status)
)
_INSERTED = _INSERT_EMAIL.cte("inserted")
_INSERT_EMAIL_AND_NOTIFY = select(_INSERTED.c.id, func.pg_notify(EMAIL_CHANNEL, ""))


def _addressed(
    templates: Templates, template: str, context: dict[str, Any], recipient: tuple[str, str, str] | None
) -> dict[str, Any]:
    if recipient is None:
        return {"to_address": "", "to_name": "", "language": "zh", "subject": "", "body_text": "", "body_html": ""}
    address, name, language = recipient
    rendered = templates.render(template, language, {**context, "name": name})
    return {
        "to_address": address,
        "to_name": name,
        "language": _language(language),
        "subject": rendered.subject,
        "body_text": rendered.text,
        "body_html": rendered.html,
    }


async def _rate_limited(
    uow: UnitOfWork,
    limits: dict[str, int],
    window_seconds: int,
    now: datetime,
    values: dict[str, Any],
    earlier: Sequence[dict[str, Any]] = (),
) -> str | None:
    limit = limits.get(values["template"])
    if limit is None:
        return None
    # Serialise concurrent handlers counting for the same recipient and template, so two
    # simultaneous requests cannot both slip under the limit.
    await _advisory_lock(uow, _RATE_LOCKS, f"{values['rate_key']}:{values['template']}")
    since = now - timedelta(seconds=window_seconds)
    count = await uow.session.scalar(
        select(func.count())
        .select_from(Email)
        .where(
            Email.rate_key == values["rate_key"],
            Email.template == values["template"],
            Email.created_at > since,
            Email.status != SUPPRESSED,
        )
    )
    count = (count or 0) + sum(
        1
        for row in earlier
        if (row["rate_key"], row["template"]) == (values["rate_key"], values["template"])
        and row["status"] != SUPPRESSED
    )
    if count < limit:
        return None
    return f"rate limit: at most {limit} '{values['template']}' emails per mailbox per {window_seconds} s"


_AWAITING = (
    select(_EMAILS.c.id, _EMAILS.c.template, _EMAILS.c.context, _EMAILS.c.status, _EMAILS.c.rate_key)
    .where(_EMAILS.c.recipient_account_id == bindparam("account_id"), _EMAILS.c.to_address == "")
    .with_for_update()
)


_AWAITING_ANY = (
    select(
        _EMAILS.c.id,
        _EMAILS.c.template,
        _EMAILS.c.context,
        _EMAILS.c.status,
        _EMAILS.c.rate_key,
        _EMAILS.c.recipient_account_id,
    )
    .where(_EMAILS.c.recipient_account_id == func.any(bindparam("account_ids")), _EMAILS.c.to_address == "")
    .with_for_update()
)


async def resolve_awaiting(uow: UnitOfWork, templates: Templates, recipient: Recipient) -> int:
    """Render and release the emails that waited for this account's address."""
    return await resolve_awaiting_many(uow, templates, [recipient])


async def resolve_awaiting_many(uow: UnitOfWork, templates: Templates, recipients: list[Recipient]) -> int:
    """Render and release the emails that waited for these accounts' addresses."""
    if not recipients:
        return 0
    if len(recipients) == 1:
        waiting = [
            (*row, recipients[0].account_id)
            for row in (await uow.session.execute(_AWAITING, {"account_id": recipients[0].account_id})).all()
        ]
    else:
        ids = [r.account_id for r in recipients]
        waiting = [tuple(row) for row in (await uow.session.execute(_AWAITING_ANY, {"account_ids": ids})).all()]
    by_account = {r.account_id: r for r in recipients}
    for email_id, template, context, status, key, account_id in waiting:
        recipient = by_account[account_id]
        if context is None and template in WITHHELD_BODIES:
            # a one-use link held back by the limit (its variables not kept): addressed, not rendered
            addressed = {
                "to_address": recipient.email,
                "to_name": recipient.display_name,
                "language": _language(recipient.language),
                "subject": "",
                "body_text": BODY_FORGOTTEN,
                "body_html": BODY_FORGOTTEN,
            }
        else:
            try:
                addressed = _addressed(
                    templates,
                    template,
                    context or {},
                    (recipient.email, recipient.display_name, recipient.language),
                )
            except Exception as exc:
                # Each email on its own: one that no longer renders (its variables stored by an older
                # release that lacked some a newer template needs) must not fail the handler, which
                # would dead-letter the account's registration and leave all its later mail waiting.
                await _render_failed(uow, email_id, template, key, recipient, exc)
                continue
        await uow.session.execute(
            update(Email)
            .where(Email.id == email_id)
            .values(
                **addressed,
                # a suppressed email, or one given up on as recipient_unknown, is addressed but
                # stays as it is: it leaves only when an operator replays it
                status=PENDING if status == AWAITING_RECIPIENT else status,
                # its mailbox's limits count it from now on (queued, it was counted as the account's)
                rate_key=readdressed(key, recipient.email),
                context=None,
                next_attempt_at=uow.clock.now(),
            )
        )
    if waiting:
        await notify_sender(uow)
    return len(waiting)


async def _render_failed(
    uow: UnitOfWork, email_id: uuid.UUID, template: str, key: str | None, recipient: Recipient, exc: Exception
) -> None:
    """Mark a waiting email that cannot be rendered failed, addressed (operators find it under the
    recipient's address) but with nothing to send. The reason and the log name the error's type
    only: its message may quote the variables (names, titles)."""
    reason = f"{RENDER_FAILED}: {type(exc).__name__}"
    await uow.session.execute(
        update(Email)
        .where(Email.id == email_id)
        .values(
            to_address=recipient.email,
            to_name=recipient.display_name,
            language=_language(recipient.language),
            subject="",
            body_text="",
            body_html="",
            status=FAILED,
            last_error=reason,
            rate_key=readdressed(key, recipient.email),
            context=None,
            # a final state from now: the retention counts from here
            next_attempt_at=uow.clock.now(),
        )
    )
    FAILED_TOTAL.labels(template).inc()
    log.error("email_render_failed", email_id=str(email_id), template=template, error=type(exc).__name__)


#: an account's pending emails, to its current address and name (from the read model)
_READDRESS_PENDING = (
    update(_EMAILS)
    .where(
        _RECIPIENTS.c.account_id == func.any(bindparam("account_ids")),
        _EMAILS.c.recipient_account_id == _RECIPIENTS.c.account_id,
        _EMAILS.c.status == PENDING,
        _EMAILS.c.to_address != "",
        tuple_(_EMAILS.c.to_address, _EMAILS.c.to_name).is_distinct_from(
            tuple_(_RECIPIENTS.c.email, _RECIPIENTS.c.display_name)
        ),
    )
    .values(
        to_address=_RECIPIENTS.c.email,
        to_name=_RECIPIENTS.c.display_name,
        # the new mailbox's rate key, with the scope after the space (see ``readdressed``)
        rate_key=func.lower(func.btrim(_RECIPIENTS.c.email))
        + func.coalesce(
            func.nullif(func.substr(_EMAILS.c.rate_key, func.strpos(_EMAILS.c.rate_key, " ")), _EMAILS.c.rate_key), ""
        ),
    )
)


async def readdress_pending(uow: UnitOfWork, account_ids: list[uuid.UUID]) -> int:
    """Emails of these accounts not sent yet go to the address and name the read model now holds
    (call it after storing their contact change, under the recipients' locks). Returns how many.

    Only the envelope and the To header follow: the subject and body stay as they were rendered,
    in the language and with the name of the time, because the template's variables are not kept
    once an email is rendered (they may hold a one-use link), so it cannot be rendered again.
    An email a send loop already holds goes out to the address it was claimed with."""
    if not account_ids:
        return 0
    result = await uow.session.execute(
        _READDRESS_PENDING, {"account_ids": account_ids}, execution_options={"synchronize_session": False}
    )
    return int(getattr(result, "rowcount", 0) or 0)


#: lock the account (serialising with queue_for_account) and upsert it, in one round trip: the
#: INSERT pulls its row from the lock's SELECT, so the lock is held before the row is written
_STORE_RECIPIENT = text(
    """
    WITH locked AS (SELECT pg_advisory_xact_lock(:namespace, :lock_key))
    INSERT INTO recipients (account_id, email, display_name, language, updated_at)
    SELECT :account_id, :email, :display_name, :language, :updated_at FROM locked
    ON CONFLICT (account_id) DO UPDATE
       SET email = excluded.email, display_name = excluded.display_name,
           language = excluded.language, updated_at = excluded.updated_at
     -- an older event arriving late never overwrites a newer address
     WHERE recipients.updated_at <= excluded.updated_at
    RETURNING account_id
    """
).bindparams(
    bindparam("account_id", type_=UUID(as_uuid=True)),
    bindparam("updated_at", type_=DateTime(timezone=True)),
)


async def store_recipient(uow: UnitOfWork, recipient: Recipient, updated_at: datetime) -> bool:
    """Keep the read model's row of the account; False when the event is older than what it holds."""
    stored = await uow.session.execute(
        _STORE_RECIPIENT,
        {
            "namespace": _RECIPIENT_LOCKS,
            "lock_key": _lock_key(str(recipient.account_id)),
            "account_id": recipient.account_id,
            "email": recipient.email,
            "display_name": recipient.display_name,
            "language": recipient.language,
            "updated_at": updated_at,
        },
    )
    return stored.first() is not None


#: the same for a batch of accounts (distinct ids): every lock first, in one order (no deadlock
#: between two batches), then the upsert of every row
_STORE_RECIPIENTS = text(
    """
    WITH locked AS (
        SELECT count(pg_advisory_xact_lock(:namespace, k)) AS n
          FROM (SELECT k FROM unnest(CAST(:lock_keys AS int[])) AS k ORDER BY k) AS keys
    )
    INSERT INTO recipients (account_id, email, display_name, language, updated_at)
    SELECT t.account_id, t.email, t.display_name, t.language, t.updated_at
      FROM locked,
           unnest(CAST(:account_ids AS uuid[]), CAST(:emails AS text[]), CAST(:display_names AS text[]),
                  CAST(:languages AS text[]), CAST(:updated_ats AS timestamptz[]))
             AS t(account_id, email, display_name, language, updated_at)
     WHERE locked.n >= 0
    ON CONFLICT (account_id) DO UPDATE
       SET email = excluded.email, display_name = excluded.display_name,
           language = excluded.language, updated_at = excluded.updated_at
     WHERE recipients.updated_at <= excluded.updated_at
    RETURNING account_id
    """
)


async def store_recipients(uow: UnitOfWork, recipients: list[tuple[Recipient, datetime]]) -> set[uuid.UUID]:
    """:func:`store_recipient` for several accounts in one statement; the ids actually stored."""
    if len(recipients) == 1:
        recipient, updated_at = recipients[0]
        return {recipient.account_id} if await store_recipient(uow, recipient, updated_at) else set()
    stored = await uow.session.execute(
        _STORE_RECIPIENTS,
        {
            "namespace": _RECIPIENT_LOCKS,
            "lock_keys": [_lock_key(str(r.account_id)) for r, _ in recipients],
            "account_ids": [r.account_id for r, _ in recipients],
            "emails": [r.email for r, _ in recipients],
            "display_names": [r.display_name for r, _ in recipients],
            "languages": [r.language for r, _ in recipients],
            "updated_ats": [at for _, at in recipients],
        },
    )
    return set(stored.scalars())


_RECIPIENT_LOCKS = 6001
_RATE_LOCKS = 6002

#: locks of one namespace, every one in one order (that of the recipients handler's batches: no
#: deadlock with them, nor between two callers)
_LOCK_MANY = text(
    """
    SELECT count(pg_advisory_xact_lock(:namespace, k))
      FROM (SELECT k FROM unnest(CAST(:keys AS int[])) AS k ORDER BY k) AS keys
    """
)

_NEWER_RECIPIENTS = select(
    _RECIPIENTS.c.account_id,
    _RECIPIENTS.c.email,
    _RECIPIENTS.c.display_name,
    _RECIPIENTS.c.language,
    _RECIPIENTS.c.updated_at,
).where(_RECIPIENTS.c.account_id == func.any(bindparam("account_ids")))


async def newer_recipients(
    uow: UnitOfWork, known_at: dict[uuid.UUID, datetime]
) -> dict[uuid.UUID, tuple[str, str, str]]:
    """The (address, name, language) the read model holds for those of these accounts whose contact
    there is newer than the moment given (an event's), as the read model orders its updates; taken
    under the accounts' recipient locks, so no contact change commits between this and the
    caller's insert (one committed after finds the caller's emails pending and re-addresses them)."""
    if not known_at:
        return {}
    await _lock_many(uow, _RECIPIENT_LOCKS, [_lock_key(str(account_id)) for account_id in known_at])
    # a statement of its own, after the locks: its snapshot sees what committed before they were had
    rows = await uow.session.execute(_NEWER_RECIPIENTS, {"account_ids": list(known_at)})
    return {
        row.account_id: (row.email, row.display_name, row.language)
        for row in rows
        # the read model keeps an event's contact unless it holds one at least as new
        if row.updated_at > known_at[row.account_id]
    }


async def lock_recipient(uow: UnitOfWork, account_id: uuid.UUID) -> None:
    await lock_account(uow.session, account_id)


async def _lock_many(uow: UnitOfWork, namespace: int, keys: list[int]) -> None:
    """These keys' transaction-scoped locks, in one statement and one order."""
    if keys:
        await uow.session.execute(_LOCK_MANY, {"namespace": namespace, "keys": sorted(set(keys))})


async def lock_account(session: AsyncSession, account_id: uuid.UUID) -> None:
    """The account's recipient lock (as :func:`lock_recipient`), for a plain session."""
    await session.execute(_LOCK, {"n": _RECIPIENT_LOCKS, "k": _lock_key(str(account_id))})


#: the keys of these accounts' locks that another transaction holds (each other one is now this
#: transaction's): never waits, so it may be taken while holding emails' row locks
_TRY_LOCKS = text(
    """
    SELECT k FROM unnest(CAST(:keys AS int[])) AS k
     WHERE NOT pg_try_advisory_xact_lock(:namespace, k)
    """
)


async def try_lock_accounts(session: AsyncSession, account_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Take the recipient locks of these accounts that are free; returns the accounts whose lock
    another transaction (a recipients handler, a replay) holds. Unlike :func:`lock_account` it never
    waits: a caller already holding emails' row locks would otherwise deadlock with a recipients
    handler that holds an account's lock and waits for those rows."""
    if not account_ids:
        return set()
    keys = {account_id: _lock_key(str(account_id)) for account_id in account_ids}
    busy = set(
        (await session.execute(_TRY_LOCKS, {"namespace": _RECIPIENT_LOCKS, "keys": sorted(set(keys.values()))}))
        .scalars()
        .all()
    )
    return {account_id for account_id, key in keys.items() if key in busy}


def _lock_key(key: str) -> int:
    digest = zlib.crc32(key.encode())
    return digest - 2**32 if digest >= 2**31 else digest


_LOCK = text("SELECT pg_advisory_xact_lock(:n, :k)")
_NOTIFY = text(f"SELECT pg_notify('{EMAIL_CHANNEL}', '')")


async def _advisory_lock(uow: UnitOfWork, namespace: int, key: str) -> None:
    """A transaction-scoped lock on (namespace, key): released at commit or rollback."""
    await uow.session.execute(_LOCK, {"n": namespace, "k": _lock_key(key)})


async def notify_sender(uow: UnitOfWork) -> None:
    await uow.session.execute(_NOTIFY)
