"""Tables of the bulk importer: one job per imported file, and the rows it rejected.

The imported volunteers themselves are ``volunteer_records`` rows (source ``import``, status
``inactive`` until claimed, V4). A record's id is derived from a keyed fingerprint of the row,
so loading the same rows again inserts nothing (``ON CONFLICT (id) DO NOTHING``); after a
rotation of the blind-index key a record keeps its id and ``reindex`` gives it its fingerprint under
the new key as ``import_key``, which the importer checks as well.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from identity.models import Base

JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"


def record_id(blind_index: bytes, name: str, legacy_number: str) -> str:
    """The row's identity (a UUID): the keyed blind index of the number with the name and the
    legacy volunteer number, so only the key holder can tell whose record an id is."""
    digest = bytearray(
        hashlib.sha256(b"import-row|%b|%b|%b" % (blind_index, name.encode(), legacy_number.encode())).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x40  # a version-4-shaped UUID
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()


class ImportJob(Base):
    __tablename__ = "import_jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    #: ``api`` (uploaded) or ``cli`` (``identity-import``)
    origin: Mapped[str] = mapped_column(String(8))
    submitted_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    file_format: Mapped[str] = mapped_column(String(8))
    #: the encoding the file was read with (detected or given); XLSX has none
    encoding: Mapped[str | None] = mapped_column(String(16))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    file_bytes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    status: Mapped[str] = mapped_column(String(16))
    total_rows: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    inserted_rows: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: valid rows already present (an earlier import of the same rows, or a repeat in the file)
    existing_rows: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    rejected_rows: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    duplicate_cases_opened: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: header cells of the file that name no field, as written: their columns were not read
    ignored_columns: Mapped[list[str]] = mapped_column(ARRAY(String(100)), server_default=text("'{}'"))
    error_code: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: a queued job's last sign of life: the process holding its uploaded file says, once a
    #: minute, that it still waits for a slot (``importer.settle_interrupted_jobs``)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ImportRejection(Base):
    """One rejected row: where it was and why; the ID number only masked."""

    __tablename__ = "import_rejections"

    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("import_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    field: Mapped[str | None] = mapped_column(String(40))
    id_masked: Mapped[str | None] = mapped_column(String(32))
