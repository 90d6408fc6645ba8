"""Where emails go: an SMTP server (aiosmtplib), or the local mailbox of standalone mode."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Protocol

import aiosmtplib

from notifications.config import NotificationsSettings
from notifications.models import Email


class PermanentSendError(Exception):
    """The server refused for good (5xx): retrying will not help."""


class TemporarySendError(Exception):
    """Server down, timeout, 4xx: try again later."""


class Transport(Protocol):
    async def send(self, email: Email) -> None: ...


def build_message(email: Email, settings: NotificationsSettings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr((settings.mail_from_name, settings.mail_from_address))
    message["To"] = formataddr((email.to_name, email.to_address))
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Content-Language"] = "en" if email.language == "en" else "zh-CN"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(email.body_text)
    message.add_alternative(email.body_html, subtype="html")
    return message


class SmtpTransport:
    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings

    async def send(self, email: Email) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                build_message(email, s),
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls,
                timeout=s.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if codes and all(c >= 500 for c in codes):
                raise PermanentSendError(f"recipient refused: {codes}") from exc
            raise TemporarySendError(f"recipient deferred: {codes}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentSendError(f"{exc.code} {exc.message}") from exc
            raise TemporarySendError(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporarySendError(repr(exc)) from exc


class MailboxTransport:
    """Standalone mode: the row itself is the mailbox; 'sending' only marks it delivered."""

    async def send(self, email: Email) -> None:
        return None
