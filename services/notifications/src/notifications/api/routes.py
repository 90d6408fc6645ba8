"""HTTP routes of the notifications service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from notifications.bootstrap import NotificationsRuntime
from notifications.models import Email
from shared.errors import NOT_FOUND, AppError, error_responses

router = APIRouter()


def get_runtime(request: Request) -> NotificationsRuntime:
    runtime: NotificationsRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[NotificationsRuntime, Depends(get_runtime)]


class MailboxItem(BaseModel):
    id: uuid.UUID
    to_address: str
    subject: str
    template: str
    event_type: str
    status: str
    created_at: datetime
    sent_at: datetime | None


class MailboxEmail(MailboxItem):
    body_text: str
    body_html: str
    message_id: str


class MailboxPage(BaseModel):
    items: list[MailboxItem]
    next_cursor: str | None = None


def _require_mailbox(runtime: NotificationsRuntime) -> None:
    # The mailbox view exists only in standalone mode, where no real mail leaves the machine.
    if runtime.settings.mail_transport != "mailbox":
        raise AppError(NOT_FOUND)


@router.get(
    "/api/v1/mailbox",
    response_model=MailboxPage,
    tags=["mailbox"],
    summary="Standalone mode: emails kept in the local mailbox, newest first",
    responses=error_responses(NOT_FOUND),
)
async def list_mailbox(runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> MailboxPage:
    _require_mailbox(runtime)
    async with runtime.session_factory() as session:
        rows = (await session.execute(select(Email).order_by(Email.created_at.desc()).limit(limit))).scalars()
        return MailboxPage(items=[MailboxItem.model_validate(r, from_attributes=True) for r in rows])


@router.get(
    "/api/v1/mailbox/{email_id}",
    response_model=MailboxEmail,
    tags=["mailbox"],
    summary="Standalone mode: read one email",
    responses=error_responses(NOT_FOUND),
)
async def read_mailbox(email_id: uuid.UUID, runtime: RuntimeDep) -> MailboxEmail:
    _require_mailbox(runtime)
    async with runtime.session_factory() as session:
        email = await session.get(Email, email_id)
        if email is None:
            raise AppError(NOT_FOUND)
        return MailboxEmail.model_validate(email, from_attributes=True)
