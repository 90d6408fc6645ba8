"""Service processes for fault tests: real ``python -m <service> worker|serve`` children that a
test can SIGKILL, or make die at a failpoint, and start again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from shared.contracts.identity import AccountRegistered


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@dataclass
class ServiceProcess:
    service: str
    env: dict[str, str]
    command: str = "worker"
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    starts: int = 0

    def start(self, failpoints: str = "", extra_args: list[str] | None = None) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"{self.service}-{uuid.uuid4().hex[:6]}-{self.starts}.log"
        env = {**os.environ, **self.env, "VS_FAILPOINTS": failpoints}
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.service, self.command, *(extra_args or [])],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    async def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while self.proc.poll() is None:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.service} did not exit within {timeout}s; log: {self.log()[-2000:]}")
            await asyncio.sleep(0.1)
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.log_dir.glob(f"{self.service}-*.log"))


def service_env(prefix: str, database_url: str, amqp_url: str, **extra: Any) -> dict[str, str]:
    env = {
        f"{prefix}_DATABASE_URL": database_url,
        f"{prefix}_AMQP_URL": amqp_url,
        f"{prefix}_ENVIRONMENT": "test",
        f"{prefix}_RELAY_POLL_INTERVAL": "0.2",
        f"{prefix}_LOG_FORMAT": "json",
    }
    env.update({f"{prefix}_{k.upper()}": str(v) for k, v in extra.items()})
    return env


async def insert_account_registered(database_url: str, count: int = 1, *, tag: str = "") -> list[tuple[uuid.UUID, str]]:
    """Commit ``account.registered`` events into identity's own outbox (as its sign-up does).
    Returns (event_id, email) pairs."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    rows: list[tuple[Any, ...]] = []
    out: list[tuple[uuid.UUID, str]] = []
    now = datetime.now(UTC)
    for _ in range(count):
        account_id = uuid.uuid4()
        email = f"fault-{tag}{account_id.hex[:12]}@example.org"
        event = AccountRegistered(
            account_id=account_id, username=f"f{account_id.hex[:12]}", display_name="测试", email=email
        )
        event_id = uuid.uuid4()
        rows.append(
            (event_id, event.event_type, 1, "account", str(account_id), event.model_dump_json(), "identity", now)
        )
        out.append((event_id, email))
    try:
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO outbox (id, event_type, schema_version, aggregate_type, aggregate_id, payload, "
                "producer, occurred_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)",
                rows,
            )
            await conn.execute("SELECT pg_notify('outbox_identity', '')")
    finally:
        await conn.close()
    return out


async def fetchval(database_url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def wait_until(check: Any, *, timeout: float = 30, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {value!r})")
        await asyncio.sleep(0.2)
