"""The request body's pace: a client that stalls or trickles its body is refused with 408 and let go.

uvicorn waits for a body as long as the client keeps the connection, so without this one phone on
a dead network, or anyone on purpose, holds a connection and a task per request indefinitely.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from shared.testing import paced_body, paced_request, stalled_body
from shared.web import configure_app

#: long enough that a loaded machine's scheduling delays do not decide the outcomes below
TIMEOUT = 0.5
MIN_RATE = 1000  # bytes per second
MAX_SECONDS = 3.0  # well beyond TIMEOUT + 1, so the pause and the maximum are told apart


class ItemIn(BaseModel):
    name: str


def make_app() -> FastAPI:
    app = FastAPI()
    configure_app(
        app,
        service="pacetest",
        cors_origins=[],
        max_body_bytes=100_000,
        body_timeout=TIMEOUT,
        body_min_rate=MIN_RATE,
        body_max_seconds=MAX_SECONDS,
        body_limits={"/api/v1/big-uploads": 200_000},  # an upload: a caller with a valid token only
    )

    @app.post("/api/v1/big-uploads", status_code=201)
    async def big_upload(item: ItemIn) -> dict[str, str]:
        return {"name": item.name}

    @app.post("/api/v1/items", status_code=201)
    async def create(item: ItemIn) -> dict[str, str]:
        return {"name": item.name}

    @app.post("/api/v1/stream")
    async def stream(item: ItemIn) -> StreamingResponse:
        # Starlette listens for a disconnect (receive) while streaming: after a complete body that
        # wait is not the body's, and must not be cut off however long the answer takes
        async def parts() -> AsyncIterator[bytes]:
            for i in range(4):
                await asyncio.sleep(TIMEOUT / 2)
                yield f"{item.name}{i};".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    @app.post("/api/v1/uploads", status_code=201)
    async def upload(file: UploadFile) -> dict[str, int]:
        return {"size": len(await file.read())}

    @app.post("/api/v1/exports")
    async def export() -> StreamingResponse:
        # takes no body, answers at once, streaming; Starlette reads the (trickled) body meanwhile,
        # listening for a disconnect
        async def rows() -> AsyncIterator[bytes]:
            for i in range(6):
                yield f"row{i}\n".encode()
                await asyncio.sleep(TIMEOUT / 2)

        return StreamingResponse(rows(), media_type="text/plain")

    @app.get("/api/v1/slow")
    async def slow(request: Request) -> dict[str, bool]:
        await asyncio.sleep(TIMEOUT * 1.5)  # a handler may take its time: only the client's body is paced
        return {"disconnected": await request.is_disconnected()}

    return app


async def test_a_body_that_stops_coming_is_408_request_timeout_in_chinese_and_closes() -> None:
    answer = await paced_request(make_app(), "POST", "/api/v1/items", stalled_body(b'{"name": '))
    assert answer.status == 408
    refusal = json.loads(answer.body)
    assert refusal["code"] == "request_timeout"
    assert refusal["message"] == "请求内容发送过慢,请检查网络后重试"
    assert refusal["detail"] == {
        "timeout_seconds": TIMEOUT,
        "min_rate_bytes_per_second": MIN_RATE,
        "max_seconds": MAX_SECONDS,
    }
    assert answer.headers["connection"] == "close"  # the rest of the body may still be on its way
    assert answer.headers["x-request-id"]
    # 9 bytes received give 9 ms more than the timeout; the app's own 400 for the cut body is not sent
    assert TIMEOUT <= answer.seconds < TIMEOUT + 1


async def test_the_refusal_is_in_english_when_asked() -> None:
    answer = await paced_request(
        make_app(), "POST", "/api/v1/items", stalled_body(b"{"), headers={"Accept-Language": "en"}
    )
    assert answer.status == 408
    assert json.loads(answer.body)["message"] == "The request body arrived too slowly; check the network and retry"


async def test_a_body_that_never_starts_is_refused_after_the_timeout() -> None:
    answer = await paced_request(make_app(), "POST", "/api/v1/items", stalled_body(b""))
    assert answer.status == 408
    assert TIMEOUT <= answer.seconds < TIMEOUT + 1


async def test_a_trickle_slower_than_the_minimum_rate_is_refused_though_no_gap_exceeds_the_timeout() -> None:
    # 10 bytes every 50 ms = 200 B/s against 1 000: each gap is far below the timeout, yet the
    # deadline (0.5 s + 10 ms per 10 bytes) passes at about 0.63 s
    trickle = paced_body([b" " * 10] * 40, 0.05)
    answer = await paced_request(make_app(), "POST", "/api/v1/items", trickle)
    assert answer.status == 408, answer.body
    assert answer.seconds < 1.5  # well before the 2 s the whole trickle would take


async def test_a_body_that_came_fast_and_then_stopped_is_refused_a_timeout_after_its_last_bytes() -> None:
    # 20 000 bytes at once would earn 20 s at the minimum rate: the pause alone decides
    fast = b'{"name": "' + b"x" * 20_000

    async def fast_then_nothing() -> AsyncIterator[bytes]:
        yield fast
        await asyncio.Event().wait()
        yield b""

    answer = await paced_request(make_app(), "POST", "/api/v1/items", fast_then_nothing)
    assert answer.status == 408
    assert TIMEOUT <= answer.seconds < TIMEOUT + 1


async def test_a_body_at_a_good_pace_is_refused_once_it_takes_longer_than_the_maximum() -> None:
    # 300 bytes every 50 ms, six times the minimum rate, for 5 s against a maximum of 3 s
    steady = paced_body([b'{"name": "x"}'] + [b" " * 300] * 100, 0.05)
    answer = await paced_request(make_app(), "POST", "/api/v1/items", steady)
    assert answer.status == 408
    assert MAX_SECONDS <= answer.seconds < MAX_SECONDS + 1


async def test_a_stalled_multipart_upload_is_refused_like_any_body() -> None:
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    stalled = await paced_request(make_app(), "POST", "/api/v1/uploads", stalled_body(head + b"x" * 100), headers)
    assert (stalled.status, json.loads(stalled.body)["code"]) == (408, "request_timeout")
    whole = paced_body([head + b"x" * 100 + b"\r\n--b--\r\n"], 0)
    assert json.loads((await paced_request(make_app(), "POST", "/api/v1/uploads", whole, headers)).body) == {
        "size": 100
    }


async def test_an_answer_already_streaming_when_the_body_is_cut_stays_cut_short_and_is_not_answered_twice() -> None:
    trickle = paced_body([b"x"] * 100, TIMEOUT / 4)  # 4 B/s against 1 000
    answer = await paced_request(make_app(), "POST", "/api/v1/exports", trickle)
    starts = [m for m in answer.sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [200]
    assert answer.body.startswith(b"row0\n")
    assert b"request_timeout" not in answer.body
    assert answer.sent[-1].get("more_body") is True  # never finished: the server closes the connection


async def test_a_body_at_a_good_pace_may_take_longer_than_the_timeout() -> None:
    # 300 bytes every 50 ms = 6 000 B/s for about 1 s, twice the timeout
    pieces = [b'{"name": "x"}'] + [b" " * 300] * 19
    answer = await paced_request(make_app(), "POST", "/api/v1/items", paced_body(pieces, 0.05))
    assert answer.status == 201, answer.body
    assert json.loads(answer.body) == {"name": "x"}
    assert answer.seconds > TIMEOUT


async def test_waiting_for_a_disconnect_after_a_complete_body_is_not_timed() -> None:
    answer = await paced_request(make_app(), "POST", "/api/v1/stream", paced_body([b'{"name": "s"}'], 0))
    assert answer.status == 200
    assert answer.body == b"s0;s1;s2;s3;"
    assert answer.seconds > TIMEOUT  # the answer streamed for longer than the body's timeout


async def test_a_handler_that_takes_longer_than_the_timeout_is_not_cut() -> None:
    answer = await paced_request(make_app(), "GET", "/api/v1/slow", paced_body([], 0))
    assert answer.status == 200
    assert json.loads(answer.body) == {"disconnected": False}


async def test_the_size_limit_still_holds_for_a_body_at_a_good_pace() -> None:
    app = FastAPI()
    configure_app(app, service="pacetest", cors_origins=[], max_body_bytes=1000, body_timeout=TIMEOUT)

    @app.post("/api/v1/items")
    async def create(item: ItemIn) -> dict[str, str]:
        return {"name": item.name}

    answer = await paced_request(app, "POST", "/api/v1/items", paced_body([b" " * 400] * 3, 0.01))
    assert answer.status == 413
    assert json.loads(answer.body)["code"] == "payload_too_large"


@pytest.fixture
async def served() -> AsyncIterator[str]:
    """The app behind a real uvicorn server, on a port the system chose."""
    server = uvicorn.Server(uvicorn.Config(make_app(), host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def partial_request(served: str, head: bytes) -> tuple[bytes, bytes, float]:
    """Send ``head`` (a request's headers and the start of its body), then nothing; read the answer
    to the end of the connection. Returns its head, its body and the seconds it took."""
    host, port = served.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 5)  # to the end: the server must close
        elapsed = time.monotonic() - started
    finally:
        writer.close()
    answer_head, _, body = answer.partition(b"\r\n\r\n")
    return answer_head, body, elapsed


async def test_over_real_http_a_stalled_body_gets_408_and_the_connection_is_closed(served: str) -> None:
    head, body, elapsed = await partial_request(
        served,
        b"POST /api/v1/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"name": ',
    )
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert b"connection: close" in head.lower()
    assert json.loads(body)["code"] == "request_timeout"
    assert elapsed < TIMEOUT + 1


async def test_over_real_http_an_anonymous_upload_gets_401_at_once_and_the_connection_is_closed(served: str) -> None:
    """Else the server would keep the connection and take in the whole declared body, unread by
    anyone and past every limit of the middleware."""
    head, body, _ = await partial_request(
        served,
        b"POST /api/v1/big-uploads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 150000\r\n\r\n{"name": ',
    )
    assert head.startswith(b"HTTP/1.1 401 "), head
    assert b"connection: close" in head.lower()
    assert json.loads(body)["code"] == "unauthenticated"


async def test_over_real_http_an_idle_kept_connection_between_two_requests_is_not_cut(served: str) -> None:
    """The pace times a request's body, not the wait for the next request on a kept connection."""
    host, port = served.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = b"POST /api/v1/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
    try:
        answers = []
        for name in (b"a", b"b"):
            writer.write(request + b'{"name": "' + name + b'"}')
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(
                next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
            )
            answers.append((head.split(b" ")[1], json.loads(await reader.readexactly(length))))
            await asyncio.sleep(TIMEOUT * 1.5)  # idle on the kept connection, longer than the body's timeout
    finally:
        writer.close()
    assert answers == [(b"201", {"name": "a"}), (b"201", {"name": "b"})]
