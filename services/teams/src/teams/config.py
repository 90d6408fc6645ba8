"""Settings of the teams service; environment variables start with ``TEAMS_``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings
from teams.support import SupportContacts


class AuthorityContact(BaseModel):
    """How an applicant reaches a registration authority (civil-affairs bureau) after 7 days."""

    model_config = ConfigDict(extra="forbid")

    name: str
    person: str = ""
    phone: str = ""
    email: str = ""
    address: str = ""
    working_hours: str = ""


class TeamsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TEAMS_", extra="ignore")

    service_name: str = "teams"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/teams"
    #: seconds between two runs of the overdue-review sweep (T5 escalation)
    review_sweep_interval_seconds: float = 300.0
    #: contact of each registration authority by region code (JSON in TEAMS_AUTHORITY_CONTACTS);
    #: a region without one uses the nearest region above it that has one
    authority_contacts: dict[str, AuthorityContact] = Field(default_factory=dict)
    #: the support lines shown by ``GET /api/v1/support-contacts`` (JSON in TEAMS_SUPPORT_CONTACTS, X2)
    support_contacts: SupportContacts = Field(default_factory=SupportContacts)

    def _secret_values(self) -> dict[str, str | None]:
        """Teams signs and derives nothing: no code of the service reads ``secret_key``, so
        production does not ask for ``TEAMS_SECRET_KEY``."""
        values = super()._secret_values()
        del values["secret_key"]
        return values
