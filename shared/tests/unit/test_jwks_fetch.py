"""Identity's key set over HTTP: fetched and cached; while identity is away the keys held keep
serving (one retry per interval, not one per request); an answer that is not a key set is treated
as identity being away, never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from shared.auth import JwksSource, TokenSigner, TokenVerifier
from shared.clock import ManualClock
from shared.errors import AppError

ISSUER = "https://identity.test"
AUDIENCE = "vs-api"


@dataclass
class KeyServer:
    """A minimal HTTP server answering every GET with ``status`` and ``body``; counts requests."""

    status: int = 200
    body: bytes = b""
    requests: int = 0
    url: str = ""
    server: asyncio.AbstractServer | None = field(default=None, repr=False)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        head = f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + self.body)
        await writer.drain()
        writer.close()


@pytest.fixture
async def key_server() -> AsyncIterator[KeyServer]:
    ks = KeyServer()
    ks.server = await asyncio.start_server(ks.handle, "127.0.0.1", 0)
    port = ks.server.sockets[0].getsockname()[1]
    ks.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    yield ks
    ks.server.close()
    await ks.server.wait_closed()


async def test_held_keys_serve_while_identity_is_away_with_one_retry_per_interval(key_server: KeyServer) -> None:
    clock = ManualClock()
    signer = TokenSigner(TokenSigner.generate_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    key_server.body = json.dumps(signer.jwks()).encode()
    # cache_seconds=0: every check would refresh the key set, as after the cache expired
    verifier = TokenVerifier(
        JwksSource(key_server.url, cache_seconds=0), issuer=ISSUER, audience=AUDIENCE, clock=clock, cache_size=0
    )
    await verifier.verify(signer.issue("00000000-0000-0000-0000-000000000001"))
    assert key_server.requests == 1

    key_server.status, key_server.body = 503, b"{}"
    for n in range(20):
        principal = await verifier.verify(signer.issue(f"00000000-0000-0000-0000-0000000000{n + 10}"))
        assert str(principal.account_id).endswith(str(n + 10))
    assert key_server.requests == 2  # one failed refresh, then the held keys without asking again


@pytest.mark.parametrize("body", [b'{"keys": null}', b"[]", b'"keys"', b"{}"])
async def test_an_answer_that_is_not_a_key_set_is_identity_unreachable(key_server: KeyServer, body: bytes) -> None:
    clock = ManualClock()
    signer = TokenSigner(TokenSigner.generate_pem(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    key_server.body = body
    verifier = TokenVerifier(JwksSource(key_server.url), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    with pytest.raises(AppError) as refused:
        await verifier.verify(signer.issue("00000000-0000-0000-0000-000000000001"))
    assert refused.value.status == 503
    assert refused.value.detail == {"reason": "jwks_unreachable"}
