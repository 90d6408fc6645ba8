"""Settings of the identity service; environment variables start with ``IDENTITY_``."""

from __future__ import annotations

from pydantic import SecretStr
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
    #: argon2id parameters (memory in KiB); the issue's floor is m=19456, t=2
    argon2_memory_kib: int = 19_456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1

    def _secret_values(self) -> dict[str, str | None]:
        values = super()._secret_values()
        values["jwt_private_key"] = self.jwt_private_key.get_secret_value() if self.jwt_private_key else None
        return values
