"""Verified tokens are remembered, key sets parsed once: and neither ever accepts what a full check
would refuse (expiry on the injectable clock, a key leaving the set, a refusal never remembered)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest

import shared.auth as auth
from shared.auth import JwksSource, TokenSigner, TokenVerifier
from shared.clock import ManualClock
from shared.errors import AppError

ISSUER = "https://identity.test"
AUDIENCE = "vs-api"
PEM = TokenSigner.generate_pem()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def signer(clock: ManualClock) -> TokenSigner:
    return TokenSigner(PEM, issuer=ISSUER, audience=AUDIENCE, clock=clock)


def _verifier(source: JwksSource, clock: ManualClock, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE, clock=clock, **kwargs)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Tokens whose signature and claims were checked in full."""
    seen: list[str] = []
    real = TokenVerifier._verify

    async def counting(self: TokenVerifier, token: str) -> Any:
        seen.append(token)
        return await real(self, token)

    monkeypatch.setattr(TokenVerifier, "_verify", counting)
    return seen


@pytest.fixture
def parsed_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Kids of the keys parsed from a key set."""
    seen: list[str] = []
    real = jwt.PyJWK

    def counting(entry: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        seen.append(entry["kid"])
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(auth.jwt, "PyJWK", counting)
    return seen


async def test_a_token_used_again_is_not_checked_again(
    signer: TokenSigner, clock: ManualClock, decodes: list[str]
) -> None:
    verifier = _verifier(JwksSource(keys=signer.jwks()), clock)
    account = uuid.uuid4()
    token = signer.issue(account, region="330000")
    first = await verifier.verify(token)
    again = await verifier.verify(token)
    assert again == first
    assert (again.account_id, again.region) == (account, "330000")
    assert decodes == [token]


async def test_a_remembered_token_still_expires_on_the_clock(
    signer: TokenSigner, clock: ManualClock, decodes: list[str]
) -> None:
    verifier = _verifier(JwksSource(keys=signer.jwks()), clock, leeway_seconds=30)
    token = signer.issue(uuid.uuid4(), ttl=timedelta(minutes=15))
    await verifier.verify(token)
    clock.advance(minutes=15, seconds=20)  # within the leeway: still good, still remembered
    await verifier.verify(token)
    clock.advance(seconds=20)
    for _ in range(2):
        with pytest.raises(AppError) as refused:
            await verifier.verify(token)
        assert (refused.value.code, refused.value.status) == ("token_expired", 401)
    assert decodes[:1] == [token]


async def test_a_remembered_token_is_refused_once_its_key_leaves_the_set(
    signer: TokenSigner, clock: ManualClock
) -> None:
    successor = TokenSigner(TokenSigner.generate_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    published = {"keys": [signer.public_jwk(), successor.public_jwk()]}
    verifier = _verifier(JwksSource(keys_provider=lambda: published), clock)
    old, new = signer.issue(uuid.uuid4()), successor.issue(uuid.uuid4())
    await verifier.verify(old)
    await verifier.verify(new)
    published = {"keys": [successor.public_jwk()]}  # the old key is withdrawn
    with pytest.raises(AppError) as refused:
        await verifier.verify(old)
    assert (refused.value.code, refused.value.detail) == ("token_invalid", {"reason": "unknown_key"})
    assert (await verifier.verify(new)).account_id  # the key that stayed keeps its tokens


async def test_a_refusal_is_never_remembered(signer: TokenSigner, clock: ManualClock) -> None:
    later = TokenSigner(TokenSigner.generate_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    published = {"keys": [signer.public_jwk()]}
    verifier = _verifier(JwksSource(keys_provider=lambda: published), clock)
    token = later.issue(uuid.uuid4())
    with pytest.raises(AppError):
        await verifier.verify(token)  # its key is not published yet
    published = {"keys": [signer.public_jwk(), later.public_jwk()]}
    assert (await verifier.verify(token)).roles == frozenset({"volunteer"})


async def test_a_token_not_yet_valid_is_refused_then_accepted_when_its_time_comes(clock: ManualClock) -> None:
    ahead = ManualClock(clock.now() + timedelta(hours=1))
    signer = TokenSigner(PEM, issuer=ISSUER, audience=AUDIENCE, clock=ahead)
    verifier = _verifier(JwksSource(keys=signer.jwks()), clock, leeway_seconds=30)
    token = signer.issue(uuid.uuid4())  # nbf an hour ahead of the verifier's clock
    with pytest.raises(AppError) as refused:
        await verifier.verify(token)
    assert refused.value.detail == {"reason": "not_yet_valid"}
    clock.advance(hours=1)
    assert (await verifier.verify(token)).account_id


async def test_the_memory_is_bounded_and_forgets_the_oldest_first(
    signer: TokenSigner, clock: ManualClock, decodes: list[str]
) -> None:
    verifier = _verifier(JwksSource(keys=signer.jwks()), clock, cache_size=2)
    a, b, c = (signer.issue(uuid.uuid4()) for _ in range(3))
    for token in (a, b, c, c, b):
        await verifier.verify(token)
    assert decodes == [a, b, c]  # c and b were remembered
    await verifier.verify(a)
    assert decodes == [a, b, c, a]  # a had been forgotten
    assert len(verifier._verified) == 2


async def test_no_memory_when_the_size_is_zero(signer: TokenSigner, clock: ManualClock, decodes: list[str]) -> None:
    verifier = _verifier(JwksSource(keys=signer.jwks()), clock, cache_size=0)
    token = signer.issue(uuid.uuid4())
    await verifier.verify(token)
    await verifier.verify(token)
    assert decodes == [token, token]


async def test_a_fixed_key_set_is_parsed_once(signer: TokenSigner, clock: ManualClock, parsed_keys: list[str]) -> None:
    verifier = _verifier(JwksSource(keys=signer.jwks()), clock)
    for _ in range(3):
        await verifier.verify(signer.issue(uuid.uuid4()))
    assert parsed_keys == [signer.kid]


async def test_a_provided_key_set_is_parsed_again_only_when_it_changes(
    signer: TokenSigner, clock: ManualClock, parsed_keys: list[str]
) -> None:
    successor = TokenSigner(TokenSigner.generate_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    published = [signer.public_jwk()]
    verifier = _verifier(JwksSource(keys_provider=lambda: {"keys": [dict(k) for k in published]}), clock)
    for _ in range(3):
        await verifier.verify(signer.issue(uuid.uuid4()))
    assert parsed_keys == [signer.kid]  # a new but equal dict each time: not parsed again
    published.append(successor.public_jwk())
    await verifier.verify(successor.issue(uuid.uuid4()))
    await verifier.verify(signer.issue(uuid.uuid4()))
    assert parsed_keys == [signer.kid, successor.kid]  # only the new key was parsed
