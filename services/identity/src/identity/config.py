"""Settings of the identity service; environment variables start with ``IDENTITY_``."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore")

    service_name: str = "identity"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/identity"

    #: PEM of the token-signing key (Ed25519 for EdDSA, RSA for RS256). Required outside
    #: development; in development a key is generated at start-up.
    jwt_private_key: SecretStr | None = None
    access_token_minutes: int = 15
    refresh_token_days: int = 30
    #: argon2id parameters (memory in KiB); the issue's floor is m=19456, t=2
    argon2_memory_kib: int = 19_456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1

    # -- personal data ----------------------------------------------------------------------
    #: AES-256-GCM keys for ID numbers and ID-card images: ``kid:base64key[,kid:base64key]``
    #: (32-byte keys). Old keys stay listed to decrypt until re-encrypted; required outside
    #: development (where keys are derived from ``secret_key``).
    data_keys: SecretStr | None = None
    #: the key id new ciphertexts are written with (defaults to the first listed key)
    data_key_id: str | None = None
    #: HMAC-SHA256 key of the blind index that finds an ID number without decrypting (base64,
    #: 32 bytes). Never rotate it without re-indexing: it is what makes ID numbers unique.
    blind_index_key: SecretStr | None = None
    #: during a rotation of the blind-index key (``python -m identity reindex``), the key being
    #: retired: lookups find numbers indexed under either key, writes use ``blind_index_key``
    blind_index_previous_key: SecretStr | None = None

    # -- registration -----------------------------------------------------------------------
    minimum_age: int = 14
    #: below this age a guardian's consent is required
    guardian_consent_below_age: int = 18
    #: sign-ups from one client address answered with what the ID number is (already registered,
    #: held twice, or an imported record's name or birth date differs) within an hour of each
    #: other before its sign-ups are refused for an hour (429): each such answer tells whoever
    #: asks something about someone's ID number. Generous: a campus sign-up drive comes from one
    #: address, and "already registered" is the commonest answer real people get (FAQ V1); it
    #: still turns a sweep of a thousand serial numbers from seconds into ten hours per address
    sign_up_identity_refusals_per_hour: int = Field(default=100, ge=1)

    # -- login throttling -------------------------------------------------------------------
    #: failures of one account before each further failure locks it for a while
    login_account_free_failures: int = 5
    #: failures from one client address before it is locked (higher: offices share addresses)
    login_address_free_failures: int = 20
    login_lock_base_seconds: int = 30
    #: the longest lock; short, so an attacker cannot keep an owner out for long
    login_lock_max_seconds: int = 900
    #: take the client address from X-Forwarded-For (only behind a proxy that appends to it)
    trust_forwarded_for: bool = False
    #: how many proxies of ours append to X-Forwarded-For: the address is the entry this many from
    #: the right (1: the one the ingress appended); the entries left of it are whatever the client
    #: sent. A header with fewer entries gives the socket's address.
    forwarded_hops: int = Field(default=1, ge=1)

    # -- password reset ---------------------------------------------------------------------
    #: the frontend page that takes ``?token=``; the emailed link is built from it
    password_reset_url: str = "http://localhost:3000/reset-password"  # noqa: S105 - a page, not a secret
    password_reset_minutes: int = 30

    # -- real-name verification (V5, V6) ----------------------------------------------------
    #: ``development`` (rules below) or ``module:factory`` returning a VerificationProvider
    verification_provider: str = "development"
    #: seconds after sign-up before the provider is asked (the real check takes days)
    verification_delay_seconds: float = 0
    verification_poll_seconds: float = 1.0
    #: a provider error is retried after this many seconds (doubling, capped at an hour)
    verification_retry_seconds: float = 60
    #: a provider that has not answered by then counts as down (retried later)
    verification_timeout_seconds: float = 30
    #: development provider: a real name containing a key gets that outcome
    #: (``failed`` or ``manual_review``); every other identity is verified
    dev_verification_rules: dict[str, str] = Field(
        default_factory=lambda: {"验证失败": "failed", "人工复核": "manual_review", "核验超时": "error"}
    )
    #: largest accepted ID-card image (bytes)
    id_card_max_bytes: int = 5 * 1024 * 1024
    #: largest ID-card image decoded (width × height; a phone photo has 12 to 24 million), and its
    #: longest side: a few kilobytes of PNG can declare gigabytes of pixels
    id_card_max_pixels: int = Field(default=40_000_000, ge=1)
    id_card_max_side: int = Field(default=10_000, ge=1)

    # -- bulk import (issue 3) --------------------------------------------------------------
    #: uploaded imports one process runs at once (each holds a database connection of its own,
    #: outside the pool, and a core); further uploads wait ``queued`` and start as one ends
    import_concurrency: int = Field(default=2, ge=1)

    # -- invitations lookup and team admin resets (T7) ------------------------------------
    #: lookups one team admin may make per hour
    lookup_per_hour: int = 30

    # -- volunteer card (V9) ----------------------------------------------------------------
    #: public page the card's QR code points to (``?token=`` appended)
    card_verification_url: str = "http://localhost:8001/api/v1/card-verifications"
    #: a TrueType/OpenType font with Chinese glyphs for the PNG card; found automatically if unset
    card_font_path: str | None = None

    def _public_urls(self) -> dict[str, str]:
        return {"password_reset_url": self.password_reset_url, "card_verification_url": self.card_verification_url}

    def _secret_values(self) -> dict[str, str | None]:
        values = super()._secret_values()
        values["jwt_private_key"] = self.jwt_private_key.get_secret_value() if self.jwt_private_key else None
        values["data_keys"] = self.data_keys.get_secret_value() if self.data_keys else None
        values["blind_index_key"] = self.blind_index_key.get_secret_value() if self.blind_index_key else None
        return values
