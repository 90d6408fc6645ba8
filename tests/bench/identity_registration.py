"""Benchmark of identity sign-up (issue 3): registration throughput as a ratio to raw asyncpg.

* Sign-up: ``POST /api/v1/accounts`` on the real identity app (ASGI in process, the outbox relay
  publishing ``account.registered`` to RabbitMQ, verification job running), ``--concurrency``
  requests in flight: validation (cn.ric, region, email), AES-GCM + blind index, argon2id hash
  (the service's settings), the record/account inserts and the outbox row in one transaction.
* Baseline, same run and machine: the identical argon2id hash (same parameters, same thread
  offloading, same concurrency) followed by one plain ``INSERT`` per row through an asyncpg pool.

The ratio sign-ups/s ÷ baseline rows/s is printed (target ≥ 40 %); nothing is asserted.

Run: ``.venv/bin/python tests/bench/identity_registration.py [--count 300] [--concurrency 8]``
(or ``.venv/bin/pytest tests/bench/identity_registration.py -s``). Needs PostgreSQL and RabbitMQ
as the test suite does; uses a throw-away vhost and databases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from identity.bootstrap import build_runtime
from identity.config import IdentitySettings
from identity.main import create_app
from identity.passwords import Passwords
from shared.db import asyncpg_dsn
from shared.testing import (
    TEST_OVERRIDES,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    running,
    sign_up_body,
)


async def _bounded(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``one(i)`` for every i with ``concurrency`` in flight; returns the seconds taken."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def bench_sign_up(settings: IdentitySettings, bodies: list[dict[str, Any]], concurrency: int) -> float:
    app = create_app(settings, build_runtime(settings))
    async with running(app) as client:
        await client.post("/api/v1/accounts", json=sign_up_body())  # warm-up: first hash, pools

        async def one(i: int) -> None:
            response = await client.post("/api/v1/accounts", json=bodies[i])
            if response.status_code != 201:
                raise RuntimeError(f"sign-up refused: {response.status_code} {response.json().get('code')}")

        return await _bounded(len(bodies), concurrency, one)


async def bench_raw(
    database_url: str, settings: IdentitySettings, bodies: list[dict[str, Any]], concurrency: int
) -> float:
    passwords = Passwords(
        memory_kib=settings.argon2_memory_kib,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
    )
    pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=concurrency, max_size=concurrency)
    try:
        await pool.execute(
            "CREATE TABLE raw_accounts (id uuid PRIMARY KEY, username text UNIQUE, password_hash text, "
            "email text, mobile text, created_at timestamptz)"
        )
        await passwords.hash("warm-up password")

        async def one(i: int) -> None:
            body = bodies[i]
            password_hash = await passwords.hash(body["password"])
            await pool.execute(
                "INSERT INTO raw_accounts VALUES ($1, $2, $3, $4, $5, now())",
                uuid.uuid4(),
                body["username"],
                password_hash,
                body["email"],
                body["mobile"],
            )

        return await _bounded(len(bodies), concurrency, one)
    finally:
        await pool.close()


async def main(count: int, concurrency: int) -> None:
    amqp_url = create_vhost()
    identity_db = await create_database("bench_identity")
    raw_db = await create_database("bench_raw")
    try:
        settings = IdentitySettings(database_url=identity_db, amqp_url=amqp_url, **TEST_OVERRIDES)
        # Baseline first and again last: the machine is shared, take the better of the two.
        raw_seconds = [await bench_raw(raw_db, settings, [sign_up_body() for _ in range(count)], concurrency)]
        sign_up_seconds = await bench_sign_up(settings, [sign_up_body() for _ in range(count)], concurrency)
        await drop_database(raw_db)
        raw_db = await create_database("bench_raw")
        raw_seconds.append(await bench_raw(raw_db, settings, [sign_up_body() for _ in range(count)], concurrency))
    finally:
        await drop_database(identity_db)
        await drop_database(raw_db)
        delete_vhost(amqp_url)
    raw_rate = count / min(raw_seconds)
    sign_up_rate = count / sign_up_seconds
    print()
    print(
        f"argon2id m={settings.argon2_memory_kib} KiB t={settings.argon2_time_cost}; "
        f"{count} rows, {concurrency} in flight"
    )
    runs = ", ".join(f"{s:.2f}s" for s in raw_seconds)
    print(f"raw asyncpg insert + identical hash: {raw_rate:8.1f} rows/s (runs: {runs})")
    print(f"identity sign-up (HTTP, full rules): {sign_up_rate:8.1f} sign-ups/s ({sign_up_seconds:.2f}s)")
    print(f"ratio sign-up / raw: {sign_up_rate / raw_rate:.0%} (target >= 40%)")


async def test_identity_registration_throughput() -> None:
    """``pytest tests/bench/identity_registration.py -s``: prints the figures, asserts nothing."""
    await main(int(os.environ.get("BENCH_COUNT", 300)), int(os.environ.get("BENCH_CONCURRENCY", 8)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="sign-ups (and raw rows) per phase")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    args = parser.parse_args()
    asyncio.run(main(args.count, args.concurrency))
