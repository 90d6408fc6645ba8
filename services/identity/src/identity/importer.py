"""Bulk import of legacy volunteer records (issue 3, "Bulk import"; SPEC V3, V4).

A file (CSV in UTF-8 with or without BOM, or GB18030; or XLSX) is read as a stream, each row
checked like a sign-up would check it (resident ID check digit, birth date and area code,
region code, mobile), and the valid rows are sealed with the sign-up's cipher and blind index,
so a later sign-up finds and claims them (V4). Loading is PostgreSQL ``COPY`` into a temporary
staging table, then ``INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING`` into
``volunteer_records``, one transaction per batch; the next batch is parsed in a thread while
the database loads the previous one.

Idempotent: a record's id is derived from a keyed fingerprint of the row (document type,
number, name, legacy volunteer number), so loading the same rows twice, or a file twice,
adds nothing, also after a rotation of the blind-index key (a re-indexed record keeps its id and
carries its fingerprint under the new key in ``import_key``); a half-finished import is finished
by running it again. Several records with one number are kept and a duplicate case is opened for
the national admin (V3).

During a rotation of the blind-index key (:mod:`identity.reindex`) a row is indexed under the
current key and also carries its index and record id under the previous one: a row loaded before
the rotation is not loaded again, and a number's records are counted together under both keys when
duplicate cases are opened (batch by batch then: the end-of-import sweep compares indexes only).

Rejected rows go to ``import_rejections`` and the report (line, code, message, field, masked
number); the full ID number never leaves the ciphertext, nor does any personal data reach a log.

Uploads (:class:`ImportQueue`): a process runs at most ``IDENTITY_IMPORT_CONCURRENCY`` imports at
once (each is a loader connection outside the pool and most of a core); the others wait
``queued``, in upload order, and start as a slot frees. The uploaded file is spooled to the
uploading process's temporary directory (its local disk, not the database), so a queued job is
only ever run by the process that took the upload; nothing hands it to another replica. Starting
a job is a claim that exactly one loader wins (:func:`_claim`): ``pg_try_advisory_lock`` on the
job's key, then ``queued`` → ``running`` by a conditional update. The import watch (every
replica, every minute, :func:`watch_imports`) first refreshes ``heartbeat_at`` of the jobs its
process still holds, then fails as ``import_interrupted`` a running job whose lock is gone and a
queued job without a heartbeat for :data:`QUEUED_GRACE` (its process, and with it the file, is
gone); a job so settled is not started later, since its claim finds it no longer queued. Only a
CSV's encoding and header, and of an XLSX that it is a workbook, are checked before the 202:
reading an XLSX's header means parsing all its shared strings, which the job does in a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import csv
import functools
import hashlib
import io
import json
import multiprocessing
import multiprocessing.util
import operator
import re
import sys
import traceback
import unicodedata
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import IO, Any

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from identity import errors as identity_errors
from identity.bootstrap import IdentityRuntime
from identity.config import IdentitySettings
from identity.crypto import DataCipher, build_cipher, id_number_context
from identity.domain import documents
from identity.domain.documents import DocumentType
from identity.import_models import (
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    ImportJob,
    ImportRejection,
    record_id,
)
from shared import regions
from shared.aio import cancel_and_wait
from shared.clock import Clock, SystemClock, local_today
from shared.db import UnitOfWork, asyncpg_dsn
from shared.errors import AppError, ErrorSpec
from shared.logging import get_logger

log = get_logger("identity.importer")

DEFAULT_BATCH_SIZE = 20_000

# -- refusals of a whole file (API answers, CLI exit) ----------------------------------------
IMPORT_NOT_FOUND = ErrorSpec("import_not_found", 404, "导入任务不存在", "No such import")
#: a job whose process stopped (restart, crash) before it finished: it is marked failed with this
#: code; the rows loaded so far stay, and uploading the same file again loads only the rest
IMPORT_INTERRUPTED = ErrorSpec(
    "import_interrupted",
    409,
    "导入因服务重启而中断:已导入的记录保留,重新上传同一文件即可完成(不会重复导入)",
    "The import was cut off by a restart: the rows loaded so far are kept; upload the same file again to finish it "
    "(nothing is imported twice)",
)
IMPORT_FORMAT_UNSUPPORTED = ErrorSpec(
    "import_format_unsupported", 415, "仅支持 CSV 和 XLSX 文件", "Only CSV and XLSX files can be imported"
)
IMPORT_FILE_TOO_LARGE = ErrorSpec(
    "import_file_too_large",
    413,
    "导入文件过大,请分批导入或使用命令行工具",
    "The file is too large to upload: split it into batches or use the command-line tool",
)
IMPORT_ENCODING_INVALID = ErrorSpec(
    "import_encoding_invalid",
    422,
    "无法识别文件编码,请使用 UTF-8 或 GB18030 编码的 CSV 文件",
    "The file is neither UTF-8 nor GB18030",
)
IMPORT_HEADER_INVALID = ErrorSpec(
    "import_header_invalid",
    422,
    "导入文件缺少必需的列:{missing}",
    "The file lacks required columns: {missing}",
)
IMPORT_FILE_UNREADABLE = ErrorSpec(
    "import_file_unreadable", 422, "导入文件无法读取,请检查文件格式", "The file could not be read"
)

# -- reasons a row is rejected (report) -------------------------------------------------------
NAME_MISSING = ErrorSpec("name_missing", 422, "姓名不能为空", "The name is missing")
NAME_TOO_LONG = ErrorSpec("name_too_long", 422, "姓名过长", "The name is too long")
ID_NUMBER_MISSING = ErrorSpec("id_number_missing", 422, "证件号码不能为空", "The ID number is missing")
DOCUMENT_TYPE_INVALID = ErrorSpec("document_type_invalid", 422, "证件类型不正确", "Unknown document type")
#: a birth date cell that is no date, or one from the future or before anyone alive (as sign-up says)
BIRTH_DATE_INVALID = identity_errors.BIRTH_DATE_INVALID
VOLUNTEER_NUMBER_INVALID = ErrorSpec(
    "volunteer_number_invalid", 422, "志愿者编号格式不正确", "The volunteer number is not valid"
)
SERVICE_HOURS_INVALID = ErrorSpec(
    "service_hours_invalid",
    422,
    "服务时长应为0至100000之间的数字(如 12 或 12.5)",
    "Service hours must be a plain number from 0 to 100000 (such as 12 or 12.5)",
)
ROW_MALFORMED = ErrorSpec("row_malformed", 422, "该行的列数与表头不一致", "The row does not match the header")
CELL_CONTROL_CHARACTERS = ErrorSpec(
    "cell_control_characters",
    422,
    "单元格含有不可见的控制字符(如 NUL),请删除后重新导入",
    "The cell contains control characters (such as NUL); remove them and import again",
)
CELL_TOO_LONG = ErrorSpec(
    "cell_too_long",
    422,
    "该行有单元格内容过长,未导入(常见原因是引号不成对),请修正后重新导入",
    "A cell of this row is too long, so the row was not imported (often an unbalanced quote); fix it and import again",
)

ROW_REASONS: dict[str, ErrorSpec] = {
    spec.code: spec
    for spec in (
        NAME_MISSING,
        NAME_TOO_LONG,
        ID_NUMBER_MISSING,
        DOCUMENT_TYPE_INVALID,
        BIRTH_DATE_INVALID,
        VOLUNTEER_NUMBER_INVALID,
        SERVICE_HOURS_INVALID,
        ROW_MALFORMED,
        CELL_CONTROL_CHARACTERS,
        CELL_TOO_LONG,
        identity_errors.ID_NUMBER_INVALID,
        identity_errors.ID_NUMBER_AREA_INVALID,
        identity_errors.DOCUMENT_NUMBER_INVALID,
        identity_errors.BIRTH_DATE_REQUIRED,
        identity_errors.BIRTH_DATE_MISMATCH,
        identity_errors.MOBILE_INVALID,
        identity_errors.EMAIL_INVALID,
        identity_errors.REGION_INVALID,
    )
}

# -- columns ---------------------------------------------------------------------------------
#: header spellings (compared as :func:`_header_key` folds them: NFKC, so the full-width ``（）`` of
#: ``服务时长（小时）`` are these ASCII ones, lower-cased, spaces removed) an operator's file may use, per field
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "real_name": ("real_name", "name", "姓名", "真实姓名"),
    "document_type": ("document_type", "证件类型"),
    "id_number": ("id_number", "document_number", "证件号码", "身份证号码", "身份证号", "证件号"),
    "mobile": ("mobile", "phone", "手机", "手机号码", "手机号", "联系电话"),
    "email": ("email", "电子邮箱", "邮箱"),
    "region_code": ("region_code", "region", "地区代码", "所在地区代码", "行政区划代码"),
    "birth_date": ("birth_date", "出生日期"),
    "volunteer_number": ("volunteer_number", "志愿者编号", "志愿者编码"),
    "service_hours": ("service_hours", "服务时长", "服务时长(小时)", "累计服务时长"),
}
REQUIRED_COLUMNS = ("real_name", "id_number", "mobile", "region_code")
#: the order of a row's values as the checker takes them
FIELDS = (
    "real_name",
    "document_type",
    "id_number",
    "mobile",
    "email",
    "region_code",
    "birth_date",
    "volunteer_number",
    "service_hours",
)


def _header_key(cell: Any) -> str:
    """A header cell as :data:`COLUMN_ALIASES` are compared: NFKC-folded (full-width brackets,
    letters and digits are the ASCII ones), without spaces or a byte order mark, lower-cased."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(cell or ""))).lower().lstrip("\ufeff")


_ALIAS_TO_FIELD = {_header_key(alias): name for name, aliases in COLUMN_ALIASES.items() for alias in aliases}
#: at most this many ignored header cells are kept on a job, each cut to this length (the column's size)
MAX_IGNORED_COLUMNS = 50
IGNORED_COLUMN_LENGTH = 100

DOCUMENT_TYPE_NAMES: dict[str, DocumentType] = {
    "": DocumentType.RESIDENT_ID,
    "resident_id": DocumentType.RESIDENT_ID,
    "居民身份证": DocumentType.RESIDENT_ID,
    "身份证": DocumentType.RESIDENT_ID,
    "passport": DocumentType.PASSPORT,
    "护照": DocumentType.PASSPORT,
    "hk_macao_permit": DocumentType.HK_MACAO_PERMIT,
    "港澳居民来往内地通行证": DocumentType.HK_MACAO_PERMIT,
    "港澳通行证": DocumentType.HK_MACAO_PERMIT,
    "taiwan_permit": DocumentType.TAIWAN_PERMIT,
    "台湾居民来往大陆通行证": DocumentType.TAIWAN_PERMIT,
    "台胞证": DocumentType.TAIWAN_PERMIT,
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: a legacy system's own volunteer number, kept as it was (letters, digits, 京A-0001, ...)
_VOLUNTEER_NUMBER = re.compile(r"^[^\x00-\x1f\x7f]{1,40}$")
#: control characters (as sign-up refuses them: Unicode Cc and lone surrogates) but for tab, CR and
#: LF, which the row checks treat as whitespace; PostgreSQL refuses NUL in text and jsonb
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: birth dates as operators' files carry them: ISO, Excel in a Chinese locale (1990/1/1, 1990-1-1,
#: 1990.1.1, 1990年1月1日), 19900101; a date cell Excel wrote with its midnight time (1990/1/1 0:00)
_BIRTH_DATE = re.compile(
    r"(?P<y>[0-9]{4})"
    r"(?:(?P<sep>[-/.])(?P<m>[0-9]{1,2})(?P=sep)(?P<d>[0-9]{1,2})"
    r"|\s*年\s*(?P<zm>[0-9]{1,2})\s*月\s*(?P<zd>[0-9]{1,2})\s*日?"
    r"|(?P<cm>[0-9]{2})(?P<cd>[0-9]{2}))"
    r"(?:\s+0?0:00(?::00)?)?"
)
#: service hours: a plain decimal (no exponent), at most this many (over 11 years around the clock;
#: a legacy total above it is a typo), kept to the hundredth of an hour (36 s)
_HOURS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
MAX_SERVICE_HOURS = Decimal(100_000)
_HUNDREDTH = Decimal("0.01")

#: the staging table and ``volunteer_records`` columns the importer writes, in COPY order
STAGING_COLUMNS = (
    "id",
    "document_type",
    "id_blind_index",
    "id_blind_key_id",
    "id_ciphertext",
    "id_key_id",
    "id_masked",
    "real_name",
    "birth_date",
    "line",
    "mobile",
    "email",
    "region_code",
    "legacy_number",
    "service_hours",
    # during a blind-index key rotation: the row's record id and index under the previous key
    "previous_id",
    "previous_blind_index",
)
#: where the previous key's index sits in a staging record
PREVIOUS_BLIND_INDEX = STAGING_COLUMNS.index("previous_blind_index")
STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS import_staging (
    id uuid NOT NULL,
    document_type varchar(20) NOT NULL,
    id_blind_index bytea NOT NULL,
    id_blind_key_id varchar(16) NOT NULL,
    id_ciphertext bytea NOT NULL,
    id_key_id varchar(32) NOT NULL,
    id_masked varchar(32) NOT NULL,
    real_name varchar(100) NOT NULL,
    birth_date date,
    line integer NOT NULL,
    mobile varchar(20),
    email varchar(254),
    region_code varchar(12),
    legacy_number varchar(40),
    service_hours text,
    previous_id uuid,
    previous_blind_index bytea
) ON COMMIT DELETE ROWS
"""
INSERT_RECORDS = """
INSERT INTO volunteer_records
    (id, document_type, id_blind_index, id_blind_key_id, id_ciphertext, id_key_id, id_masked, real_name,
     birth_date, source, status, history, created_at)
SELECT id, document_type, id_blind_index, id_blind_key_id, id_ciphertext, id_key_id, id_masked, real_name,
     birth_date,
     'import', 'inactive',
     -- what the legacy system knew, kept when the record is claimed (V4) or merged (V3)
     jsonb_build_object(
         'import', jsonb_build_object('job_id', $2::text, 'line', line),
         'legacy', jsonb_build_object('volunteer_number', legacy_number, 'service_hours', service_hours::numeric),
         'contact', jsonb_build_object('mobile', mobile, 'email', email, 'region_code', region_code)
     ),
     $1
FROM import_staging s
-- loaded before under an earlier blind-index key, then re-indexed (under the fingerprint it was given)
WHERE NOT EXISTS (SELECT 1 FROM volunteer_records v WHERE v.import_key = s.id)
  -- during a rotation: loaded under the previous key (the id it gave), not yet re-indexed
  AND (s.previous_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM volunteer_records v WHERE v.id = s.previous_id)
          AND NOT EXISTS (SELECT 1 FROM volunteer_records v WHERE v.import_key = s.previous_id))
ON CONFLICT (id) DO NOTHING
RETURNING id_blind_index
"""
#: V3: every number the batch added that now has two or more live records gets an open case
OPEN_CASES = """
INSERT INTO duplicate_cases (id, id_blind_index, id_blind_key_id, id_masked, status, opened_by, opened_at)
SELECT gen_random_uuid(), r.id_blind_index, min(r.id_blind_key_id), min(r.id_masked), 'open', 'import', $1
FROM volunteer_records r
WHERE r.id_blind_index = ANY($2::bytea[]) AND r.status <> 'merged'
GROUP BY r.id_blind_index
HAVING count(*) >= 2
ON CONFLICT (id_blind_index) WHERE status = 'open' DO NOTHING
"""
#: OPEN_CASES during a blind-index key rotation: a number's live records are counted under its index
#: under both keys ($2 current, $3 previous, pairwise), and no case is opened while one is open under
#: the previous key's index; the case takes the current key's index (the batch's records have it)
OPEN_CASES_ACROSS_KEYS = """
INSERT INTO duplicate_cases (id, id_blind_index, id_blind_key_id, id_masked, status, opened_by, opened_at)
SELECT gen_random_uuid(), n.bi, min(r.id_blind_key_id) FILTER (WHERE r.id_blind_index = n.bi), min(r.id_masked),
    'open', 'import', $1
FROM (SELECT DISTINCT bi, prev FROM unnest($2::bytea[], $3::bytea[]) AS u(bi, prev)) n
JOIN volunteer_records r ON (r.id_blind_index = n.bi OR r.id_blind_index = n.prev) AND r.status <> 'merged'
WHERE NOT EXISTS (SELECT 1 FROM duplicate_cases c WHERE c.status = 'open' AND c.id_blind_index = n.prev)
GROUP BY n.bi
HAVING count(*) >= 2
ON CONFLICT (id_blind_index) WHERE status = 'open' DO NOTHING
"""


#: V3 for a big import: one pass over the table at the end finds every number this job's records
#: share with another live record (cheaper than probing the index for each row of each batch).
#: The records of the same file (its SHA-256) loaded by earlier jobs count as this job's: a job cut
#: off before its sweep (a restart) left them without their cases, and the upload of the same file
#: that finishes it loads none of them again (they are its ``existing_rows``)
SWEEP_CASES = """
INSERT INTO duplicate_cases (id, id_blind_index, id_blind_key_id, id_masked, status, opened_by, opened_at)
SELECT gen_random_uuid(), r.id_blind_index, min(r.id_blind_key_id), min(r.id_masked), 'open', 'import', $1
FROM volunteer_records r
WHERE r.status <> 'merged' AND r.id_blind_index IN (
    SELECT id_blind_index FROM volunteer_records
    WHERE source = 'import' AND history -> 'import' ->> 'job_id' IN (
        SELECT j.id::text FROM import_jobs j
        WHERE j.id = $2::uuid
           OR j.file_sha256 = (SELECT file_sha256 FROM import_jobs WHERE id = $2::uuid)
    )
)
GROUP BY r.id_blind_index
HAVING count(*) >= 2
ON CONFLICT (id_blind_index) WHERE status = 'open' DO NOTHING
"""
#: a batch's commit does not wait for its WAL flush: a crash may lose the last batches, which
#: running the import again (idempotent) loads
LOADER_SETTINGS = {"synchronous_commit": "off", "application_name": "identity-import"}
#: files above this size open their duplicate cases in one sweep at the end, smaller ones per batch
SWEEP_CASES_ABOVE_BYTES = 8 * 1024 * 1024


# -- rows ------------------------------------------------------------------------------------
#: a row's values in FIELDS order
Row = tuple[str, str, str, str, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    code: str
    field: str | None
    id_masked: str | None

    def message(self, lang: str = "zh") -> str:
        spec = ROW_REASONS.get(self.code)
        return spec.message(lang) if spec else self.code


class _Reject(Exception):
    def __init__(self, spec: ErrorSpec, field: str | None) -> None:
        super().__init__(spec.code)
        self.spec = spec
        self.field = field


@dataclass
class Batch:
    records: list[tuple[Any, ...]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    rows: int = 0


def check_resident_id(number: str, today: date) -> date:
    """Sign-up's check of a resident ID number (:func:`documents.check_resident_id`: length,
    digits, check digit, a real birth date, an address code known in any year; the address code
    lookup is cached per code). Returns the birth date."""
    try:
        return documents.check_resident_id(number, today)
    except AppError as exc:
        raise _Reject(exc.spec, "id_number") from None


def _parse_birth_date(value: str) -> date | None:
    """The whole cell is a date in one of the forms of :data:`_BIRTH_DATE`, or the row is refused
    (never a prefix: ``1990-01-011`` is not 1990-01-01)."""
    if not value:
        return None
    match = _BIRTH_DATE.fullmatch(unicodedata.normalize("NFKC", value))
    if match is None:
        raise _Reject(BIRTH_DATE_INVALID, "birth_date")
    month, day = match["m"] or match["zm"] or match["cm"], match["d"] or match["zd"] or match["cd"]
    try:
        return date(int(match["y"]), int(month), int(day))
    except ValueError:
        raise _Reject(BIRTH_DATE_INVALID, "birth_date") from None


def _parse_hours(value: str) -> str | None:
    """A legacy total of service hours: 0 to :data:`MAX_SERVICE_HOURS`, rounded to the hundredth.
    Anything else (an exponent such as ``1E-20000``, which PostgreSQL's numeric cannot hold, a sign,
    an absurd total) rejects the row."""
    if not value:
        return None
    value = unicodedata.normalize("NFKC", value)
    if not _HOURS.fullmatch(value):
        raise _Reject(SERVICE_HOURS_INVALID, "service_hours")
    hours = Decimal(value)
    if hours > MAX_SERVICE_HOURS:
        raise _Reject(SERVICE_HOURS_INVALID, "service_hours")
    if len(value.partition(".")[2]) > 2:
        hours = hours.quantize(_HUNDREDTH, rounding=ROUND_HALF_UP)
    return str(hours)


class RowChecker:
    """Turns one row (values in :data:`FIELDS` order) into a staging record, or says why not.
    Pure but for the cipher: the same checks and sealing as sign-up, so sign-up finds the record."""

    def __init__(self, cipher: DataCipher, today: date) -> None:
        self.cipher = cipher
        self.today = today
        self._context = {t: id_number_context(t) for t in DocumentType}
        self._values = {t: t.value for t in DocumentType}
        self._blind_key_id = cipher.blind_key_id
        self._rotating = cipher.rotating_blind_index

    def check_chunk(self, chunk: list[tuple[int, Row | str]]) -> Batch:
        batch = Batch(rows=len(chunk))
        check, records, rejections = self.check, batch.records, batch.rejections
        for line, values in chunk:
            # a str: the code of a row the reader could not make into values
            result = Rejection(line, values, None, None) if isinstance(values, str) else check(line, values)
            if isinstance(result, Rejection):
                rejections.append(result)
            else:
                records.append(result)
        return batch

    def check(self, line: int, values: Row) -> tuple[Any, ...] | Rejection:
        # The hot loop of an import: common shapes take a short path to the same checks.
        masked: str | None = None
        name, doc_name, raw_number, raw_mobile, email, region, raw_birth, legacy_number, raw_hours = values
        try:
            if _CONTROL.search("".join(values)):
                # before anything is derived from the cells (the masked number goes to the report)
                raise _Reject(CELL_CONTROL_CHARACTERS, _control_field(values))
            name = " ".join(name.split())
            if not name:
                raise _Reject(NAME_MISSING, "real_name")
            if len(name) > 100:
                raise _Reject(NAME_TOO_LONG, "real_name")
            doc_type = DOCUMENT_TYPE_NAMES.get(doc_name) or DOCUMENT_TYPE_NAMES.get(doc_name.strip().lower())
            if doc_type is None:
                raise _Reject(DOCUMENT_TYPE_INVALID, "document_type")
            # the sign-up's normalisation (full-width Ｅ１２３ is E123), so blind index, sealed number
            # and mask are those sign-up computes and the record can be claimed (V4)
            if raw_number.isascii() and raw_number.isalnum():
                number = raw_number.upper()
            else:
                number = documents.normalise_number(doc_type, raw_number)
            if not number:
                raise _Reject(ID_NUMBER_MISSING, "id_number")
            if doc_type is DocumentType.RESIDENT_ID and len(number) == 18:
                masked = number[:6] + "********" + number[-4:]
            else:
                masked = documents.mask_number(doc_type, number)[:32]
            born = self._check_number(doc_type, number, _parse_birth_date(raw_birth.strip()) if raw_birth else None)
            mobile = raw_mobile if documents.MOBILE.fullmatch(raw_mobile) else self._checked_mobile(raw_mobile)
            if not regions.is_valid(region):
                region = region.strip()
                if not regions.is_valid(region):
                    raise _Reject(identity_errors.REGION_INVALID, "region_code")
            if email:
                email = email.strip().lower()
                if len(email) > 254 or not _EMAIL.match(email):
                    raise _Reject(identity_errors.EMAIL_INVALID, "email")
            if legacy_number:
                legacy_number = legacy_number.strip()
                if not _VOLUNTEER_NUMBER.match(legacy_number):
                    raise _Reject(VOLUNTEER_NUMBER_INVALID, "volunteer_number")
            fast_hours = raw_hours.isascii() and raw_hours.isdigit() and len(raw_hours) <= 5  # at most 99999
            hours = raw_hours if fast_hours else _parse_hours(raw_hours.strip())
        except _Reject as reject:
            return Rejection(line, reject.spec.code, reject.field, masked)
        doc_value = self._values[doc_type]
        # the sign-up's blind index input (the number's document key: one for every form of a
        # permit) and sealing (the number as written)
        blind_input = documents.blind_index_input(doc_type, number)
        blind_index = self.cipher.blind_index(blind_input)
        sealed = self.cipher.seal(number.encode(), context=self._context[doc_type])
        previous_id: str | None = None
        previous_index: bytes | None = None
        if self._rotating:
            previous_index = self.cipher.blind_indexes(blind_input)[1]
            previous_id = record_id(previous_index, name, legacy_number)
        return (
            record_id(blind_index, name, legacy_number),
            doc_value,
            blind_index,
            self._blind_key_id,
            sealed.data,
            sealed.key_id,
            masked,
            name,
            born,
            line,
            mobile,
            email or None,
            region,
            legacy_number or None,
            hours,
            previous_id,
            previous_index,
        )

    def _check_number(self, doc_type: DocumentType, number: str, given_birth: date | None) -> date:
        """As a sign-up checks it: a resident ID number's birth date is its own (not after today,
        nor before anyone alive), a typed one is checked so too (``birth_date_invalid``)."""
        if doc_type is DocumentType.RESIDENT_ID:
            born = check_resident_id(number, self.today)
            if given_birth is not None and given_birth != born:
                raise _Reject(identity_errors.BIRTH_DATE_MISMATCH, "birth_date")
            return born
        try:
            return documents.check_document(doc_type, number, given_birth, self.today)[1]
        except AppError as exc:
            raise _Reject(exc.spec, "birth_date" if "birth_date" in exc.code else "id_number") from None

    @staticmethod
    def _checked_mobile(value: str) -> str:
        try:
            return documents.check_mobile(value)
        except AppError as exc:
            raise _Reject(exc.spec, "mobile") from None


def _control_field(values: Row) -> str:
    return next(name for name, value in zip(FIELDS, values, strict=True) if _CONTROL.search(value))


# -- reading files ---------------------------------------------------------------------------
def detect_encoding(path: Path) -> str:
    """UTF-8 with a BOM, UTF-8 if the whole file decodes as such, else GB18030."""
    with path.open("rb") as f:
        if f.read(3) == codecs.BOM_UTF8:
            return "utf-8-sig"
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030"
    return "utf-8"


def resolve_encoding(path: Path, requested: str) -> str:
    if requested == "auto":
        return detect_encoding(path)
    if requested.replace("_", "-").lower() in ("utf-8", "utf8", "utf-8-sig"):
        with path.open("rb") as f:
            return "utf-8-sig" if f.read(3) == codecs.BOM_UTF8 else "utf-8"
    return "gb18030"


def _row_columns(header: Iterable[Any]) -> tuple[int, tuple[int, ...], list[str]]:
    """The header's width; for each of :data:`FIELDS` its column, or -1 where absent (rows get one
    empty cell appended for those); and the non-empty header cells that name no field (or one
    already taken by an earlier column), as written: their columns are not read, which the job
    reports (a warning, not a refusal: an operator's extra columns are common)."""
    columns: dict[str, int] = {}
    ignored: list[str] = []
    width = 0
    for width, cell in enumerate(header, start=1):
        field_name = _ALIAS_TO_FIELD.get(_header_key(cell))
        if field_name is not None and field_name not in columns:
            columns[field_name] = width - 1
        elif (written := _cell_text(cell).lstrip("\ufeff").strip()) and len(ignored) < MAX_IGNORED_COLUMNS:
            ignored.append(written[:IGNORED_COLUMN_LENGTH])
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise AppError(IMPORT_HEADER_INVALID, {"missing": missing}, params={"missing": ", ".join(missing)})
    return width, tuple(columns.get(name, -1) for name in FIELDS), ignored


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


#: (line, row) pairs; in place of a row the code of its rejection when the reader could not make
#: it into values (``row_malformed``, ``cell_too_long``)
Rows = Iterator[tuple[int, Row | str]]


class SourceFile:
    """An import file opened for reading: the header checked, then (line, row) pairs (see
    :data:`Rows`)."""

    def __init__(self, path: Path, file_format: str, encoding: str = "auto") -> None:
        self.path = path
        self.file_format = file_format
        self.encoding: str | None = None
        self._handle: IO[str] | None = None
        self._workbook: Any = None
        #: header cells that name no field (see :func:`_row_columns`)
        self.ignored_columns: list[str] = []
        if file_format == "csv":
            self.encoding = resolve_encoding(path, encoding)
            self._rows = self._open_csv()
        elif file_format == "xlsx":
            self._rows = self._open_xlsx()
        else:
            raise AppError(IMPORT_FORMAT_UNSUPPORTED)

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._workbook is not None:
            self._workbook.close()

    def __iter__(self) -> Rows:
        return self._rows

    def estimated_rows(self) -> int | None:
        if self.file_format == "csv":
            with self.path.open("rb") as f:
                return max(sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1, 0)
        sheet = self._workbook.worksheets[0] if self._workbook is not None and self._workbook.worksheets else None
        rows = getattr(sheet, "max_row", None)
        return rows - 1 if isinstance(rows, int) and rows > 0 else None

    def _open_csv(self) -> Rows:
        assert self.encoding is not None
        self._handle = self.path.open(encoding=self.encoding, newline="")
        reader = csv.reader(self._handle)
        try:
            header = next(reader, None)
        except (UnicodeDecodeError, csv.Error):
            self.close()
            raise AppError(IMPORT_ENCODING_INVALID) from None
        if header is None:
            self.close()
            raise AppError(IMPORT_HEADER_INVALID, {"missing": list(REQUIRED_COLUMNS)}, params={"missing": "*"})
        self.width, self.columns, self.ignored_columns = _row_columns(header)
        return self._csv_rows(reader, self.width, operator.itemgetter(*self.columns))

    @staticmethod
    def _csv_rows(reader: Any, width: int, getter: Callable[[list[str]], Row], first_line: int = 1) -> Rows:
        offset = first_line - 1
        line = offset  # the last line of the last record read
        while True:
            try:
                for cells in reader:
                    line = reader.line_num + offset
                    if not any(cells) or "".join(cells).isspace():
                        # a blank line, or a row of empty cells (``,,,,,,,``: Excel writes the rows it
                        # once formatted so): nothing to import nor to report, as XLSX's empty rows
                        continue
                    if len(cells) != width:
                        if any(cells[width:]):
                            yield line, ROW_MALFORMED.code
                            continue
                        cells = cells[:width] + [""] * (width - len(cells))
                    cells.append("")
                    yield line, getter(cells)
                return
            except UnicodeDecodeError:
                raise AppError(IMPORT_ENCODING_INVALID) from None
            except csv.Error:
                # A cell over the csv module's field limit (128 KiB; no field of a record comes
                # near it): that record, from its first line, is rejected, and the reader goes on
                # with the line after the one it stopped in, as it does by itself.
                yield line + 1, CELL_TOO_LONG.code
                line = reader.line_num + offset

    def _open_xlsx(self) -> Rows:
        import openpyxl

        try:
            self._workbook = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
            # the first worksheet, not the active one: the sheet the operator last looked at when
            # saving (a second sheet of withdrawn people, say) is not the list (no sheet: unreadable)
            rows = self._workbook.worksheets[0].iter_rows(values_only=True)
            header = next(rows, None)
        except Exception as exc:
            self.close()
            raise AppError(IMPORT_FILE_UNREADABLE) from exc
        if header is None:
            self.close()
            raise AppError(IMPORT_HEADER_INVALID, {"missing": list(REQUIRED_COLUMNS)}, params={"missing": "*"})
        width, columns, self.ignored_columns = _row_columns(header)
        return self._xlsx_rows(rows, width, operator.itemgetter(*columns))

    @staticmethod
    def _xlsx_rows(rows: Iterator[tuple[Any, ...]], width: int, getter: Callable[[list[str]], Row]) -> Rows:
        line = 1
        while True:
            try:
                cells = next(rows, None)
            except Exception as exc:  # the sheet is cut off or broken further on: the whole file is
                raise AppError(IMPORT_FILE_UNREADABLE) from exc
            if cells is None:
                return
            line += 1
            texts = [_cell_text(c) for c in cells]
            if not any(texts):
                continue
            if any(texts[width:]):
                yield line, ROW_MALFORMED.code
                continue
            texts = texts[:width] + [""] * (width - len(texts)) + [""]
            yield line, getter(texts)


def guess_format(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    raise AppError(IMPORT_FORMAT_UNSUPPORTED)


def file_facts(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of the file (kept on the job, so an operator can tell files apart)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def chunks(rows: Rows, size: int) -> Iterator[list[tuple[int, Row | str]]]:
    chunk: list[tuple[int, Row | str]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# Worker processes check and seal chunks with a cipher of their own, built from the settings.
_WORKER_CHECKER: RowChecker | None = None


def _start_worker(settings: IdentitySettings, today: date) -> None:
    global _WORKER_CHECKER  # one checker per worker process
    _WORKER_CHECKER = RowChecker(build_cipher(settings), today)


def _check_in_worker(chunk: list[tuple[int, Row | str]]) -> Batch:
    assert _WORKER_CHECKER is not None
    return _WORKER_CHECKER.check_chunk(chunk)


# -- loading ---------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    job_id: uuid.UUID
    status: str
    total_rows: int = 0
    inserted_rows: int = 0
    existing_rows: int = 0
    rejected_rows: int = 0
    duplicate_cases_opened: int = 0
    error_code: str | None = None
    #: False when another loader had the job, or it was no longer queued: nothing was run
    claimed: bool = True
    #: header cells naming no field: their columns were not read (see :func:`_row_columns`)
    ignored_columns: list[str] = field(default_factory=list)


Progress = Callable[[int], None]


async def create_job(
    conn: asyncpg.Connection,
    *,
    origin: str,
    file_format: str,
    now: datetime,
    submitted_by: uuid.UUID | None = None,
    file_bytes: int = 0,
    sha256: str | None = None,
) -> uuid.UUID:
    job_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO import_jobs (id, origin, submitted_by, file_format, file_sha256, file_bytes, status, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7)",
        job_id,
        origin,
        submitted_by,
        file_format,
        sha256,
        file_bytes,
        now,
    )
    return job_id


async def _load_batch(
    conn: asyncpg.Connection, job_id: uuid.UUID, batch: Batch, now: datetime, probe_cases: bool = True
) -> tuple[int, int]:
    inserted: list[asyncpg.Record] = []
    cases = 0
    async with conn.transaction():
        if batch.records:
            await conn.copy_records_to_table("import_staging", records=batch.records, columns=STAGING_COLUMNS)
            inserted = await conn.fetch(INSERT_RECORDS, now, str(job_id))
            if inserted and probe_cases:
                # Loaders of concurrent batches take turns here until commit, so the later one
                # sees the earlier one's records with the same number; and sign-ups, which take the
                # probe's own lock shared, are waited for (or wait) so each sees the other's record
                # (registration._IMPORT_PROBE_SHARED). The final sweep of a large import takes only
                # the first: every batch has committed by then, so a sign-up sees them anyway and
                # need not wait for a sweep's scan.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('identity-import-cases'))")
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('identity-import-probe'))")
                indexes = [r[0] for r in inserted]
                if batch.records[0][PREVIOUS_BLIND_INDEX] is not None:  # a blind-index key rotation
                    previous = {rec[2]: rec[PREVIOUS_BLIND_INDEX] for rec in batch.records}
                    prev = [previous[index] for index in indexes]
                    status = await conn.execute(OPEN_CASES_ACROSS_KEYS, now, indexes, prev)
                else:
                    status = await conn.execute(OPEN_CASES, now, indexes)
                cases = int(status.rsplit(" ", 1)[1])
        if batch.rejections:
            await conn.copy_records_to_table(
                "import_rejections",
                records=[(job_id, r.line, r.code, r.field, r.id_masked) for r in batch.rejections],
                columns=("job_id", "line", "code", "field", "id_masked"),
            )
        await conn.execute(
            "UPDATE import_jobs SET total_rows = total_rows + $2, inserted_rows = inserted_rows + $3, "
            "existing_rows = existing_rows + $4, rejected_rows = rejected_rows + $5, "
            "duplicate_cases_opened = duplicate_cases_opened + $6 WHERE id = $1",
            job_id,
            batch.rows,
            len(inserted),
            len(batch.records) - len(inserted),
            len(batch.rejections),
            cases,
        )
    return len(inserted), cases


@dataclass(frozen=True)
class ImportOptions:
    file_format: str
    encoding: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    #: processes that check and seal rows (1: a thread of this process)
    workers: int = 1
    #: open duplicate cases batch by batch (else in one sweep at the end)
    probe_cases: bool = True


async def run_import(
    settings: IdentitySettings,
    path: Path,
    *,
    file_format: str,
    encoding: str = "auto",
    job_id: uuid.UUID | None = None,
    clock: Clock | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 1,
    cipher: DataCipher | None = None,
    progress: Progress | None = None,
    on_rejections: Callable[[list[Rejection]], None] | None = None,
) -> ImportSummary:
    """Import one file into ``settings.database_url``, sealing with the keys of ``settings``.
    Creates a CLI job unless given one; never raises for the file's content: a file-level
    refusal ends the job as failed with its code."""
    clock = clock or SystemClock()
    size = (await asyncio.to_thread(path.stat)).st_size
    cipher = cipher or build_cipher(settings)
    # the sweep compares indexes only: during a blind-index key rotation cases are opened batch by batch
    probe_cases = size <= SWEEP_CASES_ABOVE_BYTES or cipher.rotating_blind_index
    options = ImportOptions(file_format, encoding, batch_size, max(workers, 1), probe_cases)
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url), server_settings=LOADER_SETTINGS)
    try:
        if job_id is None:
            size, sha256 = await asyncio.to_thread(file_facts, path)
            job_id = await create_job(
                conn, origin="cli", file_format=file_format, now=clock.now(), file_bytes=size, sha256=sha256
            )
        if not await _claim(conn, job_id, clock.now()):
            found = await conn.fetchrow("SELECT status, error_code FROM import_jobs WHERE id = $1", job_id)
            status, error_code = (
                (found["status"], found["error_code"]) if found else (JOB_FAILED, IMPORT_NOT_FOUND.code)
            )
            log.info("import_not_claimed", job_id=str(job_id), status=status)
            return ImportSummary(job_id, status, error_code=error_code, claimed=False)
        summary = ImportSummary(job_id, JOB_RUNNING)
        log.info("import_started", job_id=str(job_id), file_format=file_format)
        try:
            await _import_rows(
                conn,
                settings,
                cipher,
                path,
                options,
                job_id,
                clock,
                summary,
                progress,
                on_rejections,
            )
            summary.status = JOB_SUCCEEDED
        except AppError as exc:
            summary.status, summary.error_code = JOB_FAILED, exc.code
        except Exception as exc:
            summary.status, summary.error_code = JOB_FAILED, "internal_error"
            # the type and where, not the message or the traceback's values: a database or parsing
            # error's text can quote a row's cells (a name, a birth date)
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            log.error(
                "import_crashed",
                job_id=str(job_id),
                error=type(exc).__name__,
                at=f"{Path(where.filename).name}:{where.lineno} {where.name}" if where else None,
            )
        if not options.probe_cases and (summary.inserted_rows or summary.existing_rows):
            # also after a failure: the records loaded so far are this job's, and a re-run adds none;
            # and when this job loaded nothing new: an earlier job of the file may have been cut off
            # before its sweep (SWEEP_CASES)
            summary.duplicate_cases_opened += await _sweep_cases(conn, job_id, clock.now())
        await conn.execute(
            "UPDATE import_jobs SET status = $2, error_code = $3, finished_at = $4 WHERE id = $1",
            job_id,
            summary.status,
            summary.error_code,
            clock.now(),
        )
        log.info(
            "import_finished",
            job_id=str(job_id),
            status=summary.status,
            error_code=summary.error_code,
            total=summary.total_rows,
            inserted=summary.inserted_rows,
            existing=summary.existing_rows,
            rejected=summary.rejected_rows,
            cases=summary.duplicate_cases_opened,
        )
        return summary
    finally:
        await conn.close()


async def _claim(conn: asyncpg.Connection, job_id: uuid.UUID, now: datetime) -> bool:
    """Make the queued job this connection's, or say that it is not to be run here: another
    loader has it (its lock), or it is no longer queued (run, or settled as interrupted)."""
    # held by this connection until it closes, also when the process dies: the sign to
    # settle_interrupted_jobs that the job is alive (taken before the job shows as running)
    if not await conn.fetchval(f"SELECT pg_try_advisory_lock({JOB_LOCKS}, hashtext($1::text))", str(job_id)):
        return False
    started = await conn.fetchval(
        f"UPDATE import_jobs SET status = '{JOB_RUNNING}', started_at = $2 "  # noqa: S608 - constants
        f"WHERE id = $1 AND status = '{JOB_QUEUED}' RETURNING true",
        job_id,
        now,
    )
    if not started:
        await conn.execute(f"SELECT pg_advisory_unlock({JOB_LOCKS}, hashtext($1::text))", str(job_id))
    return bool(started)


async def _import_rows(
    conn: asyncpg.Connection,
    settings: IdentitySettings,
    cipher: DataCipher,
    path: Path,
    options: ImportOptions,
    job_id: uuid.UUID,
    clock: Clock,
    summary: ImportSummary,
    progress: Progress | None,
    on_rejections: Callable[[list[Rejection]], None] | None,
) -> None:
    source = await asyncio.to_thread(SourceFile, path, options.file_format, options.encoding)
    summary.ignored_columns = source.ignored_columns
    await conn.execute(
        "UPDATE import_jobs SET encoding = $2, ignored_columns = $3 WHERE id = $1",
        job_id,
        source.encoding,
        source.ignored_columns,
    )
    if options.workers > 1 and options.file_format == "csv":
        source.close()
        await _load_csv_in_workers(settings, path, source, options, job_id, clock, summary, progress, on_rejections)
        return
    loop = asyncio.get_running_loop()
    executor: Executor
    check: Callable[[list[tuple[int, Row | str]]], Batch]
    if options.workers > 1:
        executor = ProcessPoolExecutor(
            options.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(settings, local_today(clock)),
        )
        check = _check_in_worker
    else:
        executor = ThreadPoolExecutor(1, thread_name_prefix="identity-import")
        check = RowChecker(cipher, local_today(clock)).check_chunk
    raw = chunks(iter(source), options.batch_size)
    inflight: deque[asyncio.Future[Batch]] = deque()

    async def fill() -> None:
        # Keep every worker busy (and one chunk ready) while the database loads a batch.
        while len(inflight) < options.workers + 1:
            chunk = await asyncio.to_thread(next, raw, None)
            if chunk is None:
                return
            inflight.append(loop.run_in_executor(executor, check, chunk))

    try:
        await conn.execute(STAGING_DDL)
        await fill()
        while inflight:
            batch = await inflight.popleft()
            loading = asyncio.ensure_future(_load_batch(conn, job_id, batch, clock.now(), options.probe_cases))
            try:
                await fill()
            finally:
                inserted, cases = await loading  # never leave the connection mid-statement
            summary.total_rows += batch.rows
            summary.inserted_rows += inserted
            summary.existing_rows += len(batch.records) - inserted
            summary.rejected_rows += len(batch.rejections)
            summary.duplicate_cases_opened += cases
            if on_rejections is not None and batch.rejections:
                on_rejections(batch.rejections)
            if progress is not None:
                progress(batch.rows)
    finally:
        for pending in inflight:
            pending.cancel()
        await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)
        source.close()


async def _sweep_cases(conn: asyncpg.Connection, job_id: uuid.UUID, now: datetime) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('identity-import-cases'))")
        status = await conn.execute(SWEEP_CASES, now, job_id)
        opened = int(status.rsplit(" ", 1)[1])
        await conn.execute(
            "UPDATE import_jobs SET duplicate_cases_opened = duplicate_cases_opened + $2 WHERE id = $1", job_id, opened
        )
    return opened


# -- CSV in parallel: worker processes parse, check, seal and load byte ranges of the file ------
@dataclass(frozen=True)
class Segment:
    offset: int
    length: int
    first_line: int


@dataclass
class SegmentResult:
    rows: int = 0
    inserted: int = 0
    existing: int = 0
    cases: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    error_code: str | None = None


def segments(path: Path, start: int, first_line: int, size: int) -> Iterator[Segment]:
    """Byte ranges of about ``size`` bytes that end at a line break outside quotes (an even
    number of quote characters before it), so each parses as CSV on its own."""
    with path.open("rb") as f:
        f.seek(start)
        offset, line, carry = start, first_line, b""
        while True:
            block = f.read(size)
            data = carry + block
            if not block:
                if data:
                    yield Segment(offset, len(data), line)
                return
            cut = data.rfind(b"\n") + 1
            while cut and data.count(b'"', 0, cut) % 2:
                cut = data.rfind(b"\n", 0, cut - 1) + 1
            if not cut:
                carry = data  # one record longer than a block: read on
                continue
            yield Segment(offset, cut, line)
            offset, line, carry = offset + cut, line + data.count(b"\n", 0, cut), data[cut:]


@dataclass
class _Worker:
    checker: RowChecker
    loop: asyncio.AbstractEventLoop
    conn: asyncpg.Connection
    path: Path
    encoding: str
    width: int
    getter: Callable[[list[str]], Row]
    job_id: uuid.UUID
    probe_cases: bool


_WORKER: _Worker | None = None


def _start_loader(
    settings: IdentitySettings,
    today: date,
    path: Path,
    encoding: str,
    width: int,
    columns: tuple[int, ...],
    job_id: uuid.UUID,
    probe_cases: bool,
) -> None:
    global _WORKER  # one loader per worker process
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(asyncpg_dsn(settings.database_url), server_settings=LOADER_SETTINGS))
    loop.run_until_complete(conn.execute(STAGING_DDL))
    encoding = "utf-8" if encoding == "utf-8-sig" else encoding  # the BOM was before the header
    checker = RowChecker(build_cipher(settings), today)
    _WORKER = _Worker(checker, loop, conn, path, encoding, width, operator.itemgetter(*columns), job_id, probe_cases)
    # close the connection when the pool shuts the process down (atexit does not run there)
    multiprocessing.util.Finalize(None, _stop_loader, exitpriority=10)


def _stop_loader() -> None:
    if _WORKER is not None:
        _WORKER.loop.run_until_complete(_WORKER.conn.close())
        _WORKER.loop.close()


def _load_segment(segment: Segment, now: datetime) -> SegmentResult:
    worker = _WORKER
    assert worker is not None
    with worker.path.open("rb") as f:
        f.seek(segment.offset)
        data = f.read(segment.length)
    try:
        reader = csv.reader(io.StringIO(data.decode(worker.encoding), newline=""))
        rows = list(SourceFile._csv_rows(reader, worker.width, worker.getter, segment.first_line))
    except (UnicodeDecodeError, AppError):
        return SegmentResult(error_code=IMPORT_ENCODING_INVALID.code)
    batch = worker.checker.check_chunk(rows)
    inserted, cases = worker.loop.run_until_complete(
        _load_batch(worker.conn, worker.job_id, batch, now, worker.probe_cases)
    )
    return SegmentResult(batch.rows, inserted, len(batch.records) - inserted, cases, batch.rejections)


async def _load_csv_in_workers(
    settings: IdentitySettings,
    path: Path,
    source: SourceFile,
    options: ImportOptions,
    job_id: uuid.UUID,
    clock: Clock,
    summary: ImportSummary,
    progress: Progress | None,
    on_rejections: Callable[[list[Rejection]], None] | None,
) -> None:
    with path.open("rb") as f:
        header_end = len(f.readline())
    assert source.encoding is not None
    loop = asyncio.get_running_loop()
    executor = ProcessPoolExecutor(
        options.workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_loader,
        initargs=(
            settings,
            local_today(clock),
            path,
            source.encoding,
            source.width,
            source.columns,
            job_id,
            options.probe_cases,
        ),
    )
    pending: deque[asyncio.Future[SegmentResult]] = deque()
    # about 100 bytes a row: segments of about a batch
    parts = segments(path, header_end, 2, options.batch_size * 100)
    try:
        while True:
            while len(pending) < options.workers * 2 and (part := next(parts, None)) is not None:
                pending.append(loop.run_in_executor(executor, _load_segment, part, clock.now()))
            if not pending:
                return
            result = await pending.popleft()
            if result.error_code is not None:
                raise AppError(IMPORT_ENCODING_INVALID)
            summary.total_rows += result.rows
            summary.inserted_rows += result.inserted
            summary.existing_rows += result.existing
            summary.rejected_rows += len(result.rejections)
            summary.duplicate_cases_opened += result.cases
            if on_rejections is not None and result.rejections:
                on_rejections(result.rejections)
            if progress is not None:
                progress(result.rows)
    finally:
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)


# -- jobs submitted through the API ----------------------------------------------------------
class ImportJobs:
    """Queries of import jobs and their rejected rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, job: ImportJob) -> None:
        self.session.add(job)

    async def get(self, job_id: uuid.UUID) -> ImportJob | None:
        return await self.session.get(ImportJob, job_id)

    async def rejections(self, job_id: uuid.UUID, *, after_line: int, limit: int) -> Sequence[Rejection]:
        query = (
            select(ImportRejection)
            .where(ImportRejection.job_id == job_id, ImportRejection.line > after_line)
            .order_by(ImportRejection.line)
            .limit(limit)
        )
        rows = (await self.session.execute(query)).scalars().all()
        return [Rejection(r.line, r.code, r.field, r.id_masked) for r in rows]


def _probe(path: Path, file_format: str, encoding: str) -> tuple[str | None, list[str]]:
    """The checks an upload gets before its 202: a CSV's encoding and header (quick: a pass over
    the bytes); of an XLSX only that it is a workbook, since reading its header means parsing all
    its shared strings (17.6 s for 300k rows): the job does that, and fails with the file's code.
    Returns the encoding and the header cells that name no field (a CSV's; an XLSX's come with its job)."""
    if file_format == "xlsx":
        _check_workbook(path)
        return None, []
    with SourceFile(path, file_format, encoding) as source:
        return source.encoding, source.ignored_columns


def _check_workbook(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            workbook = archive.getinfo("xl/workbook.xml").file_size > 0
    except Exception:
        # whatever the zip module cannot read is no workbook: a broken directory (BadZipFile), no
        # workbook in it (KeyError), a zip version it does not know (NotImplementedError), names
        # flagged UTF-8 that are not (UnicodeDecodeError), ...
        workbook = False
    if not workbook:
        raise AppError(IMPORT_FILE_UNREADABLE)


async def submit(uow: UnitOfWork, submitted_by: uuid.UUID, path: Path, *, file_format: str, encoding: str) -> ImportJob:
    """A queued job for an uploaded file; what can be checked quickly (:func:`_probe`) is checked
    now, so such a wrong file is refused at once rather than failing in the background."""
    detected, ignored_columns = await asyncio.to_thread(_probe, path, file_format, encoding)
    size, sha256 = await asyncio.to_thread(file_facts, path)
    job = ImportJob(
        id=uuid.uuid4(),
        origin="api",
        submitted_by=submitted_by,
        file_format=file_format,
        encoding=detected,
        file_sha256=sha256,
        file_bytes=size,
        status=JOB_QUEUED,
        total_rows=0,
        inserted_rows=0,
        existing_rows=0,
        rejected_rows=0,
        duplicate_cases_opened=0,
        ignored_columns=ignored_columns,
        created_at=uow.clock.now(),
    )
    ImportJobs(uow.session).add(job)
    return job


@dataclass(frozen=True)
class _Upload:
    path: Path
    file_format: str
    encoding: str


class ImportQueue:
    """This process's uploaded imports: at most ``limit`` run at once (each a loader connection
    outside the pool, and a core), the others wait ``queued``, in upload order, for a slot.

    Only this process can run them: the uploaded file is on its disk. While they wait,
    :meth:`touch` (the import watch, once a minute) keeps their ``heartbeat_at`` fresh, so that
    :func:`settle_interrupted_jobs` on any replica fails them once this process is gone."""

    def __init__(
        self, settings: IdentitySettings, engine: AsyncEngine, cipher: DataCipher, clock: Clock, *, limit: int
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.cipher = cipher
        self.clock = clock
        self.limit = max(limit, 1)
        self._waiting: dict[uuid.UUID, _Upload] = {}  # in upload order
        #: a reference keeps each task alive until it ends
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._running)

    def put(self, job_id: uuid.UUID, path: Path, *, file_format: str, encoding: str) -> None:
        """Run the queued job when a slot is free; its file is deleted after."""
        self._waiting[job_id] = _Upload(path, file_format, encoding)
        self._start_next()

    def _start_next(self) -> None:
        while self._waiting and len(self._running) < self.limit:
            job_id = next(iter(self._waiting))
            upload = self._waiting.pop(job_id)
            task = asyncio.create_task(self._run(job_id, upload), name=f"identity-import-{job_id}")
            self._running[job_id] = task
            task.add_done_callback(functools.partial(self._ended, job_id))

    def _ended(self, job_id: uuid.UUID, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._start_next()

    async def _run(self, job_id: uuid.UUID, upload: _Upload) -> None:
        try:
            await run_import(
                self.settings,
                upload.path,
                cipher=self.cipher,
                file_format=upload.file_format,
                encoding=upload.encoding,
                job_id=job_id,
                clock=self.clock,
            )
        except Exception as exc:
            # the database out of reach: a job not yet claimed stays queued, without heartbeat now,
            # a claimed one running without its lock, and the watch settles either as interrupted
            # (the error's type only: a database error's text can carry a statement's parameters)
            log.warning("import_run_failed", job_id=str(job_id), error=type(exc).__name__)
        finally:
            await asyncio.to_thread(upload.path.unlink, True)

    async def close(self) -> None:
        """The process stops: the running imports are cut off (their loader connections close, so
        the import watch of any replica fails them as interrupted; the rows loaded stay and an
        upload of the same file loads the rest) and every held file is deleted, those of the jobs
        still waiting too (the watch fails them once their heartbeat is old)."""
        waiting, self._waiting = list(self._waiting.values()), {}
        await cancel_and_wait(*self._running.values())
        for upload in waiting:
            await asyncio.to_thread(upload.path.unlink, True)

    async def touch(self) -> None:
        """This process still holds the files of its jobs that wait (or are about to be claimed)."""
        job_ids = [*self._waiting, *self._running]
        if job_ids:
            async with self.engine.begin() as conn:
                await conn.execute(_TOUCH_QUEUED, {"ids": job_ids, "now": self.clock.now()})


def start(runtime: IdentityRuntime, job: ImportJob, path: Path, *, encoding: str) -> None:
    """Queue the job in this process (:class:`ImportQueue`): it runs in the background when a
    slot is free, and the uploaded file is deleted after. A job cut off by a restart is marked
    failed by :func:`settle_interrupted_jobs`; uploading the file again is safe (idempotent)."""
    runtime.imports.put(job.id, path, file_format=job.file_format, encoding=encoding)


#: advisory lock namespace of running import jobs (key: hashtext of the job id)
JOB_LOCKS = 7101
#: a queued job without a sign of life for this long was lost with its process (the import
#: watch of the process holding it refreshes ``heartbeat_at`` every minute)
QUEUED_GRACE = timedelta(minutes=5)

_TOUCH_QUEUED = text(
    f"UPDATE import_jobs SET heartbeat_at = :now WHERE id = ANY(:ids) AND status = '{JOB_QUEUED}'"  # noqa: S608
)
_SETTLE_INTERRUPTED = text(
    f"""
    UPDATE import_jobs AS j
       SET status = '{JOB_FAILED}', error_code = :code, finished_at = :now
     WHERE (j.status = '{JOB_RUNNING}'
            OR (j.status = '{JOB_QUEUED}' AND coalesce(j.heartbeat_at, j.created_at) < :queued_before))
       AND NOT EXISTS (
           SELECT 1 FROM pg_locks AS l
            WHERE l.locktype = 'advisory' AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = {JOB_LOCKS} AND l.objsubid = 2
              AND l.objid::text::bigint = (hashtext(j.id::text)::bigint & 4294967295))
    RETURNING j.id
    """  # noqa: S608 - module constants only
)


async def settle_interrupted_jobs(engine: AsyncEngine, clock: Clock) -> list[uuid.UUID]:
    """Mark failed (``import_interrupted``) every job whose process is gone: a running job whose
    loader no longer holds the job's lock (its connection closed when the process stopped), and a
    queued job without a heartbeat for :data:`QUEUED_GRACE`. Safe with several replicas: a live
    job's lock is visible to all, and a claim (:func:`_claim`) only starts a job still queued."""
    now = clock.now()
    async with engine.begin() as conn:
        result = await conn.execute(
            _SETTLE_INTERRUPTED,
            {"code": IMPORT_INTERRUPTED.code, "now": now, "queued_before": now - QUEUED_GRACE},
        )
        settled = [row[0] for row in result]
    for job_id in settled:
        log.warning("import_interrupted", job_id=str(job_id))
    return settled


async def watch_imports(queue: ImportQueue, engine: AsyncEngine, clock: Clock) -> list[uuid.UUID]:
    """The import watch's round (at start, then every minute, on every replica): first this
    process's queued jobs show they are alive, then the jobs of processes that are gone are settled."""
    await queue.touch()
    return await settle_interrupted_jobs(engine, clock)


# -- report ----------------------------------------------------------------------------------
REPORT_HEADER = ("line", "code", "message", "field", "id_number")


def report_lines(rejections: Iterable[Rejection], lang: str = "zh", *, header: bool = True) -> Iterator[str]:
    """The rejected rows as CSV text lines (never the full number: ``id_number`` is masked)."""
    buffer = _LineBuffer()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(REPORT_HEADER)
        yield buffer.take()
    for r in rejections:
        writer.writerow((r.line, r.code, r.message(lang), r.field or "", r.id_masked or ""))
        yield buffer.take()


class _LineBuffer:
    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def take(self) -> str:
        text = "".join(self._parts)
        self._parts.clear()
        return text


# -- command line ----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="identity-import",
        description="Import legacy volunteer records (CSV or XLSX) into the identity database.",
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--format", choices=("csv", "xlsx"), help="default: from the file name")
    parser.add_argument("--encoding", default="auto", choices=("auto", "utf-8", "gb18030"))
    parser.add_argument("--report", type=Path, help="rejected rows CSV (default: FILE.rejected.csv)")
    parser.add_argument("--database-url", help="default: IDENTITY_DATABASE_URL")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="1 (default): rows are checked in a thread while the database loads; N: N processes each parse, "
        "check and load parts of a CSV file (faster only with idle cores)",
    )
    parser.add_argument("--lang", choices=("zh", "en"), default="zh", help="language of the report's messages")
    parser.add_argument("--no-progress", action="store_true")
    return parser


async def _cli(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    settings = IdentitySettings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    file_format = args.format or guess_format(args.file.name)
    report_path: Path = args.report or args.file.with_name(args.file.name + ".rejected.csv")
    estimate = SourceFile(args.file, file_format, args.encoding)
    total = estimate.estimated_rows()
    estimate.close()
    bar = tqdm(total=total, unit="rows", unit_scale=True, disable=args.no_progress, file=sys.stderr)
    with report_path.open("w", encoding="utf-8-sig", newline="") as report:
        report.writelines(report_lines((), args.lang))

        def write_rejections(rejections: list[Rejection]) -> None:
            report.writelines(report_lines(rejections, args.lang, header=False))

        summary = await run_import(
            settings,
            args.file,
            file_format=file_format,
            encoding=args.encoding,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=bar.update,
            on_rejections=write_rejections,
        )
    bar.close()
    print(
        json.dumps(
            {
                "job_id": str(summary.job_id),
                "status": summary.status,
                "error_code": summary.error_code,
                "total_rows": summary.total_rows,
                "inserted_rows": summary.inserted_rows,
                "existing_rows": summary.existing_rows,
                "rejected_rows": summary.rejected_rows,
                "duplicate_cases_opened": summary.duplicate_cases_opened,
                "ignored_columns": summary.ignored_columns,
                "report": str(report_path),
            },
            ensure_ascii=False,
        )
    )
    return 0 if summary.status == JOB_SUCCEEDED else 1


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if not args.file.is_file():
        print(f"identity-import: no such file: {args.file}", file=sys.stderr)
        raise SystemExit(2)
    try:
        code = asyncio.run(_cli(args))
    except AppError as exc:
        print(f"identity-import: {exc.code}: {exc.spec.message('zh', exc.params)}", file=sys.stderr)
        code = 1
    raise SystemExit(code)


if __name__ == "__main__":
    main()
