"""/readyz answers within a probe's time when the database stops answering (a frozen host, a
partition): the check gives up instead of hanging the probe, and the pod goes unready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared import web


class FrozenDatabase:
    """An engine whose connections never open (pure stand-in: the wait is what is tested)."""

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield None


async def test_readiness_gives_up_on_a_database_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "DATABASE_CHECK_SECONDS", 0.2)
    app = FastAPI()
    app.include_router(web.health_router({"database": web.database_check(FrozenDatabase())}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await asyncio.wait_for(client.get("/readyz"), 5)
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": False}


async def test_a_broker_outage_leaves_the_api_ready_but_degraded() -> None:
    """Requests write their events to the outbox whatever the broker does: a broker outage must not
    take every replica out of the load balancer (it delays events, which the relay publishes later)."""

    async def up() -> bool:
        return True

    async def down() -> bool:
        raise ConnectionError("broker unreachable")

    async def readiness(database: Any, broker: Any) -> httpx.Response:
        app = FastAPI()
        app.include_router(web.health_router({"database": database, "broker": broker}, degrading={"broker"}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get("/readyz")

    degraded = await readiness(up, down)
    assert (degraded.status_code, degraded.json()) == (
        200,
        {"status": "degraded", "checks": {"database": True, "broker": False}},
    )
    ready = await readiness(up, up)
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    for broker in (up, down):
        unready = await readiness(down, broker)
        assert (unready.status_code, unready.json()["status"]) == (503, "not_ready")
