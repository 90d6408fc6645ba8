"""Imported records after the import: a cut-off big import's duplicate cases, header spellings
and unread columns, the sheet an XLSX is read from, empty rows, claiming in another case, what
the national admin sees of a duplicate case and that a resolution merges only what was seen
(V3, V4), the legacy numbers and hours on the account, and temporary passwords (V10, T7): the
login lock lifted, the answer never cached."""

from __future__ import annotations

import asyncio
import csv
import uuid
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from identity import importer
from identity.domain import documents
from identity.domain.documents import DocumentType, blind_index_input
from identity.testing import Identity, add_imported_record
from shared.contracts.teams import TeamMemberJoined
from shared.messaging.amqp import AmqpBroker
from shared.testing import resident_id, sign_up_body

from .test_import import HEADER, csv_bytes, load, new_id, records_with, rejections, row, wait_for_job, write_csv
from .test_team_admins import publish_and_wait, team_with_admin


def masked(number: str) -> str:
    return number[:6] + "********" + number[-4:]


async def open_cases_of(identity: Identity, number: str) -> list[Any]:
    blind = identity.runtime.cipher.blind_index(blind_index_input(DocumentType.RESIDENT_ID, number))
    return await identity.fetch(
        "SELECT id, opened_by FROM duplicate_cases WHERE id_blind_index = :b AND status = 'open'", b=blind
    )


async def case_view(identity: Identity, number: str) -> dict[str, Any]:
    page = await identity.client.get(
        "/api/v1/admin/duplicate-cases", headers=identity.national_admin(), params={"limit": 200}
    )
    assert page.status_code == 200, page.text
    [case] = [c for c in page.json()["items"] if c["id_number_masked"] == masked(number)]
    return dict(case)


# -- a big import cut off before its sweep ----------------------------------------------------
async def test_a_big_import_cut_off_mid_file_then_uploaded_again_opens_the_cases_of_what_the_first_job_loaded(
    identity: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "SWEEP_CASES_ABOVE_BYTES", 0)  # every file counts as big: one sweep at the end
    shared = new_id()
    rows = [row("重甲", shared, no="A"), row("重乙", shared, no="B")] + [row(f"填{i}", new_id()) for i in range(40)]
    path = write_csv(tmp_path / "big.csv", rows)
    first_batch = asyncio.Event()
    cut = asyncio.create_task(load(identity, path, batch_size=2, progress=lambda _: first_batch.set()))
    await first_batch.wait()
    cut.cancel()  # what ImportQueue.close() does when the service stops
    with pytest.raises(asyncio.CancelledError):
        await cut
    assert len(await records_with(identity, shared)) == 2
    assert await open_cases_of(identity, shared) == []

    again = await load(identity, path, batch_size=2)  # the same file uploaded again

    assert again.status == "succeeded"
    assert again.duplicate_cases_opened == 1
    assert [c.opened_by for c in await open_cases_of(identity, shared)] == ["import"]
    assert len((await case_view(identity, shared))["records"]) == 2


async def test_a_big_import_cut_off_just_before_its_sweep_gets_its_cases_from_a_run_that_loads_nothing_new(
    identity: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "SWEEP_CASES_ABOVE_BYTES", 0)
    shared, alone = new_id(), new_id()
    path = write_csv(
        tmp_path / "big.csv", [row("断甲", shared, no="A"), row("断乙", alone), row("断丙", shared, no="C")]
    )
    sweep = importer._sweep_cases

    async def stopped(*args: Any) -> int:
        raise asyncio.CancelledError  # the service stops between the last batch and the sweep

    monkeypatch.setattr(importer, "_sweep_cases", stopped)
    with pytest.raises(asyncio.CancelledError):
        await load(identity, path)
    monkeypatch.setattr(importer, "_sweep_cases", sweep)
    assert await open_cases_of(identity, shared) == []

    again = await load(identity, path)

    assert (again.inserted_rows, again.existing_rows, again.duplicate_cases_opened) == (0, 3, 1)
    assert len(await open_cases_of(identity, shared)) == 1
    assert await open_cases_of(identity, alone) == []


# -- header spellings and columns nobody reads ----------------------------------------------------
async def test_a_header_with_full_width_brackets_is_recognised_and_unrecognised_columns_are_listed_on_the_job(
    identity: Identity, tmp_path: Path
) -> None:
    number = new_id()
    header = [
        "姓名",
        "证件类型",
        "证件号码",
        "手机号码",
        "电子邮箱",
        "地区代码",
        "志愿者编号",
        "服务时长（小时）",
        "备注",
    ]
    path = tmp_path / "full_width.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerow([*row("全角", number, no="L-1", hours="120.5"), "老队员"])

    summary = await load(identity, path)

    assert (summary.status, summary.inserted_rows, summary.rejected_rows) == ("succeeded", 1, 0)
    [record] = await records_with(identity, number)
    assert record.history["legacy"] == {"volunteer_number": "L-1", "service_hours": 120.5}
    assert summary.ignored_columns == ["备注"]
    [(kept,)] = await identity.fetch("SELECT ignored_columns FROM import_jobs WHERE id = :j", j=summary.job_id)
    assert kept == ["备注"]


async def test_an_uploaded_files_unread_columns_are_reported_with_its_job(identity: Identity) -> None:
    admin = identity.national_admin()
    content = csv_bytes([row("列甲", new_id())]).replace("服务时长".encode(), "服务时间".encode(), 1)

    response = await identity.client.post(
        "/api/v1/imports", headers=admin, files={"file": ("legacy.csv", content, "text/csv")}
    )

    assert response.status_code == 202, response.text
    assert response.json()["ignored_columns"] == ["服务时间"]
    job = await wait_for_job(identity, f"/api/v1/imports/{response.json()['id']}", admin)
    assert (job["status"], job["inserted_rows"], job["ignored_columns"]) == ("succeeded", 1, ["服务时间"])


# -- the sheet an XLSX is read from ---------------------------------------------------------------
async def test_an_xlsx_saved_with_its_second_sheet_active_is_read_from_its_first_sheet(
    identity: Identity, tmp_path: Path
) -> None:
    first, second = new_id(), new_id()
    book = openpyxl.Workbook()
    names = book.active
    assert names is not None
    names.title = "志愿者名单"
    names.append(HEADER)
    names.append(row("第一表", first))
    withdrawn = book.create_sheet("已注销人员")
    withdrawn.append(HEADER)
    withdrawn.append(row("第二表", second))
    withdrawn.append(row("第二表乙", new_id()))
    book.active = 1  # the operator looked at the second sheet when saving
    path = tmp_path / "two_sheets.xlsx"
    book.save(path)

    summary = await load(identity, path)

    assert (summary.status, summary.total_rows, summary.inserted_rows) == ("succeeded", 1, 1)
    assert [r.real_name for r in await records_with(identity, first)] == ["第一表"]
    assert await records_with(identity, second) == []
    with importer.SourceFile(path, "xlsx") as source:
        assert source.estimated_rows() == 1


# -- rows of empty cells -------------------------------------------------------------------------------
async def test_rows_of_only_commas_or_blank_cells_are_skipped_not_rejected(identity: Identity, tmp_path: Path) -> None:
    number, later = new_id(), new_id()
    path = tmp_path / "excel.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerow(row("逗号", number))  # line 2
        for _ in range(3):
            writer.writerow([""] * len(HEADER))  # Excel's formatted but empty rows: ",,,,,,,"
        writer.writerow([" ", "", "\t", "", "", "  ", "", ""])  # line 6: blanks only
        writer.writerow(row("", new_id()))  # line 7: a row with content but no name is still reported
        writer.writerow(row("逗号后", later))  # line 8

    summary = await load(identity, path)

    assert (summary.total_rows, summary.inserted_rows, summary.rejected_rows) == (3, 2, 1)
    assert [(r.line, r.code) for r in await rejections(identity, summary.job_id)] == [(7, "name_missing")]
    assert [r.real_name for r in await records_with(identity, later)] == ["逗号后"]


# -- claiming in another case -------------------------------------------------------------------------------
def test_names_in_latin_letters_are_the_same_in_any_case() -> None:
    assert documents.same_name("ADA LOVELACE", "Ada Lovelace")
    assert documents.same_name("ＡＤＡ　ｌｏｖｅｌａｃｅ", "Ada Lovelace")
    assert not documents.same_name("ADA LOVELACE", "Ada Lovelock")


async def test_an_imported_name_in_capitals_is_claimed_by_a_sign_up_in_mixed_case(
    identity: Identity, tmp_path: Path
) -> None:
    number = "E" + new_id()[-8:].replace("X", "1")
    path = tmp_path / "passport.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*HEADER, "出生日期"])
        writer.writerow([*row("ADA LOVELACE", number, type="护照"), "1990-01-01"])
    assert (await load(identity, path)).inserted_rows == 1

    response = await identity.client.post(
        "/api/v1/accounts",
        json=sign_up_body(
            document_type="passport", id_number=number, birth_date="1990-01-01", real_name="Ada Lovelace"
        ),
    )

    assert response.status_code == 201, response.text
    assert response.json()["real_name"] == "ADA LOVELACE"  # the record keeps the name it was loaded under


# -- duplicate cases: what the admin sees, and what a resolution merges ------------------------------------
async def test_the_case_view_tells_the_records_apart_by_birth_date_legacy_figures_and_where_they_came_from(
    identity: Identity, tmp_path: Path
) -> None:
    number = new_id()
    path = write_csv(tmp_path / "two.csv", [row("张三", number, no="OLD-1", hours="300"), row("张四", number)])
    summary = await load(identity, path)
    bare = await add_imported_record(identity, number, "张五")  # no legacy figures, no import job

    case = await case_view(identity, number)

    by_line = {r["import_line"]: r for r in case["records"]}
    assert {r["masked_name"] for r in case["records"]} == {"张*"}  # names stay masked
    first, second = by_line[2], by_line[3]
    assert first["legacy"] == {"volunteer_numbers": ["OLD-1"], "service_hours": 300.0}
    assert second["legacy"] is None
    assert first["import_job_id"] == second["import_job_id"] == str(summary.job_id)
    assert first["birth_date"] == second["birth_date"] == f"{number[6:10]}-{number[10:12]}-{number[12:14]}"
    [other] = [r for r in case["records"] if r["record_id"] == str(bare)]
    assert (other["import_job_id"], other["import_line"], other["legacy"]) == (None, None, None)


async def test_a_resolution_is_refused_when_a_record_arrived_after_the_admin_looked_and_merges_nothing(
    identity: Identity,
) -> None:
    number = resident_id()
    a = await add_imported_record(identity, number, "张三", history={"legacy": {"service_hours": 300}})
    b = await add_imported_record(identity, number, "张四", history={"legacy": {"service_hours": 0}})
    refused = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number, real_name="张三"))
    assert refused.json()["code"] == "id_number_conflict"
    admin = identity.national_admin()
    case = await case_view(identity, number)
    seen = [r["record_id"] for r in case["records"]]
    later = await add_imported_record(identity, number, "张三丰", history={"legacy": {"service_hours": 99}})
    url = f"/api/v1/admin/duplicate-cases/{case['id']}/resolution"

    changed = await identity.client.post(url, json={"keep_record_id": str(a), "record_ids": seen}, headers=admin)

    assert changed.status_code == 409
    assert changed.json()["code"] == "case_changed"
    assert changed.json()["detail"] == {"added": [str(later)], "gone": []}
    english = await identity.client.post(
        url, json={"keep_record_id": str(a), "record_ids": seen}, headers={**admin, "Accept-Language": "en"}
    )
    assert english.json()["message"].startswith("The case's records changed")
    statuses = await identity.fetch("SELECT status FROM volunteer_records WHERE id = ANY(:ids)", ids=[a, b, later])
    assert {s for (s,) in statuses} == {"inactive"}  # nothing merged
    # a resolution naming fewer records than the case has is refused too
    fewer = await identity.client.post(url, json={"keep_record_id": str(a), "record_ids": [str(a)]}, headers=admin)
    assert fewer.json()["code"] == "case_changed"
    # without the records it saw, the resolution is no resolution
    bare = await identity.client.post(url, json={"keep_record_id": str(a)}, headers=admin)
    assert (bare.status_code, bare.json()["code"]) == (422, "validation_failed")

    seen_now = [r["record_id"] for r in (await case_view(identity, number))["records"]]
    resolved = await identity.client.post(url, json={"keep_record_id": str(a), "record_ids": seen_now}, headers=admin)

    assert resolved.status_code == 200, resolved.text
    statuses_now = {r["record_id"]: r["status"] for r in resolved.json()["records"]}
    assert statuses_now == {str(a): "inactive", str(b): "merged", str(later): "merged"}
    _, account = await identity.sign_up(id_number=number, real_name="张三")
    assert account["id"] == str(a)


# -- legacy numbers and hours on the account ----------------------------------------------------------------
async def test_the_legacy_number_and_hours_of_a_claimed_record_show_on_the_account(
    identity: Identity, tmp_path: Path
) -> None:
    number = new_id()
    await load(identity, write_csv(tmp_path / "hours.csv", [row("时长甲", number, no="OLD-9", hours="250")]))
    body, account = await identity.sign_up(id_number=number, real_name="时长甲")

    me = await identity.me(await identity.headers_for(body))

    assert me["legacy"] == {"volunteer_numbers": ["OLD-9"], "service_hours": 250.0}
    assert account["legacy"] == me["legacy"]
    _, fresh = await identity.sign_up()
    assert fresh["legacy"] is None  # a volunteer no legacy system knew


async def test_the_legacy_hours_of_merged_records_are_summed_on_the_account(identity: Identity) -> None:
    number = resident_id()
    kept = await add_imported_record(
        identity, number, "合并甲", history={"legacy": {"volunteer_number": "A-1", "service_hours": 10.25}}
    )
    await add_imported_record(
        identity, number, "合并乙", history={"legacy": {"volunteer_number": "B-2", "service_hours": 20.5}}
    )
    await add_imported_record(identity, number, "合并丙", history={"legacy": {"volunteer_number": None}})
    await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number, real_name="合并甲"))
    case = await case_view(identity, number)
    resolved = await identity.client.post(
        f"/api/v1/admin/duplicate-cases/{case['id']}/resolution",
        json={"keep_record_id": str(kept), "record_ids": [r["record_id"] for r in case["records"]]},
        headers=identity.national_admin(),
    )
    assert resolved.status_code == 200, resolved.text
    body, _ = await identity.sign_up(id_number=number, real_name="合并甲")

    me = await identity.me(await identity.headers_for(body))

    assert me["legacy"] == {"volunteer_numbers": ["A-1", "B-2"], "service_hours": 30.75}


# -- temporary passwords ---------------------------------------------------------------------------------------
async def lock_out(identity: Identity, username: str) -> None:
    for _ in range(identity.settings.login_account_free_failures + 1):
        await identity.log_in(username, "a wrong guess here")
    locked = await identity.log_in(username, "a wrong guess here")
    assert locked.json()["code"] == "too_many_attempts"


async def test_a_national_admins_temporary_password_lifts_the_login_lock_and_is_not_cached(identity: Identity) -> None:
    body, account = await identity.sign_up()
    await lock_out(identity, body["username"])

    reset = await identity.client.post(
        f"/api/v1/admin/accounts/{account['id']}/temporary-passwords",
        json={"reason": "本人丢失手机和邮箱"},
        headers=identity.national_admin(),
    )

    assert reset.status_code == 201, reset.text
    assert reset.headers["cache-control"] == "no-store"
    with_temporary = await identity.log_in(body["username"].upper(), reset.json()["temporary_password"])
    assert with_temporary.json()["code"] == "password_change_required"  # not too_many_attempts


async def test_a_team_admins_temporary_password_lifts_the_login_lock_and_is_not_cached(
    identity: Identity, publisher: AmqpBroker
) -> None:
    team_id, _, admin = await team_with_admin(identity, publisher)
    body, account = await identity.sign_up()
    await publish_and_wait(identity, publisher, TeamMemberJoined(team_id=team_id, account_id=uuid.UUID(account["id"])))
    await lock_out(identity, body["username"])

    reset = await identity.client.post(
        f"/api/v1/teams/{team_id}/members/{account['id']}/temporary-passwords", headers=admin
    )

    assert reset.status_code == 201, reset.text
    assert reset.headers["cache-control"] == "no-store"
    with_temporary = await identity.log_in(body["username"], reset.json()["temporary_password"])
    assert with_temporary.json()["code"] == "password_change_required"
