"""Group commit in the dispatcher (pure logic: the run is a stand-in for the transaction)."""

from __future__ import annotations

import asyncio
import random

import pytest

from shared.messaging.consumer import _Batcher, _RunAlone


async def test_every_message_is_run_exactly_once_in_batches_of_at_most_the_limit() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> None:
        batches.append(items)
        await asyncio.sleep(0.005)

    batcher = _Batcher(run, 8)
    rng = random.Random(7)

    async def one(i: int) -> None:
        await asyncio.sleep(rng.random() * 0.05)
        await batcher.submit(i)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(300))), 10)

    handled = [i for batch in batches for i in batch]
    assert sorted(handled) == list(range(300))
    assert max(len(b) for b in batches) <= 8
    assert len(batches) < 300  # messages that arrived during a run shared the next one


async def test_a_lone_message_runs_at_once() -> None:
    batches: list[list[str]] = []

    async def run(items: list[str]) -> None:
        batches.append(items)

    await _Batcher(run, 8).submit("only")
    assert batches == [["only"]]


async def test_a_failed_batch_sends_each_message_to_run_alone() -> None:
    async def run(items: list[int]) -> None:
        await asyncio.sleep(0.01)
        if len(items) > 1:
            raise RuntimeError("one of them is bad")

    batcher = _Batcher(run, 8)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)), return_exceptions=True)
    # the first ran alone (and succeeded); the four that waited failed together
    assert results[0] is None
    assert all(isinstance(r, _RunAlone) for r in results[1:])


async def test_a_lone_message_that_fails_gets_its_own_error() -> None:
    async def run(items: list[int]) -> None:
        raise ValueError("bad message")

    with pytest.raises(ValueError, match="bad message"):
        await _Batcher(run, 8).submit(1)


async def test_a_cancelled_caller_leaves_the_others_to_be_run() -> None:
    ran: list[int] = []
    gate = asyncio.Event()

    async def run(items: list[int]) -> None:
        await gate.wait()
        ran.extend(items)

    batcher = _Batcher(run, 8)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    waiting[1].cancel()  # message 2's lane went away while it waited
    gate.set()
    await first
    await asyncio.gather(waiting[0], waiting[2])
    assert sorted(ran) == [0, 1, 3]
