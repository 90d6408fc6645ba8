"""A replica's turns per position (projects.turns): pure asyncio, no database."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from projects.turns import PositionTurns


async def _surge(turns: PositionTurns, position_id: uuid.UUID, n: int, busy: list[int], peak: list[int]) -> None:
    async def one() -> None:
        async with turns.turn(position_id):
            busy[0] += 1
            peak[0] = max(peak[0], busy[0])
            await asyncio.sleep(0.001)
            busy[0] -= 1

    await asyncio.gather(*(one() for _ in range(n)))


async def test_a_position_gets_at_most_its_turns_at_once_and_other_positions_are_not_held_up() -> None:
    turns = PositionTurns(3)
    hot, other = uuid.uuid4(), uuid.uuid4()
    busy, peak = [0], [0]
    surge = asyncio.create_task(_surge(turns, hot, 60, busy, peak))
    await asyncio.sleep(0)  # the surge holds its turns and 57 wait
    # another position's request goes through at once, whatever waits for the hot one
    async with asyncio.timeout(0.5), turns.turn(other):
        pass
    await surge
    assert peak[0] == 3


async def test_a_position_nobody_applies_to_any_more_holds_no_entry() -> None:
    turns = PositionTurns(2)
    position = uuid.uuid4()
    busy, peak = [0], [0]
    await _surge(turns, position, 10, busy, peak)
    assert len(turns) == 0


async def test_a_cancelled_wait_gives_its_place_back() -> None:
    turns = PositionTurns(1)
    position = uuid.uuid4()
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with turns.turn(position):
            held.set()
            await release.wait()

    first = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await first
    assert len(turns) == 0
