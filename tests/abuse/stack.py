"""The four services served over real HTTP (uvicorn) on the test's event loop, on real PostgreSQL
and RabbitMQ, with real users of each role for the abuse suites (schemathesis, access matrix,
input abuse).

The servers run as tasks of the running loop, so a sync client (schemathesis uses ``requests``)
must be driven from a worker thread (``asyncio.to_thread``) to leave the loop free to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import uvicorn
from fastapi import FastAPI

from shared.auth import TokenSigner, TokenVerifier
from shared.clock import Clock
from shared.testing import TEST_OVERRIDES, eventually, free_port, sign_up_body

SERVICES = ("identity", "teams", "projects", "notifications")


@dataclass
class User:
    role: str
    account_id: uuid.UUID
    token: str
    username: str = ""
    password: str = ""
    region: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Stack:
    urls: dict[str, str]
    apps: dict[str, FastAPI]
    users: dict[str, User] = field(default_factory=dict)

    def url(self, service: str, path: str = "") -> str:
        return self.urls[service] + path


def build_apps(
    *,
    database_urls: dict[str, str],
    amqp_url: str,
    signer: TokenSigner,
    verifier: TokenVerifier,
    smtp_port: int,
    identity_clock: Clock | None = None,
) -> dict[str, FastAPI]:
    from identity.bootstrap import build_runtime as build_identity
    from identity.config import IdentitySettings
    from identity.main import create_app as identity_app
    from notifications.bootstrap import build_runtime as build_notifications
    from notifications.config import NotificationsSettings
    from notifications.main import create_app as notifications_app
    from projects.bootstrap import build_runtime as build_projects
    from projects.config import ProjectsSettings
    from projects.main import create_app as projects_app
    from teams.bootstrap import build_runtime as build_teams
    from teams.config import TeamsSettings
    from teams.main import create_app as teams_app

    common: dict[str, Any] = {
        **TEST_OVERRIDES,
        "amqp_url": amqp_url,
        "jwt_issuer": signer.issuer,
        "jwt_audience": signer.audience,
    }
    ids = IdentitySettings(database_url=database_urls["identity"], **common)
    # support lines configured, so the fuzz checks their responses against the schema
    support = {
        "national": {"phones": ["010-12345678"]},
        "data_import": {"emails": ["data-import@volunteer.example.cn"]},
        "provincial": {"330000": {"phones": ["0571-88886666"], "working_hours": "工作日 9:00-17:00"}},
        "working_hours": "工作日 8:30-17:30",
    }
    ts = TeamsSettings(database_url=database_urls["teams"], support_contacts=support, **common)
    ps = ProjectsSettings(database_url=database_urls["projects"], **common)
    ns = NotificationsSettings(database_url=database_urls["notifications"], smtp_port=smtp_port, **common)
    return {
        "identity": identity_app(ids, build_identity(ids, signer=signer, clock=identity_clock)),
        "teams": teams_app(ts, build_teams(ts, verifier=verifier)),
        "projects": projects_app(ps, build_projects(ps, verifier=verifier)),
        "notifications": notifications_app(ns, build_notifications(ns, verifier=verifier)),
    }


@contextlib.asynccontextmanager
async def serving(apps: dict[str, FastAPI]) -> AsyncIterator[dict[str, str]]:
    """Each app behind its own uvicorn server on a free loopback port (lifespan included)."""
    servers: list[uvicorn.Server] = []
    tasks: list[asyncio.Task[None]] = []
    urls: dict[str, str] = {}
    try:
        for name, app in apps.items():
            port = free_port()
            # a connection a fuzzed request left open must not hold the stop (one did, at 100 examples)
            config = uvicorn.Config(
                app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=5
            )
            server = uvicorn.Server(config)
            servers.append(server)
            tasks.append(asyncio.create_task(server.serve()))
            urls[name] = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=5) as client:
            for name, url in urls.items():
                await _wait_ready(client, name, url)
        yield urls
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


async def _wait_ready(client: httpx.AsyncClient, name: str, url: str) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            # ready, not only degraded: the tests need the consumers running
            if (await client.get(url + "/readyz")).json().get("status") == "ready":
                return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name} did not become ready at {url}")
        await asyncio.sleep(0.1)


async def seed_users(stack: Stack, signer: TokenSigner) -> None:
    """Real accounts through identity's own API: two volunteers, a regional admin of Beijing
    (110000) and a national admin (bootstrapped as `create-admin` does)."""

    from identity.admin import create_national_admin

    identity = stack.apps["identity"]
    async with httpx.AsyncClient(base_url=stack.urls["identity"], timeout=30) as client:
        for role in ("volunteer", "other_volunteer", "regional_admin"):
            body = sign_up_body()
            response = await client.post("/api/v1/accounts", json=body)
            assert response.status_code == 201, response.text
            account_id = uuid.UUID(response.json()["id"])
            region = "110000" if role == "regional_admin" else None
            roles = ["volunteer", "regional_admin"] if region else ["volunteer"]
            stack.users[role] = User(
                role=role,
                account_id=account_id,
                token=signer.issue(account_id, roles=roles, region=region, ttl=_long()),
                username=body["username"],
                password=body["password"],
                region=region,
            )
        admin_name = f"admin{uuid.uuid4().hex[:8]}"
        admin_id = await create_national_admin(
            identity.state.runtime,
            username=admin_name,
            password="national admin passphrase 2026",
            email=f"{admin_name}@example.org",
            display_name="国家管理员",
        )
        stack.users["national_admin"] = User(
            role="national_admin",
            account_id=admin_id,
            token=signer.issue(admin_id, roles=["national_admin"], ttl=_long()),
            username=admin_name,
            password="national admin passphrase 2026",
        )
        admin = stack.users["national_admin"]
        regional = stack.users["regional_admin"]
        response = await client.put(
            f"/api/v1/admin/accounts/{regional.account_id}/roles",
            json={"roles": ["volunteer", "regional_admin"], "admin_region": "110000"},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text


def _long() -> Any:
    from datetime import timedelta

    return timedelta(hours=2)


class OpenStack(Protocol):
    """The ``open_stack`` fixture (``tests/conftest.py``): :func:`full_stack` on the session's
    PostgreSQL, RabbitMQ and SMTP server."""

    def __call__(self, **options: Any) -> contextlib.AbstractAsyncContextManager[Stack]: ...


@contextlib.asynccontextmanager
async def full_stack(
    *,
    database_factory: Callable[[str], Awaitable[str]],
    amqp_url: str,
    signer: TokenSigner,
    verifier: TokenVerifier,
    smtp_port: int,
    identity_clock: Clock | None = None,
) -> AsyncIterator[Stack]:
    """``identity_clock``: a ManualClock for identity's time rules (reset links, login locks)."""
    database_urls = {service: await database_factory(service) for service in SERVICES}
    apps = build_apps(
        database_urls=database_urls,
        amqp_url=amqp_url,
        signer=signer,
        verifier=verifier,
        smtp_port=smtp_port,
        identity_clock=identity_clock,
    )
    async with serving(apps) as urls:
        stack = Stack(urls=urls, apps=apps)
        await seed_users(stack, signer)
        yield stack


async def created(
    client: httpx.AsyncClient, method: str, url: str, user: User, *, status: int = 201, **kwargs: Any
) -> dict[str, Any]:
    """The call's JSON once it answers ``status``: retried while a fact it needs (a verification,
    an approval, a role) is still travelling to the service over RabbitMQ."""

    async def attempt() -> dict[str, Any] | None:
        response = await client.request(method, url, headers=user.headers, **kwargs)
        assert response.status_code < 500, response.text
        if response.status_code != status:
            return None
        body: dict[str, Any] = response.json()
        return body

    found: dict[str, Any] = await eventually(attempt, timeout=60, interval=0.3)
    return found
