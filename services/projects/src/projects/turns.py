"""Turns per position: how many applications to one position a replica sends to the database at once.

An automatic position's place is taken by a conditional update of the position's row, which each
application holds from its update to its commit: applications to one position take turns there
whatever the replica does. What the replica decides is how many of its connections wait on that row
meanwhile. In a big event's surge (thousands applying to one position in a minute) every pooled
connection would end up waiting on the one row: the replica's other requests, to any other position
or page, would wait for a connection, and PostgreSQL wakes every waiter at each commit to let one
through (measured with pgbench on one row: 1,283 updates/s from 4 clients, 535/s from 64). So each
position gets ``limit`` turns per replica: an application to it beyond them waits here, holding no
connection, and the row sees at most ``limit`` waiters per replica.

Per process and per position, nothing shared: replicas each have their own, and a position nobody
applies to holds no entry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PositionTurns:
    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        #: position -> (its semaphore, how many hold or wait for a turn)
        self._positions: dict[uuid.UUID, tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def turn(self, position_id: uuid.UUID) -> AsyncIterator[None]:
        semaphore, users = self._positions.get(position_id, (None, 0))
        if semaphore is None:
            semaphore = asyncio.Semaphore(self.limit)
        self._positions[position_id] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._positions[position_id]
            if users == 1:
                del self._positions[position_id]
            else:
                self._positions[position_id] = (semaphore, users - 1)

    def __len__(self) -> int:
        """Positions with a request holding or waiting for a turn."""
        return len(self._positions)
