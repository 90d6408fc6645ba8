"""Identity's emails end to end: identity's outbox → RabbitMQ → notifications → the SMTP test
server (reset links, temporary-password notices, verification outcomes)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from identity.testing import Identity
from shared.contracts.teams import TeamAdminAppointed, TeamMemberJoined
from shared.messaging.amqp import AmqpBroker
from shared.testing import TEST_OVERRIDES, SmtpServer, envelope_for, eventually, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def notifications(
    amqp_url: str, database_factory: Callable[[str], Awaitable[str]], smtp_server: SmtpServer
) -> AsyncIterator[None]:
    from notifications.bootstrap import build_runtime
    from notifications.config import NotificationsSettings
    from notifications.main import create_app

    settings = NotificationsSettings(
        database_url=await database_factory("notifications"),
        amqp_url=amqp_url,
        smtp_port=smtp_server.port,
        mail_poll_interval=0.2,
        **TEST_OVERRIDES,
    )
    async with running(create_app(settings, build_runtime(settings))):
        yield


async def test_forgotten_password_link_arrives_by_email_and_works_once(
    identity: Identity, notifications: None, smtp_server: SmtpServer
) -> None:
    address = f"reset-{uuid.uuid4().hex[:8]}@example.org"
    body, _ = await identity.sign_up(email=address)
    await smtp_server.wait_for(lambda m: address in m.rcpt_tos, timeout=45)  # the welcome
    await identity.client.post("/api/v1/password-resets", json={"email": address})
    # the verification outcome may arrive in between: wait for the email that carries a link
    [mail] = await smtp_server.wait_for(lambda m: address in m.rcpt_tos and "token=" in m.text(), timeout=45)
    match = re.search(r"token=([A-Za-z0-9_\-]+)", mail.text())
    assert match, mail.text()
    done = await identity.client.post(
        "/api/v1/password-resets/confirmations",
        json={"token": match.group(1), "new_password": "from the emailed link"},
    )
    assert done.status_code == 204, done.text
    assert (await identity.log_in(body["username"], "from the emailed link")).status_code == 200


async def test_member_is_told_by_email_when_a_team_admin_sets_a_temporary_password(
    identity: Identity, notifications: None, smtp_server: SmtpServer, publisher: AmqpBroker
) -> None:
    address = f"temp-{uuid.uuid4().hex[:8]}@example.org"
    _, account = await identity.sign_up(email=address)
    team_id, admin_id, member_id = uuid.uuid4(), uuid.uuid4(), uuid.UUID(account["id"])
    envelopes = [
        envelope_for(TeamAdminAppointed(team_id=team_id, account_id=admin_id)),
        envelope_for(TeamMemberJoined(team_id=team_id, account_id=member_id)),
    ]
    for envelope in envelopes:
        await publisher.publish(envelope)

    async def read_model_ready() -> bool:
        rows = await identity.fetch(
            "SELECT count(*) FROM inbox WHERE message_id = ANY(:ids)", ids=[e.event_id for e in envelopes]
        )
        return bool(rows[0][0] == 2)

    await eventually(read_model_ready, timeout=30)
    reset = await identity.client.post(
        f"/api/v1/teams/{team_id}/members/{member_id}/temporary-passwords", headers=identity.bearer(admin_id)
    )
    assert reset.status_code == 201
    temporary = reset.json()["temporary_password"]
    mails = await smtp_server.wait_for(lambda m: address in m.rcpt_tos, count=2, timeout=45)
    notice = [m for m in mails if "欢迎" not in m.subject]
    assert notice
    assert temporary not in notice[-1].text()  # the notice never carries the password
