"""A LISTEN loop that survives database restarts; used by the relay and the mail sender."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from shared.logging import describe_error, get_logger

log = get_logger("shared.pgnotify")


async def listen_forever(dsn: str, channel: str, on_notify: Callable[[], None]) -> None:
    """Call ``on_notify`` for every NOTIFY on ``channel`` (and once after each (re)connect,
    to catch up on what was committed while nobody listened). Runs until cancelled."""
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(channel, lambda *_: on_notify())
            on_notify()
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), timeout=15)
                except TimeoutError:
                    await conn.execute("SELECT 1")  # notice a silently dead connection
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("listen_failed", channel=channel, error=describe_error(exc, 200))
        finally:
            if conn is not None and not conn.is_closed():
                try:
                    await conn.close(timeout=2)
                except Exception:
                    conn.terminate()
        await asyncio.sleep(1.0)
