"""Bulk import API (issue 3): a national admin or a data importer uploads a CSV or XLSX file;
it is checked (encoding, header) at once and imported in the background; the job's counts
and the rejected rows' report are read back by id."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Header, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, WithJsonSchema

from identity import importer
from identity.api.deps import Runtime, UoW
from identity.import_models import ImportJob
from shared.auth import ROLE_DATA_IMPORTER, ROLE_NATIONAL_ADMIN, Principal, require_roles
from shared.errors import (
    FORBIDDEN,
    PAYLOAD_TOO_LARGE,
    TOKEN_INVALID,
    UNAUTHENTICATED,
    VALIDATION_FAILED,
    AppError,
    error_responses,
    preferred_language,
)

router = APIRouter(tags=["imports"])

PATH_PREFIX = "/api/v1/imports"
#: the largest upload (a million rows of CSV is about 100 MB); bigger files go through the
#: ``identity-import`` command, which reads them from disk
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
#: the per-path body limit ``main.py`` gives the middleware (multipart framing included)
BODY_LIMITS = {PATH_PREFIX: MAX_UPLOAD_BYTES + 64 * 1024}
REPORT_PAGE = 5_000

Importer = Annotated[Principal, Depends(require_roles(ROLE_NATIONAL_ADMIN, ROLE_DATA_IMPORTER))]
AUTH_ERRORS = (UNAUTHENTICATED, TOKEN_INVALID, FORBIDDEN)


class ImportJobOut(BaseModel):
    id: uuid.UUID
    status: Literal["queued", "running", "succeeded", "failed"]
    origin: str
    file_format: str
    encoding: str | None
    file_bytes: int
    total_rows: int
    inserted_rows: int
    existing_rows: int
    rejected_rows: int
    duplicate_cases_opened: int
    ignored_columns: list[str] = Field(
        description="Header cells that name no known column, as the file wrote them: those columns were not "
        "read (a warning; the rest of the file is imported). Check the spelling of an optional column "
        "(服务时长, 志愿者编号, 出生日期, ...) listed here."
    )
    error_code: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    report_url: str


def _out(job: ImportJob) -> ImportJobOut:
    return ImportJobOut(
        id=job.id,
        status=job.status,
        origin=job.origin,
        file_format=job.file_format,
        encoding=job.encoding,
        file_bytes=job.file_bytes,
        total_rows=job.total_rows,
        inserted_rows=job.inserted_rows,
        existing_rows=job.existing_rows,
        rejected_rows=job.rejected_rows,
        duplicate_cases_opened=job.duplicate_cases_opened,
        ignored_columns=list(job.ignored_columns or []),
        error_code=job.error_code,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        report_url=f"{PATH_PREFIX}/{job.id}/report",
    )


def _spool(source: IO[bytes], suffix: str) -> Path:
    with tempfile.NamedTemporaryFile(prefix="identity-import-", suffix=suffix, delete=False) as target:
        copied = 0
        while chunk := source.read(1 << 20):
            copied += len(chunk)
            if copied > MAX_UPLOAD_BYTES:
                target.close()
                Path(target.name).unlink(missing_ok=True)
                raise AppError(importer.IMPORT_FILE_TOO_LARGE, {"limit_bytes": MAX_UPLOAD_BYTES})
            target.write(chunk)
        return Path(target.name)


@router.post(
    PATH_PREFIX,
    response_model=ImportJobOut,
    status_code=202,
    summary="Upload a CSV (UTF-8 or GB18030) or XLSX file of volunteer records to import in the background",
    responses=error_responses(
        *AUTH_ERRORS,
        importer.IMPORT_FORMAT_UNSUPPORTED,
        importer.IMPORT_FILE_TOO_LARGE,
        importer.IMPORT_ENCODING_INVALID,
        importer.IMPORT_HEADER_INVALID,
        importer.IMPORT_FILE_UNREADABLE,
        PAYLOAD_TOO_LARGE,
        VALIDATION_FAILED,
    ),
)
async def create_import(
    principal: Importer,
    runtime: Runtime,
    uow: UoW,
    file: Annotated[
        UploadFile, File(description="columns: 姓名, 证件类型, 证件号码, 手机号码, 电子邮箱, 地区代码, ...")
    ],
    # absent, not null: a multipart form has no null (a "null" there is the text, refused)
    file_format: Annotated[
        Literal["csv", "xlsx"] | None, WithJsonSchema({"type": "string", "enum": ["csv", "xlsx"]}), Form(alias="format")
    ] = None,
    encoding: Annotated[Literal["auto", "utf-8", "gb18030"], Form()] = "auto",
) -> ImportJobOut:
    chosen_format = file_format or importer.guess_format(file.filename or "")
    path = await asyncio.to_thread(_spool, file.file, f".{chosen_format}")
    try:
        async with uow:
            job = await importer.submit(uow, principal.account_id, path, file_format=chosen_format, encoding=encoding)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    importer.start(runtime, job, path, encoding=encoding)
    return _out(job)


async def _job_for(uow: UoW, principal: Principal, job_id: uuid.UUID) -> ImportJob:
    async with uow:
        job = await importer.ImportJobs(uow.session).get(job_id)
    # a data importer sees the jobs it submitted; the national admin sees every job
    if job is None or (not principal.is_national_admin and job.submitted_by != principal.account_id):
        raise AppError(importer.IMPORT_NOT_FOUND)
    return job


@router.get(
    PATH_PREFIX + "/{job_id}",
    response_model=ImportJobOut,
    summary="An import job's status and counts",
    responses=error_responses(*AUTH_ERRORS, importer.IMPORT_NOT_FOUND, VALIDATION_FAILED),
)
async def get_import(job_id: uuid.UUID, principal: Importer, uow: UoW) -> ImportJobOut:
    return _out(await _job_for(uow, principal, job_id))


@router.get(
    PATH_PREFIX + "/{job_id}/report",
    summary="The rejected rows as CSV: line, code, message, field, masked ID number",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV with a BOM (opens in Excel)"},
        **error_responses(*AUTH_ERRORS, importer.IMPORT_NOT_FOUND, VALIDATION_FAILED),
    },
)
async def get_report(
    job_id: uuid.UUID,
    principal: Importer,
    uow: UoW,
    runtime: Runtime,
    accept_language: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    job = await _job_for(uow, principal, job_id)
    lang = preferred_language(accept_language)

    async def lines() -> AsyncIterator[str]:
        yield "\ufeff" + "".join(importer.report_lines((), lang))
        after = 0
        while True:
            async with runtime.uow() as page_uow:
                page = await importer.ImportJobs(page_uow.session).rejections(
                    job.id, after_line=after, limit=REPORT_PAGE
                )
            if not page:
                return
            yield "".join(importer.report_lines(page, lang, header=False))
            after = page[-1].line

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{job.id}-rejected.csv"'},
    )
