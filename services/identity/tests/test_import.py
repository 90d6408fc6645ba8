"""Bulk import (issue 3): CSV in UTF-8 or GB18030 and XLSX, row checks with a line-numbered
report, COPY loading, idempotence, duplicate cases (V3), claiming on sign-up (V4), the API
and the command line. Against the real PostgreSQL (and RabbitMQ, through the service)."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import os
import random
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import pytest
from sqlalchemy import text
from stdnum import numdb
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from identity import errors, importer
from identity.api import import_routes
from identity.domain.documents import DocumentType, blind_index_input
from identity.importer import ImportSummary, check_resident_id, run_import, segments
from identity.importer import _Reject as Reject
from identity.testing import Identity, StartIdentity
from shared.auth import ROLE_DATA_IMPORTER, ROLE_VOLUNTEER
from shared.clock import local_today
from shared.db import asyncpg_dsn
from shared.testing import eventually, resident_id, sign_up_body

HEADER = ["姓名", "证件类型", "证件号码", "手机号码", "电子邮箱", "地区代码", "志愿者编号", "服务时长"]
_serials = itertools.count(random.randrange(10_000))


def new_id(birth: date | None = None) -> str:
    """A valid number no other test of the run uses (serial and birth day both vary)."""
    n = next(_serials)
    born = birth or date(1970 + n % 35, 1 + n // 35 % 12, 1 + n // 420 % 28)
    return resident_id(birth=born, serial=n % 1000)


def row(name: str, number: str, **extra: str) -> list[str]:
    values = {"type": "居民身份证", "mobile": "13800138000", "email": "", "region": "110105", "no": "", "hours": ""}
    values.update(extra)
    return [
        name,
        values["type"],
        number,
        values["mobile"],
        values["email"],
        values["region"],
        values["no"],
        values["hours"],
    ]


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


async def load(identity: Identity, path: Path, **options: Any) -> ImportSummary:
    file_format = "xlsx" if path.suffix == ".xlsx" else "csv"
    return await run_import(
        identity.settings,
        path,
        cipher=identity.runtime.cipher,
        file_format=file_format,
        clock=identity.clock,
        **options,
    )


async def records_with(identity: Identity, number: str) -> list[Any]:
    blind = identity.runtime.cipher.blind_index(blind_index_input(DocumentType.RESIDENT_ID, number))
    return await identity.fetch(
        "SELECT id, real_name, status, source, history FROM volunteer_records WHERE id_blind_index = :b "
        "ORDER BY real_name",
        b=blind,
    )


async def rejections(identity: Identity, job_id: uuid.UUID) -> list[Any]:
    return await identity.fetch(
        "SELECT line, code, field, id_masked FROM import_rejections WHERE job_id = :j ORDER BY line", j=job_id
    )


# -- row checks and the report --------------------------------------------------------------
async def test_valid_rows_load_as_inactive_records_and_rejected_rows_are_reported_by_line(
    identity: Identity, tmp_path: Path
) -> None:
    good, bad_check, bad_mobile, bad_region, bad_date = (new_id() for _ in range(5))
    bad_check = bad_check[:-1] + ("0" if bad_check[-1] != "0" else "1")
    bad_date = bad_date[:10] + "1332" + bad_date[14:17]
    bad_date += ric.calc_check_digit(bad_date + "0")
    path = write_csv(
        tmp_path / "people.csv",
        [
            row("张三", good, email="Zhang@Example.com", no="V001", hours="12.5"),  # line 2
            row("李四", bad_check),  # line 3
            row("王五", bad_mobile, mobile="1234"),  # line 4
            row("赵六", bad_region, region="999999"),  # line 5
            row("孙七", bad_date),  # line 6
            row("", new_id()),  # line 7
            row("周八", new_id(), hours="-1"),  # line 8
        ],
    )

    summary = await load(identity, path)

    assert (summary.status, summary.total_rows, summary.inserted_rows, summary.rejected_rows) == (
        "succeeded",
        7,
        1,
        6,
    )
    [record] = await records_with(identity, good)
    assert (record.real_name, record.status, record.source) == ("张三", "inactive", "import")
    assert record.history["legacy"] == {"volunteer_number": "V001", "service_hours": 12.5}
    assert record.history["contact"]["email"] == "zhang@example.com"
    reported = await rejections(identity, summary.job_id)
    assert [(r.line, r.code, r.field) for r in reported] == [
        (3, "id_number_invalid", "id_number"),
        (4, "mobile_invalid", "mobile"),
        (5, "region_invalid", "region_code"),
        (6, "id_number_invalid", "id_number"),
        (7, "name_missing", "real_name"),
        (8, "service_hours_invalid", "service_hours"),
    ]
    # the report names the row by a masked number only
    assert reported[0].id_masked == bad_check[:6] + "********" + bad_check[-4:]
    stored = " ".join(str(r) for r in reported)
    assert all(number not in stored for number in (bad_check, bad_mobile, bad_region, bad_date))


async def test_a_row_with_more_cells_than_the_header_is_rejected_as_malformed(
    identity: Identity, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "wide.csv", [[*row("钱九", new_id()), "surplus"], row("吴十", new_id())])

    summary = await load(identity, path)

    assert (summary.inserted_rows, summary.rejected_rows) == (1, 1)
    [(line, code, _, _)] = await rejections(identity, summary.job_id)
    assert (line, code) == (2, "row_malformed")


async def test_a_control_character_or_an_impossible_hours_figure_rejects_its_row_and_the_rest_loads(
    identity: Identity, tmp_path: Path
) -> None:
    """Each passed the row checks and failed PostgreSQL (COPY, the numeric cast), which ended the
    job as internal_error with earlier batches loaded and later ones never."""
    good = [new_id() for _ in range(4)]
    path = write_csv(
        tmp_path / "cells.csv",
        [
            row("郑一", good[0]),  # line 2
            row("郑\x00二", new_id()),  # line 3
            row("郑三", new_id(), email="a\x00b@example.org"),  # line 4
            row("郑四", good[1], hours="12.345"),  # line 5: kept to the hundredth
            row("郑五", new_id(), hours="1E-20000"),  # line 6: PostgreSQL's numeric cannot hold it
            row("郑六", new_id(), hours="100001"),  # line 7: more than anyone serves
            row("郑七", new_id(), no="V\x0b1"),  # line 8
            row("郑八", good[2], hours="100000"),  # line 9
            row("郑九", good[3], hours="０.５"),  # line 10: full-width, as some exports write it
        ],
    )

    summary = await load(identity, path, batch_size=2)

    assert (summary.status, summary.error_code, summary.inserted_rows, summary.rejected_rows) == (
        "succeeded",
        None,
        4,
        5,
    )
    assert [(r.line, r.code, r.field) for r in await rejections(identity, summary.job_id)] == [
        (3, "cell_control_characters", "real_name"),
        (4, "cell_control_characters", "email"),
        (6, "service_hours_invalid", "service_hours"),
        (7, "service_hours_invalid", "service_hours"),
        (8, "cell_control_characters", "volunteer_number"),
    ]
    hours = [(await records_with(identity, n))[0].history["legacy"]["service_hours"] for n in good]
    assert hours == [None, 12.35, 100000, 0.5]


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_cell_over_the_csv_field_limit_rejects_its_row_and_the_rest_loads(
    identity: Identity, tmp_path: Path, workers: int
) -> None:
    """The csv module refuses a field over 128 KiB (csv.Error), which ended the job as
    internal_error; the reader goes on after it, so only that row is lost (and reported)."""
    numbers = [new_id() for _ in range(3)]
    path = write_csv(
        tmp_path / "long.csv",
        [row("钟一", numbers[0]), row("钟" * 200_000, new_id()), row("钟三", numbers[1]), row("钟四", numbers[2])],
    )

    summary = await load(identity, path, workers=workers)

    assert (summary.status, summary.inserted_rows, summary.rejected_rows) == ("succeeded", 3, 1)
    assert [(r.line, r.code) for r in await rejections(identity, summary.job_id)] == [(3, "cell_too_long")]
    for number in numbers:
        assert len(await records_with(identity, number)) == 1


async def test_birth_dates_as_excel_writes_them_in_a_chinese_locale_are_read_and_trailing_garbage_is_refused(
    identity: Identity, tmp_path: Path
) -> None:
    born = date(1990, 1, 1)
    written = ["1990/1/1", "1990-1-1", "1990年1月1日", "1990.1.1", "19900101", "1990/1/1 0:00", "1990-01-01"]
    refused = ["1990-01-011", "1990-01-01x", "1990/1-1", "1990/1/1 13:45", "1990-02-30"]
    passports = [f"E{uuid.uuid4().int % 10**8:08d}" for _ in written + refused]
    resident = new_id(born)  # a resident ID's birth date given in Excel's form agrees with the number
    path = tmp_path / "births.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*HEADER, "出生日期"])
        writer.writerows(
            [*row("冯生", number, type="护照"), birth]
            for number, birth in zip(passports, written + refused, strict=True)
        )
        writer.writerow([*row("冯居", resident), "1990/1/1"])

    summary = await load(identity, path)

    assert (summary.status, summary.inserted_rows) == ("succeeded", len(written) + 1)
    reported = await rejections(identity, summary.job_id)
    assert [(r.line, r.code, r.field) for r in reported] == [
        (2 + i, "birth_date_invalid", "birth_date") for i in range(len(written), len(written) + len(refused))
    ]
    for number in passports[: len(written)]:
        blind = identity.runtime.cipher.blind_index(blind_index_input(DocumentType.PASSPORT, number))
        [(birth,)] = await identity.fetch("SELECT birth_date FROM volunteer_records WHERE id_blind_index = :b", b=blind)
        assert birth == born


async def test_a_birth_date_from_the_future_or_older_than_anyone_alive_is_refused_as_a_sign_up_would(
    identity: Identity, tmp_path: Path
) -> None:
    today = local_today(identity.clock)
    births = {
        "0001-01-01": False,
        f"{today.year - 151}-01-01": False,
        (today + timedelta(days=1)).isoformat(): False,
        f"{today.year - 100}-01-01": True,
    }
    passports = [f"E{uuid.uuid4().int % 10**8:08d}" for _ in births]
    path = tmp_path / "ages.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*HEADER, "出生日期"])
        writer.writerows(
            [*row("褚生", number, type="护照"), birth] for number, birth in zip(passports, births, strict=True)
        )

    summary = await load(identity, path)

    assert (summary.status, summary.inserted_rows) == ("succeeded", 1)
    reported = await rejections(identity, summary.job_id)
    assert [(r.line, r.code, r.field) for r in reported] == [
        (2, "birth_date_invalid", "birth_date"),
        (3, "birth_date_invalid", "birth_date"),
        (4, "birth_date_invalid", "birth_date"),
    ]


# -- encodings and formats ------------------------------------------------------------------
async def test_gb18030_file_is_detected_and_its_names_arrive_intact(identity: Identity, tmp_path: Path) -> None:
    number = new_id()
    path = write_csv(tmp_path / "gbk.csv", [row("欧阳娜娜", number, no="京A-0001")], encoding="gb18030")
    path.read_bytes().decode("gb18030")  # the test file really is not UTF-8
    assert not _is_utf8(path.read_bytes())

    summary = await load(identity, path)

    assert summary.status == "succeeded", summary
    [record] = await records_with(identity, number)
    assert record.real_name == "欧阳娜娜"
    [(encoding,)] = await identity.fetch("SELECT encoding FROM import_jobs WHERE id = :j", j=summary.job_id)
    assert encoding == "gb18030"


async def test_utf8_file_with_a_byte_order_mark_is_read(identity: Identity, tmp_path: Path) -> None:
    number = new_id()
    path = write_csv(tmp_path / "bom.csv", [row("郑十一", number)], encoding="utf-8-sig")

    summary = await load(identity, path)

    assert summary.inserted_rows == 1
    assert [r.real_name for r in await records_with(identity, number)] == ["郑十一"]


async def test_xlsx_file_is_imported_with_numeric_cells_read_as_text(identity: Identity, tmp_path: Path) -> None:
    number, bad = new_id(), new_id()
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(["陈十二", "居民身份证", number, 13800138000, None, 110105, "V9", 3])  # numbers as numbers
    sheet.append([None] * 8)  # blank rows are skipped
    sheet.append(["林十三", "居民身份证", bad, "13800138000", None, "000000", None, None])
    path = tmp_path / "people.xlsx"
    workbook.save(path)

    summary = await load(identity, path, workers=2)  # rows read here, sealed in workers

    assert (summary.status, summary.inserted_rows, summary.rejected_rows) == ("succeeded", 1, 1)
    [record] = await records_with(identity, number)
    assert record.history["contact"]["mobile"] == "13800138000"
    assert record.history["legacy"] == {"volunteer_number": "V9", "service_hours": 3}
    [(line, code, _, _)] = await rejections(identity, summary.job_id)
    assert (line, code) == (4, "region_invalid")  # the spreadsheet row


async def test_file_without_the_required_columns_fails_with_a_clear_code(identity: Identity, tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("name,mobile\n张三,13800138000\n", encoding="utf-8")

    summary = await load(identity, path)

    assert (summary.status, summary.error_code) == ("failed", "import_header_invalid")


# -- idempotence and duplicates -------------------------------------------------------------
async def test_importing_the_same_file_twice_adds_nothing(identity: Identity, tmp_path: Path) -> None:
    numbers = [new_id() for _ in range(3)]
    path = write_csv(tmp_path / "twice.csv", [row(f"冯{i}", n) for i, n in enumerate(numbers)])

    first = await load(identity, path, batch_size=2)
    second = await load(identity, path, batch_size=2)

    assert (first.inserted_rows, first.existing_rows) == (3, 0)
    assert (second.inserted_rows, second.existing_rows) == (0, 3)
    for number in numbers:
        assert len(await records_with(identity, number)) == 1


async def test_worker_processes_seal_rows_the_way_sign_up_finds_them(identity: Identity, tmp_path: Path) -> None:
    numbers = [new_id() for _ in range(7)]
    path = write_csv(
        tmp_path / "workers.csv",
        [row(f"尤{i}", n) for i, n in enumerate(numbers)] + [row("尤坏", new_id(), mobile="0")],
    )

    summary = await load(identity, path, batch_size=2, workers=2)

    assert (summary.status, summary.inserted_rows, summary.rejected_rows) == ("succeeded", 7, 1)
    [(line, code, _, _)] = await rejections(identity, summary.job_id)
    assert (line, code) == (9, "mobile_invalid")
    _, account = await identity.sign_up(id_number=numbers[3], real_name="尤3")
    [claimed] = await records_with(identity, numbers[3])
    assert (account["id"], claimed.status) == (str(claimed.id), "active")


async def test_several_records_with_one_number_are_kept_and_open_one_duplicate_case(
    identity: Identity, tmp_path: Path
) -> None:
    number = new_id()
    blind = identity.runtime.cipher.blind_index(blind_index_input(DocumentType.RESIDENT_ID, number))
    path = write_csv(
        tmp_path / "dups.csv",
        [row("褚甲", number, no="A1"), row("褚乙", number, no="B2"), row("褚甲", number, no="A1")],
    )

    summary = await load(identity, path, batch_size=2)  # the duplicates straddle two batches
    again = await load(identity, path)

    assert [r.real_name for r in await records_with(identity, number)] == ["褚乙", "褚甲"]
    assert (summary.inserted_rows, summary.existing_rows, summary.duplicate_cases_opened) == (2, 1, 1)
    assert again.duplicate_cases_opened == 0
    cases = await identity.fetch(
        "SELECT status, opened_by, id_masked FROM duplicate_cases WHERE id_blind_index = :b", b=blind
    )
    assert [(c.status, c.opened_by) for c in cases] == [("open", "import")]
    assert cases[0].id_masked == number[:6] + "********" + number[-4:]
    # and sign-up with that number is refused (V3)
    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number, real_name="褚甲"))
    assert response.status_code == 409
    assert response.json()["code"] == "id_number_conflict"


@pytest.mark.parametrize("workers", [1, 2])
async def test_big_file_opens_its_duplicate_cases_in_one_sweep_at_the_end(
    identity: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(importer, "SWEEP_CASES_ABOVE_BYTES", 0)  # every file counts as big
    shared, registered, alone = new_id(), new_id(), new_id()
    await identity.sign_up(id_number=registered, real_name="金登记")
    path = write_csv(
        tmp_path / "big.csv",
        [row("金甲", shared), row("金乙", alone), row("金登记", registered), row("金丙", shared)],
    )

    summary = await load(identity, path, batch_size=1, workers=workers)
    again = await load(identity, path, batch_size=1, workers=workers)

    assert (summary.inserted_rows, summary.duplicate_cases_opened) == (4, 2)
    assert (again.inserted_rows, again.duplicate_cases_opened) == (0, 0)
    for number, expected in ((shared, 1), (registered, 1), (alone, 0)):
        blind = identity.runtime.cipher.blind_index(blind_index_input(DocumentType.RESIDENT_ID, number))
        cases = await identity.fetch(
            "SELECT opened_by FROM duplicate_cases WHERE id_blind_index = :b AND status = 'open'", b=blind
        )
        assert len(cases) == expected
    [(counted,)] = await identity.fetch(
        "SELECT duplicate_cases_opened FROM import_jobs WHERE id = :j", j=summary.job_id
    )
    assert counted == 2


async def test_importing_a_registered_volunteers_number_opens_a_duplicate_case(
    identity: Identity, tmp_path: Path
) -> None:
    body, _ = await identity.sign_up(id_number=new_id(), real_name="卫丙")
    path = write_csv(tmp_path / "registered.csv", [row("卫丙", body["id_number"])])

    summary = await load(identity, path)

    assert (summary.inserted_rows, summary.duplicate_cases_opened) == (1, 1)
    statuses = sorted(r.status for r in await records_with(identity, body["id_number"]))
    assert statuses == ["active", "inactive"]


# -- claiming (V4) --------------------------------------------------------------------------
async def test_sign_up_with_an_imported_number_and_the_same_name_claims_the_record(
    identity: Identity, tmp_path: Path
) -> None:
    number = new_id()
    path = write_csv(tmp_path / "claim.csv", [row("蒋丁", number, no="OLD-7", hours="40")])
    await load(identity, path)
    [imported] = await records_with(identity, number)

    _, account = await identity.sign_up(id_number=number, real_name="蒋丁")

    assert account["id"] == str(imported.id)  # the account is the imported record
    [claimed] = await records_with(identity, number)
    assert claimed.status == "active"
    assert claimed.history["legacy"] == {"volunteer_number": "OLD-7", "service_hours": 40}


async def test_an_imported_passport_number_in_full_width_characters_is_claimed_by_sign_up_in_ascii(
    identity: Identity, tmp_path: Path
) -> None:
    number = f"E{uuid.uuid4().int % 10**8:08d}"
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in number)  # Ｅ１２３…
    path = tmp_path / "passport.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*HEADER, "出生日期"])
        writer.writerow([*row("Ada Lovelace", full_width, type="护照"), "1990-01-01"])
    summary = await load(identity, path)
    assert summary.inserted_rows == 1
    blind = identity.runtime.cipher.blind_index(blind_index_input(DocumentType.PASSPORT, number))
    [(record_id, masked)] = await identity.fetch(
        "SELECT id, id_masked FROM volunteer_records WHERE id_blind_index = :b", b=blind
    )
    assert masked == number[:2] + "*" * (len(number) - 4) + number[-2:]

    _, account = await identity.sign_up(
        document_type="passport", id_number=number, birth_date="1990-01-01", real_name="Ada Lovelace"
    )

    assert account["id"] == str(record_id)  # the imported record is claimed
    [(status,)] = await identity.fetch("SELECT status FROM volunteer_records WHERE id = :i", i=record_id)
    assert status == "active"


async def test_sign_up_with_an_imported_number_and_another_name_is_refused(identity: Identity, tmp_path: Path) -> None:
    number = new_id()
    await load(identity, write_csv(tmp_path / "mismatch.csv", [row("沈戊", number)]))

    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number, real_name="韩己"))

    assert response.status_code == 409
    assert response.json()["code"] == "imported_name_mismatch"
    assert [r.status for r in await records_with(identity, number)] == ["inactive"]


async def test_an_import_at_the_moment_its_people_sign_up_leaves_no_unnoticed_second_record(
    identity: Identity, tmp_path: Path
) -> None:
    """V3/V4 when the two meet: each person signing up while the import loads them either claims
    the imported record or, where both records were written, the number is a case for the national
    admin. Before, the sign-up looked (nothing), the import's probe looked (one record) and both
    committed: two live records and no case, the imported history orphaned (5 of 8 rounds)."""
    for k in range(4):
        numbers = [new_id() for _ in range(25)]
        filler = [row(f"填{i}", new_id()) for i in range(300)]  # the racing people load a moment in
        path = write_csv(tmp_path / f"meeting{k}.csv", filler + [row(f"同{i}", n) for i, n in enumerate(numbers)])

        async def sign_up(i: int, number: str) -> Any:
            await asyncio.sleep(random.uniform(0, 0.25))
            return await identity.client.post(
                "/api/v1/accounts", json=sign_up_body(id_number=number, real_name=f"同{i}")
            )

        summary, *answers = await asyncio.gather(load(identity, path), *(sign_up(i, n) for i, n in enumerate(numbers)))
        assert summary.status == "succeeded", summary
        assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers if a.status_code >= 500]
        for number in numbers:
            blind = identity.runtime.cipher.blind_index(blind_index_input(DocumentType.RESIDENT_ID, number))
            [(live, cases)] = await identity.fetch(
                "SELECT (SELECT count(*) FROM volunteer_records WHERE id_blind_index = :b AND status <> 'merged'),"
                " (SELECT count(*) FROM duplicate_cases WHERE id_blind_index = :b AND status = 'open')",
                b=blind,
            )
            assert live == 1 or cases == 1, (k, live, cases)


async def test_a_sign_up_does_not_wait_for_a_large_imports_final_sweep(identity: Identity) -> None:
    """The sweep holds the import's case lock through a scan of every record (17 s at 2 million):
    sign-ups, and the logins queued behind their connections, waited it out. They wait only for a
    batch's probe, which every batch of a swept import has committed before the sweep."""
    conn = await asyncpg.connect(asyncpg_dsn(identity.settings.database_url))
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('identity-import-cases'))")  # the sweep
            signed_up = await asyncio.wait_for(
                identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=new_id())), timeout=10
            )
            assert signed_up.status_code == 201, signed_up.text
    finally:
        await conn.close()


# -- the API --------------------------------------------------------------------------------
def csv_bytes(rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return text.getvalue().encode(encoding)


async def wait_for_job(identity: Identity, job_url: str, headers: dict[str, str]) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await identity.client.get(job_url, headers=headers)).json()
        return body if body["status"] in ("succeeded", "failed") else None

    result: dict[str, Any] = await eventually(done, timeout=60, interval=0.1)
    return result


async def test_uploaded_file_is_imported_in_the_background_and_its_report_downloads(identity: Identity) -> None:
    good, bad = new_id(), new_id()
    content = csv_bytes([row("杨庚", good), row("朱辛", bad, mobile="12")], encoding="gb18030")
    admin = identity.national_admin()

    response = await identity.client.post(
        "/api/v1/imports", headers=admin, files={"file": ("legacy.csv", content, "text/csv")}
    )

    assert response.status_code == 202, response.text
    job = await wait_for_job(identity, f"/api/v1/imports/{response.json()['id']}", admin)
    assert job["status"] == "succeeded"
    assert (job["total_rows"], job["inserted_rows"], job["rejected_rows"], job["encoding"]) == (2, 1, 1, "gb18030")
    report = await identity.client.get(job["report_url"], headers=admin)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert lines == [
        ["line", "code", "message", "field", "id_number"],
        ["3", "mobile_invalid", errors.MOBILE_INVALID.zh, "mobile", bad[:6] + "********" + bad[-4:]],
    ]
    english = await identity.client.get(job["report_url"], headers={**admin, "Accept-Language": "en"})
    assert "The mobile number is not valid" in english.content.decode("utf-8-sig")


async def test_report_pages_through_every_rejected_row_in_line_order(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_routes, "REPORT_PAGE", 2)
    content = csv_bytes([row(f"曹{i}", new_id(), mobile="1") for i in range(5)])
    admin = identity.national_admin()

    response = await identity.client.post(
        "/api/v1/imports", headers=admin, files={"file": ("bad.csv", content, "text/csv")}
    )
    job = await wait_for_job(identity, f"/api/v1/imports/{response.json()['id']}", admin)
    report = await identity.client.get(job["report_url"], headers=admin)

    lines = list(csv.reader(io.StringIO(report.content.decode("utf-8-sig"))))[1:]
    assert [(int(line[0]), line[1]) for line in lines] == [(n, "mobile_invalid") for n in range(2, 7)]


async def test_upload_over_the_size_cap_is_refused(identity: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_routes, "MAX_UPLOAD_BYTES", 64)
    content = csv_bytes([row("严", new_id()) for _ in range(5)])

    response = await identity.client.post(
        "/api/v1/imports", headers=identity.national_admin(), files={"file": ("big.csv", content, "text/csv")}
    )

    assert (response.status_code, response.json()["code"]) == (413, "import_file_too_large")


async def test_data_importer_uploads_and_sees_only_its_own_jobs(identity: Identity) -> None:
    importer = identity.bearer(roles=(ROLE_DATA_IMPORTER,))
    other = identity.bearer(roles=(ROLE_DATA_IMPORTER,))
    content = csv_bytes([row("秦壬", new_id())])

    response = await identity.client.post(
        "/api/v1/imports", headers=importer, files={"file": ("a.csv", content, "text/csv")}
    )

    assert response.status_code == 202, response.text
    url = f"/api/v1/imports/{response.json()['id']}"
    assert (await wait_for_job(identity, url, importer))["inserted_rows"] == 1
    hidden = await identity.client.get(url, headers=other)
    assert (hidden.status_code, hidden.json()["code"]) == (404, "import_not_found")
    assert (await identity.client.get(url, headers=identity.national_admin())).status_code == 200


async def test_volunteer_cannot_upload_an_import(identity: Identity) -> None:
    response = await identity.client.post(
        "/api/v1/imports",
        headers=identity.bearer(roles=(ROLE_VOLUNTEER,)),
        files={"file": ("a.csv", csv_bytes([]), "text/csv")},
    )

    assert response.status_code == 403


async def test_upload_without_required_columns_is_refused_at_once(identity: Identity) -> None:
    response = await identity.client.post(
        "/api/v1/imports",
        headers={**identity.national_admin(), "Accept-Language": "en"},
        files={"file": ("a.csv", "name,phone\n张三,13800138000\n".encode(), "text/csv")},
    )

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "import_header_invalid"
    assert "id_number" in body["detail"]["missing"]
    assert body["message"].startswith("The file lacks required columns")


async def test_upload_of_an_unsupported_file_type_is_refused(identity: Identity) -> None:
    response = await identity.client.post(
        "/api/v1/imports",
        headers=identity.national_admin(),
        files={"file": ("a.pdf", b"%PDF-1.4", "application/octet-stream")},
    )

    assert (response.status_code, response.json()["code"]) == (415, "import_format_unsupported")


async def test_unknown_import_is_not_found(identity: Identity) -> None:
    response = await identity.client.get(f"/api/v1/imports/{uuid.uuid4()}", headers=identity.national_admin())

    assert (response.status_code, response.json()["code"]) == (404, "import_not_found")


# -- the command line -----------------------------------------------------------------------
async def test_command_line_import_writes_the_report_and_the_records_are_claimable(
    identity: Identity, tmp_path: Path
) -> None:
    good, bad = new_id(), new_id()
    path = write_csv(tmp_path / "cli.csv", [row("许癸", good), row("何子", bad, region="12")], encoding="gb18030")
    report = tmp_path / "report.csv"
    env = {**os.environ, "IDENTITY_DATABASE_URL": identity.settings.database_url}

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "identity.importer",
        str(path),
        "--report",
        str(report),
        "--no-progress",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)

    assert process.returncode == 0, stderr.decode()
    assert '"inserted_rows": 1' in stdout.decode()
    lines = list(csv.reader(io.StringIO(report.read_text(encoding="utf-8-sig"))))
    assert lines[1][:2] == ["3", "region_invalid"]
    assert bad not in report.read_text(encoding="utf-8-sig")
    # sealed with the service's own keys: sign-up finds and claims it
    [imported] = await records_with(identity, good)
    _, account = await identity.sign_up(id_number=good, real_name="许癸")
    assert account["id"] == str(imported.id)


def test_file_segments_end_at_line_breaks_outside_quotes(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_bytes(b'h1,h2\na,1\n"multi\nline, with comma",2\nb,3\n"x""y",4\nc,5\n')

    parts = list(segments(path, start=6, first_line=2, size=4))

    data = path.read_bytes()
    assert b"".join(data[p.offset : p.offset + p.length] for p in parts) == data[6:]
    for part in parts:
        text = data[part.offset : part.offset + part.length].decode()
        assert text.count('"') % 2 == 0
        assert text.endswith("\n")
    assert [(p.first_line, data[p.offset : p.offset + p.length].split(b",")[0]) for p in parts] == [
        (2, b"a"),
        (3, b'"multi\nline'),
        (5, b"b"),
        (6, b'"x""y"'),
        (7, b"c"),
    ]


# -- the fast resident ID check -------------------------------------------------------------
def test_fast_resident_id_check_agrees_with_stdnum() -> None:
    rnd = random.Random(11)
    today = date(2026, 11, 26)
    samples = []
    for _ in range(3000):
        area = rnd.choice(["110105", "330106", "440305", "999999", "110199", "510000", "500101", "110103"])
        body = f"{area}{rnd.randrange(1880, 2030)}{rnd.randrange(0, 14):02d}{rnd.randrange(0, 33):02d}"
        body += f"{rnd.randrange(1000):03d}"
        check = ric.calc_check_digit(body + "0") if rnd.random() < 0.8 else rnd.choice("0123456789X")
        samples.append(body + check)
    for number in samples:
        try:
            check_resident_id(number, today)
            fast = True
        except Reject:
            fast = False
        slow = _stdnum_valid(number) and ric.get_birth_date(number) <= today
        assert fast == slow, number[:6]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _stdnum_valid(number: str) -> bool:
    """stdnum's check (length, digits, check digit, birth date) with its table of address codes, but
    not its rule that the code existed in the birth year (GB 11643 has none: the code is where the
    number was issued): a code the table lists for any year is valid."""
    if len(number) != 18 or not number[:17].isdigit() or number[-1] != ric.calc_check_digit(number):
        return False
    try:
        ric.get_birth_date(number)
    except ValidationError:
        return False
    return any("county" in props for _, props in numdb.get("cn/loc").info(number[:6]))


async def _job(identity: Identity, status: str, *, created_minutes_ago: float = 0) -> uuid.UUID:
    job_id = uuid.uuid4()
    async with identity.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO import_jobs (id, origin, file_format, status, created_at) "
                "VALUES (:id, 'api', 'csv', :status, :created_at)"
            ),
            {
                "id": job_id,
                "status": status,
                "created_at": identity.clock.now() - timedelta(minutes=created_minutes_ago),
            },
        )
    return job_id


async def test_a_job_cut_off_by_a_restart_is_marked_interrupted_and_a_live_one_is_left_running(
    identity: Identity,
) -> None:
    dead = await _job(identity, "running")  # its process died: nobody holds its lock
    live = await _job(identity, "running")
    lost_in_queue = await _job(identity, "queued", created_minutes_ago=10)
    just_queued = await _job(identity, "queued", created_minutes_ago=1)
    finished = await _job(identity, "succeeded")
    # the live job's loader (another replica) holds the job's lock on its connection
    loader = await asyncpg.connect(asyncpg_dsn(identity.settings.database_url))
    try:
        await loader.execute(f"SELECT pg_advisory_lock({importer.JOB_LOCKS}, hashtext($1::text))", str(live))

        settled = await importer.settle_interrupted_jobs(identity.runtime.engine, identity.clock)

        # (the service's own watch, once a minute, may have settled them a moment earlier)
        assert set(settled) <= {dead, lost_in_queue}
        admin = identity.national_admin()
        job = (await identity.client.get(f"/api/v1/imports/{dead}", headers=admin)).json()
        assert (job["status"], job["error_code"]) == ("failed", "import_interrupted")
        assert job["finished_at"] is not None
        assert await statuses(identity, dead, live, lost_in_queue, just_queued, finished) == [
            ("failed", "import_interrupted"),
            ("running", None),
            ("failed", "import_interrupted"),
            ("queued", None),
            ("succeeded", None),
        ]
    finally:
        await loader.close()  # the replica goes away
    await importer.settle_interrupted_jobs(identity.runtime.engine, identity.clock)
    assert await statuses(identity, live) == [("failed", "import_interrupted")]


async def statuses(identity: Identity, *job_ids: uuid.UUID) -> list[tuple[str, str | None]]:
    rows = {
        r[0]: (r[1], r[2])
        for r in await identity.fetch(
            "SELECT id, status, error_code FROM import_jobs WHERE id = ANY(:ids)", ids=list(job_ids)
        )
    }
    return [rows[j] for j in job_ids]


async def test_a_running_import_holds_its_lock_so_the_watch_leaves_it_alone(identity: Identity, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "long.csv", [row(f"长{i}", new_id()) for i in range(20_000)])
    task = asyncio.create_task(load(identity, path))
    seen_running = False
    while not task.done():
        rows = await identity.fetch(
            "SELECT id FROM import_jobs WHERE status = 'running' AND origin = 'cli' AND started_at IS NOT NULL"
        )
        if rows:
            seen_running = True
            assert await importer.settle_interrupted_jobs(identity.runtime.engine, identity.clock) == []
            break
        await asyncio.sleep(0.01)
    summary = await task
    assert seen_running
    assert summary.status == "succeeded"


# -- a bound on imports running at once -------------------------------------------------------
# Uploads beyond IDENTITY_IMPORT_CONCURRENCY wait `queued` and start when a slot frees; a queued
# job is started by exactly one claimer; a queued job whose replica is gone does not stay queued.
@pytest.fixture(scope="module")
async def limited(start_identity: StartIdentity) -> AsyncIterator[Identity]:
    """A service that runs one import at a time (``IDENTITY_IMPORT_CONCURRENCY=1``)."""
    async with start_identity(import_concurrency=1) as service:
        yield service


class Gate:
    """Holds every import at the start of its rows until released, and notes who got there."""

    def __init__(self) -> None:
        self.arrived: list[uuid.UUID] = []
        self.changed = asyncio.Event()
        self.open = asyncio.Event()

    async def reached(self, job_id: uuid.UUID) -> None:
        while job_id not in self.arrived:
            self.changed.clear()
            await self.changed.wait()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    gate = Gate()
    real = importer._import_rows

    async def held(
        conn: Any, settings: Any, cipher: Any, path: Path, options: Any, job_id: uuid.UUID, *rest: Any
    ) -> None:
        gate.arrived.append(job_id)
        gate.changed.set()
        await gate.open.wait()
        await real(conn, settings, cipher, path, options, job_id, *rest)

    monkeypatch.setattr(importer, "_import_rows", held)
    yield gate
    gate.open.set()


async def upload(identity: Identity, headers: dict[str, str], content: bytes, name: str = "a.csv") -> uuid.UUID:
    response = await identity.client.post("/api/v1/imports", headers=headers, files={"file": (name, content)})
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


async def job_body(identity: Identity, job_id: uuid.UUID, headers: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = (await identity.client.get(f"/api/v1/imports/{job_id}", headers=headers)).json()
    return body


async def test_with_a_limit_of_one_a_second_upload_waits_queued_until_the_first_finishes_then_runs(
    limited: Identity, gate: Gate
) -> None:
    identity = limited
    admin = identity.national_admin()
    a, b = new_id(), new_id()
    first = await upload(identity, admin, csv_bytes([row("甲一", a)]))
    await asyncio.wait_for(gate.reached(first), timeout=30)

    second = await upload(identity, admin, csv_bytes([row("乙二", b)]))
    # the first holds the only slot: the second does not start (were it started, it would reach
    # the gate within milliseconds)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(gate.reached(second), timeout=2)
    assert (await job_body(identity, first, admin))["status"] == "running"
    waiting = await job_body(identity, second, admin)
    assert (waiting["status"], waiting["started_at"]) == ("queued", None)

    identity.clock.advance(timedelta(seconds=30))
    gate.open.set()
    done_first = await wait_for_job(identity, f"/api/v1/imports/{first}", admin)
    done_second = await wait_for_job(identity, f"/api/v1/imports/{second}", admin)

    assert (done_first["status"], done_first["inserted_rows"]) == ("succeeded", 1)
    assert (done_second["status"], done_second["inserted_rows"]) == ("succeeded", 1)
    assert gate.arrived == [first, second]
    assert done_second["started_at"] >= done_first["finished_at"]
    assert [r.status for r in await records_with(identity, b)] == ["inactive"]


async def test_a_stopping_service_cuts_its_imports_off_deletes_their_files_and_the_jobs_end_interrupted(
    start_identity: StartIdentity, gate: Gate
) -> None:
    """A stop (a deploy's rolling restart) cancels the running import and drops the queued one: their
    uploaded files are deleted, the loader's connection closes, and the import watch (at the next
    start, or on another replica) fails both as interrupted; nothing is left running or on disk."""
    async with start_identity(import_concurrency=1) as identity:
        admin = identity.national_admin()
        first = await upload(identity, admin, csv_bytes([row("甲一", new_id())]))
        await asyncio.wait_for(gate.reached(first), timeout=30)
        second = await upload(identity, admin, csv_bytes([row("乙二", new_id())]))
        held = [u.path for u in identity.runtime.imports._waiting.values()]
        assert len(held) == 1
        assert held[0].exists()
        running = list(identity.runtime.imports._running.values())
        database_url = identity.settings.database_url
    assert not held[0].exists()
    assert all(task.done() for task in running)
    async with start_identity(database_url=database_url) as restarted:
        admin = restarted.national_admin()
        # the queued job's heartbeat stopped with its process: past the grace the watch fails it
        restarted.clock.advance(importer.QUEUED_GRACE + timedelta(minutes=1))
        await importer.settle_interrupted_jobs(restarted.runtime.engine, restarted.clock)

        async def both_interrupted() -> bool:
            bodies = [await job_body(restarted, job, admin) for job in (first, second)]
            return all((b["status"], b["error_code"]) == ("failed", "import_interrupted") for b in bodies)

        assert await eventually(both_interrupted, timeout=30, interval=0.2)


async def test_two_claimers_racing_for_one_queued_job_run_it_exactly_once(identity: Identity, tmp_path: Path) -> None:
    numbers = [new_id() for _ in range(50)]
    path = write_csv(tmp_path / "race.csv", [row(f"竞{i}", n) for i, n in enumerate(numbers)])
    async with identity.runtime.uow() as uow:
        job = await importer.submit(uow, uuid.uuid4(), path, file_format="csv", encoding="auto")

    # two replicas' loaders, each on its own connection
    summaries = await asyncio.gather(
        *(
            importer.run_import(
                identity.settings,
                path,
                cipher=identity.runtime.cipher,
                file_format="csv",
                job_id=job.id,
                clock=identity.clock,
            )
            for _ in range(2)
        )
    )

    [counts] = await identity.fetch(
        "SELECT status, total_rows, inserted_rows, existing_rows FROM import_jobs WHERE id = :j", j=job.id
    )
    assert tuple(counts) == ("succeeded", 50, 50, 0)
    assert sorted(s.claimed for s in summaries) == [False, True]
    [ran] = [s for s in summaries if s.claimed]
    assert (ran.status, ran.inserted_rows) == ("succeeded", 50)


async def _orphan(identity: Identity) -> uuid.UUID:
    """A job queued by a replica that then went away (nobody here holds its file)."""
    job_id = uuid.uuid4()
    async with identity.runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO import_jobs (id, origin, file_format, status, created_at) "
                "VALUES (:id, 'api', 'csv', 'queued', :now)"
            ),
            {"id": job_id, "now": identity.clock.now()},
        )
    return job_id


async def test_a_job_waiting_in_a_live_replica_stays_queued_past_the_grace_and_a_lost_one_is_failed(
    limited: Identity, gate: Gate
) -> None:
    identity = limited
    admin = identity.national_admin()
    first = await upload(identity, admin, csv_bytes([row("丙三", new_id())]))
    await asyncio.wait_for(gate.reached(first), timeout=30)
    waiting = await upload(identity, admin, csv_bytes([row("丁四", new_id())]))
    lost = await _orphan(identity)

    # a long first import: the second waits longer than a queued job's grace
    identity.clock.advance(importer.QUEUED_GRACE + timedelta(minutes=5))
    await importer.watch_imports(identity.runtime.imports, identity.runtime.engine, identity.clock)

    assert await statuses(identity, first, waiting, lost) == [
        ("running", None),
        ("queued", None),
        ("failed", "import_interrupted"),
    ]
    gate.open.set()
    assert (await wait_for_job(identity, f"/api/v1/imports/{waiting}", admin))["status"] == "succeeded"
    assert await statuses(identity, lost) == [("failed", "import_interrupted")]


async def test_a_queued_job_settled_as_interrupted_meanwhile_is_not_run_when_its_turn_comes(
    limited: Identity, gate: Gate
) -> None:
    identity = limited
    admin = identity.national_admin()
    first = await upload(identity, admin, csv_bytes([row("戊五", new_id())]))
    await asyncio.wait_for(gate.reached(first), timeout=30)
    number = new_id()
    waiting = await upload(identity, admin, csv_bytes([row("己六", number)]))
    # another replica's watch took it for lost (this one stalled past the grace)
    async with identity.runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE import_jobs SET status = 'failed', error_code = 'import_interrupted' WHERE id = :j"),
            {"j": waiting},
        )

    gate.open.set()
    assert (await wait_for_job(identity, f"/api/v1/imports/{first}", admin))["status"] == "succeeded"
    await eventually(lambda: not identity.runtime.imports.busy, timeout=30)

    assert await statuses(identity, waiting) == [("failed", "import_interrupted")]
    assert waiting not in gate.arrived
    assert await records_with(identity, number) == []


# -- an XLSX upload is read in the background --------------------------------------------------
def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for values in rows:
        sheet.append(values)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


async def test_an_xlsx_upload_is_answered_before_the_workbook_is_parsed_and_imported_in_the_background(
    identity: Identity, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a big workbook's full parse (its shared strings) takes seconds: not on the request path
    parsed: list[Path] = []
    real = openpyxl.load_workbook

    def spy(filename: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(Path(filename))
        return real(filename, *args, **kwargs)

    monkeypatch.setattr(openpyxl, "load_workbook", spy)
    number = new_id()
    admin = identity.national_admin()

    job_id = await upload(identity, admin, xlsx_bytes([HEADER, row("庚七", number)]), name="people.xlsx")

    assert parsed == []
    assert (await job_body(identity, job_id, admin))["status"] in ("queued", "running")
    gate.open.set()
    job = await wait_for_job(identity, f"/api/v1/imports/{job_id}", admin)
    assert (job["status"], job["inserted_rows"]) == ("succeeded", 1)
    assert len(parsed) == 1
    assert [r.real_name for r in await records_with(identity, number)] == ["庚七"]


def _zip_with(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def _directory_entry_patched(archive: bytes, offset: int, value: bytes) -> bytes:
    """The archive with ``value`` written at ``offset`` into its first central-directory entry."""
    at = archive.index(b"PK\x01\x02") + offset
    return archive[:at] + value + archive[at + len(value) :]


WORKBOOK_ZIP = _zip_with("xl/workbook.xml", b"<workbook/>")


@pytest.mark.parametrize(
    "content",
    [
        b"PK\x03\x04 not really a zip",
        # "version needed to extract" 10.0: the zip module refuses it (NotImplementedError)
        _directory_entry_patched(WORKBOOK_ZIP, 6, (100).to_bytes(2, "little")),
        # names flagged UTF-8 that are not (UnicodeDecodeError): flag bit 11, then a 0xFF in the name
        _directory_entry_patched(_directory_entry_patched(WORKBOOK_ZIP, 8, b"\x00\x08"), 46, b"\xff"),
    ],
    ids=["no_zip", "unknown_zip_version", "name_not_utf8"],
)
async def test_an_xlsx_upload_that_is_no_workbook_is_refused_at_once(identity: Identity, content: bytes) -> None:
    response = await identity.client.post(
        "/api/v1/imports", headers=identity.national_admin(), files={"file": ("people.xlsx", content)}
    )

    assert (response.status_code, response.json()["code"]) == (422, "import_file_unreadable")


def _sheet_cut_off(workbook: bytes) -> bytes:
    """The workbook with its sheet's XML cut off after the third row."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook)) as source, zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: data.index(b'<row r="4"')] + b"<row><c"
            target.writestr(item, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (xlsx_bytes([["name", "phone"], ["张三", "13800138000"]]), "import_header_invalid"),
        (_zip_with("xl/workbook.xml", b"<workbook>broken"), "import_file_unreadable"),
        (
            _sheet_cut_off(xlsx_bytes([HEADER, *(row(f"辛{i}", resident_id(serial=i)) for i in range(5))])),
            "import_file_unreadable",
        ),
    ],
    ids=["without_required_columns", "broken_workbook", "sheet_cut_off"],
)
async def test_an_xlsx_upload_found_unreadable_in_the_background_ends_its_job_failed_with_a_stable_code(
    identity: Identity, content: bytes, code: str
) -> None:
    admin = identity.national_admin()

    job_id = await upload(identity, admin, content, name="people.xlsx")

    job = await wait_for_job(identity, f"/api/v1/imports/{job_id}", admin)
    assert (job["status"], job["error_code"], job["total_rows"]) == ("failed", code, 0)


async def test_an_import_that_crashes_fails_its_job_and_logs_where_not_the_rows_it_read(
    identity: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash (an error no check expected) ends the job ``internal_error``; the log line says the
    error's type and where, never its text, which can quote a row's cells."""
    from structlog.testing import capture_logs

    number = new_id()

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"cannot load 王小明 {number}")

    monkeypatch.setattr(importer, "_import_rows", crash)
    with capture_logs() as logs:
        summary = await load(identity, write_csv(tmp_path / "crash.csv", [row("王小明", number)]))
    assert (summary.status, summary.error_code) == ("failed", "internal_error")
    crashed = [entry for entry in logs if entry["event"] == "import_crashed"]
    assert len(crashed) == 1
    assert crashed[0]["error"] == "RuntimeError"
    assert "crash" in crashed[0]["at"]
    assert "王小明" not in repr(logs)
    assert number not in repr(logs)


@pytest.mark.parametrize("path", ["/api/v1/imports", "/api/v1/accounts/me/id-card-images"])
async def test_an_upload_without_a_valid_token_is_refused_before_its_body_is_read(
    identity: Identity, path: str
) -> None:
    """Uploads may be far larger than other bodies (an import file up to 256 MiB): an anonymous
    client gets 401 at once, not after sending (and the service spooling) the whole file."""
    read: list[bytes] = []

    async def upload() -> AsyncIterator[bytes]:
        read.append(b"--b")
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="people.csv"\r\n\r\n'
        await asyncio.Event().wait()  # a file that never ends: only a refusal before reading ends this
        yield b""

    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    response = await asyncio.wait_for(identity.client.post(path, content=upload(), headers=headers), 5)
    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")
    assert read == []
