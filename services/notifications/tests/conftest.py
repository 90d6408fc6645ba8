"""A notifications service running over the real RabbitMQ, PostgreSQL and an aiosmtpd server,
and a publisher that sends other services' events to it through the broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from notifications.bootstrap import NotificationsRuntime, build_runtime
from notifications.config import NotificationsSettings
from notifications.main import create_app
from shared.auth import ROLE_NATIONAL_ADMIN, TokenSigner, TokenVerifier
from shared.clock import Clock
from shared.contracts.base import Event
from shared.contracts.identity import AccountRegistered
from shared.messaging.amqp import AmqpBroker
from shared.messaging.envelope import Envelope
from shared.testing import TEST_OVERRIDES, SmtpServer, eventually, running

#: short back-off so retries happen within a test
FAST_RETRIES: dict[str, Any] = {
    "mail_poll_interval": 0.1,
    "mail_retry_base_seconds": 0.05,
    "mail_retry_max_seconds": 0.4,
    "mail_max_attempts": 200,
}


def envelope_for(event: Event, *, event_id: uuid.UUID | None = None, occurred_at: datetime | None = None) -> Envelope:
    return Envelope(
        event_id=event_id or uuid.uuid4(),
        event_type=event.event_type,
        schema_version=event.schema_version,
        occurred_at=occurred_at or datetime.now(UTC),
        producer=event.producer,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_key(),
        payload=event.model_dump(mode="json"),
    )


@dataclass
class Service:
    """One running notifications service, as a test sees it."""

    client: httpx.AsyncClient
    runtime: NotificationsRuntime
    publisher: AmqpBroker
    smtp: SmtpServer
    admin_token: str
    database_url: str
    registered: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def publish(self, event: Event, **kwargs: Any) -> Envelope:
        envelope = envelope_for(event, **kwargs)
        await self.publisher.publish(envelope)
        return envelope

    async def register(self, *, language: str = "zh", name: str = "李四", wait: bool = True) -> tuple[uuid.UUID, str]:
        """An account known to the recipients read model (its welcome email consumed)."""
        account_id = uuid.uuid4()
        address = f"u-{account_id.hex[:12]}@example.org"
        await self.publish(
            AccountRegistered(
                account_id=account_id,
                username=f"u{account_id.hex[:10]}",
                display_name=name,
                email=address,
                language=language,
            )
        )
        if wait:
            await self.smtp.wait_for(lambda m: address in m.rcpt_tos, timeout=20)
        self.registered[account_id] = address
        return account_id, address

    async def emails(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/emails", params=params, headers=self.admin)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def settled(self, event_id: uuid.UUID, count: int = 1, status: str = "sent") -> list[dict[str, Any]]:
        """Wait until the event's ``count`` emails reached ``status``."""

        async def check() -> list[dict[str, Any]] | None:
            items = await self.emails(event_id=str(event_id))
            return items if len(items) == count and all(i["status"] == status for i in items) else None

        result: list[dict[str, Any]] = await eventually(check, timeout=20, interval=0.1)
        return result


StartService = Callable[..., AbstractAsyncContextManager[Service]]


@pytest.fixture(scope="session")
async def publisher(amqp_url: str) -> AsyncIterator[AmqpBroker]:
    broker = AmqpBroker(amqp_url)
    yield broker
    await broker.close()


@pytest.fixture(scope="session")
def start_service(
    amqp_url: str,
    database_factory: Callable[[str], Awaitable[str]],
    signer: TokenSigner,
    verifier_for: Callable[..., TokenVerifier],
    publisher: AmqpBroker,
) -> StartService:
    @asynccontextmanager
    async def start(
        smtp: SmtpServer,
        *,
        database_url: str | None = None,
        clock: Clock | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Service]:
        url = database_url or await database_factory("notifications")
        settings = NotificationsSettings(
            database_url=url,
            amqp_url=amqp_url,
            smtp_port=smtp.port,
            jwt_issuer=signer.issuer,
            **{**TEST_OVERRIDES, **FAST_RETRIES, **overrides},
        )
        runtime = build_runtime(settings, clock=clock, verifier=verifier_for(clock))
        app = create_app(settings, runtime)
        async with running(app) as client:
            token = signer.issue(uuid.uuid4(), roles=[ROLE_NATIONAL_ADMIN])
            yield Service(client, runtime, publisher, smtp, token, url)

    return start
