"""End to end over real RabbitMQ, PostgreSQL and SMTP: identity's and teams' events feed the projects
read models; an automatic admission emails the volunteer and a leave emails the project lead at once."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx

from notifications.bootstrap import build_runtime as build_notifications
from notifications.config import NotificationsSettings
from notifications.main import create_app as notifications_app
from projects.bootstrap import build_runtime as build_projects
from projects.config import ProjectsSettings
from projects.main import create_app as projects_app
from shared.auth import TokenSigner, TokenVerifier
from shared.clock import SystemClock, local_today
from shared.contracts.base import Event
from shared.contracts.identity import AccountRegistered, VolunteerVerified
from shared.contracts.teams import TeamApproved, TeamProjectLeadAppointed
from shared.messaging.amqp import AmqpBroker
from shared.testing import TEST_OVERRIDES, SmtpServer, envelope_for, eventually, running


async def publish(broker: AmqpBroker, event: Event) -> None:
    await broker.publish(envelope_for(event))


async def test_admission_and_leave_emails_reach_volunteer_and_lead(
    amqp_url: str,
    database_factory: Callable[[str], Awaitable[str]],
    smtp_server: SmtpServer,
    signer: TokenSigner,
    verifier_for: Callable[..., TokenVerifier],
) -> None:
    p_settings = ProjectsSettings(
        database_url=await database_factory("projects"),
        amqp_url=amqp_url,
        jwt_issuer=signer.issuer,
        jwt_audience=signer.audience,
        **TEST_OVERRIDES,
    )
    n_settings = NotificationsSettings(
        database_url=await database_factory("notifications"),
        amqp_url=amqp_url,
        smtp_port=smtp_server.port,
        mail_poll_interval=0.2,
        **TEST_OVERRIDES,
    )
    projects = projects_app(p_settings, build_projects(p_settings, verifier=verifier_for(None)))
    notifications = notifications_app(n_settings, build_notifications(n_settings))
    lead_id, volunteer_id, team_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    lead_mail = f"lead-{lead_id.hex[:10]}@example.org"
    volunteer_mail = f"vol-{volunteer_id.hex[:10]}@example.org"
    lead = {"Authorization": f"Bearer {signer.issue(lead_id)}"}
    volunteer = {"Authorization": f"Bearer {signer.issue(volunteer_id)}"}
    today = local_today(SystemClock())
    broker = AmqpBroker(amqp_url)
    try:
        async with running(projects) as client, running(notifications):
            for account_id, name, mail in ((lead_id, "王队长", lead_mail), (volunteer_id, "张三", volunteer_mail)):
                await publish(
                    broker,
                    AccountRegistered(
                        account_id=account_id, username=f"u{account_id.hex[:10]}", display_name=name, email=mail
                    ),
                )
            await publish(
                broker,
                VolunteerVerified(
                    account_id=volunteer_id,
                    volunteer_number="1101052026000001",
                    masked_name="张*",
                    region_code="110105",
                    verified_at=datetime.now(UTC),
                ),
            )
            await publish(
                broker,
                TeamApproved(
                    team_id=team_id,
                    name="朝阳区敬老志愿服务队",
                    region_code="110105",
                    applicant_account_id=uuid.uuid4(),
                    reviewed_by_account_id=uuid.uuid4(),
                ),
            )
            await publish(broker, TeamProjectLeadAppointed(team_id=team_id, account_id=lead_id))
            body = {
                "team_id": str(team_id),
                "title": "春运站台引导",
                "description": "火车站进站引导",
                "category": "交通",
                "region_code": "110105",
                "address": "北京站",
                "contact": {"name": "王队长", "phone": "010-87654321"},
                "starts_on": today.isoformat(),
                "ends_on": (today + timedelta(days=30)).isoformat(),
                "recruit_starts_on": today.isoformat(),
                "recruit_ends_on": (today + timedelta(days=10)).isoformat(),
                "positions": [{"name": "引导员", "quota": 3, "admission_mode": "auto"}],
            }

            async def created() -> httpx.Response | None:
                # the lead's role reaches projects over RabbitMQ; until then creating is refused
                response = await client.post("/api/v1/projects", json=body, headers=lead)
                return response if response.status_code == 201 else None

            project = (await eventually(created, timeout=30, interval=0.2)).json()
            published = await client.post(f"/api/v1/projects/{project['id']}/publication", headers=lead)
            assert published.status_code == 200, published.text
            position_id = project["positions"][0]["id"]

            async def applied() -> httpx.Response | None:
                response = await client.post(
                    f"/api/v1/positions/{position_id}/applications", json={}, headers=volunteer
                )
                return response if response.status_code == 201 else None

            application = (await eventually(applied, timeout=30, interval=0.2)).json()
            assert application["stage"] == "admitted"
            [admitted] = await smtp_server.wait_for(
                lambda m: volunteer_mail in m.rcpt_tos and "春运站台引导" in m.subject, timeout=30
            )
            assert "引导员" in admitted.text()

            left = await client.post(f"/api/v1/applications/{application['id']}/leave", headers=volunteer)
            assert left.status_code == 200, left.text
            [notice] = await smtp_server.wait_for(
                lambda m: lead_mail in m.rcpt_tos and "春运站台引导" in m.subject, timeout=30
            )
            # the lead knows the volunteer as projects shows them: masked name and number, never the name
            assert "志愿者张*(志愿者编号 1101052026000001)" in notice.text()
            assert "张三" not in notice.text()
            assert "引导员" in notice.text()
            # nobody waited for the freed place of this automatic position
            assert "目前没有排队的报名者" in notice.text()
            assert f"{n_settings.site_url}/projects/{project['id']}" in notice.text()
    finally:
        await broker.close()
