"""Fixtures of the cross-service suites."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from shared.auth import TokenSigner, TokenVerifier
from shared.testing import SmtpServer
from tests.abuse.stack import OpenStack, Stack, full_stack


@pytest.fixture(scope="session")
def open_stack(
    database_factory: Callable[[str], Awaitable[str]],
    amqp_url: str,
    signer: TokenSigner,
    verifier_for: Callable[..., TokenVerifier],
    smtp_server: SmtpServer,
) -> OpenStack:
    """The four services over real HTTP on the session's PostgreSQL, RabbitMQ and SMTP server, each
    with a database of its own: ``async with open_stack() as stack`` (``identity_clock=`` as
    :func:`tests.abuse.stack.full_stack` takes it)."""

    def open_(**options: Any) -> AbstractAsyncContextManager[Stack]:
        return full_stack(
            database_factory=database_factory,
            amqp_url=amqp_url,
            signer=signer,
            verifier=verifier_for(),
            smtp_port=smtp_server.port,
            **options,
        )

    return open_
