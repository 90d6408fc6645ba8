"""End to end (T5): teams and notifications over real RabbitMQ; the reviewer gets the "remind
review" email from day 4, and the reviewer and the region's admin get one escalation email from
day 7, at the aiosmtpd server. Identity's side is an outbox publishing its real event contracts
(accounts for notifications' recipients, verified volunteers and admin roles for teams)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from notifications.bootstrap import build_runtime as build_notifications
from notifications.config import NotificationsSettings
from notifications.main import create_app as notifications_app
from shared.auth import ROLE_NATIONAL_ADMIN, ROLE_REGIONAL_ADMIN, ROLE_VOLUNTEER, JwksSource, TokenSigner, TokenVerifier
from shared.clock import ManualClock
from shared.contracts.base import Event
from shared.contracts.identity import AccountRegistered, AccountRolesChanged, VolunteerVerified
from shared.db import UnitOfWork, asyncpg_dsn, make_engine, make_session_factory, new_metadata
from shared.messaging.amqp import AmqpBroker
from shared.messaging.relay import OutboxRelay
from shared.messaging.tables import define_messaging_tables
from shared.testing import TEST_OVERRIDES, SmtpServer, create_vhost, delete_vhost, eventually, running
from teams.bootstrap import build_runtime as build_teams
from teams.config import TeamsSettings
from teams.main import create_app as teams_app
from teams.models import RegionAdmin, Volunteer

ISSUER, AUDIENCE = "https://identity.test", "vs-api"


class IdentityOutbox:
    def __init__(self, database_url: str, amqp_url: str) -> None:
        self.metadata = new_metadata()
        self.messaging = define_messaging_tables(self.metadata, "identity")
        self.engine = make_engine(database_url, pool_size=2, max_overflow=2)
        self.broker = AmqpBroker(amqp_url)
        self.relay = OutboxRelay(
            self.engine, self.messaging, self.broker, service="identity", listen_dsn=asyncpg_dsn(database_url)
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
        uow = UnitOfWork(make_session_factory(self.engine), self.messaging, producer="identity")
        async with uow:
            for event in events:
                uow.raise_event(event)


async def test_review_reminder_and_escalation_emails_reach_reviewers_and_region_admin(
    database_factory: Callable[[str], Awaitable[str]], smtp_server: SmtpServer
) -> None:
    amqp_url = create_vhost()  # no other app of the run consumes these queues in our place
    clock = ManualClock(datetime(2026, 5, 4, 2, 0, tzinfo=UTC))
    signer = TokenSigner(TokenSigner.generate_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    verifier = TokenVerifier(JwksSource(keys=signer.jwks()), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    t_settings = TeamsSettings(
        database_url=await database_factory("teams"),
        amqp_url=amqp_url,
        jwt_issuer=ISSUER,
        **{**TEST_OVERRIDES, "review_sweep_interval_seconds": 0.2},
    )
    n_settings = NotificationsSettings(
        database_url=await database_factory("notifications"),
        amqp_url=amqp_url,
        smtp_port=smtp_server.port,
        mail_poll_interval=0.2,
        **TEST_OVERRIDES,
    )
    identity = IdentityOutbox(await database_factory("identity_outbox"), amqp_url)
    await identity.start()
    teams_runtime = build_teams(t_settings, clock=clock, verifier=verifier)
    tag = uuid.uuid4().hex[:8]
    reviewer, applicant, region_admin = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    address = {
        who: f"{name}-{tag}@example.org"
        for who, name in ((reviewer, "reviewer"), (applicant, "applicant"), (region_admin, "region"))
    }

    def auth(account: uuid.UUID, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {signer.issue(account, roles=roles or (ROLE_VOLUNTEER,))}"}

    try:
        async with (
            running(teams_app(t_settings, teams_runtime)) as teams,
            running(notifications_app(n_settings, build_notifications(n_settings))),
        ):
            await identity.produce(
                *[
                    AccountRegistered(account_id=a, username=f"u{a.hex[:10]}", display_name="李四", email=address[a])
                    for a in (reviewer, applicant, region_admin)
                ],
                *[
                    VolunteerVerified(
                        account_id=a,
                        volunteer_number=f"3301{a.int % 10**12:012d}",
                        masked_name="李*",
                        region_code="330106",
                        verified_at=clock.now(),
                    )
                    for a in (reviewer, applicant)
                ],
                AccountRolesChanged(
                    account_id=region_admin, roles=[ROLE_VOLUNTEER, ROLE_REGIONAL_ADMIN], region_code="330106"
                ),
            )
            for a in (reviewer, applicant, region_admin):  # notifications knows every recipient
                await smtp_server.wait_for(lambda m, a=a: address[a] in m.rcpt_tos, timeout=30)

            async def teams_knows_everyone() -> bool:
                async with teams_runtime.session_factory() as session:
                    volunteers = await session.execute(
                        select(Volunteer.account_id).where(Volunteer.account_id.in_([reviewer, applicant]))
                    )
                    return len(volunteers.all()) == 2 and await session.get(RegionAdmin, region_admin) is not None

            await eventually(teams_knows_everyone, timeout=30, interval=0.1)

            root: dict[str, Any] = {
                "name": "杭州市志愿服务联合会",
                "region_code": "330100",
                "contact": {"person": "赵老师", "phone": "0571-85000000", "email": "lh@example.org", "address": "杭州"},
                "admin_account_id": str(reviewer),
            }
            liaison = await teams.post("/api/v1/root-teams", json=root, headers=auth(uuid.uuid4(), ROLE_NATIONAL_ADMIN))
            assert liaison.status_code == 201, liaison.text
            registration = {
                "name": f"西湖{tag}志愿服务队",
                "region_code": "330106",
                "kind": "other",
                "liaison_team_id": liaison.json()["id"],
                "contact": {"person": "钱老师", "phone": "0571-86000000", "email": "xh@example.org", "address": "西湖"},
            }
            team = await teams.post("/api/v1/teams", json=registration, headers=auth(applicant))
            assert team.status_code == 201, team.text
            remind = f"/api/v1/teams/{team.json()['id']}/review/reminders"

            clock.advance(days=3)
            early = await teams.post(remind, headers=auth(applicant))
            assert early.status_code == 409
            assert early.json()["code"] == "reminder_too_early"

            clock.advance(days=1)
            reminded = await teams.post(remind, headers=auth(applicant))
            assert reminded.status_code == 202, reminded.text
            [reminder] = await smtp_server.wait_for(
                lambda m: address[reviewer] in m.rcpt_tos and "提醒审核" in m.subject, timeout=30
            )
            assert registration["name"] in reminder.text()
            assert "4" in reminder.text()

            clock.advance(days=3)  # day 7: the background sweep escalates
            escalations = await smtp_server.wait_for(
                lambda m: "审核超时" in m.subject and registration["name"] in m.subject, count=2, timeout=30
            )
            assert sorted(r for m in escalations for r in m.rcpt_tos) == sorted(
                [address[reviewer], address[region_admin]]
            )
            clock.advance(days=1)  # day 8: still one escalation per recipient
            await teams_runtime.sweep_overdue_reviews()
            outbox = teams_runtime.messaging.outbox
            async with teams_runtime.engine.connect() as conn:
                overdue = await conn.execute(select(outbox.c.id).where(outbox.c.event_type == "team.review_overdue"))
                assert len(overdue.all()) == 1
            assert not [m for m in smtp_server.to(address[applicant]) if "审核" in m.subject]
    finally:
        await identity.stop()
        delete_vhost(amqp_url)
