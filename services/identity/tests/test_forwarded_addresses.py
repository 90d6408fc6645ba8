"""The client address behind a proxy (login and sign-up throttling): each proxy appends the
address it took the request from to X-Forwarded-For, so only the entries our proxies appended
are facts; whatever stands left of them the client wrote."""

from __future__ import annotations

import uuid

from identity.testing import Identity, StartIdentity

GUESS = "guess guess guess"


async def failed_login(identity: Identity, *headers: tuple[str, str]) -> int:
    response = await identity.client.post(
        "/api/v1/tokens",
        json={"username": "victim-" + uuid.uuid4().hex[:8], "password": GUESS},
        headers=list(headers),
    )
    return response.status_code


async def address_keys(identity: Identity) -> list[str]:
    rows = await identity.fetch("SELECT key FROM login_throttle WHERE key LIKE 'address:%' ORDER BY key")
    return [row[0] for row in rows]


async def test_a_client_writing_a_fresh_first_address_each_time_is_still_throttled(
    start_identity: StartIdentity,
) -> None:
    async with start_identity(trust_forwarded_for=True, login_address_free_failures=6) as identity:
        spoofed = [
            await failed_login(identity, ("X-Forwarded-For", f"10.9.{i // 250}.{i % 250}, 203.0.113.9"))
            for i in range(10)
        ]
        assert spoofed == [401] * 6 + [429] * 4
        assert await address_keys(identity) == ["address:203.0.113.9"]


async def test_the_entry_the_configured_number_of_hops_from_the_right_is_the_client(
    start_identity: StartIdentity,
) -> None:
    # a CDN appends the client, the ingress appends the CDN: two hops of ours
    async with start_identity(trust_forwarded_for=True, forwarded_hops=2) as identity:
        await failed_login(identity, ("X-Forwarded-For", "10.0.0.1, 203.0.113.20, 198.51.100.2"))
        # the same list over several header lines, as some proxies send it
        await failed_login(identity, ("X-Forwarded-For", "10.0.0.2"), ("X-Forwarded-For", "203.0.113.21, 198.51.100.2"))
        # fewer entries than hops: no proxy of ours wrote the header, so the socket's address
        await failed_login(identity, ("X-Forwarded-For", "203.0.113.99"))
        assert await address_keys(identity) == ["address:127.0.0.1", "address:203.0.113.20", "address:203.0.113.21"]


async def test_the_header_is_ignored_unless_trusted(identity: Identity) -> None:
    await failed_login(identity, ("X-Forwarded-For", "203.0.113.30"))
    assert "address:203.0.113.30" not in await address_keys(identity)
