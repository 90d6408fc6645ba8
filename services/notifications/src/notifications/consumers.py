"""Handlers of other services' events: keep the recipients read model, queue the emails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql import insert as pg_insert

from notifications.models import Recipient
from notifications.outbox import queue_email
from shared.contracts.identity import AccountRegistered
from shared.db import UnitOfWork
from shared.messaging.consumer import Handlers
from shared.messaging.envelope import Envelope

if TYPE_CHECKING:
    from notifications.bootstrap import NotificationsRuntime

handlers = Handlers("notifications")


@handlers("recipients")
async def keep_recipient(
    event: AccountRegistered, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    stmt = pg_insert(Recipient).values(
        account_id=event.account_id, email=event.email, display_name=event.display_name, language=event.language
    )
    await uow.session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Recipient.account_id],
            set_={
                "email": stmt.excluded.email,
                "display_name": stmt.excluded.display_name,
                "language": stmt.excluded.language,
            },
        )
    )


@handlers("welcome_email")
async def send_welcome(
    event: AccountRegistered, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    await queue_email(
        uow,
        runtime.templates,
        envelope,
        template="welcome",
        to_address=event.email,
        to_name=event.display_name,
        language=event.language,
        context={"username": event.username},
    )
