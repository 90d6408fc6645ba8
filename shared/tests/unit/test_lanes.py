"""Per-aggregate lanes and in-lane retries, through the in-process broker (same code as the
RabbitMQ consumer uses): order per aggregate, retries that never let a later event overtake,
outages waited out without using up attempts, dead letters."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import sqlalchemy.exc

from shared.messaging.broker import PermanentError
from shared.messaging.envelope import Envelope
from shared.messaging.inprocess import InProcessBroker
from shared.messaging.lanes import RetryPolicy, is_concurrency_conflict, is_infrastructure_outage
from shared.messaging.topology import Subscription
from shared.testing import eventually

SUB = Subscription("spine_unit", "ordered", ("thing.changed",))


def envelope(aggregate: str, n: int, **payload: object) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        event_type="thing.changed",
        occurred_at=datetime(2026, 5, 1, tzinfo=UTC),
        producer="spine",
        aggregate_type="thing",
        aggregate_id=aggregate,
        sequence=n,
        payload={"n": n, **payload},
    )


@pytest.fixture
async def broker() -> AsyncIterator[InProcessBroker]:
    broker = InProcessBroker(lanes=4, max_attempts=3)
    broker.retry_policy = RetryPolicy(max_attempts=3, scale=0.01, outage_backoff_min=0.01, outage_backoff_max=0.02)
    yield broker
    await broker.close()


class Recorder:
    """A handler that records (aggregate, n) when it succeeds and fails as the payload says."""

    def __init__(self) -> None:
        self.applied: dict[str, list[int]] = defaultdict(list)
        self.runs: dict[uuid.UUID, int] = defaultdict(int)

    async def __call__(self, sub: Subscription, env: Envelope) -> None:
        self.runs[env.event_id] += 1
        runs = self.runs[env.event_id]
        await asyncio.sleep(0.001 * (hash(env.event_id) % 3))  # let lanes interleave
        fail = env.payload.get("fail")
        if fail == "first" and runs == 1:
            raise RuntimeError("transient")
        if fail == "always":
            raise RuntimeError("never works")
        if fail == "permanent":
            raise PermanentError("cannot be handled")
        if fail == "outage" and runs <= int(str(env.payload.get("outages", 0))):
            raise OSError(111, "Connection refused")
        if fail == "deadlock" and runs <= int(str(env.payload.get("deadlocks", 0))):
            raise _wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
        self.applied[str(env.aggregate_id)].append(int(str(env.payload["n"])))


async def test_one_aggregates_events_apply_in_order_even_when_some_are_retried(broker: InProcessBroker) -> None:
    recorder = Recorder()
    broker.subscribe(SUB, recorder)
    await broker.start()
    aggregates = [f"a{i}" for i in range(10)]
    for n in range(20):
        for a in aggregates:
            # every third event fails once: with retry queues it would come back behind n+1
            await broker.publish(envelope(a, n, fail="first" if n % 3 == 0 else None))

    await eventually(lambda: sum(map(len, recorder.applied.values())) == 200, timeout=30)
    for a in aggregates:
        assert recorder.applied[a] == list(range(20))
    assert not broker.dead_letters


async def test_a_failing_event_holds_back_only_its_own_aggregate(broker: InProcessBroker) -> None:
    recorder = Recorder()
    gate = asyncio.Event()

    async def slow_poison(sub: Subscription, env: Envelope) -> None:
        if env.payload.get("fail") == "always":
            await gate.wait()
        await recorder(sub, env)

    broker.subscribe(SUB, slow_poison)
    await broker.start()
    await broker.publish(envelope("stuck", 0, fail="always"))
    await broker.publish(envelope("stuck", 1))
    for i in range(20):
        await broker.publish(envelope(f"other{i}", 0))

    await eventually(lambda: len(recorder.applied) == 20)
    assert "stuck" not in recorder.applied  # its next event waits for the poison to be settled
    gate.set()
    await eventually(lambda: recorder.applied.get("stuck") == [1])
    [dead] = broker.dead_letters[SUB.queue]
    assert dead.payload["n"] == 0
    assert recorder.runs[dead.event_id] == 3  # max_attempts runs, then dead-lettered


async def test_permanent_error_is_dead_lettered_without_a_retry(broker: InProcessBroker) -> None:
    recorder = Recorder()
    broker.subscribe(SUB, recorder)
    await broker.start()
    poison = envelope("p", 0, fail="permanent")
    await broker.publish(poison)
    await broker.publish(envelope("p", 1))

    await eventually(lambda: recorder.applied.get("p") == [1])
    assert broker.dead_letters[SUB.queue] == [poison]
    assert recorder.runs[poison.event_id] == 1


@pytest.mark.parametrize("kind", ["outage", "deadlock"])
async def test_a_database_outage_or_a_lost_deadlock_is_run_again_without_using_up_attempts(
    broker: InProcessBroker, kind: str
) -> None:
    """Neither the database being away nor another transaction met on the same locks is the
    message's fault: the outage is waited out, the deadlock's loser runs again at once."""
    recorder = Recorder()
    broker.subscribe(SUB, recorder)
    await broker.start()
    event = envelope(kind, 0, fail=kind, outages=10, deadlocks=10)  # far more than max_attempts=3
    await broker.publish(event)
    await broker.publish(envelope(kind, 1))

    await eventually(lambda: recorder.applied.get(kind) == [0, 1], timeout=20)
    assert recorder.runs[event.event_id] == 11
    assert not broker.dead_letters


def test_deadlocks_and_serialisation_failures_are_conflicts_not_outages_or_bad_messages() -> None:
    for error in (
        _wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected")),
        asyncpg.exceptions.SerializationError("could not serialize access"),
    ):
        assert is_concurrency_conflict(error)
        assert not is_infrastructure_outage(error)
    assert not is_concurrency_conflict(_wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")))
    assert not is_concurrency_conflict(ValueError("bad payload"))


async def test_messages_published_before_the_consumer_starts_wait_for_it_in_order(broker: InProcessBroker) -> None:
    recorder = Recorder()
    broker.subscribe(SUB, recorder)
    for n in range(5):
        await broker.publish(envelope("early", n))
    await asyncio.sleep(0.05)
    assert not recorder.applied
    await broker.start()
    await eventually(lambda: recorder.applied.get("early") == [0, 1, 2, 3, 4])


def _wrapped(orig: BaseException) -> sqlalchemy.exc.DBAPIError:
    try:
        try:
            raise orig
        except BaseException as inner:
            raise sqlalchemy.exc.DBAPIError("SELECT 1", None, inner) from inner  # type: ignore[arg-type]
    except sqlalchemy.exc.DBAPIError as outer:
        return outer


def _raised_while_handling(first: BaseException, second: BaseException) -> BaseException:
    """``second`` raised inside an ``except`` block for ``first`` (its context, not its cause)."""
    try:
        try:
            raise first
        except BaseException:
            raise second  # noqa: B904 - the point: no "from"
    except BaseException as raised:
        return raised


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"), True),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), True),
        (sqlalchemy.exc.OperationalError("SELECT 1", None, Exception("server closed")), True),
        (sqlalchemy.exc.InterfaceError("SELECT 1", None, Exception("connection is closed")), True),
        (_wrapped(asyncpg.exceptions.AdminShutdownError("terminating")), True),
        (_wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")), False),
        (sqlalchemy.exc.IntegrityError("INSERT", None, Exception("duplicate key")), False),
        (asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"), False),
        (ValueError("bad payload"), False),
        (PermanentError("no"), False),
        (FileNotFoundError(2, "No such file or directory"), False),
        (PermissionError(13, "Permission denied"), False),
        (TimeoutError(), True),
        (_raised_while_handling(ConnectionResetError(104, "reset"), ValueError("bug in the handler")), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_infrastructure_outages_are_told_apart_from_bad_messages(error: BaseException, outage: bool) -> None:
    assert is_infrastructure_outage(error) is outage


async def test_at_most_lanes_handlers_run_at_once_and_a_waiting_retry_frees_its_slot() -> None:
    broker = InProcessBroker(lanes=2, max_attempts=3)
    broker.retry_policy = RetryPolicy(max_attempts=3, scale=10.0)  # first retry waits 2 s
    running = 0
    peak = 0
    done: list[str] = []
    failed: set[uuid.UUID] = set()

    async def handler(sub: Subscription, env: Envelope) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.01)
            if env.aggregate_id in ("x", "y") and env.event_id not in failed:
                failed.add(env.event_id)
                raise RuntimeError("transient")
            done.append(str(env.aggregate_id))
        finally:
            running -= 1

    broker.subscribe(SUB, handler)
    await broker.start()
    try:
        # x and y both wait for their retry: with their slots held the other eight would stall.
        for aggregate in ["x", "y", *(f"a{i}" for i in range(8))]:
            await broker.publish(envelope(aggregate, 0))
        await eventually(lambda: len(done) == 8)
        assert "x" not in done  # the others finished while x and y were still waiting to retry
        assert "y" not in done
        await eventually(lambda: len(done) == 10)
    finally:
        await broker.close()
    assert peak == 2
