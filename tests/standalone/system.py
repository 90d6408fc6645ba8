"""The whole system in standalone mode (`deploy/run.py` with nothing configured), as a newcomer's
`make run` starts it: one process, an embedded PostgreSQL, the in-process bus, the local mailbox."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("identity", "teams", "projects", "notifications")


@dataclass
class Standalone:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    data_dir: Path
    log_path: Path

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_until(check: Any, system: Standalone, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if system.proc.poll() is not None:
            pytest.fail(f"deploy/run.py exited ({system.proc.returncode}) while waiting for {what}:\n{system.log()}")
        try:
            result = check()
        except httpx.TransportError:
            result = None
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what}:\n{system.log()}")


def wait_ready(system: Standalone, client: httpx.Client) -> None:
    for service in SERVICES:
        wait_until(
            lambda s=service: client.get(system.url(s, "/readyz")).json().get("status") == "ready",
            system,
            timeout=60,
            what=f"{service} /readyz",
        )


@contextlib.contextmanager
def standalone_system(home: Path) -> Iterator[Standalone]:
    """``deploy/run.py`` on free ports, its data and log under ``home``; stopped (SIGTERM, so the
    embedded PostgreSQL goes down with it) when the block ends, unless the block stopped it."""
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    log_path = home / "run.log"
    data_dir = home / "data"
    # Nothing configured: the same environment a newcomer's `make run` sees.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    port_args = [arg for s in SERVICES for arg in (f"--{s}-port", str(ports[s]))]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "deploy" / "run.py"), "--data-dir", str(data_dir), *port_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )
    system = Standalone(proc, ports, data_dir, log_path)
    try:
        yield system
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
