"""Where emails go: an SMTP server (aiosmtplib), or the local mailbox of standalone mode."""

from __future__ import annotations

import base64
import re
import uuid
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


def build_message(email: Email, settings: NotificationsSettings) -> bytes:
    """The MIME message: plain text and HTML alternatives, UTF-8 in base64, non-ASCII headers as
    RFC 2047 encoded words, CRLF line ends.

    Written out directly: the standard library's generator (``MIMEMultipart(...).as_bytes()``)
    cost 0.5-0.9 ms per email, the largest share of the sender's CPU; this builds the same
    structure in a tenth of that. ``test_units`` parses the result with the standard parser."""
    for value in (email.to_address, email.to_name, email.message_id):
        if "\r" in value or "\n" in value:
            raise ValueError("a line break in a header value")
    boundary = f"=_vs_{uuid.uuid4().hex}"
    head = (
        f"From: {mailbox(settings.mail_from_name, settings.mail_from_address)}\r\n"
        f"To: {mailbox(email.to_name, email.to_address)}\r\n"
        f"Subject: {encoded_words(email.subject)}\r\n"
        f"Message-ID: {email.message_id}\r\n"
        f"Date: {formatdate(localtime=False, usegmt=True)}\r\n"
        f"Content-Language: {'en' if email.language == 'en' else 'zh-CN'}\r\n"
        "Auto-Submitted: auto-generated\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
        "\r\n"
    )
    parts = "".join(
        f"--{boundary}\r\n"
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        f"{base64.encodebytes(body.encode()).decode('ascii').replace(chr(10), chr(13) + chr(10))}"
        for subtype, body in (("plain", email.body_text), ("html", email.body_html))
    )
    return f"{head}{parts}--{boundary}--\r\n".encode("ascii")


def mailbox(name: str, address: str) -> str:
    """``name <address>`` for a From or To header: a non-ASCII name as encoded words, an ASCII one
    quoted where it must be; folded before the address when one line would be too long."""
    if not name:
        return address
    if name.isascii() and name.isprintable():
        shown = formataddr((name, address)).rpartition(" <")[0]
    else:
        shown = encoded_words(name, plain_ascii=False)
    one_line = f"{shown} <{address}>"
    if "\n" not in shown and len(one_line) <= 70:
        return one_line
    return f"{shown}\r\n <{address}>"


#: bytes per encoded word: 42 make 56 base64 characters, a 68-character word, so a word fits on a
#: 78-character line after "Subject: " (RFC 2047 allows words of up to 75)
_WORD_BYTES = 42


def encoded_words(text: str, *, plain_ascii: bool = True) -> str:
    """A header value as RFC 2047 base64 encoded words (whole characters per word), folded one
    word per line; plain printable ASCII that fits on a line is left as it is (``plain_ascii``)."""
    if plain_ascii and text.isascii() and text.isprintable() and len(text) <= 68 and "=?" not in text:
        return text
    words: list[str] = []
    chunk = b""
    for char in text:
        encoded = char.encode()
        if len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(chunk.decode())
            chunk = b""
        chunk += encoded
    if chunk or not words:
        words.append(chunk.decode())
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode('ascii')}?=" for w in words)


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
        message = build_message(email, self.settings)
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
