"""Per-aggregate lanes and in-lane retries, shared by the RabbitMQ and the in-process broker.

Ordering contract: the events of one aggregate are handled one after another, in the order the
broker delivered them, and a failing event holds back only the later events of its own aggregate:

* :class:`KeyedLanes` runs the deliveries of one key (``aggregate_type:aggregate_id``) strictly in
  sequence, different keys concurrently, at most ``concurrency`` handlers at a time;
* :func:`run_with_retries` retries a transient failure *in the lane*: it waits the tier delay and
  runs the handler again (the handler slot is released while it waits, so other lanes keep
  flowing), up to ``max_attempts`` runs, then the message is dead-lettered. A retry never goes back
  through a queue, so a later event of the same aggregate can never overtake it;
* an outage of the infrastructure the handler stands on (the database connection refused or cut,
  the server shutting down, a socket error) is not the message's fault: it is retried with
  backoff for as long as it lasts, without using up the message's attempts;
* :class:`~shared.messaging.broker.PermanentError` dead-letters at once.
"""

from __future__ import annotations

import asyncio
import enum
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg
import sqlalchemy.exc

from shared.logging import describe_error, get_logger
from shared.messaging.broker import MessageHandler, PermanentError
from shared.messaging.envelope import Envelope
from shared.messaging.topology import Subscription, retry_tier_for

log = get_logger("shared.messaging.lanes")

T = TypeVar("T")


class Outcome(enum.Enum):
    #: handled (or a duplicate the inbox absorbed): ack it
    DONE = "done"
    #: permanently failed or out of attempts: dead-letter it
    DEAD = "dead"
    #: the delivery went stale (its channel is gone); the broker redelivers it, leave it alone
    ABANDONED = "abandoned"


_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    # connection refused / reset / aborted, a timeout, a name that does not resolve; not every
    # OSError: a missing file or a permission refused is the handler's bug, retried as any other
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08, connection does not exist
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.exceptions.TooManyConnectionsError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        # what caused it, not what it happened to be raised while handling: an error raised inside
        # an ``except ConnectionError`` block says nothing about the connection
        todo.extend([current.__cause__, getattr(current, "orig", None)])


def is_infrastructure_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the database or network is away, not the message bad."""
    for error in _chain(exc):
        if isinstance(error, PermanentError):
            return False
        if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, asyncpg.exceptions.InterfaceError) and "connection" in str(error).lower():
            return True  # "connection is closed", "connection was closed in the middle of operation"
        if isinstance(error, _OUTAGE_TYPES):
            return True
    return False


#: PostgreSQL's answers to two transactions that met: a deadlock (one was chosen to roll back) and
#: a serialisation failure. The message is fine; run again, it goes through.
_CONFLICT_TYPES: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


def is_concurrency_conflict(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a deadlock or serialisation failure between transactions."""
    return any(
        isinstance(error, _CONFLICT_TYPES) or getattr(error, "sqlstate", None) in ("40P01", "40001")
        for error in _chain(exc)
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a lane retries a failing handler before dead-lettering the message."""

    max_attempts: int = 5
    #: multiplies the tier delays (the in-process broker's tests shrink them)
    scale: float = 1.0
    #: first and longest wait while the infrastructure is out (seconds)
    outage_backoff_min: float = 0.2
    outage_backoff_max: float = 5.0
    #: runs lost to another transaction (a deadlock) that use up no attempt, before they count as
    #: failures: a message meeting busy neighbours is not the message's fault
    max_conflicts: int = 50

    def delay(self, failures: int) -> float:
        """Seconds to wait before the run that follows the ``failures``-th failure."""
        return retry_tier_for(failures) / 1000 * self.scale


async def run_with_retries(
    handler: MessageHandler,
    sub: Subscription,
    envelope: Envelope,
    policy: RetryPolicy,
    *,
    slot: asyncio.Semaphore | None = None,
    stale: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Run the handler until it succeeds, fails permanently, runs out of attempts or goes stale."""
    failures = conflicts = 0
    outage_backoff = policy.outage_backoff_min
    message_log = log.bind(queue=sub.queue, event_id=str(envelope.event_id), event_type=envelope.event_type)
    while True:
        if stale():
            return Outcome.ABANDONED
        try:
            if slot is None:
                await handler(sub, envelope)
            else:
                async with slot:
                    await handler(sub, envelope)
            return Outcome.DONE
        except asyncio.CancelledError:
            raise
        except PermanentError as exc:
            message_log.error("handler_failed_permanently", error=describe_error(exc))
            return Outcome.DEAD
        except Exception as exc:
            if is_infrastructure_outage(exc):
                message_log.warning(
                    "handler_waiting_for_infrastructure", retry_in=round(outage_backoff, 2), error=describe_error(exc)
                )
                await asyncio.sleep(outage_backoff + random.uniform(0, outage_backoff / 2))
                outage_backoff = min(outage_backoff * 2, policy.outage_backoff_max)
                continue
            if is_concurrency_conflict(exc) and conflicts < policy.max_conflicts:
                conflicts += 1
                message_log.info("handler_conflict_retry", conflicts=conflicts, error=describe_error(exc))
                await asyncio.sleep(random.uniform(0, 0.05 * min(conflicts, 10)))  # the other side goes first
                continue
            failures += 1
            if failures >= policy.max_attempts:
                message_log.error("handler_gave_up", attempts=failures, error=describe_error(exc))
                return Outcome.DEAD
            delay = policy.delay(failures)
            message_log.warning(
                "handler_retry", attempt=failures + 1, delay_ms=round(delay * 1000), error=describe_error(exc)
            )
            await asyncio.sleep(delay)


class KeyedLanes(Generic[T]):
    """Items of one key run one after another; items of different keys run concurrently.

    A lane exists only while its key has work, so one stuck aggregate never holds back another
    (except through the broker's prefetch window, which bounds the unacknowledged messages).
    """

    def __init__(self, work: Callable[[T], Awaitable[None]], *, name: str = "lanes") -> None:
        self._work = work
        self._name = name
        self._pending: dict[str, deque[T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, key: str, item: T) -> None:
        queue = self._pending.get(key)
        if queue is not None:
            queue.append(item)
            return
        self._pending[key] = deque([item])
        task = asyncio.get_running_loop().create_task(self._drain(key), name=f"{self._name}:{key[:40]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def active(self) -> int:
        """Keys with work in hand."""
        return len(self._pending)

    def backlog(self) -> int:
        return sum(len(q) for q in self._pending.values())

    async def _drain(self, key: str) -> None:
        queue = self._pending[key]
        try:
            while queue:
                item = queue[0]
                try:
                    await self._work(item)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the work settles its own failures; this is a bug guard
                    log.error("lane_failure", lane=self._name, error=describe_error(exc))
                queue.popleft()
        finally:
            if self._pending.get(key) is queue:
                del self._pending[key]

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._pending.clear()


def lane_key(envelope: Envelope | None, fallback: str) -> str:
    """Events of one aggregate share a lane; events without an aggregate get a lane of their own."""
    if envelope is None or not envelope.aggregate_id:
        return f"message:{fallback}"
    return f"{envelope.aggregate_type}:{envelope.aggregate_id}"


__all__ = [
    "KeyedLanes",
    "Outcome",
    "RetryPolicy",
    "is_infrastructure_outage",
    "lane_key",
    "run_with_retries",
]
