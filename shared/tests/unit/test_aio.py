"""cancel_and_wait ends a task even when its first cancellation is lost."""

from __future__ import annotations

import asyncio

from shared.aio import cancel_and_wait


async def test_a_task_that_loses_its_first_cancellation_is_cancelled_again_and_ends() -> None:
    cancellations = 0

    async def loses_one() -> None:
        nonlocal cancellations
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancellations += 1  # dropped, as asyncio.wait_for on 3.11 can drop one
        await asyncio.sleep(3600)

    task = asyncio.create_task(loses_one())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await cancel_and_wait(task, again_every=0.05)
    assert task.cancelled()
    assert cancellations == 1
    assert loop.time() - began < 1.0


async def test_tasks_already_done_are_left_as_they_are() -> None:
    async def done() -> int:
        return 7

    task = asyncio.create_task(done())
    await task
    await cancel_and_wait(task)
    assert task.result() == 7
