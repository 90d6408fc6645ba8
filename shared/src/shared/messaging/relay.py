"""The outbox relay: moves committed events from a service's outbox to the broker.

* claims a batch in ``seq`` order with ``FOR UPDATE SKIP LOCKED`` (many replicas are safe);
* keeps per-aggregate order: an event is held back while an earlier event of the same
  aggregate is unpublished and not in this batch (another relay holds it, or it is backing off),
  so any number of relays publish one aggregate's events in ``seq`` order. ``seq`` is drawn when
  the unit of work writes its outbox rows, just before commit and after its state changes were
  flushed, so two transactions that both change the aggregate's row get ``seq`` in commit order
  (the second waits for the first's row lock); events raised for one aggregate by transactions
  that do not write its row are ordered only as their commits happen to fall;
* publishes persistent + mandatory with publisher confirms and marks the rows published in
  the same transaction that holds their locks; a crash between the two republishes, and the
  consumers' inbox absorbs the duplicate;
* a broker outage backs the whole relay off; a refused message (unroutable, nacked) backs
  off that row alone, with its error recorded;
* wakes on ``LISTEN/NOTIFY`` from the unit of work, polls as a fallback, purges old rows;
* takes an event's secrets (``Event.secret_fields``: a reset link) out of its row as it marks it
  published: a database reader, or a backup, of the days the row is kept finds no usable link.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.aio import cancel_and_wait
from shared.contracts.base import secret_fields_by_type
from shared.db import delete_in_batches
from shared.failpoints import failpoint
from shared.logging import describe_error, get_logger
from shared.messaging.broker import Broker, BrokerUnavailable, PublishError
from shared.messaging.envelope import Envelope
from shared.messaging.tables import MessagingTables
from shared.pgnotify import listen_forever

log = get_logger("shared.messaging.relay")

PUBLISHED = Counter("vs_outbox_published_total", "Events published from the outbox", ["service"])
PUBLISH_FAILURES = Counter("vs_outbox_publish_failures_total", "Failed publishes", ["service", "kind"])
OUTBOX_LAG = Gauge("vs_outbox_lag_seconds", "Age of the oldest unpublished event", ["service"])
OUTBOX_PENDING = Gauge("vs_outbox_pending", "Unpublished events (counted up to 100 000)", ["service"])

_CLAIM = """
SELECT id, seq, event_type, schema_version, aggregate_type, aggregate_id, payload, producer,
       correlation_id, causation_id, occurred_at, attempts
FROM {outbox}
WHERE published_at IS NULL AND available_at <= now()
ORDER BY seq
LIMIT :limit
FOR UPDATE SKIP LOCKED
"""

# The gauges: the age of the first unpublished event (in seq order, through ix_outbox_unpublished)
# and how many are unpublished, counted up to a cap, so measuring costs the same after an outage
# left a million events behind (a full count and min() read the whole backlog each time).
_MEASURE = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM {outbox} WHERE published_at IS NULL LIMIT :cap) AS p) AS n,
       (SELECT extract(epoch FROM now() - occurred_at) FROM {outbox}
        WHERE published_at IS NULL ORDER BY seq LIMIT 1) AS lag
"""

#: the pending gauge counts up to this many
PENDING_COUNT_CAP = 100_000

# Earliest unpublished seq of each claimed aggregate among rows NOT in this batch.
_BLOCKERS = """
SELECT o.aggregate_type, o.aggregate_id, min(o.seq) AS seq
FROM {outbox} o
JOIN unnest(CAST(:types AS text[]), CAST(:ids AS text[])) AS b(aggregate_type, aggregate_id)
  ON o.aggregate_type = b.aggregate_type AND o.aggregate_id = b.aggregate_id
WHERE o.published_at IS NULL AND o.seq < :max_seq AND NOT (o.id = ANY(CAST(:claimed AS uuid[])))
GROUP BY o.aggregate_type, o.aggregate_id
"""


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        messaging: MessagingTables,
        broker: Broker,
        *,
        service: str,
        listen_dsn: str | None = None,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        retention_days: int = 7,
        max_row_backoff: float = 300.0,
        measure_interval: float = 5.0,
    ) -> None:
        self.engine = engine
        self.messaging = messaging
        self.broker = broker
        self.service = service
        self.listen_dsn = listen_dsn
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention_days = retention_days
        self.max_row_backoff = max_row_backoff
        #: the gauges are measured at most this often (seconds), not after every batch
        self.measure_interval = measure_interval
        self._measured_at = float("-inf")
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox = messaging.outbox.name
        secrets = secret_fields_by_type()
        #: event types whose secrets leave the row once published, and those fields
        self._secret_types = sorted(secrets)
        self._secret_fields = sorted({name for names in secrets.values() for name in names})
        #: hook for crash tests: called after publishing a batch, before marking it published
        self.after_publish_hook: Any = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._tasks.append(asyncio.create_task(self._run(), name=f"relay-{self.service}"))
        if self.listen_dsn:
            self._tasks.append(asyncio.create_task(self._listen(), name=f"relay-listen-{self.service}"))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await cancel_and_wait(*self._tasks)
        self._tasks = []

    async def _run(self) -> None:
        backoff = 0.2
        last_purge = 0.0
        while not self._stopping:
            # Cleared before the batch, not after: a NOTIFY arriving while the batch runs must
            # wake the next round at once instead of waiting for the poll.
            self._wake.clear()
            try:
                published = await self.publish_batch()
                backoff = 0.2
                if time.monotonic() - last_purge > 3600:
                    await self.purge()
                    last_purge = time.monotonic()
                if published >= self.batch_size:
                    continue  # more may be waiting
            except asyncio.CancelledError:
                raise
            except BrokerUnavailable as exc:
                PUBLISH_FAILURES.labels(self.service, "broker").inc()
                log.warning("relay_broker_unavailable", error=str(exc)[:200], retry_in=round(backoff, 2))
                await self._measure_apart()
                await asyncio.sleep(backoff + random.uniform(0, backoff / 2))
                backoff = min(backoff * 2, 10.0)
                continue
            except Exception as exc:
                PUBLISH_FAILURES.labels(self.service, "database").inc()
                log.warning("relay_failed", error=describe_error(exc), retry_in=round(backoff, 2))
                await self._measure_apart()
                await asyncio.sleep(backoff + random.uniform(0, backoff / 2))
                backoff = min(backoff * 2, 10.0)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
            except TimeoutError:
                pass

    async def publish_batch(self) -> int:
        """Claim, publish and mark one batch. Returns how many events were published."""
        outbox = self._outbox
        async with self.engine.connect() as conn, conn.begin():
            rows = list((await conn.execute(text(_CLAIM.format(outbox=outbox)), {"limit": self.batch_size})).all())
            if not rows:
                await self._measure(conn)
                return 0
            blocked = await self._blocked_aggregates(conn, rows)
            published: list[Any] = []
            failed: list[tuple[Any, str]] = []
            held: dict[tuple[str, str], int] = dict(blocked)
            failpoint("relay_before_publish")
            # Waves: the k-th event of every aggregate in the batch goes out in wave k, the
            # events of one wave concurrently (confirms overlap), waves one after another, so
            # an aggregate's events reach the broker in order while the batch stays fast.
            waves: list[list[Any]] = []
            depth: dict[tuple[str, str], int] = {}
            for row in rows:
                key = (row.aggregate_type, row.aggregate_id)
                if key in held and held[key] < row.seq:
                    continue  # an earlier event of this aggregate goes first
                k = depth.get(key, 0)
                depth[key] = k + 1
                if k == len(waves):
                    waves.append([])
                waves[k].append(row)
            broker_down: BrokerUnavailable | None = None
            for wave in waves:
                wave = [r for r in wave if held.get((r.aggregate_type, r.aggregate_id), r.seq) >= r.seq]
                results = await asyncio.gather(
                    *(self.broker.publish(Envelope.from_outbox_row(r)) for r in wave), return_exceptions=True
                )
                for row, result in zip(wave, results, strict=True):
                    if result is None:
                        published.append(row.id)
                        continue
                    held.setdefault((row.aggregate_type, row.aggregate_id), row.seq)
                    if isinstance(result, BrokerUnavailable):
                        broker_down = result
                    elif isinstance(result, PublishError):
                        failed.append((row, str(result)))
                    else:
                        raise result
                if broker_down is not None:
                    break  # mark what made it; the rest waits for the broker
            if broker_down is not None and not published and not failed:
                raise broker_down
            if published:
                failpoint("relay_after_publish")
            if self.after_publish_hook is not None:
                await self.after_publish_hook(published)
            if published:
                await conn.execute(
                    text(
                        f"UPDATE {outbox} SET published_at = now(), attempts = attempts + 1, "  # noqa: S608
                        "payload = CASE WHEN event_type = ANY(CAST(:secret_types AS text[])) "
                        "THEN payload - CAST(:secret_fields AS text[]) ELSE payload END "
                        "WHERE id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": published, "secret_types": self._secret_types, "secret_fields": self._secret_fields},
                )
                PUBLISHED.labels(self.service).inc(len(published))
            for row, error in failed:
                delay = min(self.max_row_backoff, 2 ** min(row.attempts, 12))
                PUBLISH_FAILURES.labels(self.service, "refused").inc()
                log.error(
                    "event_refused_by_broker",
                    event_id=str(row.id),
                    event_type=row.event_type,
                    attempts=row.attempts + 1,
                    error=error[:200],
                    retry_in=delay,
                )
                await conn.execute(
                    text(
                        f"UPDATE {outbox} SET attempts = attempts + 1, last_error = :error, "  # noqa: S608
                        "available_at = now() + make_interval(secs => :delay) WHERE id = :id"
                    ),
                    {"error": error[:1000], "delay": delay, "id": row.id},
                )
            await self._measure(conn)
        return len(published)

    async def _blocked_aggregates(self, conn: Any, rows: list[Any]) -> dict[tuple[str, str], int]:
        keys = {(r.aggregate_type, r.aggregate_id) for r in rows}
        result = await conn.execute(
            text(_BLOCKERS.format(outbox=self._outbox)),
            {
                "types": [k[0] for k in keys],
                "ids": [k[1] for k in keys],
                "max_seq": max(r.seq for r in rows),
                "claimed": [r.id for r in rows],
            },
        )
        return {(r.aggregate_type, r.aggregate_id): r.seq for r in result}

    async def _measure(self, conn: Any) -> None:
        """Set the lag and pending gauges, at most every ``measure_interval`` seconds; each measure
        reads a bounded number of rows (see ``_MEASURE``)."""
        if time.monotonic() - self._measured_at < self.measure_interval:
            return
        row = (await conn.execute(text(_MEASURE.format(outbox=self._outbox)), {"cap": PENDING_COUNT_CAP})).one()
        self._measured_at = time.monotonic()
        OUTBOX_PENDING.labels(self.service).set(row.n)
        OUTBOX_LAG.labels(self.service).set(float(row.lag or 0.0))

    async def _measure_apart(self) -> None:
        """The gauges while batches fail (the broker is down, or a statement failed): measured on a
        connection of their own, since the batch's transaction rolled back before measuring. Without
        this an outage would show the lag measured before it, often 0, and no lag alert would fire."""
        with contextlib.suppress(Exception):  # the database is down too: /readyz reports it
            async with self.engine.connect() as conn:
                await self._measure(conn)

    async def purge(self, *, batch: int = 10_000) -> int:
        """Remove published events and processed-message marks older than the retention, a batch per
        transaction. The inbox only has to recognise a message delivered again (a redelivery after
        a consumer's crash, a relay's republish after its own), which happens within minutes; kept
        forever, it grew by a row per message and handler. Returns how many rows went."""
        inbox = self.messaging.inbox.name
        total = 0
        for table, column in ((self._outbox, "published_at"), (inbox, "processed_at")):
            condition = f"{column} < now() - make_interval(days => :days)"
            total += await delete_in_batches(self.engine, table, condition, {"days": self.retention_days}, batch=batch)
        return total

    async def _listen(self) -> None:
        assert self.listen_dsn is not None
        await listen_forever(self.listen_dsn, self.messaging.channel, self._wake.set)
