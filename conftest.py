"""Fixtures every suite shares: a throw-away RabbitMQ vhost, an SMTP server, token keys,
and a factory of throw-away databases. Everything runs against the real servers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from shared.auth import JwksSource, TokenSigner, TokenVerifier
from shared.clock import ManualClock
from shared.logging import configure_logging
from shared.testing import (
    RAW_LOGS,
    SmtpServer,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    signing_key_pem,
)

ISSUER = "https://identity.test"
AUDIENCE = "vs-api"

configure_logging("tests", "console", "INFO")
logging.getLogger("mail.log").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)  # and alembic every plugin it loads


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = create_vhost()
    yield url
    delete_vhost(url)


@pytest.fixture(scope="session")
async def database_factory() -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    created: list[str] = []

    async def make(prefix: str) -> str:
        url = await create_database(prefix)
        created.append(url)
        return url

    yield make
    for url in created:
        await drop_database(url)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    return TokenSigner(signing_key_pem(), issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def verifier_for(signer: TokenSigner) -> Callable[..., TokenVerifier]:
    def make(clock: object | None = None) -> TokenVerifier:
        return TokenVerifier(
            JwksSource(keys=signer.jwks()),
            issuer=ISSUER,
            audience=AUDIENCE,
            clock=clock,  # type: ignore[arg-type]
        )

    return make


# -- personal data in logs -----------------------------------------------------------------
# Every log record of the whole run is kept *before* the formatter masks personal data, so the
# privacy test (tests/privacy) proves the code never logs it, not merely that the mask works.
logging.getLogger().addHandler(RAW_LOGS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The log scan reads what the rest of the run logged, so it goes last.
    last = [i for i in items if i.get_closest_marker("runs_last")]
    items[:] = [i for i in items if not i.get_closest_marker("runs_last")] + last


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A service stop that had to be cut short (``shutdown_step_stuck``) is reported with where its
    tasks waited, even when no test failed because of it."""
    stuck = [
        line
        for line in RAW_LOGS.lines
        if "shutdown_step_stuck" in line and "test_runtime_stop.py" not in line  # that test hangs on purpose
    ]
    if stuck:
        terminalreporter.section("service stops cut short")
        for line in stuck:
            terminalreporter.write_line(line)
