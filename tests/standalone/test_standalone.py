"""Standalone mode (`make run` with nothing configured): one process, an embedded PostgreSQL,
the in-process bus and the local mailbox; the sign-up → welcome email flow works in it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.testing import sign_up_body

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("identity", "teams", "projects", "notifications")

pytestmark = pytest.mark.slow


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


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    log_path = tmp_path / "run.log"
    data_dir = tmp_path / "data"
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
            # SIGTERM first so the embedded PostgreSQL is stopped too, even when the test failed.
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_standalone_mode_runs_sign_up_to_welcome_email_and_stops_cleanly(standalone: Standalone) -> None:
    with httpx.Client(timeout=10) as client:
        for service in SERVICES:
            wait_until(
                lambda s=service: client.get(standalone.url(s, "/readyz")).status_code == 200,
                standalone,
                timeout=60,
                what=f"{service} /readyz",
            )

        address = f"sa-{uuid.uuid4().hex[:8]}@example.org"
        response = client.post(
            standalone.url("identity", "/api/v1/accounts"),
            json=sign_up_body(email=address),
        )
        assert response.status_code == 201, response.text

        def welcome_in_mailbox() -> dict[str, Any] | None:
            items = client.get(standalone.url("notifications", "/api/v1/mailbox")).json()["items"]
            # sign-up also brings the verification outcome: the welcome is the one that greets
            return next((m for m in items if m["to_address"] == address and "欢迎" in m["subject"]), None)

        item = wait_until(welcome_in_mailbox, standalone, timeout=20, what="the welcome email in the mailbox")
        email = client.get(standalone.url("notifications", f"/api/v1/mailbox/{item['id']}"))
        assert email.status_code == 200, email.text
        assert "欢迎" in email.json()["subject"]

    standalone.proc.send_signal(signal.SIGTERM)
    assert standalone.proc.wait(timeout=30) == 0, standalone.log()
    assert "Stopped." in standalone.log()
    # The embedded PostgreSQL went down with it: no postmaster left behind.
    assert not (standalone.data_dir / "pgdata" / "postmaster.pid").exists()
