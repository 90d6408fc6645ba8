"""ID documents as an audit found them refused, or one person counted twice (V1, V2, V4, T7).

A resident ID number's address code is where it was issued, not where the holder was born that
year (GB 11643 has no such rule); a typed birth date is no resident ID number; a claim must agree
with the imported record's birth date; a Home Return Permit's old and new forms are one person;
a minority name's middle dot has many look-alikes."""

from __future__ import annotations

import csv
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from stdnum.cn import ric

from identity.crypto import DataCipher, id_number_context
from identity.domain import documents
from identity.domain.documents import DocumentType
from identity.importer import ImportSummary, check_resident_id, run_import
from identity.importer import _Reject as Reject
from identity.reindex import ReindexRun
from identity.testing import Identity
from shared.clock import local_today
from shared.errors import AppError
from shared.testing import resident_id, sign_up_body

HEADER = ["姓名", "证件类型", "证件号码", "手机号码", "电子邮箱", "地区代码", "出生日期", "志愿者编号", "服务时长"]


def issued(first17: str) -> str:
    """A number with its GB 11643 check character."""
    return first17 + ric.calc_check_digit(first17 + "0")


def serial() -> str:
    return f"{uuid.uuid4().int % 1000:03d}"


def permit_core() -> str:
    return f"H{uuid.uuid4().int % 10**8:08d}"


def passport() -> str:
    return f"E{uuid.uuid4().int % 10**8:08d}"


async def load(identity: Identity, path: Path, rows: list[list[str]]) -> ImportSummary:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    summary = await run_import(
        identity.settings, path, cipher=identity.runtime.cipher, file_format="csv", clock=identity.clock
    )
    assert summary.status == "succeeded", summary
    return summary


async def rejected_codes(identity: Identity, job_id: uuid.UUID) -> list[tuple[int, str, str | None]]:
    rows = await identity.fetch(
        "SELECT line, code, field FROM import_rejections WHERE job_id = :j ORDER BY line", j=job_id
    )
    return [(line, code, field) for line, code, field in rows]


async def records_of(identity: Identity, document_type: DocumentType, number: str) -> list[Any]:
    index = identity.runtime.cipher.blind_index(documents.blind_index_input(document_type, number))
    return await identity.fetch(
        "SELECT id, status, birth_date, id_masked FROM volunteer_records WHERE id_blind_index = :b ORDER BY created_at",
        b=index,
    )


# -- 1. the address code: known in any year, not in the birth year ---------------------------
#: (first 17 characters, what it is): the area code was created after the holder's birth year
ISSUED_LATER = [
    ("500101" + "19900101", "重庆市万州区 (1997/1998-), born 1990"),
    ("110115" + "19950101", "北京市大兴区 (2001-), born 1995"),
    ("310115" + "19850101", "上海市浦东新区 (1992-), born 1985"),
    ("440305" + "19700101", "深圳市南山区 (1983-), born 1970"),
]


@pytest.mark.parametrize(("first14", "what"), ISSUED_LATER)
def test_a_number_issued_in_an_area_created_after_the_birth_year_is_valid(first14: str, what: str) -> None:
    number = issued(first14 + "001")
    born = date(int(first14[6:10]), int(first14[10:12]), int(first14[12:14]))
    assert documents.check_document(DocumentType.RESIDENT_ID, number, None) == (number, born), what
    assert check_resident_id(number, date(2026, 1, 1)) == born, what  # the importer's


def test_a_withdrawn_area_code_stays_valid_on_the_numbers_issued_under_it() -> None:
    number = issued("110103" + "20120101" + "001")  # 北京市崇文区, merged into 东城区 in 2010
    assert documents.check_document(DocumentType.RESIDENT_ID, number, None)[1] == date(2012, 1, 1)


@pytest.mark.parametrize("area", ["999999", "110199", "000000"])
def test_an_unknown_area_code_is_its_own_refusal_not_a_birth_date_one(area: str) -> None:
    number = issued(area + "19900101" + "001")
    with pytest.raises(AppError) as refused:
        documents.check_document(DocumentType.RESIDENT_ID, number, None)
    assert refused.value.code == "id_number_area_invalid"
    assert refused.value.detail == {"reason": "area"}
    assert "地址码" in refused.value.spec.zh
    assert "area code" in refused.value.spec.en
    with pytest.raises(Reject) as rejected:
        check_resident_id(number, date(2026, 1, 1))
    assert (rejected.value.spec.code, rejected.value.field) == ("id_number_area_invalid", "id_number")


def test_the_other_parts_of_a_resident_id_number_keep_their_reasons() -> None:
    later = date.today() + timedelta(days=2)
    cases = {
        "11010519900101001": "format",  # 17 characters
        "110105900101001": "format",  # a 15-digit first-generation number
        issued("11010519900230001"): "birth_date",  # 30 February
        issued(f"110105{later:%Y%m%d}001"): "birth_date",  # from the future
        issued("11010518000101001"): "birth_date",  # older than anyone alive
    }
    good = issued("11010519900101001")
    cases[good[:-1] + ("0" if good[-1] != "0" else "1")] = "check_digit"
    for number, reason in cases.items():
        with pytest.raises(AppError) as refused:
            documents.check_document(DocumentType.RESIDENT_ID, number, None)
        assert (refused.value.code, refused.value.detail) == ("id_number_invalid", {"reason": reason}), number


async def test_sign_up_takes_numbers_issued_in_areas_newer_than_the_birth_year(identity: Identity) -> None:
    for first14, what in ISSUED_LATER:
        response = await identity.client.post(
            "/api/v1/accounts", json=sign_up_body(id_number=issued(first14 + serial()))
        )
        assert response.status_code == 201, (what, response.text)


async def test_sign_up_with_an_unknown_area_code_says_the_area_code_is_wrong(identity: Identity) -> None:
    number = issued("999999" + "19900101" + serial())
    zh = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number))
    en = await identity.client.post(
        "/api/v1/accounts", json=sign_up_body(id_number=number), headers={"Accept-Language": "en"}
    )
    assert (zh.status_code, zh.json()["code"], zh.json()["detail"]) == (
        422,
        "id_number_area_invalid",
        {"reason": "area"},
    )
    assert zh.json()["message"] == "身份证号码前6位地址码不正确,请核对"
    assert en.json()["message"] == "The first six digits of the resident ID number are not a known area code"


async def test_an_import_loads_numbers_issued_in_newer_areas_and_names_an_unknown_area(
    identity: Identity, tmp_path: Path
) -> None:
    chongqing = issued("500103" + "19880808" + serial())  # 重庆市渝中区 (1997-), born 1988
    unknown = issued("999999" + "19880808" + serial())
    summary = await load(
        identity,
        tmp_path / "areas.csv",
        [
            ["刘一", "居民身份证", chongqing, "13800138000", "", "500103", "", "", ""],
            ["刘二", "居民身份证", unknown, "13800138000", "", "110105", "", "", ""],
        ],
    )
    assert summary.inserted_rows == 1
    assert await rejected_codes(identity, summary.job_id) == [(3, "id_number_area_invalid", "id_number")]
    [(_, status, born, _)] = await records_of(identity, DocumentType.RESIDENT_ID, chongqing)
    assert (status, born) == ("inactive", date(1988, 8, 8))


# -- 2. a claim agrees with the imported record's birth date (V4) ----------------------------
async def test_a_claim_with_another_birth_date_than_the_imported_one_is_refused(
    identity: Identity, tmp_path: Path
) -> None:
    number = passport()
    summary = await load(
        identity,
        tmp_path / "minor.csv",
        [["王小明", "护照", number, "13800138000", "", "110105", "2015-03-01", "", "10"]],
    )
    assert summary.inserted_rows == 1

    body = sign_up_body(real_name="王小明", document_type="passport", id_number=number, birth_date="1990-03-01")
    refused = await identity.client.post("/api/v1/accounts", json=body)
    in_english = await identity.client.post(
        "/api/v1/accounts", json={**body, "username": body["username"] + "x"}, headers={"Accept-Language": "en"}
    )

    assert (refused.status_code, refused.json()["code"]) == (409, "imported_birth_date_mismatch")
    assert refused.json()["message"] == "使用该证件号码的志愿者数据已经被导入,出生日期与导入数据不一致,请核对"
    assert in_english.json()["message"].startswith("A record with this ID number was imported with another birth date")
    [(_, status, born, _)] = await records_of(identity, DocumentType.PASSPORT, number)
    assert (status, born) == ("inactive", date(2015, 3, 1))  # not claimed
    assert await identity.fetch("SELECT 1 FROM accounts WHERE username = :u", u=body["username"]) == []
    # with the record's birth date the checks run on it: an 11-year-old is too young to register
    too_young = await identity.client.post("/api/v1/accounts", json={**body, "birth_date": "2015-03-01"})
    assert too_young.json()["code"] == "too_young"


async def test_a_claim_with_the_imported_birth_date_activates_the_record(identity: Identity, tmp_path: Path) -> None:
    number = passport()
    await load(
        identity,
        tmp_path / "adult.csv",
        [["Ada Lovelace", "护照", number, "13800138000", "", "110105", "1990/3/1", "", "10"]],
    )
    [(record_id, _, _, _)] = await records_of(identity, DocumentType.PASSPORT, number)
    _, account = await identity.sign_up(
        real_name="Ada Lovelace", document_type="passport", id_number=number, birth_date="1990-03-01"
    )
    assert account["id"] == str(record_id)
    [(_, status, born, _)] = await records_of(identity, DocumentType.PASSPORT, number)
    assert (status, born) == ("active", date(1990, 3, 1))


# -- 3. a Home Return Permit: the letter and 8 permanent digits are the person ------------------
def test_the_forms_of_a_home_return_permit_are_one_blind_index_input_and_a_new_card_keeps_its_own() -> None:
    core = "H12345678"
    inputs = {documents.blind_index_input(DocumentType.HK_MACAO_PERMIT, core + count) for count in ("", "01", "02")}
    assert inputs == {"hk_macao_permit:H12345678"}  # what a new card's number was always indexed as
    assert documents.blind_index_input(DocumentType.HK_MACAO_PERMIT, "M8765432103") == "hk_macao_permit:M87654321"
    # the number as written is what is sealed and masked; other documents are their own key
    assert documents.check_document(DocumentType.HK_MACAO_PERMIT, "h12345678-01", date(1990, 1, 1))[0] == "H1234567801"
    assert documents.blind_index_input(DocumentType.TAIWAN_PERMIT, "1234567801") == "taiwan_permit:1234567801"
    assert documents.blind_index_input(DocumentType.PASSPORT, "E1234567801") == "passport:E1234567801"


def test_a_blind_index_rotation_moves_an_old_form_permit_to_its_holders_index() -> None:
    """A record stored before (indexed on all 11 characters) joins the holder's index when the
    blind-index key rotates: ``python -m identity reindex`` indexes each opened number again."""
    old = DataCipher({"k1": b"\x01" * 32}, "k1", b"\x07" * 32)
    new = DataCipher({"k1": b"\x01" * 32}, "k1", b"\x08" * 32, previous_blind_key=b"\x07" * 32)
    sealed = old.seal(b"H1234567801", context=id_number_context(DocumentType.HK_MACAO_PERMIT))
    stored_index = old.blind_index("hk_macao_permit:H1234567801")  # as it was written before
    row = (
        uuid.uuid4(),
        "hk_macao_permit",
        stored_index,
        sealed.data,
        sealed.key_id,
        "registration",
        "陈大文",
        None,
        None,
    )
    [move] = ReindexRun(new).recompute([row])
    assert move.new == new.blind_index(documents.blind_index_input(DocumentType.HK_MACAO_PERMIT, "H12345678"))


async def test_one_person_cannot_register_with_each_form_of_a_home_return_permit(identity: Identity) -> None:
    core = permit_core()

    def body(number: str) -> dict[str, Any]:
        return sign_up_body(
            real_name="陈大文", document_type="hk_macao_permit", id_number=number, birth_date="1985-05-05"
        )

    first = await identity.client.post("/api/v1/accounts", json=body(core + "01"))
    assert first.status_code == 201, first.text
    assert first.json()["id_number_masked"] == core[:2] + "*******" + "01"  # as written
    for again in (core, core + "02"):
        refused = await identity.client.post("/api/v1/accounts", json=body(again))
        assert (refused.status_code, refused.json()["code"]) == (409, "id_number_already_registered"), again


async def test_an_old_form_permit_stored_before_is_still_found_by_its_whole_number(identity: Identity) -> None:
    """Until the re-index, a record stored under the whole 11-character number's index (as every
    one was before) still refuses a second account for the same number."""
    number = permit_core() + "01"
    body = sign_up_body(real_name="陈大文", document_type="hk_macao_permit", id_number=number, birth_date="1985-05-05")
    first = await identity.client.post("/api/v1/accounts", json=body)
    assert first.status_code == 201, first.text
    stored_before = identity.runtime.cipher.blind_index(f"hk_macao_permit:{number}")
    async with identity.runtime.engine.begin() as conn:
        for table in ("accounts", "volunteer_records"):  # the account has its record's id
            await conn.exec_driver_sql(
                f"UPDATE {table} SET id_blind_index = $1 WHERE id = $2", (stored_before, uuid.UUID(first.json()["id"]))
            )

    again = await identity.client.post("/api/v1/accounts", json={**body, "username": body["username"] + "x"})

    assert (again.status_code, again.json()["code"]) == (409, "id_number_already_registered")


async def test_an_imported_old_form_permit_is_claimed_from_the_current_card(identity: Identity, tmp_path: Path) -> None:
    core = permit_core()
    summary = await load(
        identity,
        tmp_path / "permit.csv",
        [["陈小文", "港澳居民来往内地通行证", core + "01", "13800138000", "", "440305", "1985-05-05", "", "120"]],
    )
    assert summary.inserted_rows == 1
    [(record_id, _, _, masked)] = await records_of(identity, DocumentType.HK_MACAO_PERMIT, core)
    assert masked == core[:2] + "*******" + "01"

    _, account = await identity.sign_up(
        real_name="陈小文", document_type="hk_macao_permit", id_number=core, birth_date="1985-05-05"
    )

    assert account["id"] == str(record_id)
    [(_, status, _, _)] = await records_of(identity, DocumentType.HK_MACAO_PERMIT, core + "02")
    assert status == "active"


# -- 4. a typed birth date is not a resident ID number ------------------------------------------
def sign_up_refusal(document_type: DocumentType, number: str, born: date) -> AppError:
    """What sign-up's document and age checks say of a typed birth date."""
    try:
        checked = documents.check_document(document_type, number, born)[1]
        documents.check_age(checked, date.today(), minimum_age=14)
    except AppError as exc:
        return exc
    raise AssertionError(f"{born} was not refused")


def test_a_typed_birth_date_from_the_future_or_older_than_anyone_alive_is_birth_date_invalid() -> None:
    for born in (date(2090, 1, 1), date.today() + timedelta(days=2), date(1800, 1, 1)):
        for document_type in (DocumentType.PASSPORT, DocumentType.HK_MACAO_PERMIT):
            number = "E12345678" if document_type is DocumentType.PASSPORT else "H12345678"
            refused = sign_up_refusal(document_type, number, born)
            assert (refused.code, refused.detail) == ("birth_date_invalid", {"field": "birth_date"})
    today = date(2026, 1, 1)  # the caller's day (sign-up: China's)
    assert documents.check_document(DocumentType.PASSPORT, "E12345678", today, today)[1] == today
    with pytest.raises(AppError):
        documents.check_document(DocumentType.PASSPORT, "E12345678", today + timedelta(days=1), today)


async def test_sign_up_with_a_passport_born_in_the_future_is_told_the_birth_date_is_wrong(identity: Identity) -> None:
    body = sign_up_body(real_name="Anna Lee", document_type="passport", id_number=passport(), birth_date="2090-01-01")
    zh = await identity.client.post("/api/v1/accounts", json=body)
    en = await identity.client.post("/api/v1/accounts", json=body, headers={"Accept-Language": "en"})
    assert (zh.status_code, zh.json()["code"], zh.json()["detail"]) == (
        422,
        "birth_date_invalid",
        {"field": "birth_date"},
    )
    assert zh.json()["message"].startswith("出生日期不正确")
    assert en.json()["message"].startswith("The birth date is not valid")
    # a resident ID number's own birth date in the future is still the number's fault
    future = issued(f"110105{local_today(identity.clock).year + 1}0101" + serial())
    refused = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=future))
    assert (refused.json()["code"], refused.json()["detail"]) == ("id_number_invalid", {"reason": "birth_date"})


async def test_an_imported_passport_born_in_the_future_is_rejected_for_its_birth_date(
    identity: Identity, tmp_path: Path
) -> None:
    tomorrow = (local_today(identity.clock) + timedelta(days=1)).isoformat()
    summary = await load(
        identity,
        tmp_path / "future.csv",
        [
            ["Anna Lee", "护照", passport(), "13800138000", "", "110105", tomorrow, "", ""],
            ["Anna Lee", "护照", passport(), "13800138000", "", "110105", "1990-13-01", "", ""],
        ],
    )
    assert summary.inserted_rows == 0
    assert await rejected_codes(identity, summary.job_id) == [
        (2, "birth_date_invalid", "birth_date"),
        (3, "birth_date_invalid", "birth_date"),
    ]


async def test_the_sign_up_route_lists_its_new_refusals(identity: Identity) -> None:
    spec = (await identity.client.get("/openapi.json")).json()
    responses = spec["paths"]["/api/v1/accounts"]["post"]["responses"]
    described = " ".join(r.get("description", "") for r in responses.values())
    for code in ("id_number_area_invalid", "birth_date_invalid", "imported_birth_date_mismatch"):
        assert f"`{code}`" in described, code


# -- 5. a minority name's middle dot, however typed --------------------------------------------
@pytest.mark.parametrize(
    "typed",
    [
        "阿依古丽•买买提",  # U+2022 bullet
        "阿依古丽・买买提",  # U+30FB katakana middle dot
        "阿依古丽‧买买提",  # U+2027 hyphenation point
        "阿依古丽．买买提",  # U+FF0E full-width full stop
        "阿依古丽･买买提",  # U+FF65 half-width katakana middle dot
        "阿依古丽.买买提",  # a plain full stop
        "阿依古丽 · 买买提",  # spaced
    ],
)
def test_the_middle_dot_of_a_name_is_one_separator_however_typed(typed: str) -> None:
    assert documents.same_name("阿依古丽·买买提", typed)


def test_names_still_differ_by_their_characters_and_the_dot_is_not_dropped() -> None:
    assert not documents.same_name("阿依古丽·买买提", "阿依古丽·买买")
    assert not documents.same_name("阿依古丽·买买提", "阿依古丽买买提")
    assert not documents.same_name("张三", "张四")


async def test_an_imported_minority_name_is_claimed_and_found_with_another_middle_dot(
    identity: Identity, tmp_path: Path
) -> None:
    number = resident_id(birth=date(1988, 6, 6), region="650102")
    summary = await load(
        identity,
        tmp_path / "name.csv",
        [["阿依古丽·买买提", "居民身份证", number, "13800138000", "", "650102", "", "", ""]],
    )
    assert summary.inserted_rows == 1

    _, account = await identity.sign_up(real_name="阿依古丽•买买提", id_number=number, region_code="650102")

    [(record_id, status, _, _)] = await records_of(identity, DocumentType.RESIDENT_ID, number)
    assert (account["id"], status) == (str(record_id), "active")
    # a team admin's lookup (T7) compares names the same way
    found = await identity.client.post(
        "/api/v1/volunteer-lookups",
        json={"id_number": number, "real_name": "阿依古丽・买买提"},
        headers=await identity.team_admin(),
    )
    assert found.status_code == 200, found.text
    assert found.json()["volunteer_id"] == account["id"]
