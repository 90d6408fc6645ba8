"""A stop always ends: a client that sent a request's headers and half its body, then nothing, held
``python -m <service> serve`` past SIGTERM for as long as it kept the connection (uvicorn waits for
open requests without a limit), so an orchestrator killed it before the lifespan's own stop (relay,
consumers, pool) could run. The wait is now bounded by ``_SHUTDOWN_STEP_SECONDS``."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from shared.testing import free_port
from tests.faults.procs import ServiceProcess, service_env, wait_until

pytestmark = pytest.mark.slow

GRACE_SECONDS = 2


async def test_a_serving_process_stops_on_sigterm_although_a_client_holds_a_half_sent_request(
    amqp_url: str, database_factory: Callable[[str], Awaitable[str]], tmp_path: Path
) -> None:
    port = free_port()
    teams = ServiceProcess(
        "teams",
        service_env("TEAMS", await database_factory("graceful_teams"), amqp_url, shutdown_step_seconds=GRACE_SECONDS),
        command="serve",
        log_dir=tmp_path,
    )
    teams.start(extra_args=["--port", str(port)])
    try:

        async def ready() -> bool:
            assert teams.proc is not None
            assert teams.proc.poll() is None, teams.log()[-2000:]
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    answer = await client.get(f"http://127.0.0.1:{port}/readyz")
                    return bool(answer.json().get("status") == "ready")
            except httpx.HTTPError:
                return False

        await wait_until(ready, timeout=60, what="teams serving")

        with socket.create_connection(("127.0.0.1", port)) as held:
            held.sendall(
                b"POST /api/v1/teams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"name": "half'
            )
            await asyncio.sleep(0.5)  # the request is in the app, waiting for the rest of its body
            assert teams.proc is not None
            teams.proc.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            code = await teams.wait_exit(timeout=GRACE_SECONDS + 20)
            took = time.monotonic() - stopping
        print(f"\nstopped {took:.1f} s after SIGTERM with a half-sent request open (grace {GRACE_SECONDS} s)")
        # uvicorn ends by raising the signal it stopped on again (exit status 143), as a plain SIGTERM would
        assert code in (0, -signal.SIGTERM), teams.log()[-2000:]
        log = teams.log()
        assert "timeout graceful shutdown exceeded" in log
        assert "Application shutdown complete" in log  # the lifespan's stop ran
    finally:
        teams.kill()
