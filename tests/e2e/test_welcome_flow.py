"""End to end: sign-up on identity → account.registered over real RabbitMQ → welcome email at SMTP."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from identity.bootstrap import build_runtime as build_identity
from identity.config import IdentitySettings
from identity.main import create_app as identity_app
from notifications.bootstrap import build_runtime as build_notifications
from notifications.config import NotificationsSettings
from notifications.main import create_app as notifications_app
from shared.auth import TokenSigner
from shared.testing import TEST_OVERRIDES, SmtpServer, running, sign_up_body


async def test_sign_up_sends_a_welcome_email_across_rabbitmq(
    amqp_url: str,
    database_factory: Callable[[str], Awaitable[str]],
    smtp_server: SmtpServer,
    signer: TokenSigner,
) -> None:
    id_settings = IdentitySettings(
        database_url=await database_factory("identity"),
        amqp_url=amqp_url,
        jwt_issuer=signer.issuer,
        **TEST_OVERRIDES,
    )
    n_settings = NotificationsSettings(
        database_url=await database_factory("notifications"),
        amqp_url=amqp_url,
        smtp_port=smtp_server.port,
        mail_poll_interval=0.2,
        **TEST_OVERRIDES,
    )
    identity = identity_app(id_settings, build_identity(id_settings, signer=signer))
    notifications = notifications_app(n_settings, build_notifications(n_settings))
    address = f"new-{uuid.uuid4().hex[:8]}@example.org"
    async with running(identity) as id_client, running(notifications):
        response = await id_client.post(
            "/api/v1/accounts",
            json=sign_up_body(email=address),
        )
        assert response.status_code == 201, response.text
        [email] = await smtp_server.wait_for(lambda m: address in m.rcpt_tos, timeout=20)
    assert "欢迎" in email.subject
    assert "张三" in email.text()
    assert email.message["Message-ID"].startswith("<")
