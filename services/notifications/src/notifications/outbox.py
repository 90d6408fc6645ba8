"""Queueing an email: one row per (event, recipient, template), inserted at most once."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from notifications.models import EMAIL_CHANNEL, Email
from notifications.templates import Templates
from shared.db import UnitOfWork
from shared.messaging.envelope import Envelope


def dedupe_key(event_id: uuid.UUID, recipient: str, template: str) -> str:
    return f"{event_id}:{recipient.strip().lower()}:{template}"


def message_id_for(key: str, domain: str) -> str:
    """A Message-ID derived from the unique key: a resend carries the same id, so mail
    clients and servers can fold the rare double delivery into one."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


async def queue_email(
    uow: UnitOfWork,
    templates: Templates,
    envelope: Envelope,
    *,
    template: str,
    to_address: str,
    to_name: str,
    language: str,
    context: dict[str, Any],
) -> bool:
    """Queue one email; returns False when it was already queued for this event."""
    key = dedupe_key(envelope.event_id, to_address, template)
    rendered = templates.render(template, language, {**context, "name": to_name})
    domain = templates.settings.mail_from_address.rpartition("@")[2] or "localhost"
    result = await uow.session.execute(
        pg_insert(Email)
        .values(
            id=uuid.uuid4(),
            dedupe_key=key,
            event_id=envelope.event_id,
            event_type=envelope.event_type,
            template=template,
            to_address=to_address,
            to_name=to_name,
            language="en" if language == "en" else "zh",
            subject=rendered.subject,
            body_text=rendered.text,
            body_html=rendered.html,
            message_id=message_id_for(key, domain),
        )
        .on_conflict_do_nothing(index_elements=[Email.dedupe_key])
        .returning(Email.id)
    )
    inserted = result.first() is not None
    if inserted:
        await uow.session.execute(text("SELECT pg_notify(:c, '')"), {"c": EMAIL_CHANNEL})
    return inserted
