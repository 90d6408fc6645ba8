"""A teams service running over the real PostgreSQL and RabbitMQ, on a clock the tests move,
fed identity's events (verified volunteers, admin roles) through an identity-like outbox."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared.auth import ROLE_NATIONAL_ADMIN, ROLE_REGIONAL_ADMIN, ROLE_VOLUNTEER, JwksSource, TokenSigner, TokenVerifier
from shared.clock import ManualClock
from shared.contracts.base import Event
from shared.contracts.identity import AccountRolesChanged, VolunteerVerified
from shared.db import UnitOfWork, asyncpg_dsn, make_engine, make_session_factory, new_metadata
from shared.messaging.amqp import AmqpBroker
from shared.messaging.relay import OutboxRelay
from shared.messaging.tables import define_messaging_tables
from shared.testing import TEST_OVERRIDES, create_vhost, delete_vhost, eventually, running, signing_key_pem
from teams.bootstrap import TeamsRuntime, build_runtime
from teams.config import TeamsSettings
from teams.main import create_app
from teams.models import RegionAdmin, Volunteer

ISSUER = "https://identity.test"
AUDIENCE = "vs-api"


class IdentityOutbox:
    """Identity reduced to its outbox: events committed here reach teams through RabbitMQ."""

    def __init__(self, database_url: str, amqp_url: str) -> None:
        self.metadata = new_metadata()
        self.messaging = define_messaging_tables(self.metadata, "identity")
        self.engine = make_engine(database_url, pool_size=2, max_overflow=2)
        self.session_factory = make_session_factory(self.engine)
        self.broker = AmqpBroker(amqp_url)
        self.relay = OutboxRelay(
            self.engine,
            self.messaging,
            self.broker,
            service="identity",
            listen_dsn=asyncpg_dsn(database_url),
            poll_interval=0.2,
        )

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.create_all)
        await self.relay.start()

    async def stop(self) -> None:
        await self.relay.stop()
        await self.broker.close()
        await self.engine.dispose()

    async def produce(self, *events: Event) -> None:
        uow = UnitOfWork(self.session_factory, self.messaging, producer="identity")
        async with uow:
            for event in events:
                uow.raise_event(event)


@dataclass
class Person:
    account_id: uuid.UUID
    roles: tuple[str, ...] = (ROLE_VOLUNTEER,)
    region: str | None = None
    volunteer_number: str | None = None


@dataclass
class Teams:
    """One running teams service, as a test sees it."""

    client: httpx.AsyncClient
    runtime: TeamsRuntime
    clock: ManualClock
    signer: TokenSigner
    identity: IdentityOutbox

    def auth(self, person: Person) -> dict[str, str]:
        token = self.signer.issue(person.account_id, roles=person.roles, region=person.region)
        return {"Authorization": f"Bearer {token}"}

    async def volunteers(self, count: int, region: str = "330106", masked_name: str = "张*") -> list[Person]:
        """Verified volunteers known to teams' read model (via volunteer.verified over RabbitMQ)."""
        made = [
            Person(uuid.uuid4(), volunteer_number=f"33{secrets.randbelow(10**14):014d}", region=None)
            for _ in range(count)
        ]
        await self.identity.produce(
            *[
                VolunteerVerified(
                    account_id=p.account_id,
                    volunteer_number=p.volunteer_number or "",
                    masked_name=masked_name,
                    region_code=region,
                    verified_at=datetime.now(UTC),
                )
                for p in made
            ]
        )
        ids = {p.account_id for p in made}

        async def arrived() -> bool:
            async with self.runtime.session_factory() as session:
                rows = await session.execute(select(Volunteer.account_id).where(Volunteer.account_id.in_(ids)))
                return len(rows.all()) == len(ids)

        await eventually(arrived, timeout=30, interval=0.1)
        return made

    async def region_admin(self, region: str, volunteer: Person | None = None) -> Person:
        """A regional admin, known to teams' read model (via account.roles_changed); ``volunteer``
        makes that person one (a verified volunteer who also administers a region)."""
        person = dataclasses.replace(
            volunteer or Person(uuid.uuid4()), roles=(ROLE_VOLUNTEER, ROLE_REGIONAL_ADMIN), region=region
        )
        await self.identity.produce(
            AccountRolesChanged(account_id=person.account_id, roles=list(person.roles), region_code=region)
        )

        async def arrived() -> bool:
            async with self.runtime.session_factory() as session:
                return await session.get(RegionAdmin, person.account_id) is not None

        await eventually(arrived, timeout=30, interval=0.1)
        return person

    def national_admin(self) -> Person:
        return Person(uuid.uuid4(), roles=(ROLE_VOLUNTEER, ROLE_NATIONAL_ADMIN))

    @staticmethod
    def contact(tag: str = "") -> dict[str, str]:
        return {
            "person": "王老师",
            "phone": "0571-88886666",
            "email": f"team{tag}@example.org",
            "address": "杭州市西湖区文三路1号",
        }

    async def root_team(self, region: str, admin: Person | None = None, *, authorised: bool = True) -> dict[str, Any]:
        """A root liaison team of ``region`` created by a national admin, with ``admin`` its admin."""
        body: dict[str, Any] = {
            "name": f"{region}区域{secrets.token_hex(3)}志愿服务联合会",
            "region_code": region,
            "contact": self.contact(region),
            "liaison_authorised": authorised,
        }
        if admin is not None:
            body["admin_account_id"] = str(admin.account_id)
        response = await self.client.post("/api/v1/root-teams", json=body, headers=self.auth(self.national_admin()))
        assert response.status_code == 201, response.text
        team: dict[str, Any] = response.json()
        return team

    def registration(self, region: str, liaison_id: Any = None, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"阳光{secrets.token_hex(3)}志愿服务队",
            "region_code": region,
            "kind": "other",
            "contact": self.contact(),
        }
        if liaison_id is not None:
            body["liaison_team_id"] = str(liaison_id)
        body.update(overrides)
        return body

    async def register(self, applicant: Person, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post("/api/v1/teams", json=body, headers=self.auth(applicant))

    async def approved_team(self, admin: Person, *, join_mode: str | None = None) -> dict[str, Any]:
        """An approved county-level team in Hangzhou's Xihu district with ``admin`` as its admin."""
        [liaison_admin] = await self.volunteers(1)
        city = await self.root_team("330100", liaison_admin)
        response = await self.register(admin, self.registration("330106", city["id"]))
        assert response.status_code == 201, response.text
        team: dict[str, Any] = response.json()
        decided = await self.client.post(
            f"/api/v1/teams/{team['id']}/review/decision",
            json={"outcome": "approved"},
            headers=self.auth(liaison_admin),
        )
        assert decided.status_code == 200, decided.text
        if join_mode is not None:
            changed = await self.client.patch(
                f"/api/v1/teams/{team['id']}", json={"join_mode": join_mode}, headers=self.auth(admin)
            )
            assert changed.status_code == 200, changed.text
        result: dict[str, Any] = decided.json()
        return result

    async def events(self, event_type: str, team_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
        """Payloads of the events teams committed to its outbox (what the relay publishes)."""
        outbox = self.runtime.messaging.outbox
        stmt = select(outbox.c.payload).where(outbox.c.event_type == event_type).order_by(outbox.c.seq)
        if team_id is not None:
            stmt = stmt.where(outbox.c.aggregate_id == str(team_id))
        async with self.runtime.engine.connect() as conn:
            return [row[0] for row in (await conn.execute(stmt)).all()]

    async def published(self, event_type: str, team_id: uuid.UUID) -> bool:
        outbox = self.runtime.messaging.outbox
        stmt = select(outbox.c.id).where(
            outbox.c.event_type == event_type,
            outbox.c.aggregate_id == str(team_id),
            outbox.c.published_at.is_not(None),
        )
        async with self.runtime.engine.connect() as conn:
            return (await conn.execute(stmt)).first() is not None


StartTeams = Callable[..., AbstractAsyncContextManager[Teams]]


@pytest.fixture(scope="session")
def start_teams(database_factory: Callable[[str], Awaitable[str]]) -> StartTeams:
    @asynccontextmanager
    async def start(clock: ManualClock | None = None, **overrides: Any) -> AsyncIterator[Teams]:
        # A vhost of its own: no other app in the run consumes teams' queues in its place.
        amqp_url = create_vhost()
        clock = clock or ManualClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
        signer = TokenSigner(signing_key_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
        verifier = TokenVerifier(JwksSource(keys=signer.jwks()), issuer=ISSUER, audience=AUDIENCE, clock=clock)
        settings = TeamsSettings(
            database_url=await database_factory("teams"),
            amqp_url=amqp_url,
            jwt_issuer=ISSUER,
            **{
                **TEST_OVERRIDES,
                "review_sweep_interval_seconds": 3600.0,
                "database_pool_size": 4,
                "database_max_overflow": 4,
                **overrides,
            },
        )
        identity = IdentityOutbox(await database_factory("identity_outbox"), amqp_url)
        await identity.start()
        runtime = build_runtime(settings, clock=clock, verifier=verifier)
        try:
            async with running(create_app(settings, runtime)) as client:
                yield Teams(client, runtime, clock, signer, identity)
        finally:
            await identity.stop()
            delete_vhost(amqp_url)

    return start


@pytest.fixture(scope="session")
async def teams(start_teams: StartTeams) -> AsyncIterator[Teams]:
    """One teams service the tests share; each test works in its own teams and accounts and only
    moves the clock forward."""
    async with start_teams() as service:
        yield service
