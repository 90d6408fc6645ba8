"""Token verification: only the configured algorithm, a good signature, aud, iss, exp and sub."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from shared.auth import (
    DEFAULT_ALGORITHM,
    ROLE_REGIONAL_ADMIN,
    ROLE_VOLUNTEER,
    VOLUNTEER_MATCH_USE,
    CurrentPrincipal,
    JwksSource,
    OptionalPrincipal,
    Principal,
    TokenSigner,
    TokenVerifier,
    VolunteerMatch,
    issue_volunteer_match,
    region_covers,
    region_prefix,
    verified_volunteer_match,
    volunteer_match_audience,
)
from shared.clock import ManualClock
from shared.errors import AppError
from shared.web import configure_app

ISSUER = "https://identity.test"
AUDIENCE = "vs-api"
PEM = TokenSigner.generate_pem()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def signer(clock: ManualClock) -> TokenSigner:
    return TokenSigner(PEM, issuer=ISSUER, audience=AUDIENCE, clock=clock)


@pytest.fixture
def verifier(signer: TokenSigner, clock: ManualClock) -> TokenVerifier:
    return TokenVerifier(JwksSource(keys=signer.jwks()), issuer=ISSUER, audience=AUDIENCE, clock=clock)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(signer: TokenSigner, **overrides: Any) -> dict[str, Any]:
    now = int(signer.clock.now().timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "roles": [ROLE_VOLUNTEER],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign_with_own_key(signer: TokenSigner, claims: dict[str, Any]) -> str:
    key = serialization.load_pem_private_key(PEM, password=None)
    return jwt.encode(claims, key, algorithm=DEFAULT_ALGORITHM, headers={"kid": signer.kid})  # type: ignore[arg-type]


def _expired(signer: TokenSigner, clock: ManualClock) -> str:
    token = signer.issue(uuid.uuid4(), ttl=timedelta(minutes=15))
    clock.advance(minutes=16)
    return token


def _wrong_audience(signer: TokenSigner, clock: ManualClock) -> str:
    return TokenSigner(PEM, issuer=ISSUER, audience="another-api", clock=clock).issue(uuid.uuid4())


def _wrong_issuer(signer: TokenSigner, clock: ManualClock) -> str:
    return TokenSigner(PEM, issuer="https://evil.test", audience=AUDIENCE, clock=clock).issue(uuid.uuid4())


def _alg_none(signer: TokenSigner, clock: ManualClock) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": signer.kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(signer)).encode())}."


def _hs256_with_public_key(signer: TokenSigner, clock: ManualClock) -> str:
    # Algorithm confusion: an HMAC "signed" with the public key the attacker can download.
    public_pem = (
        serialization.load_pem_private_key(PEM, password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(signer)).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _forged_signature(signer: TokenSigner, clock: ManualClock) -> str:
    other = TokenSigner(TokenSigner.generate_pem(), issuer=ISSUER, audience=AUDIENCE, kid=signer.kid, clock=clock)
    return other.issue(uuid.uuid4())


def _eddsa_under_the_same_kid(signer: TokenSigner, clock: ManualClock) -> str:
    # well signed with the other accepted algorithm: a service takes only the configured one
    pem = TokenSigner.generate_pem("EdDSA")
    return TokenSigner(pem, issuer=ISSUER, audience=AUDIENCE, algorithm="EdDSA", kid=signer.kid, clock=clock).issue(
        uuid.uuid4()
    )


def _unknown_kid(signer: TokenSigner, clock: ManualClock) -> str:
    return TokenSigner(TokenSigner.generate_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock).issue(uuid.uuid4())


def _missing_sub(signer: TokenSigner, clock: ManualClock) -> str:
    return _sign_with_own_key(signer, _claims(signer, sub=None))


def _missing_exp(signer: TokenSigner, clock: ManualClock) -> str:
    return _sign_with_own_key(signer, _claims(signer, exp=None))


def _sub_not_a_uuid(signer: TokenSigner, clock: ManualClock) -> str:
    return _sign_with_own_key(signer, _claims(signer, sub="admin"))


def _not_yet_valid(signer: TokenSigner, clock: ManualClock) -> str:
    later = int(clock.now().timestamp()) + 3600
    return _sign_with_own_key(signer, _claims(signer, nbf=later, iat=later, exp=later + 600))


def _garbage(signer: TokenSigner, clock: ManualClock) -> str:
    return "not-a-jwt"


def _tampered_payload(signer: TokenSigner, clock: ManualClock) -> str:
    header, _, signature = signer.issue(uuid.uuid4()).split(".")
    claims = _claims(signer, roles=["national_admin"])
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _deeply_nested_header(signer: TokenSigner, clock: ManualClock) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{b64(b'[' * 5000)}.{b64(b'{}')}.{b64(b'x')}"


def _short_nested_header(signer: TokenSigner, clock: ManualClock) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{b64(b'[' * 600)}.{b64(b'{}')}.{b64(b'x')}"


BAD_TOKENS: list[tuple[str, Callable[[TokenSigner, ManualClock], str], str]] = [
    ("deeply_nested_header", _deeply_nested_header, "token_invalid"),
    ("nested_header_under_the_length_limit", _short_nested_header, "token_invalid"),
    ("expired", _expired, "token_expired"),
    ("wrong_audience", _wrong_audience, "token_invalid"),
    ("wrong_issuer", _wrong_issuer, "token_invalid"),
    ("alg_none", _alg_none, "token_invalid"),
    ("hs256_signed_with_public_key", _hs256_with_public_key, "token_invalid"),
    ("forged_signature_same_kid", _forged_signature, "token_invalid"),
    ("unknown_kid", _unknown_kid, "token_invalid"),
    ("eddsa_under_the_same_kid", _eddsa_under_the_same_kid, "token_invalid"),
    ("missing_sub", _missing_sub, "token_invalid"),
    ("missing_exp", _missing_exp, "token_invalid"),
    ("sub_not_a_uuid", _sub_not_a_uuid, "token_invalid"),
    ("not_yet_valid", _not_yet_valid, "token_invalid"),
    ("garbage", _garbage, "token_invalid"),
    ("tampered_payload", _tampered_payload, "token_invalid"),
]


async def test_valid_token_gives_the_principal(signer: TokenSigner, verifier: TokenVerifier) -> None:
    account = uuid.uuid4()
    token = signer.issue(account, roles=[ROLE_REGIONAL_ADMIN], region="330000")
    principal = await verifier.verify(token)
    assert principal.account_id == account
    assert principal.roles == frozenset({ROLE_REGIONAL_ADMIN})
    assert principal.region == "330000"
    assert principal.administers_region("330106")
    assert not principal.administers_region("110000")


def test_tokens_are_signed_with_rs256_unless_configured_otherwise(signer: TokenSigner) -> None:
    assert DEFAULT_ALGORITHM == "RS256"
    header = jwt.get_unverified_header(signer.issue(uuid.uuid4()))
    assert header == {"alg": "RS256", "kid": signer.kid, "typ": "JWT"}
    [jwk] = signer.jwks()["keys"]
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")


async def test_eddsa_when_configured_so(clock: ManualClock) -> None:
    pem = TokenSigner.generate_pem("EdDSA")
    signer = TokenSigner(pem, issuer=ISSUER, audience=AUDIENCE, algorithm="EdDSA", clock=clock)
    verifier = TokenVerifier(
        JwksSource(keys=signer.jwks()), issuer=ISSUER, audience=AUDIENCE, algorithm="EdDSA", clock=clock
    )
    account = uuid.uuid4()
    assert (await verifier.verify(signer.issue(account))).account_id == account
    rs256 = TokenVerifier(JwksSource(keys=signer.jwks()), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    with pytest.raises(AppError) as refused:
        await rs256.verify(signer.issue(account))
    assert refused.value.detail == {"reason": "algorithm_not_allowed"}


def test_a_key_of_the_other_kind_is_refused_at_start_up_with_the_setting_to_change() -> None:
    with pytest.raises(ValueError, match="JWT_ALGORITHM=EdDSA"):
        TokenSigner(TokenSigner.generate_pem("EdDSA"), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match="JWT_ALGORITHM=RS256"):
        TokenSigner(PEM, issuer=ISSUER, audience=AUDIENCE, algorithm="EdDSA")


async def test_token_within_leeway_after_expiry_is_still_accepted(
    signer: TokenSigner, verifier: TokenVerifier, clock: ManualClock
) -> None:
    token = signer.issue(uuid.uuid4(), ttl=timedelta(minutes=15))
    clock.advance(minutes=15, seconds=10)
    assert (await verifier.verify(token)).roles == frozenset({ROLE_VOLUNTEER})


@pytest.mark.parametrize(("make", "code"), [(m, c) for _, m, c in BAD_TOKENS], ids=[n for n, _, _ in BAD_TOKENS])
async def test_bad_token_is_refused(
    make: Callable[[TokenSigner, ManualClock], str],
    code: str,
    signer: TokenSigner,
    verifier: TokenVerifier,
    clock: ManualClock,
) -> None:
    token = make(signer, clock)
    with pytest.raises(AppError) as refused:
        await verifier.verify(token)
    assert refused.value.code == code
    assert refused.value.status == 401


def _app(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    configure_app(app, service="authtest", cors_origins=[], max_body_bytes=1024)
    app.state.verifier = verifier

    @app.get("/api/v1/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"account_id": str(principal.account_id)}

    @app.get("/api/v1/public")
    async def public(principal: OptionalPrincipal) -> dict[str, str | None]:
        return {"account_id": str(principal.account_id) if principal else None}

    return app


@pytest.mark.parametrize(("make", "code"), [(m, c) for _, m, c in BAD_TOKENS], ids=[n for n, _, _ in BAD_TOKENS])
async def test_bad_token_on_a_public_read_is_still_a_401(
    make: Callable[[TokenSigner, ManualClock], str],
    code: str,
    signer: TokenSigner,
    verifier: TokenVerifier,
    clock: ManualClock,
) -> None:
    """Optional authentication never turns a bad token into an anonymous caller."""
    app = _app(verifier)
    assert "security" not in app.openapi()["paths"]["/api/v1/public"]["get"]  # documented as public
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        anonymous = await client.get("/api/v1/public")
        bad = await client.get("/api/v1/public", headers={"Authorization": f"Bearer {make(signer, clock)}"})
    assert anonymous.json() == {"account_id": None}
    assert (bad.status_code, bad.json()["code"]) == (401, code)


@pytest.mark.parametrize(("make", "code"), [(m, c) for _, m, c in BAD_TOKENS], ids=[n for n, _, _ in BAD_TOKENS])
async def test_bad_token_is_a_401_with_its_code_over_http(
    make: Callable[[TokenSigner, ManualClock], str],
    code: str,
    signer: TokenSigner,
    verifier: TokenVerifier,
    clock: ManualClock,
) -> None:
    token = make(signer, clock)
    transport = httpx.ASGITransport(app=_app(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["code"] == code


async def test_missing_token_is_401_unauthenticated_and_valid_token_passes(
    signer: TokenSigner, verifier: TokenVerifier
) -> None:
    transport = httpx.ASGITransport(app=_app(verifier))
    account = uuid.uuid4()
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        anonymous = await client.get("/api/v1/me")
        wrong_scheme = await client.get("/api/v1/me", headers={"Authorization": "Basic abc"})
        empty = await client.get("/api/v1/me", headers={"Authorization": "Bearer    "})
        ok = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {signer.issue(account)}"})
        padded = await client.get("/api/v1/me", headers={"Authorization": f"bearer   {signer.issue(account)}  "})
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
    assert (wrong_scheme.status_code, wrong_scheme.json()["code"]) == (401, "token_invalid")
    assert wrong_scheme.json()["detail"] == {"reason": "not_bearer"}
    assert (empty.status_code, empty.json()["code"]) == (401, "token_invalid")
    assert ok.status_code == 200
    assert ok.json() == {"account_id": str(account)}
    assert padded.json() == {"account_id": str(account)}  # the scheme in any case, the token trimmed


def test_operations_needing_a_token_declare_the_bearer_scheme(verifier: TokenVerifier) -> None:
    schema = _app(verifier).openapi()
    assert schema["paths"]["/api/v1/me"]["get"]["security"] == [{"HTTPBearer": []}]
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Access token from identity",
    }


def test_principal_without_admin_role_administers_nothing() -> None:
    volunteer = Principal(uuid.uuid4(), frozenset({ROLE_VOLUNTEER}), region="330000")
    assert not volunteer.administers_region("330106")


@pytest.mark.parametrize(
    ("scope", "code", "expected"),
    [
        ("330000", "330000", True),  # a province covers itself
        ("330000", "330100", True),  # ... its cities
        ("330000", "330106", True),  # ... and counties
        ("330100", "330106", True),
        ("330100", "330200", False),  # a city does not cover its sibling
        ("330106", "330100", False),  # a county does not cover its city
        ("330000", "110000", False),
        ("110000", "110101", True),  # municipality districts
        ("330106", "330106001", True),  # a township below its county
        ("330106001", "330106002", False),
        ("330106010", "330106011", False),  # a township ending in 0 does not cover its sibling
        ("330106010", "330106010123", True),  # a village below its township
        ("330106000", "330106011", True),  # a county written with nine digits
    ],
)
def test_region_covers_itself_and_below_only(scope: str, code: str, expected: bool) -> None:
    assert region_covers(scope, code) is expected


def test_region_prefix_drops_trailing_zero_pairs() -> None:
    assert region_prefix("110000") == "11"
    assert region_prefix("110100") == "1101"
    assert region_prefix("110101") == "110101"
    assert region_prefix("330106010") == "330106010"
    assert region_prefix("330106000") == "330106"


# -- volunteer-match tokens (FAQ V1) ---------------------------------------------------------------
async def test_a_match_token_and_an_access_token_are_never_taken_for_each_other(
    signer: TokenSigner, verifier: TokenVerifier
) -> None:
    matches = verifier.for_audience(volunteer_match_audience(AUDIENCE), VOLUNTEER_MATCH_USE)
    volunteer, admin = uuid.uuid4(), uuid.uuid4()
    match, _, token_id = issue_volunteer_match(signer, volunteer, admin)
    access = signer.issue(admin)
    # a token whose audience names both (identity never signs one): token_use still tells them apart
    both = _sign_with_own_key(
        signer,
        _claims(signer, sub=str(volunteer), aud=[AUDIENCE, volunteer_match_audience(AUDIENCE)], act=str(admin)),
    )
    both_as_match = _sign_with_own_key(
        signer,
        _claims(
            signer,
            sub=str(volunteer),
            aud=[AUDIENCE, volunteer_match_audience(AUDIENCE)],
            act=str(admin),
            token_use=VOLUNTEER_MATCH_USE,
        ),
    )

    assert await verified_volunteer_match(matches, match, admin) == VolunteerMatch(volunteer, token_id)
    assert await verified_volunteer_match(matches, match, uuid.uuid4()) is None  # another admin's
    assert await verified_volunteer_match(matches, access, admin) is None
    assert await verified_volunteer_match(matches, both, admin) is None  # no token_use

    # a genuine match without the id that makes it single-use (identity always gives one)
    def match_with(jti: str | None) -> str:
        claims = _claims(
            signer,
            sub=str(volunteer),
            aud=volunteer_match_audience(AUDIENCE),
            act=str(admin),
            token_use=VOLUNTEER_MATCH_USE,
            roles=None,
            jti=jti,
        )
        return _sign_with_own_key(signer, claims)

    no_id, with_id = match_with(None), match_with("a-lookup")
    assert await verified_volunteer_match(matches, no_id, admin) is None
    assert await verified_volunteer_match(matches, with_id, admin) == VolunteerMatch(volunteer, "a-lookup")
    for token in (match, both_as_match):
        with pytest.raises(AppError) as refused:
            await verifier.verify(token)
        assert refused.value.code == "token_invalid"
