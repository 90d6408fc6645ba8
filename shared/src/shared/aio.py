"""asyncio helpers the services share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any], again_every: float = 1.0) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again each ``again_every``
    seconds. One cancellation is not always enough: on Python 3.11 ``asyncio.wait_for`` drops a
    cancellation that arrives as the awaited call completes (aio-pika's and asyncpg's connects use
    it), and the task then goes on to wait forever. Seen in CI: the consumer supervisor of a broker
    being closed sat in its wait for the connection to close, and the service's stop hung."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_every)


async def every(seconds: float, job: Callable[[], Awaitable[Any]], *, failed: str, log: Any) -> None:
    """A background job: ``job`` now, then every ``seconds``, forever (every replica may run it; the
    jobs themselves are safe to run at once). A failed run is logged as ``failed`` with the error's
    type only (a database error's text can carry a statement's parameters) and retried at the next
    tick."""
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(failed, error=type(exc).__name__)
        await asyncio.sleep(seconds)
