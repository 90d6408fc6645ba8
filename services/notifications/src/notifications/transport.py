"""Where emails go: an SMTP server (aiosmtplib), or the local mailbox of standalone mode."""

from __future__ import annotations

import re
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate
from typing import Protocol

import aiosmtplib

from notifications.config import NotificationsSettings
from notifications.models import Email


class PermanentSendError(Exception):
    """The server refused for good (5xx): retrying will not help."""


class TemporarySendError(Exception):
    """Server down, timeout, 4xx: try again later. ``unreachable``: no connection at all."""

    def __init__(self, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


class Transport(Protocol):
    async def send(self, email: Email) -> None: ...

    async def close(self) -> None: ...


def build_message(email: Email, settings: NotificationsSettings) -> Message:
    """The MIME message: plain text and HTML alternatives, UTF-8, headers as encoded words.

    Built with the compat32 classes: the modern ``EmailMessage`` re-folds every non-ASCII header
    through its parser, which cost ~6x the CPU per Chinese email (measured), at no gain here."""
    message = MIMEMultipart("alternative")
    message["From"] = formataddr((settings.mail_from_name, settings.mail_from_address), charset="utf-8")
    message["To"] = formataddr((email.to_name, email.to_address), charset="utf-8")
    message["Subject"] = Header(email.subject, "utf-8").encode()
    message["Message-ID"] = email.message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Content-Language"] = "en" if email.language == "en" else "zh-CN"
    message["Auto-Submitted"] = "auto-generated"
    message.attach(MIMEText(email.body_text, "plain", "utf-8"))
    message.attach(MIMEText(email.body_html, "html", "utf-8"))
    return message


class SmtpTransport:
    """aiosmtplib over a small pool of kept-open connections: one SMTP handshake per connection,
    not per email. A connection that failed is closed and never reused; a kept connection the
    server dropped meanwhile is replaced once at once, without counting as a failed attempt."""

    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout,
        )
        await client.connect()
        return client

    async def send(self, email: Email) -> None:
        message = build_message(email, self.settings).as_bytes()
        while self._idle:
            client = self._idle.pop()
            try:
                await self._send_on(client, message, email.to_address)
                return
            except _StaleConnection:
                continue  # dropped while idle: try the next one (or a fresh connection)
        try:
            client = await self._connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporarySendError(f"cannot connect: {type(exc).__name__}", unreachable=True) from exc
        try:
            await self._send_on(client, message, email.to_address)
        except _StaleConnection as exc:
            raise TemporarySendError("the server closed the connection") from exc

    async def _send_on(self, client: aiosmtplib.SMTP, message: bytes, recipient: str) -> None:
        keep = False
        try:
            await client.sendmail(self.settings.mail_from_address, [recipient], message)
            keep = True
        except aiosmtplib.SMTPRecipientsRefused as exc:
            keep = True  # the session is fine, this recipient is not
            codes = [r.code for r in exc.recipients]
            if codes and all(c >= 500 for c in codes):
                raise PermanentSendError(_reason(exc.recipients[0].code, exc.recipients[0].message)) from exc
            raise TemporarySendError(f"recipient deferred: {codes}") from exc
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise _StaleConnection() from exc
        except (ValueError, aiosmtplib.SMTPNotSupported) as exc:
            keep = True  # refused before anything was sent: no retry can fix the address
            raise PermanentSendError(f"address not deliverable: {type(exc).__name__}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentSendError(_reason(exc.code, exc.message)) from exc
            raise TemporarySendError(_reason(exc.code, exc.message)) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporarySendError(type(exc).__name__) from exc
        finally:
            if keep and client.is_connected and len(self._idle) < self.settings.mail_senders:
                self._idle.append(client)
            else:
                client.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            client.close()


class _StaleConnection(Exception):
    pass


def _reason(code: int, message: str) -> str:
    # Servers often echo the address in their answer: keep the code and the text without it.
    return f"{code} {_ADDRESS.sub('<address>', message)}"[:500]


_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


class MailboxTransport:
    """Standalone mode: the row itself is the mailbox; 'sending' only marks it delivered."""

    async def send(self, email: Email) -> None:
        return None

    async def close(self) -> None:
        return None
