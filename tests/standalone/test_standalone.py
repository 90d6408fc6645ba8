"""Standalone mode (`make run` with nothing configured): one process, an embedded PostgreSQL,
the in-process bus and the local mailbox; the sign-up → welcome email flow works in it."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import httpx
import pytest

from shared.testing import sign_up_body
from tests.standalone.system import Standalone, wait_ready, wait_until

pytestmark = pytest.mark.slow


def test_standalone_mode_runs_sign_up_to_welcome_email_and_stops_cleanly(standalone: Standalone) -> None:
    with httpx.Client(timeout=10) as client:
        wait_ready(standalone, client)

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
