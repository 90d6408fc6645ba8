"""A service's stop always ends: a step that hangs is cut short and logged with where it hung."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.db import new_metadata
from shared.messaging.tables import define_messaging_tables
from shared.runtime import Runtime
from shared.settings import ServiceSettings


def _runtime(step_seconds: float) -> Runtime:
    settings = ServiceSettings(
        environment="test",
        bus="inprocess",
        run_relay=False,
        run_consumers=False,
        shutdown_step_seconds=step_seconds,
        # never connected to: the pool only has to be disposed of
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
    )
    return Runtime(settings, define_messaging_tables(new_metadata(), "stop_test"))


async def test_a_background_job_that_ignores_cancellation_does_not_hold_the_stop_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = asyncio.Event()
    jobs: list[asyncio.Task[object]] = []

    async def stubborn_job() -> None:
        jobs.append(asyncio.current_task())  # type: ignore[arg-type]
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if released.is_set():
                    raise  # lets the test end it

    runtime = _runtime(step_seconds=0.3)
    runtime.background.append(stubborn_job)
    await runtime.start(relay=False, consumers=False)
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with caplog.at_level(logging.ERROR, logger="shared.runtime"):
        await runtime.stop()
    assert loop.time() - began < 2.0
    [stuck] = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "shutdown_step_stuck"]
    assert stuck["step"] == "background_jobs"
    # where it waits, down to the line: the job's own frame and the sleep it is in
    assert any("stubborn_job (test_runtime_stop.py:" in t and "sleep (tasks.py:" in t for t in stuck["tasks"]), stuck
    released.set()
    [job] = jobs
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)


async def test_a_stop_whose_steps_finish_logs_nothing_stuck(caplog: pytest.LogCaptureFixture) -> None:
    async def polite_job() -> None:
        await asyncio.sleep(3600)

    runtime = _runtime(step_seconds=5)
    runtime.background.append(polite_job)
    await runtime.start(relay=False, consumers=False)
    with caplog.at_level(logging.ERROR, logger="shared.runtime"):
        await runtime.stop()
    assert not [r for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "shutdown_step_stuck"]
