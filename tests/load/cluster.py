"""The four services as real processes (``python -m <service> serve``), each on its own throw-away
PostgreSQL database, all on one throw-away RabbitMQ vhost, with an SMTP sink (aiosmtpd) in a
process of its own: the load generator shares no event loop or GIL with what it measures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from shared.testing import PG_ADMIN_DSN, create_database, create_vhost, delete_vhost, free_port

SERVICES = ("identity", "teams", "projects", "notifications")
PREFIXES = {s: s.upper() for s in SERVICES}
ADMIN_PASSWORD = "national admin passphrase 2026"  # a throw-away account of the run


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@dataclass
class Cluster:
    urls: dict[str, str]
    database_urls: dict[str, str]
    amqp_url: str
    log_dir: Path
    env: dict[str, dict[str, str]]
    procs: dict[str, Process] = field(default_factory=dict)

    def url(self, service: str, path: str = "") -> str:
        return self.urls[service] + path

    def dsn(self, service: str) -> str:
        return asyncpg_dsn(self.database_urls[service])

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.returncode is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, service: str, chars: int = 3000) -> str:
        path = self.log_dir / f"{service}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    async def create_national_admin(self, username: str, email: str) -> str:
        """The first national admin, made the way operators do: ``python -m identity create-admin``."""
        env = {**os.environ, **self.env["identity"], "IDENTITY_ADMIN_PASSWORD": ADMIN_PASSWORD}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "identity",
            "create-admin",
            "--username",
            username,
            "--email",
            email,
            "--display-name",
            "赛会总指挥",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"create-admin failed: {err.decode(errors='replace')[-2000:]}")
        return out.decode().strip().splitlines()[-1]


def service_env(
    service: str,
    *,
    database_url: str,
    amqp_url: str,
    jwks_url: str,
    smtp_port: int,
    log_level: str,
    pool_size: int,
    max_overflow: int,
) -> dict[str, str]:
    p = PREFIXES[service]
    env = {
        f"{p}_DATABASE_URL": database_url,
        f"{p}_AMQP_URL": amqp_url,
        f"{p}_ENVIRONMENT": "development",
        f"{p}_LOG_FORMAT": "json",
        f"{p}_LOG_LEVEL": log_level,
        f"{p}_DATABASE_POOL_SIZE": str(pool_size),
        f"{p}_DATABASE_MAX_OVERFLOW": str(max_overflow),
        f"{p}_JWKS_URL": jwks_url,
    }
    if service == "notifications":
        env |= {
            "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "NOTIFICATIONS_SMTP_PORT": str(smtp_port),
            "NOTIFICATIONS_MAIL_TRANSPORT": "smtp",
        }
    return env


async def _wait_ready(client: httpx.AsyncClient, cluster: Cluster, name: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        cluster.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            # ready, not only degraded: the load needs the consumers running
            if (await client.get(cluster.url(name, "/readyz"))).json().get("status") == "ready":
                return
        if loop.time() > deadline:
            raise RuntimeError(f"{name} not ready within {timeout:.0f}s:\n{cluster.log_tail(name)}")
        await asyncio.sleep(0.25)


async def _stop(proc: Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def cluster(
    *, log_level: str = "INFO", pool_size: int = 5, max_overflow: int = 5, keep: bool = False
) -> AsyncIterator[Cluster]:
    """Start everything, yield when all four answer ``/readyz``, stop and drop it all afterwards
    (``keep`` leaves the databases and the vhost for inspection)."""
    log_dir = Path(tempfile.mkdtemp(prefix="vs-load-"))
    database_urls: dict[str, str] = {}
    amqp_url = ""
    smtp: Process | None = None
    result: Cluster | None = None
    succeeded = False
    try:
        for service in SERVICES:
            database_urls[service] = await create_database(f"load_{service}")
        amqp_url = await asyncio.to_thread(create_vhost)
        ports = {service: free_port() for service in SERVICES}
        urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
        smtp_port = free_port()
        with (log_dir / "smtp.log").open("wb") as smtp_log:
            smtp = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink"),
                *("-l", f"127.0.0.1:{smtp_port}"),
                stdout=smtp_log,
                stderr=subprocess.STDOUT,
            )
        envs = {
            service: service_env(
                service,
                database_url=database_urls[service],
                amqp_url=amqp_url,
                jwks_url=urls["identity"] + "/.well-known/jwks.json",
                smtp_port=smtp_port,
                log_level=log_level,
                pool_size=pool_size,
                max_overflow=max_overflow,
            )
            for service in SERVICES
        }
        result = Cluster(urls=urls, database_urls=database_urls, amqp_url=amqp_url, log_dir=log_dir, env=envs)
        for service in SERVICES:
            with (log_dir / f"{service}.log").open("wb") as log:
                result.procs[service] = await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", service, "serve", "--port", str(ports[service])),
                    env={**os.environ, **envs[service]},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        async with httpx.AsyncClient(timeout=5) as client:
            for service in SERVICES:
                await _wait_ready(client, result, service, timeout=180)
        yield result
        succeeded = True
    finally:
        if result is not None:
            for proc in result.procs.values():
                await _stop(proc)
        if smtp is not None:
            await _stop(smtp)
        if keep:
            print(f"kept: databases {sorted(u.rsplit('/', 1)[1] for u in database_urls.values())}, vhost {amqp_url}")
        else:
            if succeeded:
                shutil.rmtree(log_dir, ignore_errors=True)
            for url in database_urls.values():
                with contextlib.suppress(Exception):
                    await _drop_database(url)
            if amqp_url:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(delete_vhost, amqp_url)


async def fetch(dsn: str, sql: str, *args: object, patience: float = 60) -> list[asyncpg.Record]:
    """One query on a connection of its own; waits for a free connection slot, as the PostgreSQL
    server is shared with whatever else runs on the machine."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            conn = await asyncpg.connect(dsn)
            break
        except (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError, OSError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?")[0]
    await fetch(PG_ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_tag() -> str:
    return uuid.uuid4().hex[:6]
