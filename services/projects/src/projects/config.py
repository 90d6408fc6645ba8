"""Settings of the projects service; environment variables start with ``PROJECTS_``."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ProjectsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROJECTS_", extra="ignore")

    service_name: str = "projects"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/projects"
