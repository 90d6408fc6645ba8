"""An identity service running on the real PostgreSQL and RabbitMQ, on a manual clock.

Tokens come from the service's own signer (on the same manual clock), so a test can both log
in for real and mint an admin's token for any role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from identity.bootstrap import build_runtime
from identity.config import IdentitySettings
from identity.main import create_app
from identity.testing import FAST, Identity, StartIdentity
from shared.clock import ManualClock
from shared.messaging.amqp import AmqpBroker
from shared.testing import TEST_OVERRIDES, running


@pytest.fixture(scope="session")
def start_identity(amqp_url: str, database_factory: Callable[[str], Awaitable[str]]) -> StartIdentity:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Identity]:
        clock = ManualClock(datetime.now(UTC))
        # a fresh database, unless the test restarts the service on one it had (key rotation)
        database_url = overrides.pop("database_url", None) or await database_factory("identity")
        settings = IdentitySettings(
            database_url=database_url,
            amqp_url=amqp_url,
            **{**TEST_OVERRIDES, **FAST, **overrides},
        )
        runtime = build_runtime(settings, clock=clock)
        async with running(create_app(settings, runtime)) as client:
            yield Identity(client, runtime, clock, settings)

    return start


@pytest.fixture(scope="module")
async def identity(start_identity: StartIdentity) -> AsyncIterator[Identity]:
    """One service per test module; tests use fresh usernames and ID numbers."""
    async with start_identity() as service:
        yield service


@pytest.fixture(scope="session")
async def publisher(amqp_url: str) -> AsyncIterator[AmqpBroker]:
    """Publishes other services' events (teams') into the broker identity consumes from."""
    broker = AmqpBroker(amqp_url)
    yield broker
    await broker.close()
