"""Access tokens: identity signs them, every service verifies them locally from the JWKS.

Only the configured algorithm is accepted (no ``none``, no HMAC confusion), and ``exp``,
``aud``, ``iss``, ``sub`` are required. A bad token is 401; a missing right is 403.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.clock import Clock, SystemClock
from shared.errors import (
    FORBIDDEN,
    SERVICE_UNAVAILABLE,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    UNAUTHENTICATED,
    AppError,
)

ROLE_VOLUNTEER = "volunteer"
ROLE_REGIONAL_ADMIN = "regional_admin"
ROLE_NATIONAL_ADMIN = "national_admin"
ROLE_DATA_IMPORTER = "data_importer"
ROLES = (ROLE_VOLUNTEER, ROLE_REGIONAL_ADMIN, ROLE_NATIONAL_ADMIN, ROLE_DATA_IMPORTER)


def region_prefix(code: str) -> str:
    """The prefix a region code stands for: ``110000`` → ``11``, ``110100`` → ``1101``."""
    code = code.strip()
    prefix = code
    # Below county level codes grow in groups of three (township 9, village 12 digits):
    # strip whole groups only, or township 330106010 would cover its sibling 330106011.
    while len(prefix) > 6 and prefix.endswith("000"):
        prefix = prefix[:-3]
    if len(prefix) > 6:
        return prefix
    while len(prefix) > 2 and prefix.endswith("00"):
        prefix = prefix[:-2]
    return prefix


def region_covers(scope: str, code: str) -> bool:
    """Whether a region scope (e.g. a province) contains ``code`` (itself or a sub-region)."""
    return code.startswith(region_prefix(scope))


@dataclass(frozen=True)
class Principal:
    account_id: uuid.UUID
    roles: frozenset[str]
    region: str | None = None
    token_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def has_role(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)

    @property
    def is_national_admin(self) -> bool:
        return ROLE_NATIONAL_ADMIN in self.roles

    def administers_region(self, code: str) -> bool:
        """National admins administer everything; regional admins their region and below."""
        if self.is_national_admin:
            return True
        return ROLE_REGIONAL_ADMIN in self.roles and self.region is not None and region_covers(self.region, code)


# -- signing (identity) -----------------------------------------------------------------------
class TokenSigner:
    def __init__(
        self,
        private_key_pem: bytes,
        *,
        issuer: str,
        audience: str,
        algorithm: str = "EdDSA",
        kid: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._key = serialization.load_pem_private_key(private_key_pem, password=None)
        self.algorithm = algorithm
        if algorithm == "EdDSA" and not isinstance(self._key, ed25519.Ed25519PrivateKey):
            raise ValueError("EdDSA needs an Ed25519 private key")
        if algorithm == "RS256" and not isinstance(self._key, rsa.RSAPrivateKey):
            raise ValueError("RS256 needs an RSA private key")
        self.issuer = issuer
        self.audience = audience
        self.clock = clock or SystemClock()
        self.kid = kid or _thumbprint(self.public_jwk(kid="x"))

    @staticmethod
    def generate_pem(algorithm: str = "EdDSA") -> bytes:
        key: Any = (
            ed25519.Ed25519PrivateKey.generate()
            if algorithm == "EdDSA"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def public_jwk(self, kid: str | None = None) -> dict[str, Any]:
        public: Any = self._key.public_key()
        alg = jwt.algorithms.OKPAlgorithm if self.algorithm == "EdDSA" else jwt.algorithms.RSAAlgorithm
        jwk: dict[str, Any] = alg.to_jwk(public, as_dict=True)
        jwk.update({"use": "sig", "alg": self.algorithm, "kid": kid or self.kid})
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def issue(
        self,
        subject: uuid.UUID | str,
        *,
        roles: Iterable[str] = (ROLE_VOLUNTEER,),
        region: str | None = None,
        ttl: timedelta = timedelta(minutes=15),
        extra: dict[str, Any] | None = None,
    ) -> str:
        now = self.clock.now()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(subject),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": uuid.uuid4().hex,
            "roles": sorted(set(roles)),
        }
        if region:
            claims["region"] = region
        if extra:
            claims.update(extra)
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.kid})  # type: ignore[arg-type]


def _thumbprint(jwk: dict[str, Any]) -> str:
    import base64
    import hashlib
    import json

    members = {k: jwk[k] for k in sorted(jwk) if k in ("crv", "e", "kty", "n", "x")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:16]


# -- verifying (every service) -------------------------------------------------------------
class JwksSource:
    """Where the public keys come from: a URL (cached) or a fixed set (standalone, tests)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        keys: dict[str, Any] | None = None,
        keys_provider: Callable[[], dict[str, Any]] | None = None,
        cache_seconds: int = 300,
    ) -> None:
        self.url = url
        self._static = keys
        self._provider = keys_provider
        self.cache_seconds = cache_seconds
        self._cache: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> Any:
        keys = await self._keys(force=False)
        if kid not in keys:
            keys = await self._keys(force=True)  # a rotated key: look once more
        if kid not in keys:
            raise AppError(TOKEN_INVALID, {"reason": "unknown_key"})
        return keys[kid]

    async def _keys(self, *, force: bool) -> dict[str, Any]:
        if self._static is not None or self._provider is not None:
            jwks = self._static if self._static is not None else self._provider()  # type: ignore[misc]
            return _parse_jwks(jwks)
        fresh = time.monotonic() - self._fetched_at < self.cache_seconds
        if self._cache and fresh and not force:
            return self._cache
        async with self._lock:
            # A burst of unknown kids must not hammer identity: refetch at most every 10 s.
            if self._cache and time.monotonic() - self._fetched_at < (10 if force else self.cache_seconds):
                return self._cache
            assert self.url is not None
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    response = await client.get(self.url)
                    response.raise_for_status()
                    self._cache = _parse_jwks(response.json())
                    self._fetched_at = time.monotonic()
            except (httpx.HTTPError, ValueError) as exc:
                if not self._cache:
                    raise AppError(SERVICE_UNAVAILABLE, {"reason": "jwks_unreachable"}) from exc
            return self._cache


def _parse_jwks(jwks: dict[str, Any]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for entry in jwks.get("keys", []):
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry)
        except (KeyError, jwt.PyJWKError):
            continue
    return keys


class TokenVerifier:
    def __init__(
        self,
        source: JwksSource,
        *,
        issuer: str,
        audience: str,
        algorithm: str = "EdDSA",
        leeway_seconds: int = 30,
        clock: Clock | None = None,
    ) -> None:
        self.source = source
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self.leeway = leeway_seconds
        self.clock = clock or SystemClock()

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AppError(TOKEN_INVALID, {"reason": "malformed"}) from exc
        if header.get("alg") != self.algorithm:
            raise AppError(TOKEN_INVALID, {"reason": "algorithm_not_allowed"})
        jwk = await self.source.key_for(header.get("kid"))
        if getattr(jwk, "algorithm_name", self.algorithm) != self.algorithm:
            raise AppError(TOKEN_INVALID, {"reason": "algorithm_not_allowed"})
        try:
            claims = jwt.decode(
                token,
                key=jwk.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                # Time claims are checked below against the injectable clock.
                options={
                    "require": ["exp", "iat", "sub", "aud", "iss"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise AppError(TOKEN_INVALID, {"reason": type(exc).__name__}) from exc
        # Expiry against the injectable clock, so tests that move time see tokens expire.
        now = self.clock.now().timestamp()
        try:
            expires, not_before = float(claims["exp"]), float(claims.get("nbf", claims["iat"]))
        except (TypeError, ValueError) as exc:
            raise AppError(TOKEN_INVALID, {"reason": "time_claims"}) from exc
        if expires + self.leeway < now:
            raise AppError(TOKEN_EXPIRED)
        if not_before - self.leeway > now:
            raise AppError(TOKEN_INVALID, {"reason": "not_yet_valid"})
        try:
            account_id = uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise AppError(TOKEN_INVALID, {"reason": "subject"}) from exc
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            raise AppError(TOKEN_INVALID, {"reason": "roles"})
        return Principal(
            account_id=account_id,
            roles=frozenset(str(r) for r in roles),
            region=claims.get("region"),
            token_id=claims.get("jti"),
            claims=claims,
        )


# Declared as a security scheme so OpenAPI shows which operations need a token; the scheme
# does not refuse by itself (auto_error=False) so every refusal has our error shape.
bearer_scheme = HTTPBearer(auto_error=False, bearerFormat="JWT", description="Access token from identity")


def _bearer(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None:
        return credentials.credentials.strip() or None
    header = request.headers.get("authorization")
    if not header:
        return None
    # A header that is there but not "Bearer <token>" is a bad token, not a missing one.
    raise AppError(TOKEN_INVALID, {"reason": "not_bearer"})


async def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Principal:
    token = _bearer(request, credentials)
    if token is None:
        raise AppError(UNAUTHENTICATED)
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(token)
    request.state.principal = principal
    return principal


async def get_optional_principal(request: Request) -> Principal | None:
    """The caller when a token is given (a bad one is still 401), else None: for public reads
    that show more to some callers. Kept out of OpenAPI's security, so the operation reads as
    public (which it is) rather than as one that refuses anonymous callers."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError(TOKEN_INVALID, {"reason": "not_bearer"})
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(token.strip())
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


def require_roles(*roles: str) -> Callable[..., Any]:
    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_role(*roles):
            raise AppError(FORBIDDEN, {"required_roles": list(roles)})
        return principal

    return dependency


NationalAdmin = Annotated[Principal, Depends(require_roles(ROLE_NATIONAL_ADMIN))]
RegionalOrNationalAdmin = Annotated[Principal, Depends(require_roles(ROLE_REGIONAL_ADMIN, ROLE_NATIONAL_ADMIN))]
