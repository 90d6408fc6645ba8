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
from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from shared.auth import JwksSource, TokenSigner, TokenVerifier
from shared.clock import ManualClock
from shared.errors import AppError

ISSUER = "https://identity.test"
AUDIENCE = "vs-api"
CLOCK = ManualClock()
#: both algorithms the services accept (one at a time, as configured): RS256 is the default
ALGORITHMS = ("RS256", "EdDSA")


@dataclass(frozen=True)
class Keys:
    """One algorithm's signer, its private key, and another key of the same kind."""

    algorithm: str
    signer: TokenSigner
    key: Any
    other_key: Any

    def sign(self, data: bytes, key: Any = None) -> bytes:
        key = key or self.key
        if self.algorithm == "RS256":
            return bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        return bytes(key.sign(data))


@cache
def _keys(algorithm: str) -> Keys:
    pem, other_pem = TokenSigner.generate_pem(algorithm), TokenSigner.generate_pem(algorithm)
    return Keys(
        algorithm,
        TokenSigner(pem, issuer=ISSUER, audience=AUDIENCE, algorithm=algorithm, clock=CLOCK),
        serialization.load_pem_private_key(pem, password=None),
        serialization.load_pem_private_key(other_pem, password=None),
    )


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


def _signed(k: Keys, claims: dict[str, Any], *, key: Any = None, headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, key or k.key, algorithm=k.algorithm, headers={"kid": k.signer.kid, **(headers or {})})


def _raw(k: Keys, header: Any, payload: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"
    return f"{signing_input}.{_b64(k.sign(signing_input.encode()))}"


def _header(k: Keys) -> dict[str, Any]:
    return {"alg": k.algorithm, "kid": k.signer.kid}


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _hmac_with_public_key(k: Keys, claims: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HS256 keyed with the (public) verification key."""
    public_pem = k.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": k.signer.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _other_algorithm(k: Keys, claims: dict[str, Any]) -> str:
    """Signed with the other accepted algorithm's key under this key's id: a service takes only the
    algorithm it is configured for."""
    other = _keys(next(a for a in ALGORITHMS if a != k.algorithm))
    return jwt.encode(claims, other.key, algorithm=other.algorithm, headers={"kid": k.signer.kid})


CASES: dict[str, Callable[[Keys], str]] = {
    "valid": lambda k: _signed(k, _claims()),
    "aud_list_with_us": lambda k: _signed(k, _claims(aud=["other", AUDIENCE])),
    "aud_list_without_us": lambda k: _signed(k, _claims(aud=["other"])),
    "aud_list_not_strings": lambda k: _signed(k, _claims(aud=[AUDIENCE, 1])),
    "aud_empty_string": lambda k: _signed(k, _claims(aud="")),
    "aud_empty_list": lambda k: _signed(k, _claims(aud=[])),
    "aud_object": lambda k: _signed(k, _claims(aud={"a": AUDIENCE})),
    "iss_wrong": lambda k: _signed(k, _claims(iss="https://evil.test")),
    "iss_not_string": lambda k: _raw(k, _header(k), json.dumps(_claims(iss=["x"])).encode()),
    "sub_not_string": lambda k: _raw(k, _header(k), json.dumps(_claims(sub=12)).encode()),
    "jti_not_string": lambda k: _raw(k, _header(k), json.dumps(_claims(jti=12)).encode()),
    "raw_valid": lambda k: _raw(k, _header(k), json.dumps(_claims()).encode()),
    "missing_iat": lambda k: _signed(k, _claims(iat=None)),
    "missing_iss": lambda k: _signed(k, _claims(iss=None)),
    "payload_is_a_list": lambda k: _raw(k, _header(k), b"[1, 2]"),
    "payload_not_json": lambda k: _raw(k, _header(k), b"{nope"),
    "header_is_a_list": lambda k: _raw(k, [k.algorithm], json.dumps(_claims()).encode()),
    "kid_not_string": lambda k: _raw(k, {"alg": k.algorithm, "kid": 7}, json.dumps(_claims()).encode()),
    "no_kid": lambda k: _raw(k, {"alg": k.algorithm}, json.dumps(_claims()).encode()),
    "other_key_same_kid": lambda k: _signed(k, _claims(), key=k.other_key),
    "other_algorithm_same_kid": lambda k: _other_algorithm(k, _claims()),
    "four_segments": lambda k: _signed(k, _claims()) + ".x",
    "two_segments": lambda k: _signed(k, _claims()).rsplit(".", 1)[0],
    "padded_signature": lambda k: _signed(k, _claims()) + "==",
    "stray_character_in_payload": lambda k: (lambda h, p, s: f"{h}.{p[:5]}!{p[5:]}.{s}")(
        *_signed(k, _claims()).split(".")
    ),
    "empty_signature": lambda k: _signed(k, _claims()).rsplit(".", 1)[0] + ".",
    "typ_and_extra_headers": lambda k: _signed(k, _claims(), headers={"typ": "JWT", "cty": "x"}),
    "alg_none": lambda k: _unsigned({"alg": "none", "kid": k.signer.kid}, _claims()),
    "alg_none_capitalised": lambda k: _unsigned({"alg": "None", "kid": k.signer.kid}, _claims()),
    "alg_hs256_keyed_with_the_public_key": lambda k: _hmac_with_public_key(k, _claims()),
    "alg_missing": lambda k: _raw(k, {"kid": k.signer.kid}, json.dumps(_claims()).encode()),
}


#: the cases both must accept
ACCEPTED = {"valid", "raw_valid", "aud_list_with_us", "typ_and_extra_headers"}


def _pyjwt_accepts(k: Keys, token: str) -> bool:
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != k.algorithm or header.get("kid") != k.signer.kid:
            return False
        jwt.decode(
            token,
            key=k.key.public_key(),
            algorithms=[k.algorithm],
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


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", sorted(CASES))
async def test_accepts_and_refuses_what_pyjwt_does(case: str, algorithm: str) -> None:
    k = _keys(algorithm)
    token = CASES[case](k)
    verifier = TokenVerifier(
        JwksSource(keys=k.signer.jwks()), issuer=ISSUER, audience=AUDIENCE, algorithm=algorithm, clock=CLOCK
    )
    refusal: tuple[str, int] | None = None
    try:
        await verifier.verify(token)
    except AppError as refused:
        refusal = (refused.code, refused.status)
    assert refusal in (None, ("token_invalid", 401))
    assert (refusal is None) is _pyjwt_accepts(k, token)
    if case in ACCEPTED:  # not two refusals agreeing: well-formed tokens pass both
        assert refusal is None
