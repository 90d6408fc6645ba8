"""Settings of the teams service; environment variables start with ``TEAMS_``."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class TeamsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TEAMS_", extra="ignore")

    service_name: str = "teams"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/teams"
