"""Test support for the identity service's suites (only tests import this module)."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import text

from identity.bootstrap import IdentityRuntime
from identity.config import IdentitySettings
from identity.crypto import DataCipher
from identity.domain.documents import DocumentType
from identity.models import RECORD_INACTIVE, SOURCE_IMPORT, VolunteerRecord
from identity.registration import seal_identity
from identity.verification import VerificationRequest, VerificationResult
from shared.auth import ROLE_NATIONAL_ADMIN, ROLE_REGIONAL_ADMIN, ROLE_VOLUNTEER
from shared.clock import ManualClock
from shared.testing import eventually, sign_up_body

#: fast verification polling; small pools (the test machine's PostgreSQL is shared by many suites);
#: every sign-up of a suite comes from one client address, so its identity answers are not
#: budgeted as one prober's (tests of that budget set it)
FAST: dict[str, Any] = {
    "verification_poll_seconds": 0.1,
    "database_pool_size": 4,
    "database_max_overflow": 6,
    "sign_up_identity_refusals_per_hour": 100_000,
}


@dataclass
class Identity:
    client: httpx.AsyncClient
    runtime: IdentityRuntime
    clock: ManualClock
    settings: IdentitySettings

    def __post_init__(self) -> None:
        # Each event as it was published, whole: the relay takes an event's secrets (a reset link)
        # out of its outbox row once published, and tests read them as the consumers got them.
        self.published: dict[str, dict[str, Any]] = {}
        broker = self.runtime.broker
        publish = broker.publish

        async def keep_and_publish(envelope: Any) -> Any:
            self.published[str(envelope.event_id)] = dict(envelope.payload)
            return await publish(envelope)

        broker.publish = keep_and_publish  # type: ignore[method-assign]

    def bearer(
        self,
        account_id: uuid.UUID | str | None = None,
        *,
        roles: tuple[str, ...] = (ROLE_VOLUNTEER,),
        region: str | None = None,
    ) -> dict[str, str]:
        token = self.runtime.signer.issue(account_id or uuid.uuid4(), roles=roles, region=region)
        return {"Authorization": f"Bearer {token}"}

    async def team_admin(self) -> dict[str, str]:
        """A team admin's headers, as teams' events leave one in the read model (T7)."""
        admin_id = uuid.uuid4()
        async with self.runtime.engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO team_memberships (team_id, account_id, member, admin, updated_at) "
                "VALUES ($1, $2, true, true, now())",
                (uuid.uuid4(), admin_id),
            )
        return self.bearer(admin_id)

    def national_admin(self, account_id: uuid.UUID | None = None) -> dict[str, str]:
        return self.bearer(account_id, roles=(ROLE_NATIONAL_ADMIN,))

    def regional_admin(self, region: str, account_id: uuid.UUID | None = None) -> dict[str, str]:
        return self.bearer(account_id, roles=(ROLE_REGIONAL_ADMIN,), region=region)

    async def sign_up(self, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """A new volunteer: (the request body, the response body)."""
        body = sign_up_body(**overrides)
        response = await self.client.post("/api/v1/accounts", json=body)
        assert response.status_code == 201, response.text
        return body, response.json()

    async def log_in(self, username: str, password: str) -> httpx.Response:
        return await self.client.post("/api/v1/tokens", json={"username": username, "password": password})

    async def headers_for(self, body: dict[str, Any]) -> dict[str, str]:
        response = await self.log_in(body["username"], body["password"])
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    async def me(self, headers: dict[str, str]) -> dict[str, Any]:
        response = await self.client.get("/api/v1/accounts/me", headers=headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def fetch(self, sql: str, **params: Any) -> list[Any]:
        async with self.runtime.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())

    async def events(self, event_type: str, account_id: uuid.UUID | str | None = None) -> list[dict[str, Any]]:
        """The events of a type in outbox order, each with its payload as published (secrets too)."""
        rows = await self.fetch("SELECT id, payload FROM outbox WHERE event_type = :t ORDER BY seq", t=event_type)
        payloads = [
            self.published.get(str(r[0])) or (r[1] if isinstance(r[1], dict) else json.loads(r[1])) for r in rows
        ]
        if account_id is not None:
            payloads = [p for p in payloads if p.get("account_id") == str(account_id)]
        return payloads

    async def verification(self, headers: dict[str, str], status: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until the background verifier has moved the account to ``status``."""

        async def check() -> dict[str, Any] | None:
            me = await self.me(headers)
            return me if me["verification"]["status"] == status else None

        result: dict[str, Any] = await eventually(check, timeout=timeout, interval=0.1)
        return result


StartIdentity = Callable[..., AbstractAsyncContextManager[Identity]]


#: a tiny valid PNG (1×1, one red pixel), for upload tests
PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
    b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82"
)


def jpeg_bytes(size: tuple[int, int] = (8, 8), *, exif: Image.Exif | None = None, comment: bytes = b"") -> bytes:
    """A small JPEG that decodes (uploads are decoded whole), optionally with EXIF and a comment."""
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, format="JPEG", exif=exif or b"", comment=comment)
    return out.getvalue()


JPEG_BYTES = jpeg_bytes()


def picture(data: bytes) -> tuple[str | None, tuple[int, int], str, bytes]:
    """What an image shows (format, size, mode, pixels), whatever bytes encode it: an upload is
    kept re-encoded, so a reviewer gets the same picture in other bytes."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.format, image.size, image.mode, image.tobytes()


class ScriptedProvider:
    """A verification provider plugged in the way operators plug in theirs
    (``IDENTITY_VERIFICATION_PROVIDER=identity.testing:scripted_provider``): it records what it
    was asked and answers ``verified``, or waits ``delay`` seconds first."""

    def __init__(self) -> None:
        self.requests: list[VerificationRequest] = []
        self.delay = 0.0

    async def verify(self, request: VerificationRequest) -> VerificationResult:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        return VerificationResult("verified")


def scripted_provider(settings: IdentitySettings) -> ScriptedProvider:
    return ScriptedProvider()


async def add_imported_record(
    identity: Identity,
    id_number: str,
    name: str,
    *,
    cipher: DataCipher | None = None,
    history: dict[str, Any] | None = None,
) -> uuid.UUID:
    """What the bulk importer leaves behind: an inactive record, found by the blind index, sealed
    with ``cipher`` (another key ring than the service's) or the service's own."""
    sealed = seal_identity(cipher or identity.runtime.cipher, DocumentType.RESIDENT_ID, id_number, None)
    record = VolunteerRecord(
        id=uuid.uuid4(),
        document_type=DocumentType.RESIDENT_ID.value,
        id_blind_index=sealed.blind_index,
        id_blind_key_id=sealed.blind_key_id,
        id_ciphertext=sealed.ciphertext,
        id_key_id=sealed.key_id,
        id_masked=sealed.masked,
        real_name=name,
        birth_date=sealed.birth_date,
        source=SOURCE_IMPORT,
        status=RECORD_INACTIVE,
        history=history,
        created_at=datetime.now(UTC),
    )
    async with identity.runtime.uow() as uow:
        uow.session.add(record)
    return record.id


@dataclass
class CommandRun:
    """What ``python -m identity <command>`` did (see :func:`run_identity_command`)."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run_identity_command(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """``python -m identity <args>`` in a process of its own with ``env``, as an operator runs it:
    (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "identity",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
