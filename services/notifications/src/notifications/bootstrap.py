"""The one place the notifications service is wired."""

from __future__ import annotations

from pathlib import Path

from notifications import awaiting, retention
from notifications.config import NotificationsSettings
from notifications.consumers import handlers
from notifications.models import EMAIL_CHANNEL, messaging, platform_roles
from notifications.sender import EmailSender
from notifications.templates import Templates
from notifications.transport import MailboxTransport, SmtpTransport, Transport
from shared.aio import every
from shared.auth import TokenVerifier
from shared.clock import Clock
from shared.db import asyncpg_dsn
from shared.messaging.broker import Broker
from shared.pgnotify import listen_forever
from shared.platform_roles import platform_roles_lookup
from shared.runtime import Runtime

SERVICE_ROOT = Path(__file__).resolve().parents[2]


class NotificationsRuntime(Runtime):
    settings: NotificationsSettings
    templates: Templates
    sender: EmailSender

    async def sweep_awaiting_recipients(self) -> int:
        """One pass of the periodic sweep of emails awaiting their recipient (see
        ``notifications.awaiting``): how many were given up on."""
        return await awaiting.sweep(self.session_factory, self.clock, self.settings)

    async def purge_expired_emails(self) -> int:
        """One pass of the hourly retention purge (see ``notifications.retention``): how many
        emails were deleted."""
        return await retention.purge_expired(self.engine, self.clock, self.settings)


def build_runtime(
    settings: NotificationsSettings,
    *,
    broker: Broker | None = None,
    clock: Clock | None = None,
    verifier: TokenVerifier | None = None,
    transport: Transport | None = None,
) -> NotificationsRuntime:
    runtime = NotificationsRuntime(
        settings, messaging, handlers=handlers, broker=broker, clock=clock, verifier=verifier
    )
    # a withdrawn national admin loses the operator API at once, not when the token expires
    runtime.principal_roles = platform_roles_lookup(runtime.engine, platform_roles)
    runtime.templates = Templates(settings)
    if transport is None:
        transport = MailboxTransport() if settings.mail_transport == "mailbox" else SmtpTransport(settings)
    runtime.sender = EmailSender(runtime.session_factory, transport, settings, runtime.clock)
    dsn = asyncpg_dsn(settings.database_url)

    async def listen_for_emails() -> None:
        await listen_forever(dsn, EMAIL_CHANNEL, runtime.sender.wake)

    async def sweep_awaiting_recipients() -> None:
        await every(
            settings.awaiting_recipient_sweep_seconds,
            lambda: awaiting.sweep(runtime.session_factory, runtime.clock, settings),
            failed="awaiting_sweep_failed",
            log=awaiting.log,
        )

    async def purge_expired_emails() -> None:
        await every(
            retention.INTERVAL_SECONDS,
            runtime.purge_expired_emails,
            failed="email_purge_failed",
            log=retention.log,
        )

    runtime.background += [runtime.sender.run, listen_for_emails, sweep_awaiting_recipients]
    if settings.email_retention_days:  # 0 keeps every email
        runtime.background.append(purge_expired_emails)
    return runtime
