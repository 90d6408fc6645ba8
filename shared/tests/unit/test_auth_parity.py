"""The verifier splits and checks tokens itself (once, not three times over as PyJWT's helpers did):
on every kind of crafted token it must accept and refuse exactly what ``jwt.decode`` with the same
options does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from shared.auth import JwksSource, TokenSigner, TokenVerifier
from shared.clock import ManualClock
from shared.errors import AppError

ISSUER = "https://identity.test"
AUDIENCE = "vs-api"
PEM = TokenSigner.generate_pem()
OTHER_PEM = TokenSigner.generate_pem()
CLOCK = ManualClock()
SIGNER = TokenSigner(PEM, issuer=ISSUER, audience=AUDIENCE, clock=CLOCK)
KEY = serialization.load_pem_private_key(PEM, password=None)
OTHER_KEY = serialization.load_pem_private_key(OTHER_PEM, password=None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(CLOCK.now().timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "roles": ["volunteer"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(claims: dict[str, Any], *, key: Any = KEY, headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": SIGNER.kid, **(headers or {})})


def _raw(header: Any, payload: bytes, *, key: Any = KEY) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _hmac_with_public_key(claims: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HS256 keyed with the (public) verification key."""
    public_pem = KEY.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": SIGNER.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


HEADER = {"alg": "EdDSA", "kid": SIGNER.kid}
CASES: dict[str, Callable[[], str]] = {
    "valid": lambda: _signed(_claims()),
    "aud_list_with_us": lambda: _signed(_claims(aud=["other", AUDIENCE])),
    "aud_list_without_us": lambda: _signed(_claims(aud=["other"])),
    "aud_list_not_strings": lambda: _signed(_claims(aud=[AUDIENCE, 1])),
    "aud_empty_string": lambda: _signed(_claims(aud="")),
    "aud_empty_list": lambda: _signed(_claims(aud=[])),
    "aud_object": lambda: _signed(_claims(aud={"a": AUDIENCE})),
    "iss_wrong": lambda: _signed(_claims(iss="https://evil.test")),
    "iss_not_string": lambda: _raw(HEADER, json.dumps(_claims(iss=["x"])).encode()),
    "sub_not_string": lambda: _raw(HEADER, json.dumps(_claims(sub=12)).encode()),
    "jti_not_string": lambda: _raw(HEADER, json.dumps(_claims(jti=12)).encode()),
    "raw_valid": lambda: _raw(HEADER, json.dumps(_claims()).encode()),
    "missing_iat": lambda: _signed(_claims(iat=None)),
    "missing_iss": lambda: _signed(_claims(iss=None)),
    "payload_is_a_list": lambda: _raw({"alg": "EdDSA", "kid": SIGNER.kid}, b"[1, 2]"),
    "payload_not_json": lambda: _raw({"alg": "EdDSA", "kid": SIGNER.kid}, b"{nope"),
    "header_is_a_list": lambda: _raw(["EdDSA"], json.dumps(_claims()).encode()),
    "kid_not_string": lambda: _raw({"alg": "EdDSA", "kid": 7}, json.dumps(_claims()).encode()),
    "no_kid": lambda: _raw({"alg": "EdDSA"}, json.dumps(_claims()).encode()),
    "other_key_same_kid": lambda: _signed(_claims(), key=OTHER_KEY),
    "four_segments": lambda: _signed(_claims()) + ".x",
    "two_segments": lambda: _signed(_claims()).rsplit(".", 1)[0],
    "padded_signature": lambda: _signed(_claims()) + "==",
    "stray_character_in_payload": lambda: (lambda h, p, s: f"{h}.{p[:5]}!{p[5:]}.{s}")(*_signed(_claims()).split(".")),
    "empty_signature": lambda: _signed(_claims()).rsplit(".", 1)[0] + ".",
    "typ_and_extra_headers": lambda: _signed(_claims(), headers={"typ": "JWT", "cty": "x"}),
    "alg_none": lambda: _unsigned({"alg": "none", "kid": SIGNER.kid}, _claims()),
    "alg_none_capitalised": lambda: _unsigned({"alg": "None", "kid": SIGNER.kid}, _claims()),
    "alg_hs256_keyed_with_the_public_key": lambda: _hmac_with_public_key(_claims()),
    "alg_missing": lambda: _raw({"kid": SIGNER.kid}, json.dumps(_claims()).encode()),
}


def _pyjwt_accepts(token: str) -> bool:
    public = KEY.public_key()  # type: ignore[union-attr]
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "EdDSA" or header.get("kid") != SIGNER.kid:
            return False
        jwt.decode(
            token,
            key=public,
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={
                "require": ["exp", "iat", "sub", "aud", "iss"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        return False
    return True


@pytest.mark.parametrize("case", sorted(CASES))
async def test_accepts_and_refuses_what_pyjwt_does(case: str) -> None:
    token = CASES[case]()
    verifier = TokenVerifier(JwksSource(keys=SIGNER.jwks()), issuer=ISSUER, audience=AUDIENCE, clock=CLOCK)
    refusal: tuple[str, int] | None = None
    try:
        await verifier.verify(token)
    except AppError as refused:
        refusal = (refused.code, refused.status)
    assert refusal in (None, ("token_invalid", 401))
    assert (refusal is None) is _pyjwt_accepts(token)
