"""Settings of the projects service; environment variables start with ``PROJECTS_``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ProjectsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROJECTS_", extra="ignore")

    service_name: str = "projects"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/projects"

    #: most service minutes recorded for one volunteer on one day (P7)
    hours_daily_cap_minutes: int = 720
    #: days after the session's date before a recording counts as late (补录); 0: any later day
    hours_late_grace_days: int = 0
    #: most rows one bulk hours request may carry
    hours_bulk_max_rows: int = 2000
    #: a sign-in session open longer than this was a forgotten sign-out: it is closed with nothing
    #: recorded (flagged abandoned) and the lead records that day's hours by hand, as a late recording
    sign_session_max_minutes: int = 960
    #: how long the sign-in/sign-out code the lead shows on site stays valid
    sign_code_ttl_seconds: int = 300
    #: applications to one position this replica sends to the database at once; more wait in
    #: the replica without a connection (``projects.turns``: one row takes them in turn anyway)
    apply_turns_per_position: int = Field(default=4, ge=1)
    #: how often the auto-close sweep looks for projects past their end date (seconds)
    close_sweep_interval: float = 300.0
    #: projects closed per sweep transaction
    close_sweep_batch: int = 200
    #: run the auto-close sweep in this process (every replica may: the sweep skips locked rows)
    run_close_sweep: bool = True
    #: how often the admission sweep gives places freed for those waiting whose admission never
    #: ran (it failed, or its process stopped just after the freeing committed) (seconds)
    admission_sweep_interval: float = 60.0
    #: a freeing younger than this is left to its own admission, which runs right after its commit
    admission_sweep_grace: float = 30.0
    #: positions per sweep
    admission_sweep_batch: int = 100
    #: run the admission sweep in this process (every replica may)
    run_admission_sweep: bool = True
