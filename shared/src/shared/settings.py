"""Settings every service shares; each service subclasses with its own env prefix.

Default secrets are accepted only in development: a deployment that forgot to set
one refuses to start instead of running with a key everybody knows.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-change-me"  # noqa: S105 - the marker the validator refuses outside development

#: the account RabbitMQ creates, which the AMQP client (aiormq) also sends for a URL without a
#: user name or password; RabbitMQ lets it in from localhost only, unless told otherwise
_GUEST = "guest"
_IPV4_PART = {10: re.compile(r"[0-9]+"), 16: re.compile(r"[0-9a-fA-F]*"), 8: re.compile(r"[0-7]+")}
#: defaults of the request body's pace (see ``ServiceSettings.request_body_timeout_seconds``)
BODY_TIMEOUT_SECONDS = 20.0
BODY_MIN_RATE = 500
BODY_MAX_SECONDS = 3600.0
Environment = Literal["development", "test", "production"]


class ServiceSettings(BaseSettings):
    """Base settings. A subclass sets ``model_config`` with ``env_prefix="IDENTITY_"`` and so on."""

    model_config = SettingsConfigDict(env_prefix="VS_", extra="ignore", env_file=None)

    service_name: str = "service"
    environment: Environment = "development"
    version: str = "0.1.0"

    # Storage and messaging
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    database_pool_size: int = 10
    database_max_overflow: int = 10
    #: ``SELECT 1`` on every pool checkout (one more round trip per transaction). Off: connections
    #: the server closed are replaced at checkout without it (see ``shared.db.make_engine``); turn it
    #: on behind proxies or firewalls that drop idle connections silently
    database_pre_ping: bool = False
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    #: "amqp" publishes through RabbitMQ; "inprocess" is the standalone bus (one process, all services).
    bus: Literal["amqp", "inprocess"] = "amqp"
    exchange: str = "events"
    run_relay: bool = True
    run_consumers: bool = True
    relay_batch_size: int = 200
    relay_poll_interval: float = 1.0
    outbox_retention_days: int = 7
    consumer_prefetch: int = 32
    #: messages of one queue in hand at once (one aggregate never has two)
    consumer_lanes: int = 8
    #: >1: messages of one queue ready at the same moment are handled in one transaction, up to
    #: this many (see shared.messaging.consumer); 1 handles each in its own transaction
    consumer_batch_size: int = 1
    #: handled failures before a message is dead-lettered
    max_handler_attempts: int = 5
    #: deliveries (crashes included) before the broker dead-letters a message
    delivery_limit: int = 10
    #: longest wait for each step of a stop (jobs, relay, consumers, pool) before it is cut short
    #: and logged with where each pending task waits (``shutdown_step_stuck``)
    shutdown_step_seconds: float = 20.0

    # Tokens
    jwt_issuer: str = "https://identity.vs.local"
    jwt_audience: str = "vs-api"
    #: RS256 (RSA 2048) or EdDSA (Ed25519), the same on every service and matching identity's key;
    #: RS256 by default: a token is verified far more often than it is signed (``shared.auth``)
    jwt_algorithm: Literal["EdDSA", "RS256"] = "RS256"
    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwks_cache_seconds: int = 300
    #: tokens accepted this many seconds after ``exp`` for clock skew between hosts
    jwt_leeway_seconds: int = 30

    # Mail (used by notifications, and by identity for nothing: all mail goes through notifications)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = 10.0

    # Web
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = 1_048_576
    #: a request body must begin within this many seconds of its headers and never pause longer,
    #: every byte received gives ``1 / request_body_min_rate`` seconds more (Apache's
    #: ``RequestReadTimeout body=20,MinRate=500``), and the whole body must arrive within
    #: ``request_body_max_seconds``; slower is refused with 408 and the connection closed
    request_body_timeout_seconds: float = Field(default=BODY_TIMEOUT_SECONDS, gt=0)
    request_body_min_rate: int = Field(default=BODY_MIN_RATE, gt=0)
    request_body_max_seconds: float = Field(default=BODY_MAX_SECONDS, gt=0)
    log_format: Literal["json", "console"] | None = None
    log_level: str = "INFO"

    # Secret used to sign/derive things that are not tokens (service specific meaning)
    secret_key: SecretStr = SecretStr(DEV_SECRET)

    @property
    def resolved_log_format(self) -> Literal["json", "console"]:
        if self.log_format:
            return self.log_format
        return "console" if self.environment == "development" else "json"

    @model_validator(mode="after")
    def _refuse_default_secrets_outside_development(self) -> ServiceSettings:
        if self.environment != "production":
            return self
        for name, value in self._secret_values().items():
            if value is None or value == DEV_SECRET or value == "":
                raise ValueError(f"{name} must be set to a real secret outside development")
        if problem := _guest_login(self.amqp_url):
            raise ValueError(f"amqp_url {problem}; set the service's own broker account")
        for name, url in self._public_urls().items():
            if is_this_machine(urlsplit(url).hostname or ""):
                raise ValueError(f"{name} points at this machine ({url}); set the address people reach")
        return self

    def _secret_values(self) -> dict[str, str | None]:
        """Secrets that must not keep their defaults. Subclasses add theirs."""
        return {"secret_key": self.secret_key.get_secret_value()}

    def _public_urls(self) -> dict[str, str]:
        """Addresses put in emails, QR codes or pages people open: never localhost in production.
        Subclasses add theirs."""
        return {}


def _guest_login(amqp_url: str) -> str | None:
    """Why the broker would see the default guest account at ``amqp_url``, or None. The AMQP client
    sends ``guest`` for a user name or a password the URL leaves out, and decodes ``%XX`` first."""
    parts = urlsplit(amqp_url)
    auth = next((value for key, value in parse_qsl(parts.query) if key == "auth"), "plain")  # as aiormq reads it
    if auth.lower() == "external":  # a TLS client certificate logs in, not a user name
        return None
    user = unquote(parts.username or "")
    if user in ("", _GUEST):
        return "logs in as the default guest account" if user else "names no broker account (the client sends guest)"
    if not unquote(parts.password or ""):
        return "gives no password (the client sends guest)"
    return None


def is_this_machine(host: str) -> bool:
    """Whether a browser given ``host`` (a URL's host, IPv6 without brackets) would open this
    machine: ``localhost`` and its subdomains, a loopback or unspecified address in any spelling a
    browser takes (``127.1``, ``2130706433``, ``0x7f000001``, ``0``, ``::ffff:127.0.0.1``, ``::``),
    with or without the trailing dot of a fully qualified name."""
    host = unquote(host).lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # full-width letters, ideographic dots
        except UnicodeError:
            return False
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and (address.is_loopback or address.is_unspecified)


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return _browser_ipv4(host)


def _browser_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a browser reads in ``host`` (the WHATWG URL standard's IPv4 parser: one to
    four parts, each decimal, ``0x`` hex or ``0``-led octal, the last filling the bytes left), or
    None for a name."""
    parts = host.split(".")
    if len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        base, digits = 10, part
        if part[:2] in ("0x", "0X"):
            base, digits = 16, part[2:]
        elif len(part) > 1 and part.startswith("0"):
            base, digits = 8, part[1:]
        if not part or not _IPV4_PART[base].fullmatch(digits):
            return None
        numbers.append(int(digits, base) if digits else 0)
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)
