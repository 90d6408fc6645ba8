"""The load tool's own logic (pure parts): latency counted from the scheduled start, nearest-rank
percentiles, outcome accounting, and sign-up bodies identity accepts, all distinct.

Not collected by ``make test`` (tests/load is on demand): ``.venv/bin/pytest tests/load``.
"""

from __future__ import annotations

import asyncio
from datetime import date

import httpx

from identity.domain.documents import DocumentType, check_document
from tests.load.flow import Identities
from tests.load.recorder import TRANSPORT_ERROR, Recorder, percentile, summary, table


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None
    assert summary([0.010, 0.020]) == {"count": 2, "p50_ms": 10.0, "p99_ms": 20.0, "max_ms": 20.0}


async def test_latency_counts_from_the_scheduled_start_not_from_the_send() -> None:
    """A request launched late (the generator or an earlier step was slow) carries that wait."""

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"id": "x"})

    recorder = Recorder()
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://svc") as client:
        due = loop.time() - 0.5  # it should have gone half a second ago
        response = await recorder.call(client, "POST /x", "POST", "/x", intended=due)
    assert response is not None
    [latency] = recorder.latencies["POST /x"]
    assert latency >= 0.5
    assert recorder.launch_lag[0] >= 0.5


async def test_refusals_are_counted_by_status_and_code_and_timeouts_as_transport_errors() -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/full":
            return httpx.Response(409, json={"code": "position_full", "message": "岗位已满"})
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={})

    recorder = Recorder()
    now = asyncio.get_running_loop().time()
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://svc") as client:
        assert await recorder.call(client, "apply", "POST", "/full", intended=now) is None
        assert await recorder.call(client, "apply", "POST", "/slow", intended=now) is None
        assert await recorder.call(client, "apply", "POST", "/ok", intended=now) is not None
    assert recorder.error_rows() == [
        {"endpoint": "apply", "status": TRANSPORT_ERROR, "code": "ReadTimeout", "count": 1},
        {"endpoint": "apply", "status": 409, "code": "position_full", "count": 1},
    ]
    [row] = recorder.endpoint_rows(window=1.0)
    assert (row["count"], row["ok"], row["errors"]) == (3, 1, 2)
    assert "apply" in table([row], [("endpoint", "endpoint"), ("ok", "ok")])


def test_sign_up_bodies_are_valid_and_distinct_for_a_big_event() -> None:
    identities = Identities()
    bodies = [identities.body(i) for i in range(-2, 5000)]
    for body in bodies[:300]:
        number, born = check_document(DocumentType.RESIDENT_ID, body["id_number"], None)
        assert number == body["id_number"]
        assert date(1960, 1, 1) < born < date(2006, 1, 1)
    for key in ("id_number", "mobile", "username", "email"):
        assert len({b[key] for b in bodies}) == len(bodies), key
