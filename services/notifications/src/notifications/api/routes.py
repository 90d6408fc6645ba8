"""HTTP routes of the notifications service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from notifications import repository
from notifications.bootstrap import NotificationsRuntime
from notifications.errors import (
    EMAIL_LINK_NOT_KEPT,
    EMAIL_NOT_FOUND,
    EMAIL_NOT_RENDERED,
    EMAIL_NOT_REPLAYABLE,
    MAILBOX_LOCAL_ONLY,
    REPLAY_FILTER_REQUIRED,
    REPLAY_TEMPLATE_UNKNOWN,
    REPLAY_TIME_RANGE_INVALID,
)
from notifications.models import SENT, WITHHELD_BODIES, Email
from notifications.repository import BULK_REPLAY_MAX, EmailFilter, ReplayFilter
from notifications.templates import local_time
from shared.auth import NationalAdmin
from shared.errors import (
    FORBIDDEN,
    NOT_FOUND,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    UNAUTHENTICATED,
    VALIDATION_FAILED,
    AppError,
    ErrorSpec,
    error_responses,
    preferred_language,
    prefers_html,
)
from shared.inputs import INPUT_CONFIG, NO_CONTROL, Moment
from shared.logging import get_logger
from shared.pagination import CURSOR_INVALID
from shared.settings import is_this_machine
from shared.web import SELF_CONTAINED_PAGE_POLICY

router = APIRouter()
log = get_logger("notifications.api")


def get_runtime(request: Request) -> NotificationsRuntime:
    runtime: NotificationsRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[NotificationsRuntime, Depends(get_runtime)]


class MailboxItem(BaseModel):
    id: uuid.UUID
    to_address: str
    to_name: str
    language: str
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


class MailDeliveryAdvice(BaseModel):
    """What to do when system emails do not arrive (FAQ O2, N3)."""

    #: the address every system email comes from, to add to the mailbox's allow-list
    sender_address: str
    sender_name: str
    #: how to allow-list it, in the language asked for
    allowlist_advice: str
    #: the advice to check the address given at sign-up, in the language asked for
    address_advice: str
    #: mailbox providers that receive the system's mail reliably
    recommended_domains: list[str]


_ADDRESS_ADVICE = {
    "zh": "请确认注册时填写的电子邮箱地址正确,电子邮箱一般格式为:用户名@域名;可在个人资料中修改。",
    "en": "Check that the email address in your profile is right (name@domain); you can change it there.",
}


@router.get(
    "/api/v1/mail-delivery-advice",
    response_model=MailDeliveryAdvice,
    tags=["help"],
    summary="Not receiving system emails? The sender address to allow-list, how, and which mailboxes to prefer",
)
async def mail_delivery_advice(
    runtime: RuntimeDep, response: Response, accept_language: Annotated[str | None, Header()] = None
) -> MailDeliveryAdvice:
    """Public: it is for people whose mail from the system goes missing, who cannot read it in an
    email. Everything but the address advice comes from the deployment's settings."""
    settings, lang = runtime.settings, preferred_language(accept_language)
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Vary"] = "Accept-Language"
    response.headers["Content-Language"] = "en" if lang == "en" else "zh-CN"
    return MailDeliveryAdvice(
        sender_address=settings.mail_from_address,
        sender_name=settings.mail_from_name_en if lang == "en" else settings.mail_from_name,
        allowlist_advice=settings.mail_allowlist_advice_en if lang == "en" else settings.mail_allowlist_advice,
        address_advice=_ADDRESS_ADVICE[lang],
        recommended_domains=settings.mail_recommended_domains,
    )


def _require_mailbox(runtime: NotificationsRuntime, request: Request) -> None:
    """The mailbox view exists only in standalone mode, where no real mail leaves the machine, and
    only for a reader on that machine, opening it by a name of this machine: it holds every email
    whole, live password reset links included, and standalone mode may listen on the network
    (``VS_RUN_HOST``) for phones to open a card's check page."""
    if runtime.settings.mail_transport != "mailbox":
        raise AppError(NOT_FOUND)
    client = request.client.host if request.client else None
    server = request.scope.get("server")
    # a reader on the machine itself: loopback, or the one address standalone mode listens on
    # (VS_RUN_HOST=192.168.1.5: the machine's own browser then comes from that address too)
    if not is_this_machine(client or "") and not (client is not None and server is not None and client == server[0]):
        log.info("mailbox_refused_remote_reader")
        raise AppError(MAILBOX_LOCAL_ONLY)
    # and a page of this machine: a site whose name an attacker points at 127.0.0.1 once its page is
    # loaded (DNS rebinding) has the browser come from this machine, but under the site's own name
    # in the Host header, which a page of this machine never has
    host = request.url.hostname or ""  # the Host header's host (lower case, no brackets, no port)
    if not is_this_machine(host) and not (server is not None and host == server[0]):
        log.info("mailbox_refused_foreign_host")
        raise AppError(MAILBOX_LOCAL_ONLY)


def _json_error_responses(*specs: ErrorSpec) -> dict[int | str, dict[str, Any]]:
    """``error_responses`` for a route whose answer is a page: its refusals are still JSON (FastAPI
    would document them under the route's own media type)."""
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {status: {"description": r["description"], "content": body} for status, r in error_responses(*specs).items()}


MAILBOX_URL = "/api/v1/mailbox"


@router.get(
    MAILBOX_URL,
    response_model=MailboxPage,
    tags=["mailbox"],
    summary="Standalone mode: the emails delivered to the local mailbox, newest first",
    description=(
        "Only delivered emails: one still waiting for its recipient's address (or to be sent) is not listed. "
        "A browser (which ranks `text/html` above JSON in `Accept`) gets the list as a page linking to each "
        "email's page; API clients get JSON."
    ),
    responses={
        **_json_error_responses(NOT_FOUND, MAILBOX_LOCAL_ONLY, CURSOR_INVALID),
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
    },
)
async def list_mailbox(
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    accept: Annotated[str | None, Header()] = None,
) -> MailboxPage | HTMLResponse:
    _require_mailbox(runtime, request)
    async with runtime.session_factory() as session:
        rows, next_cursor = await repository.list_emails(session, EmailFilter(status=SENT), limit=limit, cursor=cursor)
    items = [MailboxItem.model_validate(r, from_attributes=True) for r in rows]
    if not prefers_html(accept):
        response.headers["Vary"] = "Accept"
        return MailboxPage(items=items, next_cursor=next_cursor)
    next_url = f"{MAILBOX_URL}?{urlencode({'limit': limit, 'cursor': next_cursor})}" if next_cursor else None
    page = runtime.templates.page(
        "_mailbox_list.html.j2",
        {
            "items": items,
            "sent_at": {i.id: local_time(i.sent_at) for i in items if i.sent_at},  # China time, as in the emails
            "list_url": MAILBOX_URL,
            "next_url": next_url,
        },
    )
    return HTMLResponse(page, headers={"Content-Security-Policy": SELF_CONTAINED_PAGE_POLICY, "Vary": "Accept"})


async def _delivered(runtime: NotificationsRuntime, request: Request, email_id: uuid.UUID) -> Email:
    _require_mailbox(runtime, request)
    async with runtime.session_factory() as session:
        email = await repository.get_email(session, email_id)
    if email.status != SENT:  # not in the mailbox (yet)
        raise AppError(EMAIL_NOT_FOUND)
    return email


# declared before /{email_id}, which would take "<id>.html" for an id and refuse it
@router.get(
    "/api/v1/mailbox/{email_id}.html",
    response_class=HTMLResponse,
    tags=["mailbox"],
    summary="Standalone mode: one email as a web page (sender, recipient, language, subject, HTML body)",
    responses={
        **_json_error_responses(NOT_FOUND, MAILBOX_LOCAL_ONLY, EMAIL_NOT_FOUND),
        200: {"content": {"text/html": {}}},
    },
)
async def show_mailbox_email(email_id: uuid.UUID, runtime: RuntimeDep, request: Request) -> HTMLResponse:
    email = await _delivered(runtime, request, email_id)
    settings = runtime.settings
    page = runtime.templates.page(
        "_mailbox_email.html.j2",
        {
            "list_url": MAILBOX_URL,
            "from_name": settings.sender_name(email.language),
            "from_address": settings.mail_from_address,
            "to_name": email.to_name,
            "to_address": email.to_address,
            "language": email.language,
            "subject": email.subject,
            "sent_at": f"{local_time(email.sent_at)}(北京时间 China time)" if email.sent_at else "",
            "message_id": email.message_id,
            "body_html": email.body_html,
            "body_text": email.body_text,
        },
    )
    # the email's HTML is shown in a sandboxed frame; the page itself runs no script either
    policy = "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    return HTMLResponse(page, headers={"Content-Security-Policy": policy})


@router.get(
    "/api/v1/mailbox/{email_id}",
    response_model=MailboxEmail,
    tags=["mailbox"],
    summary="Standalone mode: read one delivered email (as a web page: add .html)",
    responses=error_responses(NOT_FOUND, MAILBOX_LOCAL_ONLY, EMAIL_NOT_FOUND),
)
async def read_mailbox(email_id: uuid.UUID, runtime: RuntimeDep, request: Request) -> MailboxEmail:
    email = await _delivered(runtime, request, email_id)
    return MailboxEmail.model_validate(email, from_attributes=True)


# -- operator view (national admins) ------------------------------------------------------------
AUTH_ERRORS = (UNAUTHENTICATED, TOKEN_INVALID, TOKEN_EXPIRED, FORBIDDEN)
EmailStatus = Literal["awaiting_recipient", "pending", "sent", "failed", "suppressed"]


class EmailSummary(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    template: str
    recipient_account_id: uuid.UUID | None
    to_address: str
    language: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    #: why the last attempt failed, or why the email was suppressed
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class ReplayRecord(BaseModel):
    replayed_by_account_id: uuid.UUID
    previous_status: str
    previous_error: str | None
    replayed_at: datetime


class EmailDetail(EmailSummary):
    message_id: str
    #: empty when withheld
    body_text: str
    body_html: str
    #: true for emails carrying a one-use secret (the password reset link): operators see
    #: that it went and why it failed, never the link itself
    body_withheld: bool = False
    replays: list[ReplayRecord]


class EmailPage(BaseModel):
    items: list[EmailSummary]
    next_cursor: str | None = None


@router.get(
    "/api/v1/emails",
    response_model=EmailPage,
    tags=["emails"],
    summary="Operators: emails newest first, filtered by status, recipient, account, event or template",
    responses=error_responses(*AUTH_ERRORS, VALIDATION_FAILED, CURSOR_INVALID),
)
async def list_emails(
    runtime: RuntimeDep,
    admin: NationalAdmin,
    status: EmailStatus | None = None,
    recipient: Annotated[
        str | None, Query(max_length=254, pattern=NO_CONTROL, description="recipient email address")
    ] = None,
    account_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    template: Annotated[str | None, Query(max_length=80, pattern=NO_CONTROL)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EmailPage:
    f = EmailFilter(status=status, recipient=recipient, account_id=account_id, event_id=event_id, template=template)
    async with runtime.session_factory() as session:
        rows, next_cursor = await repository.list_emails(session, f, limit=limit, cursor=cursor)
        return EmailPage(
            items=[EmailSummary.model_validate(r, from_attributes=True) for r in rows], next_cursor=next_cursor
        )


async def _detail(runtime: NotificationsRuntime, email_id: uuid.UUID) -> EmailDetail:
    async with runtime.session_factory() as session:
        email = await repository.get_email(session, email_id)
        replays = await repository.replays_of(session, email_id)
        summary = EmailSummary.model_validate(email, from_attributes=True)
        withheld = email.template in WITHHELD_BODIES
        return EmailDetail(
            **summary.model_dump(),
            message_id=email.message_id,
            body_text="" if withheld else email.body_text,
            body_html="" if withheld else email.body_html,
            body_withheld=withheld,
            replays=[ReplayRecord.model_validate(r, from_attributes=True) for r in replays],
        )


@router.get(
    "/api/v1/emails/{email_id}",
    response_model=EmailDetail,
    tags=["emails"],
    summary="Operators: one email with its content, failure reason and replay history",
    responses=error_responses(*AUTH_ERRORS, EMAIL_NOT_FOUND),
)
async def read_email(email_id: uuid.UUID, runtime: RuntimeDep, admin: NationalAdmin) -> EmailDetail:
    return await _detail(runtime, email_id)


@router.post(
    "/api/v1/emails/{email_id}/replay",
    response_model=EmailDetail,
    tags=["emails"],
    summary="Operators: send a failed or suppressed email again (attempts reset; audited)",
    responses=error_responses(
        *AUTH_ERRORS, EMAIL_NOT_FOUND, EMAIL_NOT_REPLAYABLE, EMAIL_LINK_NOT_KEPT, EMAIL_NOT_RENDERED
    ),
)
async def replay_email(email_id: uuid.UUID, runtime: RuntimeDep, admin: NationalAdmin) -> EmailDetail:
    async with runtime.session_factory() as session, session.begin():
        await repository.replay(session, email_id, by=admin.account_id, now=runtime.clock.now())
    return await _detail(runtime, email_id)


class BulkReplayRequest(BaseModel):
    """Which failed emails to replay. At least one filter, or ``all_failed`` to confirm replaying
    every failed email: an empty body never replays everything by accident."""

    model_config = INPUT_CONFIG

    template: str | None = Field(default=None, max_length=80, pattern=NO_CONTROL)
    error_prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=NO_CONTROL,
        description="the start of the failure reason: recipient_unknown, an SMTP code (550, 421), cannot connect",
    )
    created_from: Moment | None = Field(default=None, description="queued at or after")
    created_before: Moment | None = Field(default=None, description="queued before")
    event_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    all_failed: bool = Field(default=False, description="confirms replaying every failed email when no filter is given")
    dry_run: bool = Field(default=False, description="only count the matching failed emails; change nothing")
    limit: int = Field(default=500, ge=1, le=BULK_REPLAY_MAX, description="emails replayed at most by this call")


class BulkReplayResult(BaseModel):
    dry_run: bool
    #: how many this call replayed (0 in a dry run)
    replayed: int
    email_ids: list[uuid.UUID]
    #: matching failed emails still failed after this call: repeat it while this is above 0
    remaining: int


@router.post(
    "/api/v1/emails/replay",
    response_model=BulkReplayResult,
    tags=["emails"],
    summary="Operators: replay the failed emails a filter matches, oldest first, at most `limit` per call",
    description=(
        "Each email as the single replay does (audited; pending and due now, or waiting again for an "
        "address notifications still lacks). Only failed emails: suppressed ones stay held by their rate "
        "limit (replay one on its own to release it), pending and sent ones are never touched. Repeat "
        "while `remaining` is above 0; two calls at once take disjoint emails."
    ),
    responses=error_responses(
        *AUTH_ERRORS, VALIDATION_FAILED, REPLAY_FILTER_REQUIRED, REPLAY_TIME_RANGE_INVALID, REPLAY_TEMPLATE_UNKNOWN
    ),
)
async def bulk_replay_emails(body: BulkReplayRequest, runtime: RuntimeDep, admin: NationalAdmin) -> BulkReplayResult:
    f = ReplayFilter(
        template=body.template,
        error_prefix=body.error_prefix,
        created_from=body.created_from,
        created_before=body.created_before,
        event_id=body.event_id,
        account_id=body.account_id,
    )
    f.check(all_failed=body.all_failed)
    async with runtime.session_factory() as session, session.begin():
        done = await repository.bulk_replay(
            session, f, by=admin.account_id, now=runtime.clock.now(), limit=body.limit, dry_run=body.dry_run
        )
    if not body.dry_run:
        log.info("emails_bulk_replayed", replayed=len(done.email_ids), remaining=done.remaining)
    return BulkReplayResult(
        dry_run=body.dry_run, replayed=len(done.email_ids), email_ids=done.email_ids, remaining=done.remaining
    )
