"""Where emails go: an SMTP server (aiosmtplib), or the local mailbox of standalone mode."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from dataclasses import dataclass
from email.utils import formataddr, formatdate
from typing import Any, Protocol

import aiosmtplib
import idna

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
    async def send(self, email: Email, start_data_by: float | None = None) -> None:
        """Send one email; ``start_data_by`` (the event loop's clock): no message goes out after it
        (the send is refused with :data:`LEASE_RUNS_OUT`), so none goes out twice."""
        ...

    async def close(self) -> None: ...

    def send_no_more(self) -> None:
        """Stopping: sends in progress that have not started their message give up at once
        (:data:`LEASE_RUNS_OUT`); one whose message is out waits for the server's answer."""
        ...


def smtp_address(address: str) -> str:
    """The address as it goes on the wire: an internationalised domain (``例子.中国``, kept in
    Unicode by identity's validation) in its ASCII form (IDNA 2008, ``xn--fsqu00a.xn--fiqs8s``),
    which every server accepts. A non-ASCII local part stays as it is: only SMTPUTF8 carries it.

    :raises ValueError: (``idna.IDNAError`` is one) a domain that has no ASCII form."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


def needs_smtputf8(*addresses: str) -> bool:
    """Whether these (wire-form) addresses can only be sent with SMTPUTF8 (RFC 6531)."""
    return not all(a.isascii() for a in addresses)


def build_message(email: Email, settings: NotificationsSettings) -> bytes:
    """The MIME message: plain text and HTML alternatives, UTF-8 in base64, non-ASCII headers as
    RFC 2047 encoded words, CRLF line ends. Addresses as :func:`smtp_address` puts them on the
    wire; one with a non-ASCII local part is written in UTF-8 (RFC 6532), for SMTPUTF8 only.

    Written out directly: the standard library's generator (``MIMEMultipart(...).as_bytes()``)
    cost 0.5-0.9 ms per email, the largest share of the sender's CPU; this builds the same
    structure in a tenth of that. ``test_units`` parses the result with the standard parser.

    :raises ValueError: a header value with a line break, an address without an ASCII domain."""
    for value in (email.to_address, email.to_name, email.message_id):
        if "\r" in value or "\n" in value:
            raise ValueError("a line break in a header value")
    from_address = smtp_address(settings.mail_from_address)
    to_address = smtp_address(email.to_address)
    boundary = f"=_vs_{uuid.uuid4().hex}"
    head = (
        f"From: {mailbox(settings.sender_name(email.language), from_address)}\r\n"
        f"To: {mailbox(email.to_name, to_address)}\r\n"
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
    # ASCII unless an address needs SMTPUTF8 (then the server is asked for it, or the send refused)
    return f"{head}{parts}--{boundary}--\r\n".encode("utf-8" if needs_smtputf8(from_address, to_address) else "ascii")


def mailbox(name: str, address: str) -> str:
    """``name <address>`` for a From or To header: a non-ASCII name as encoded words, an ASCII one
    quoted where it must be; folded before the address when one line would be too long."""
    if not name:
        return address
    if name.isascii() and name.isprintable():
        # the quoting of the name does not depend on the address (formataddr refuses a UTF-8 one)
        shown = formataddr((name, "x@x")).rpartition(" <")[0]
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


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, telling whether the current transaction reached DATA: a connection
    lost before it sent nothing (a kept connection the server dropped while idle: replaced at
    once), one lost after it may have delivered the message."""

    data_started = False
    #: the event loop's time after which this transaction sends no message (None: any time)
    start_data_by: float | None = None

    async def data(self, *args: Any, **kwargs: Any) -> Any:
        if self.start_data_by is not None and asyncio.get_running_loop().time() > self.start_data_by:
            raise _TooLate
        self.data_started = True
        return await super().data(*args, **kwargs)


class SmtpTransport:
    """aiosmtplib over a small pool of kept-open connections: one SMTP handshake per connection,
    not per email. A connection that failed is closed and never reused; a kept connection the
    server dropped meanwhile is replaced once at once, without counting as a failed attempt."""

    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings
        self._idle: list[_Client] = []
        #: connections with a send in progress (see :meth:`send_no_more`)
        self._busy: set[_Client] = set()
        #: the loop time of the last stop: sends begun before it start no message
        self._stopped_at = float("-inf")

    def send_no_more(self) -> None:
        self._stopped_at = asyncio.get_running_loop().time()
        for client in self._busy:
            client.start_data_by = float("-inf")

    async def _connect(self) -> _Client:
        s = self.settings
        client = _Client(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout,
        )
        await client.connect()
        return client

    async def send(self, email: Email, start_data_by: float | None = None) -> None:
        try:
            sender = smtp_address(self.settings.mail_from_address)
            recipient = smtp_address(email.to_address)
            message = build_message(email, self.settings)
        except Exception as exc:
            # no retry can build it (the type only: the error's text may quote the address)
            raise PermanentSendError(f"message cannot be built: {type(exc).__name__}") from exc
        began = asyncio.get_running_loop().time()
        outgoing = _Outgoing(sender, recipient, message, needs_smtputf8(sender, recipient), start_data_by, began)
        while self._idle:
            client = self._idle.pop()
            try:
                await self._send_on(client, outgoing)
                return
            except _StaleConnection:
                continue  # dropped while idle: try the next one (or a fresh connection)
        try:
            client = await self._connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporarySendError(f"cannot connect: {type(exc).__name__}", unreachable=True) from exc
        try:
            await self._send_on(client, outgoing)
        except _StaleConnection as exc:
            raise TemporarySendError("the server closed the connection") from exc

    async def _send_on(self, client: _Client, outgoing: _Outgoing) -> None:
        keep = False
        # a send begun before a stop (still connecting, or onto a fresh connection after a stale
        # one) starts no message either
        cut = outgoing.began <= self._stopped_at
        client.data_started, client.start_data_by = False, float("-inf") if cut else outgoing.start_data_by
        self._busy.add(client)
        # RFC 6531: a server offering SMTPUTF8 supports 8BITMIME too (the header is raw UTF-8)
        options = ["SMTPUTF8", "BODY=8BITMIME"] if outgoing.smtputf8 else []
        try:
            await client.sendmail(outgoing.sender, [outgoing.recipient], outgoing.message, mail_options=options)
            keep = True
        except aiosmtplib.SMTPRecipientsRefused as exc:
            keep = True  # the session is fine, this recipient is not
            codes = [r.code for r in exc.recipients]
            if codes and all(c >= 500 for c in codes):
                raise PermanentSendError(_reason(exc.recipients[0].code, exc.recipients[0].message)) from exc
            raise TemporarySendError(f"recipient deferred: {codes}") from exc
        except _TooLate as exc:  # the transaction is left half-way: the connection goes
            raise TemporarySendError(LEASE_RUNS_OUT) from exc
        except aiosmtplib.SMTPServerDisconnected as exc:
            if client.data_started:  # the message went out; whether it arrived, the server never said
                raise TemporarySendError(SENT_UNCONFIRMED) from exc
            raise _StaleConnection() from exc
        except aiosmtplib.SMTPNotSupported as exc:
            keep = True  # refused before anything was sent; the same server will not learn it
            if outgoing.smtputf8:
                raise PermanentSendError(NO_SMTPUTF8) from exc
            raise PermanentSendError(f"address not deliverable: {type(exc).__name__}") from exc
        except ValueError as exc:
            keep = True  # refused before anything was sent: no retry can fix the address
            raise PermanentSendError(f"address not deliverable: {type(exc).__name__}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentSendError(_reason(exc.code, exc.message)) from exc
            raise TemporarySendError(_reason(exc.code, exc.message)) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporarySendError(SENT_UNCONFIRMED if client.data_started else type(exc).__name__) from exc
        finally:
            self._busy.discard(client)
            if keep and client.is_connected and len(self._idle) < self.settings.mail_senders:
                self._idle.append(client)
            else:
                client.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            client.close()


#: the reason recorded when the connection was lost after the message was sent: it is sent again
#: later (SMTP's rule: the server never confirmed it), with the same Message-ID, and operators see why
SENT_UNCONFIRMED = "the connection was lost after the message was sent, before the server confirmed it"


#: the reason recorded when a send reached its message too late: another loop may claim the email
#: once the lease ends, so this one sends no message that could still be on its way then
LEASE_RUNS_OUT = "the sender's lease was running out before the message could go"


class _StaleConnection(Exception):
    pass


class _TooLate(Exception):
    """The message would have started after ``start_data_by``."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One email as it goes on the wire: envelope addresses, message, whether SMTPUTF8 is needed,
    and the loop time after which its message may not go out."""

    sender: str
    recipient: str
    message: bytes
    smtputf8: bool
    start_data_by: float | None = None
    #: the event loop's time the send began (a stop after it cuts it before its message)
    began: float = 0.0


#: an operator reads this (no address in it: reasons must not carry personal data)
NO_SMTPUTF8 = "address not deliverable: a non-ASCII local part needs SMTPUTF8, which the mail server does not offer"


def _reason(code: int, message: str) -> str:
    # Servers often echo the address in their answer: keep the code and the text without it.
    return f"{code} {_ADDRESS.sub('<address>', message)}"[:500]


_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


class MailboxTransport:
    """Standalone mode: the row itself is the mailbox; 'sending' only marks it delivered."""

    async def send(self, email: Email, start_data_by: float | None = None) -> None:
        return None

    async def close(self) -> None:
        return None

    def send_no_more(self) -> None:
        return None
