"""A projects service over real PostgreSQL and RabbitMQ, with a manual clock and tokens signed on it.

Read models (verified volunteers, teams and their admins and leads) are fed through the service's
own inbox dispatcher: the same idempotent path a RabbitMQ delivery takes, without the wait.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from projects.bootstrap import ProjectsRuntime, build_runtime
from projects.config import ProjectsSettings
from projects.main import create_app
from shared.auth import ROLE_NATIONAL_ADMIN, ROLE_VOLUNTEER, JwksSource, TokenSigner, TokenVerifier
from shared.clock import ManualClock
from shared.contracts.base import Event
from shared.contracts.identity import VolunteerVerified
from shared.contracts.teams import TeamAdminAppointed, TeamApproved, TeamProjectLeadAppointed
from shared.testing import TEST_OVERRIDES, envelope_for, running, signing_key_pem

ISSUER = "https://identity.test"
AUDIENCE = "vs-api"
#: 2026-01-05 09:00 in China: the projects below recruit in January and run to the end of March
START = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


def project_body(team_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "team_id": str(team_id),
        "title": "社区敬老志愿服务",
        "description": "陪伴社区老人,协助开展文体活动",
        "category": "敬老助残",
        "region_code": "110105",
        "address": "北京市朝阳区某街道社区服务中心",
        "contact": {"name": "王老师", "phone": "010-12345678", "email": "contact@example.org"},
        "starts_on": "2026-01-05",
        "ends_on": "2026-03-31",
        "recruit_starts_on": "2026-01-05",
        "recruit_ends_on": "2026-01-31",
        "requirements": "有耐心",
        "positions": [{"name": "陪伴员", "quota": 5, "admission_mode": "manual"}],
    }
    body.update(overrides)
    return body


@dataclass
class World:
    """One running projects service as a test sees it, with helpers to make people and projects."""

    client: httpx.AsyncClient
    runtime: ProjectsRuntime
    clock: ManualClock
    signer: TokenSigner
    database_url: str
    notes: dict[str, Any] = field(default_factory=dict)

    def auth(self, account_id: uuid.UUID, *roles: str) -> dict[str, str]:
        # Long-lived: tests move the clock by months (closing, extension) and keep their headers.
        token = self.signer.issue(account_id, roles=roles or (ROLE_VOLUNTEER,), ttl=timedelta(days=400))
        return {"Authorization": f"Bearer {token}"}

    def national_admin(self) -> dict[str, str]:
        return self.auth(uuid.uuid4(), ROLE_NATIONAL_ADMIN)

    async def feed(self, event: Event) -> None:
        """Deliver another service's event through the inbox dispatcher (as a consumer would)."""
        dispatcher = self.runtime.dispatcher
        assert dispatcher is not None
        sub = next(
            s.subscription
            for s in dispatcher.handlers.specs.values()
            if event.event_type in s.subscription.routing_keys
        )
        await dispatcher.handle(sub, envelope_for(event))

    async def volunteer(self, *, verified: bool = True) -> tuple[uuid.UUID, dict[str, str]]:
        account_id = uuid.uuid4()
        if verified:
            await self.feed(
                VolunteerVerified(
                    account_id=account_id,
                    volunteer_number=f"11{account_id.int % 10**16:016d}",
                    masked_name="张*",
                    region_code="110105",
                    verified_at=self.clock.now(),
                )
            )
        return account_id, self.auth(account_id)

    async def team(self) -> tuple[uuid.UUID, uuid.UUID, dict[str, str]]:
        """An approved team; returns (team_id, admin_id, admin headers)."""
        team_id, admin_id = uuid.uuid4(), uuid.uuid4()
        await self.feed(
            TeamApproved(
                team_id=team_id,
                name="朝阳区敬老志愿服务队",
                region_code="110105",
                applicant_account_id=admin_id,
                reviewed_by_account_id=uuid.uuid4(),
            )
        )
        await self.feed(TeamAdminAppointed(team_id=team_id, account_id=admin_id))
        return team_id, admin_id, self.auth(admin_id)

    async def lead(self, team_id: uuid.UUID) -> tuple[uuid.UUID, dict[str, str]]:
        lead_id = uuid.uuid4()
        await self.feed(TeamProjectLeadAppointed(team_id=team_id, account_id=lead_id))
        return lead_id, self.auth(lead_id)

    async def project(
        self,
        *,
        positions: list[dict[str, Any]] | None = None,
        publish: bool = True,
        **overrides: Any,
    ) -> Project:
        team_id, admin_id, admin = await self.team()
        lead_id, lead = await self.lead(team_id)
        body = project_body(team_id, lead_account_id=str(lead_id), **overrides)
        if positions is not None:
            body["positions"] = positions
        response = await self.client.post("/api/v1/projects", json=body, headers=lead)
        assert response.status_code == 201, response.text
        data = response.json()
        if publish:
            published = await self.client.post(f"/api/v1/projects/{data['id']}/publication", headers=lead)
            assert published.status_code == 200, published.text
            data = published.json()
        return Project(data, team_id, admin_id, admin, lead_id, lead)

    async def apply(self, position_id: str, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post(f"/api/v1/positions/{position_id}/applications", json={}, headers=headers)

    async def admitted_volunteer(self, project: Project, position: int = 0) -> tuple[uuid.UUID, dict[str, str], str]:
        """A verified volunteer admitted to the project's position; returns (id, headers, application id)."""
        account_id, headers = await self.volunteer()
        applied = await self.apply(project.position(position), headers)
        assert applied.status_code == 201, applied.text
        application_id = applied.json()["id"]
        if applied.json()["stage"] != "admitted":
            admitted = await self.client.post(f"/api/v1/applications/{application_id}/admission", headers=project.lead)
            assert admitted.status_code == 200, admitted.text
        return account_id, headers, application_id

    async def outbox(self, event_type: str) -> list[dict[str, Any]]:
        from sqlalchemy import select

        table = self.runtime.messaging.outbox
        async with self.runtime.engine.connect() as conn:
            rows = await conn.execute(
                select(table.c.payload).where(table.c.event_type == event_type).order_by(table.c.seq)
            )
            return [r[0] for r in rows]


@dataclass
class Project:
    data: dict[str, Any]
    team_id: uuid.UUID
    admin_id: uuid.UUID
    admin: dict[str, str]
    lead_id: uuid.UUID
    lead: dict[str, str]

    @property
    def id(self) -> str:
        return str(self.data["id"])

    def position(self, index: int = 0) -> str:
        return str(self.data["positions"][index]["id"])


StartProjects = Callable[..., AbstractAsyncContextManager[World]]


@pytest.fixture(scope="session")
def start_projects(amqp_url: str, database_factory: Callable[[str], Awaitable[str]]) -> StartProjects:
    @asynccontextmanager
    async def start(
        *,
        database_url: str | None = None,
        clock: ManualClock | None = None,
        signer: TokenSigner | None = None,
        **overrides: Any,
    ) -> AsyncIterator[World]:
        clock = clock or ManualClock(START)
        signer = signer or TokenSigner(signing_key_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
        verifier = TokenVerifier(JwksSource(keys=signer.jwks()), issuer=ISSUER, audience=AUDIENCE, clock=clock)
        url = database_url or await database_factory("projects")
        settings = ProjectsSettings(
            database_url=url,
            amqp_url=amqp_url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            **{**TEST_OVERRIDES, "close_sweep_interval": 3600.0, "admission_sweep_interval": 3600.0, **overrides},
        )
        runtime = build_runtime(settings, clock=clock, verifier=verifier)
        app = create_app(settings, runtime)
        async with running(app) as client:
            yield World(client, runtime, clock, signer, url)

    return start


@pytest.fixture(scope="module")
async def shared_world(start_projects: StartProjects) -> AsyncIterator[World]:
    async with start_projects() as world:
        yield world


@pytest.fixture
async def world(shared_world: World) -> World:
    """The module's service with its clock back at the start (tests use fresh ids, so they do not meet)."""
    shared_world.clock.set(START)
    return shared_world


def on(day: date) -> str:
    return day.isoformat()
