"""A token's platform roles are bounded by what the service knows of them now
(``app.state.principal_roles``): a withdrawn role stops working before the token expires."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from shared.auth import (
    ROLE_CHANGE_MARGIN_SECONDS,
    ROLE_NATIONAL_ADMIN,
    ROLE_REGIONAL_ADMIN,
    ROLE_VOLUNTEER,
    CurrentPrincipal,
    JwksSource,
    KnownRoles,
    OptionalPrincipal,
    Principal,
    TokenSigner,
    TokenVerifier,
)
from shared.clock import ManualClock
from shared.web import configure_app

ISSUER = "https://identity.test"
AUDIENCE = "vs-api"
PEM = TokenSigner.generate_pem()
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


class Lookup:
    """What the service knows, per account; records who was looked up."""

    def __init__(self) -> None:
        self.known: dict[uuid.UUID, KnownRoles] = {}
        self.asked: list[uuid.UUID] = []

    async def __call__(self, account_id: uuid.UUID) -> KnownRoles | None:
        self.asked.append(account_id)
        return self.known.get(account_id)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def signer(clock: ManualClock) -> TokenSigner:
    return TokenSigner(PEM, issuer=ISSUER, audience=AUDIENCE, clock=clock)


@pytest.fixture
def lookup() -> Lookup:
    return Lookup()


@pytest.fixture
async def client(signer: TokenSigner, clock: ManualClock, lookup: Lookup) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    configure_app(app, service="authtest", cors_origins=[], max_body_bytes=1024)
    app.state.verifier = TokenVerifier(JwksSource(keys=signer.jwks()), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    app.state.principal_roles = lookup

    @app.get("/api/v1/me")
    async def me(principal: CurrentPrincipal) -> dict[str, object]:
        return {"roles": sorted(principal.roles), "region": principal.region}

    @app.get("/api/v1/public")
    async def public(principal: OptionalPrincipal) -> dict[str, object]:
        return {"roles": sorted(principal.roles) if principal else None}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


def bearer(signer: TokenSigner, account: uuid.UUID, *roles: str, region: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.issue(account, roles=roles, region=region)}"}


async def test_volunteer_tokens_are_never_looked_up(
    client: httpx.AsyncClient, signer: TokenSigner, lookup: Lookup
) -> None:
    account = uuid.uuid4()
    lookup.known[account] = KnownRoles(frozenset(), changed_at=START + timedelta(hours=1))
    me = await client.get("/api/v1/me", headers=bearer(signer, account, ROLE_VOLUNTEER))
    public = await client.get("/api/v1/public", headers=bearer(signer, account, ROLE_VOLUNTEER))
    assert me.json()["roles"] == public.json()["roles"] == [ROLE_VOLUNTEER]
    assert lookup.asked == []


async def test_role_withdrawn_after_the_token_was_issued_stops_working(
    client: httpx.AsyncClient, signer: TokenSigner, clock: ManualClock, lookup: Lookup
) -> None:
    account = uuid.uuid4()
    headers = bearer(signer, account, ROLE_VOLUNTEER, ROLE_NATIONAL_ADMIN)
    before = await client.get("/api/v1/me", headers=headers)
    assert before.json()["roles"] == [ROLE_NATIONAL_ADMIN, ROLE_VOLUNTEER]  # nothing known: the token stands
    clock.advance(minutes=1)
    lookup.known[account] = KnownRoles(frozenset({ROLE_VOLUNTEER}), changed_at=clock.now())
    after = await client.get("/api/v1/me", headers=headers)
    public = await client.get("/api/v1/public", headers=headers)
    assert after.json()["roles"] == public.json()["roles"] == [ROLE_VOLUNTEER]
    assert lookup.asked == [account, account, account]


async def test_token_issued_after_the_change_stands(
    client: httpx.AsyncClient, signer: TokenSigner, clock: ManualClock, lookup: Lookup
) -> None:
    """It carries the roles of the change already, and those granted since (their event may be on its way)."""
    account = uuid.uuid4()
    lookup.known[account] = KnownRoles(frozenset({ROLE_VOLUNTEER}), changed_at=clock.now())
    clock.advance(seconds=ROLE_CHANGE_MARGIN_SECONDS + 1)
    granted_since = await client.get("/api/v1/me", headers=bearer(signer, account, ROLE_NATIONAL_ADMIN))
    assert granted_since.json()["roles"] == [ROLE_NATIONAL_ADMIN]


async def test_token_issued_within_seconds_of_the_change_is_still_bounded_by_it(
    client: httpx.AsyncClient, signer: TokenSigner, clock: ManualClock, lookup: Lookup
) -> None:
    """A login that read the roles just before the withdrawal committed can be stamped (in whole
    seconds) after it: within the margin the token is bounded by the change."""
    account = uuid.uuid4()
    lookup.known[account] = KnownRoles(frozenset({ROLE_VOLUNTEER}), changed_at=clock.now())
    clock.advance(seconds=1)
    stale = await client.get("/api/v1/me", headers=bearer(signer, account, ROLE_NATIONAL_ADMIN))
    assert stale.json()["roles"] == []


async def test_regional_admin_moved_to_another_region_acts_there_only(
    client: httpx.AsyncClient, signer: TokenSigner, clock: ManualClock, lookup: Lookup
) -> None:
    account = uuid.uuid4()
    headers = bearer(signer, account, ROLE_REGIONAL_ADMIN, region="330000")
    clock.advance(minutes=1)
    lookup.known[account] = KnownRoles(frozenset({ROLE_REGIONAL_ADMIN}), region="110000", changed_at=clock.now())
    assert (await client.get("/api/v1/me", headers=headers)).json() == {
        "roles": [ROLE_REGIONAL_ADMIN],
        "region": "110000",
    }
    lookup.known[account] = KnownRoles(frozenset({ROLE_NATIONAL_ADMIN}), changed_at=clock.now())
    # a role granted since is not added to an older token, and the region goes with the role
    assert (await client.get("/api/v1/me", headers=headers)).json() == {"roles": [], "region": None}


async def test_roles_read_from_the_owners_records_bound_every_token(
    client: httpx.AsyncClient, signer: TokenSigner, clock: ManualClock, lookup: Lookup
) -> None:
    """Identity reads the account's roles from its own database: no change time, they always apply."""
    account = uuid.uuid4()
    lookup.known[account] = KnownRoles(frozenset({ROLE_VOLUNTEER}))
    clock.advance(hours=1)
    me = await client.get("/api/v1/me", headers=bearer(signer, account, ROLE_VOLUNTEER, ROLE_NATIONAL_ADMIN))
    assert me.json()["roles"] == [ROLE_VOLUNTEER]


def test_token_without_a_readable_issue_time_counts_as_issued_before_any_change() -> None:
    principal = Principal(
        uuid.uuid4(), frozenset({ROLE_NATIONAL_ADMIN}), claims={"iat": "yesterday", "nbf": START.timestamp()}
    )
    assert principal.issued_at is None
    bounded = principal.bounded_by(KnownRoles(frozenset({ROLE_VOLUNTEER}), changed_at=START - timedelta(days=30)))
    assert bounded.roles == frozenset()


def test_principal_is_kept_as_is_when_nothing_it_holds_was_withdrawn() -> None:
    principal = Principal(uuid.uuid4(), frozenset({ROLE_REGIONAL_ADMIN}), region="330000", claims={"iat": 0})
    known = KnownRoles(frozenset({ROLE_REGIONAL_ADMIN, ROLE_VOLUNTEER}), region="330000", changed_at=START)
    assert principal.bounded_by(known) is principal
    assert principal.privileged
    assert not Principal(uuid.uuid4(), frozenset({ROLE_VOLUNTEER})).privileged
    assert not Principal(uuid.uuid4(), frozenset()).privileged
