"""Access tokens: identity signs them, every service verifies them locally from the JWKS.

Only the configured algorithm is accepted (no ``none``, no HMAC confusion), and ``exp``,
``aud``, ``iss``, ``sub`` are required. A bad token is 401; a missing right is 403.

The default algorithm is RS256 (RSA 2048), EdDSA (Ed25519) the alternative (``jwt_algorithm``). A
token is signed once, at log-in or refresh, and verified by every service and replica it reaches
the first time it does (``TokenVerifier`` remembers the ones it checked): verifying costs 20 us with
RSA 2048 against 87 us with Ed25519 (OpenSSL through ``cryptography``, on the 2-core machine the
benchmarks run on), signing 281 us against about 30 us. In a surge of volunteers applying with
fresh tokens, Ed25519's verification was a tenth of each request's Python.

A token's platform roles (anything beyond ``volunteer``) are bounded by what the service knows of
them now: an app may set ``app.state.principal_roles`` (a :data:`RolesLookup`), which
``get_principal`` consults for a privileged caller only, so a role withdrawn after the token was
issued stops working at once rather than when the token expires (see :meth:`Principal.bounded_by`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from shared.clock import Clock, SystemClock
from shared.errors import (
    FORBIDDEN,
    SERVICE_UNAVAILABLE,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    UNAUTHENTICATED,
    AppError,
)
from shared.logging import get_logger

ROLE_VOLUNTEER = "volunteer"
ROLE_REGIONAL_ADMIN = "regional_admin"
ROLE_NATIONAL_ADMIN = "national_admin"
ROLE_DATA_IMPORTER = "data_importer"
ROLES = (ROLE_VOLUNTEER, ROLE_REGIONAL_ADMIN, ROLE_NATIONAL_ADMIN, ROLE_DATA_IMPORTER)
#: what a caller holding no platform role has: nothing to check beyond the token
_PLAIN_ROLES = frozenset({ROLE_VOLUNTEER})


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


@dataclass(frozen=True, slots=True)
class KnownRoles:
    """An account's platform roles (and admin region) as a service knows them now."""

    roles: frozenset[str]
    region: str | None = None
    #: when identity changed them (the ``account.roles_changed`` event's ``occurred_at``): they bound
    #: only tokens issued before. None: read from identity's own records, which bound every token.
    changed_at: datetime | None = None


#: ``app.state.principal_roles``: an account's platform roles as the service knows them now, or None
#: when it knows nothing of them (the token stands). Called for privileged callers only.
RolesLookup = Callable[[uuid.UUID], Awaitable[KnownRoles | None]]


#: a token issued less than this after an account's last role change is still bounded by it
#: (see ``Principal.bounded_by``)
ROLE_CHANGE_MARGIN_SECONDS = 5


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
    def privileged(self) -> bool:
        """Holds a role beyond the plain volunteer one (whose withdrawal must take effect at once)."""
        return not self.roles <= _PLAIN_ROLES

    @property
    def issued_at(self) -> float | None:
        """The token's ``iat`` (seconds since the epoch, whole seconds as identity signs them); None
        when it is not a number."""
        iat = self.claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            return None
        return float(iat)

    def bounded_by(self, known: KnownRoles) -> Principal:
        """The caller with only the roles ``known`` still grants: the token's roles intersected with
        them, the admin region theirs. Roles that changed before the token was issued are already in
        it, so it stands; a token whose ``iat`` is unreadable counts as issued before any change.
        "Before" keeps a margin (``ROLE_CHANGE_MARGIN_SECONDS``): ``iat`` is whole seconds, and a
        login that read the roles just before the change committed can be stamped after it; a
        token issued that close to the change is bounded too (harmless: what is known already
        holds that change)."""
        if known.changed_at is not None:
            issued = self.issued_at
            if issued is not None and issued >= known.changed_at.timestamp() + ROLE_CHANGE_MARGIN_SECONDS:
                return self
        roles = self.roles & known.roles
        region = known.region if ROLE_REGIONAL_ADMIN in roles else None
        if roles == self.roles and region == self.region:
            return self
        return replace(self, roles=roles, region=region)

    @property
    def is_national_admin(self) -> bool:
        return ROLE_NATIONAL_ADMIN in self.roles

    def administers_region(self, code: str) -> bool:
        """National admins administer everything; regional admins their region and below."""
        if self.is_national_admin:
            return True
        return ROLE_REGIONAL_ADMIN in self.roles and self.region is not None and region_covers(self.region, code)


#: the signing algorithm when none is configured (see the module's docstring)
DEFAULT_ALGORITHM = "RS256"


# -- signing (identity) -----------------------------------------------------------------------
class TokenSigner:
    def __init__(
        self,
        private_key_pem: bytes,
        *,
        issuer: str,
        audience: str,
        algorithm: str = DEFAULT_ALGORITHM,
        kid: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._key = serialization.load_pem_private_key(private_key_pem, password=None)
        self.algorithm = algorithm
        # said at start-up, with the setting to change: every service's jwt_algorithm must match the key
        if algorithm == "EdDSA" and not isinstance(self._key, ed25519.Ed25519PrivateKey):
            raise ValueError("EdDSA needs an Ed25519 private key (an RSA key signs RS256: set JWT_ALGORITHM=RS256)")
        if algorithm == "RS256" and not isinstance(self._key, rsa.RSAPrivateKey):
            raise ValueError("RS256 needs an RSA private key (an Ed25519 key signs EdDSA: set JWT_ALGORITHM=EdDSA)")
        self.issuer = issuer
        self.audience = audience
        self.clock = clock or SystemClock()
        self.kid = kid or _thumbprint(self.public_jwk(kid="x"))

    @staticmethod
    def generate_pem(algorithm: str = DEFAULT_ALGORITHM) -> bytes:
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
log = get_logger("shared.auth")

#: after identity's key set could not be fetched, how long the keys held serve before another try
_JWKS_RETRY_SECONDS = 10.0


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
        #: after a failed refresh, the held keys serve without another try until then
        self._retry_after = 0.0
        self._lock = asyncio.Lock()
        self._parsed = _ParsedKeys()
        self._static_keys: dict[str, Any] | None = None
        self._provided: tuple[dict[str, Any], dict[str, Any]] | None = None

    async def key_for(self, kid: str | None) -> Any:
        keys = await self._keys(force=False)
        if kid not in keys:
            keys = await self._keys(force=True)  # a rotated key: look once more
        if kid not in keys:
            raise AppError(TOKEN_INVALID, {"reason": "unknown_key"})
        return keys[kid]

    async def _keys(self, *, force: bool) -> dict[str, Any]:
        if self._static is not None:
            if self._static_keys is None:  # parsed once: the set never changes
                self._static_keys = self._parsed.parse(self._static)
            return self._static_keys
        if self._provider is not None:
            # The provider's set may change (rotation): parsed again only when it differs from the last.
            jwks = self._provider()
            if self._provided is None or jwks != self._provided[0]:
                self._provided = (jwks, self._parsed.parse(jwks))
            return self._provided[1]
        fresh = time.monotonic() - self._fetched_at < self.cache_seconds
        if self._cache and fresh and not force:
            return self._cache
        async with self._lock:
            # A burst of unknown kids must not hammer identity: refetch at most every 10 s.
            if self._cache and time.monotonic() - self._fetched_at < (10 if force else self.cache_seconds):
                return self._cache
            if self._cache and time.monotonic() < self._retry_after:
                return self._cache  # identity was unreachable a moment ago: not every request waits on it
            assert self.url is not None
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    response = await client.get(self.url)
                    response.raise_for_status()
                    self._cache = self._parsed.parse(response.json())
                    self._fetched_at = time.monotonic()
            except (httpx.HTTPError, ValueError) as exc:
                if not self._cache:
                    raise AppError(SERVICE_UNAVAILABLE, {"reason": "jwks_unreachable"}) from exc
                # the keys we hold keep serving while identity is away; one try per interval
                self._retry_after = time.monotonic() + _JWKS_RETRY_SECONDS
                log.warning("jwks_refresh_failed", error=type(exc).__name__, retry_in=_JWKS_RETRY_SECONDS)
            return self._cache


class _ParsedKeys:
    """Parses key sets, keeping the parsed key of an entry that has not changed since the last set:
    a refetch or a provider's new dict then costs no key parsing, and a key that stays in the set stays
    the same object (the verifier's token cache relies on that to notice a key leaving the set)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[dict[str, Any], Any]] = {}

    def parse(self, jwks: dict[str, Any]) -> dict[str, Any]:
        """:raises ValueError: not a key set at all (``{"keys": [...]}``)."""
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ValueError("not a JWK set")
        keys: dict[str, Any] = {}
        seen: dict[str, tuple[dict[str, Any], Any]] = {}
        for entry in jwks["keys"]:
            try:
                kid = entry["kid"]
                previous = self._last.get(kid)
                key = previous[1] if previous is not None and previous[0] == entry else jwt.PyJWK(entry)
            except (KeyError, TypeError, jwt.PyJWKError):
                continue
            keys[kid] = key
            seen[kid] = (dict(entry), key)
        self._last = seen
        return keys


_REQUIRED_CLAIMS = ("exp", "iat", "sub", "aud", "iss")
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def _b64url(segment: str) -> bytes:
    """One base64url segment of a token (JWS writes them unpadded; padding is tolerated, as PyJWT
    does); any other character is refused, as PyJWT does, rather than skipped by the decoder."""
    if _B64URL.fullmatch(segment) is None:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    expires: float
    not_before: float
    kid: str | None
    #: the key that checked the signature: a hit counts only while the key set still holds this key
    key: Any


#: a JOSE header is {"alg", "typ", "kid"}: a few dozen characters. A longer one is refused unread
#: (a deeply nested one would exhaust the JSON parser's recursion)
_MAX_HEADER_SEGMENT = 1024


class TokenVerifier:
    """Checks tokens against the key set; a token that passed is remembered (by its exact string, up
    to ``cache_size`` of them) so the signature and claims of a token used again are not checked again.
    Time is checked on every use against the injectable clock, so a remembered token still expires;
    a token whose key left the key set is checked again in full (and refused); a refusal is never
    remembered."""

    def __init__(
        self,
        source: JwksSource,
        *,
        issuer: str,
        audience: str,
        algorithm: str = DEFAULT_ALGORITHM,
        leeway_seconds: int = 30,
        clock: Clock | None = None,
        cache_size: int = 10_000,
        token_use: str | None = None,
    ) -> None:
        self.source = source
        self.issuer = issuer
        self.audience = audience
        #: the ``token_use`` claim a token must carry: none for access tokens, so a token made for
        #: something else (a volunteer match) is refused as one even if its audience also named ours
        self.token_use = token_use
        self.algorithm = algorithm
        self.leeway = leeway_seconds
        self.clock = clock or SystemClock()
        self.cache_size = cache_size
        self._verified: dict[str, _Verified] = {}

    def for_audience(self, audience: str, token_use: str) -> TokenVerifier:
        """A verifier of another kind of token (its own audience and ``token_use``), with the same
        keys, issuer, algorithm and clock."""
        return TokenVerifier(
            self.source,
            issuer=self.issuer,
            audience=audience,
            algorithm=self.algorithm,
            leeway_seconds=self.leeway,
            clock=self.clock,
            cache_size=0,
            token_use=token_use,
        )

    async def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None:
            if await self.source.key_for(hit.kid) is hit.key:
                self._check_time(hit.expires, hit.not_before, token)
                return hit.principal
            del self._verified[token]
        verified = await self._verify(token)
        if self.cache_size > 0:
            while len(self._verified) >= self.cache_size:
                # the oldest entry goes (insertion order); expired ones are dropped when used
                del self._verified[next(iter(self._verified))]
            self._verified[token] = verified
        return verified.principal

    def _check_claims(self, claims: dict[str, Any]) -> None:
        """What ``jwt.decode`` checks with our options: required claims present (not null), ``iss``
        equal, ``aud`` (a string or a list of strings) naming us, ``sub`` and ``jti`` strings. Time
        claims are checked against the injectable clock (``_check_time``)."""
        for name in _REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise AppError(TOKEN_INVALID, {"reason": "MissingRequiredClaimError"})
        if not isinstance(claims["iss"], str) or claims["iss"] != self.issuer:
            raise AppError(TOKEN_INVALID, {"reason": "InvalidIssuerError"})
        audience = claims["aud"]
        if not audience:
            raise AppError(TOKEN_INVALID, {"reason": "MissingRequiredClaimError"})
        if isinstance(audience, str):
            audience = [audience]
        if not isinstance(audience, list) or not all(isinstance(a, str) for a in audience):
            raise AppError(TOKEN_INVALID, {"reason": "InvalidAudienceError"})
        if self.audience not in audience:
            raise AppError(TOKEN_INVALID, {"reason": "InvalidAudienceError"})
        if not isinstance(claims["sub"], str):
            raise AppError(TOKEN_INVALID, {"reason": "InvalidSubjectError"})
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise AppError(TOKEN_INVALID, {"reason": "InvalidJTIError"})
        if claims.get("token_use") != self.token_use:
            raise AppError(TOKEN_INVALID, {"reason": "token_use"})

    def _check_time(self, expires: float, not_before: float, token: str | None = None) -> None:
        # Against the injectable clock, so tests that move time see tokens expire.
        now = self.clock.now().timestamp()
        if expires + self.leeway < now:
            if token is not None:
                self._verified.pop(token, None)
            raise AppError(TOKEN_EXPIRED)
        if not_before - self.leeway > now:
            raise AppError(TOKEN_INVALID, {"reason": "not_yet_valid"})

    async def _verify(self, token: str) -> _Verified:
        """The signature with the configured algorithm's key, then ``iss``, ``aud`` and the required
        claims, as ``jwt.decode`` checks them (same refusals, same reasons); the token is split and
        decoded once here rather than three times over (``get_unverified_header``, then ``decode``),
        which cost about as much as the signature itself."""
        segments = token.split(".")
        if len(segments) != 3:
            raise AppError(TOKEN_INVALID, {"reason": "malformed"})
        header_segment, payload_segment, signature_segment = segments
        if len(header_segment) > _MAX_HEADER_SEGMENT:
            raise AppError(TOKEN_INVALID, {"reason": "malformed"})
        try:
            header = json.loads(_b64url(header_segment))
            payload = _b64url(payload_segment)
            signature = _b64url(signature_segment)
        except (ValueError, RecursionError) as exc:  # bad base64, bad UTF-8, bad or absurdly nested JSON
            raise AppError(TOKEN_INVALID, {"reason": "malformed"}) from exc
        if not isinstance(header, dict):
            raise AppError(TOKEN_INVALID, {"reason": "malformed"})
        if header.get("alg") != self.algorithm:
            raise AppError(TOKEN_INVALID, {"reason": "algorithm_not_allowed"})
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AppError(TOKEN_INVALID, {"reason": "InvalidTokenError"})
        jwk = await self.source.key_for(kid)
        if getattr(jwk, "algorithm_name", self.algorithm) != self.algorithm:
            raise AppError(TOKEN_INVALID, {"reason": "algorithm_not_allowed"})
        signing_input = f"{header_segment}.{payload_segment}".encode()
        if not jwk.Algorithm.verify(signing_input, jwk.key, signature):
            raise AppError(TOKEN_INVALID, {"reason": "InvalidSignatureError"})
        try:
            decoded = json.loads(payload)
        except ValueError as exc:
            raise AppError(TOKEN_INVALID, {"reason": "DecodeError"}) from exc
        if not isinstance(decoded, dict):
            raise AppError(TOKEN_INVALID, {"reason": "DecodeError"})
        claims: dict[str, Any] = decoded
        self._check_claims(claims)
        try:
            expires, not_before = float(claims["exp"]), float(claims.get("nbf", claims["iat"]))
        except (TypeError, ValueError) as exc:
            raise AppError(TOKEN_INVALID, {"reason": "time_claims"}) from exc
        self._check_time(expires, not_before)
        try:
            account_id = uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise AppError(TOKEN_INVALID, {"reason": "subject"}) from exc
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            raise AppError(TOKEN_INVALID, {"reason": "roles"})
        principal = Principal(
            account_id=account_id,
            roles=frozenset(str(r) for r in roles),
            region=claims.get("region"),
            token_id=claims.get("jti"),
            claims=claims,
        )
        return _Verified(principal, expires, not_before, kid, jwk)


# -- volunteer matches (T7, FAQ V1) -------------------------------------------------------------
#: how long a team admin may use a lookup's answer to bring the volunteer into a team
VOLUNTEER_MATCH_TTL = timedelta(minutes=10)
#: the ``token_use`` claim of a volunteer-match token (access tokens carry none)
VOLUNTEER_MATCH_USE = "volunteer_match"


def volunteer_match_audience(audience: str) -> str:
    """The audience of a volunteer-match token. Never the access tokens' audience, and the token
    carries ``token_use`` as well (which an access token's verifier refuses), so no service takes
    one for the other: a match token names the volunteer as its subject."""
    return f"{audience}#volunteer-match"


def issue_volunteer_match(
    signer: TokenSigner, volunteer_id: uuid.UUID, admin_id: uuid.UUID
) -> tuple[str, datetime, str]:
    """Identity's signed word that the team admin ``admin_id`` gave the ID number and name of the
    registered volunteer ``volunteer_id`` just now (FAQ V1: the volunteer, told "already
    registered", brought them to the admin), for teams to bring the volunteer into one of that
    admin's teams without an invitation to accept, since its owner cannot log in. The subject is
    the volunteer and ``act`` the admin; it carries no role and no personal data. Returns the token,
    when it expires, and its id (``jti``, for the lookup's audit row)."""
    token_id = uuid.uuid4().hex
    token = signer.issue(
        volunteer_id,
        roles=(),
        ttl=VOLUNTEER_MATCH_TTL,
        extra={
            "aud": volunteer_match_audience(signer.audience),
            "act": str(admin_id),
            "token_use": VOLUNTEER_MATCH_USE,
            "jti": token_id,
        },
    )
    return token, signer.clock.now() + VOLUNTEER_MATCH_TTL, token_id


@dataclass(frozen=True)
class VolunteerMatch:
    volunteer_id: uuid.UUID
    #: the token's id, also in identity's audit row of the lookup that issued it; a token is used once
    token_id: str


async def verified_volunteer_match(verifier: TokenVerifier, token: str, admin_id: uuid.UUID) -> VolunteerMatch | None:
    """The volunteer a match token names, if ``verifier`` (of the match audience: see
    ``TokenVerifier.for_audience``) finds it genuine and current, and it was made for ``admin_id``;
    None otherwise (forged, expired, an access token, another admin's, or without the id that makes
    it single-use, which identity always gives)."""
    try:
        match = await verifier.verify(token)
    except AppError as refused:
        if refused.code not in (TOKEN_INVALID.code, TOKEN_EXPIRED.code):
            raise  # the keys could not be fetched: not the token's fault
        return None
    if match.claims.get("act") != str(admin_id) or not match.token_id:
        return None
    return VolunteerMatch(match.account_id, match.token_id)


def bearer_token(request: Request) -> str | None:
    """The request's bearer token; None when no Authorization header is sent. A header that is there
    but not "Bearer <token>" is a bad token, not a missing one."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AppError(TOKEN_INVALID, {"reason": "not_bearer"})
    return token


async def _principal_of(request: Request, token: str) -> Principal:
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(token)
    if principal.privileged:
        principal = await _current_roles(request, principal)
    request.state.principal = principal
    return principal


class BearerPrincipal(HTTPBearer):
    """The caller, from the access token: one dependency that is also the operation's security
    scheme in OpenAPI (HTTP bearer, JWT). It refuses with our error shape (401 ``unauthenticated``
    without a token, ``token_invalid`` for a bad one), never FastAPI's own. A function depending on
    ``HTTPBearer`` did the same through two dependencies per request: on the hottest operation
    (applying) FastAPI's solving of the second cost about a tenth of the request's Python."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        token = bearer_token(request)
        if token is None:
            raise AppError(UNAUTHENTICATED)
        return await _principal_of(request, token)


get_principal = BearerPrincipal(
    auto_error=False, bearerFormat="JWT", description="Access token from identity", scheme_name="HTTPBearer"
)


async def _current_roles(request: Request, principal: Principal) -> Principal:
    """The privileged caller bounded by the roles the service knows now (when it has a lookup)."""
    lookup: RolesLookup | None = getattr(request.app.state, "principal_roles", None)
    if lookup is None:
        return principal
    known = await lookup(principal.account_id)
    return principal if known is None else principal.bounded_by(known)


async def get_optional_principal(request: Request) -> Principal | None:
    """The caller when a token is given (a bad one is still 401), else None: for public reads
    that show more to some callers. Kept out of OpenAPI's security, so the operation reads as
    public (which it is) rather than as one that refuses anonymous callers."""
    token = bearer_token(request)
    return None if token is None else await _principal_of(request, token)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


def require_roles(*roles: str) -> Callable[..., Any]:
    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_role(*roles):
            raise AppError(FORBIDDEN, {"required_roles": list(roles)})
        return principal

    dependency.required_roles = roles  # type: ignore[attr-defined]  # read by shared.docs
    return dependency


NationalAdmin = Annotated[Principal, Depends(require_roles(ROLE_NATIONAL_ADMIN))]
RegionalOrNationalAdmin = Annotated[Principal, Depends(require_roles(ROLE_REGIONAL_ADMIN, ROLE_NATIONAL_ADMIN))]
