"""Sign-up and profile: V1 (validation), V2 (already registered), V3 (duplicates), V4 (imported
records), V7 (permanence), V8 (profile), and the one-account-per-number race."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from identity.testing import Identity, StartIdentity, add_imported_record
from shared.clock import CHINA_TZ, local_today
from shared.testing import RAW_LOGS, resident_id, sign_up_body

FULL_ID = re.compile(r"\d{17}[\dX]")


def years_ago(identity: Identity, years: int, days: int = 0) -> date:
    today = local_today(identity.clock)
    return today.replace(year=today.year - years) - timedelta(days=days)


# -- V1 validation --------------------------------------------------------------------------
async def test_sign_up_shows_the_id_number_only_masked(identity: Identity) -> None:
    body, account = await identity.sign_up()
    number = body["id_number"]
    assert account["id_number_masked"] == number[:6] + "********" + number[-4:]
    assert number not in str(account)
    [row] = await identity.fetch(
        "SELECT id_ciphertext, id_key_id FROM volunteer_records WHERE id = :i", i=uuid.UUID(account["id"])
    )
    assert number.encode() not in row[0]  # encrypted at rest
    assert row[1] == identity.runtime.cipher.current_key_id


async def test_sign_up_starts_verification_with_expected_dates_in_working_days(start_identity: StartIdentity) -> None:
    # A provider that never answers in the test: the status stays pending.
    async with start_identity(verification_delay_seconds=3600) as identity:
        _, account = await identity.sign_up()
    verification = account["verification"]
    assert verification["status"] == "pending"
    expected_from = date.fromisoformat(verification["expected_from"])
    expected_by = date.fromisoformat(verification["expected_by"])
    assert local_today(identity.clock) < expected_from < expected_by
    assert (expected_by - expected_from).days >= 2


async def test_resident_id_with_a_wrong_check_digit_is_refused(identity: Identity) -> None:
    good = resident_id()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=bad))
    assert response.status_code == 422
    assert response.json()["code"] == "id_number_invalid"
    assert response.json()["message"] == "身份证号码不正确,请核对校验位和出生日期"


async def test_resident_id_with_an_impossible_birth_date_is_refused_in_english_on_request(identity: Identity) -> None:
    from stdnum.cn import ric

    body = "110105" + "19900230" + "123"
    number = body + str(ric.calc_check_digit(body + "0"))
    response = await identity.client.post(
        "/api/v1/accounts", json=sign_up_body(id_number=number), headers={"Accept-Language": "en"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "id_number_invalid"
    assert response.json()["message"] == "The resident ID number is not valid"


async def test_volunteer_younger_than_the_minimum_age_is_refused(identity: Identity) -> None:
    born = years_ago(identity, 14, days=-1)  # 14 tomorrow
    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=resident_id(birth=born)))
    assert response.status_code == 422
    assert response.json()["code"] == "too_young"
    assert response.json()["message"] == "未满14周岁不能注册为志愿者"


async def test_minimum_age_is_a_setting(start_identity: StartIdentity) -> None:
    async with start_identity(minimum_age=16) as identity:
        guardian = {
            "name": "王五",
            "relation": "父亲",
            "phone": "13900000000",
            "consented_at": "2026-01-01T08:00:00+08:00",
        }
        born = years_ago(identity, 15)
        response = await identity.client.post(
            "/api/v1/accounts", json=sign_up_body(id_number=resident_id(birth=born), guardian=guardian)
        )
    assert response.status_code == 422
    assert response.json()["message"] == "未满16周岁不能注册为志愿者"


async def test_minor_needs_a_guardians_consent_which_is_recorded(identity: Identity) -> None:
    number = resident_id(birth=years_ago(identity, 16))
    refused = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number))
    assert refused.status_code == 422
    assert refused.json()["code"] == "guardian_consent_required"
    guardian = {"name": "王五", "relation": "母亲", "phone": "13900000000", "consented_at": "2026-01-01T08:00:00+08:00"}
    _, account = await identity.sign_up(id_number=number, guardian=guardian)
    assert account["guardian_consent_recorded"] is True
    [row] = await identity.fetch(
        "SELECT guardian_name, guardian_relation, guardian_phone, guardian_consented_at FROM accounts WHERE id = :i",
        i=uuid.UUID(account["id"]),
    )
    assert row[:3] == ("王五", "母亲", "13900000000")
    assert row[3] is not None


async def test_eighteen_year_old_needs_no_guardian(identity: Identity) -> None:
    _, account = await identity.sign_up(id_number=resident_id(birth=years_ago(identity, 18)))
    assert account["guardian_consent_recorded"] is False


async def test_passport_needs_a_birth_date_and_a_plausible_number(identity: Identity) -> None:
    no_birth = await identity.client.post(
        "/api/v1/accounts", json=sign_up_body(document_type="passport", id_number="E12345678")
    )
    assert no_birth.json()["code"] == "birth_date_required"
    bad_number = await identity.client.post(
        "/api/v1/accounts",
        json=sign_up_body(document_type="passport", id_number="E1?345", birth_date="1990-01-01"),
    )
    assert bad_number.json()["code"] == "document_number_invalid"
    passport = f"E{uuid.uuid4().int % 10**8:08d}"
    _, account = await identity.sign_up(document_type="passport", id_number=passport, birth_date="1990-01-01")
    assert account["document_type"] == "passport"
    assert account["id_number_masked"] == passport[:2] + "*" * (len(passport) - 4) + passport[-2:]


async def test_a_birth_date_older_than_anyone_alive_is_refused(identity: Identity) -> None:
    passport = f"E{uuid.uuid4().int % 10**8:08d}"
    for birth_date in ("0001-01-01", years_ago(identity, 151).isoformat()):
        refused = await identity.client.post(
            "/api/v1/accounts",
            json=sign_up_body(document_type="passport", id_number=passport, birth_date=birth_date),
        )
        assert (refused.status_code, refused.json()["code"]) == (422, "birth_date_invalid"), birth_date
        assert refused.json()["detail"] == {"field": "birth_date"}
    oldest = years_ago(identity, 150).isoformat()
    _, account = await identity.sign_up(document_type="passport", id_number=passport, birth_date=oldest)
    assert account["document_type"] == "passport"


async def test_unknown_region_mobile_and_email_are_refused_with_their_codes(identity: Identity) -> None:
    cases = {
        "region_invalid": {"region_code": "999999"},
        "mobile_invalid": {"mobile": "12345"},
        "email_invalid": {"email": "no-at-sign"},
    }
    for code, override in cases.items():
        response = await identity.client.post("/api/v1/accounts", json=sign_up_body(**override))
        assert response.status_code == 422, response.text
        assert response.json()["code"] == code


async def test_unknown_fields_are_refused(identity: Identity) -> None:
    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(is_admin=True))
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"


# -- V2 already registered ------------------------------------------------------------------
async def test_already_registered_id_number_is_refused_with_the_way_out(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=body["id_number"]))
    assert response.status_code == 409
    result = response.json()
    assert result["code"] == "id_number_already_registered"
    assert result["message"] == "使用该证件号码的志愿者已经注册过"
    assert "管理员" in result["detail"]["way_out"]["zh"]
    assert "reset" in result["detail"]["way_out"]["en"]


async def test_thirty_two_concurrent_sign_ups_with_one_id_number_give_one_account(identity: Identity) -> None:
    number = resident_id()
    bodies = [sign_up_body(id_number=number) for _ in range(32)]
    responses = await asyncio.gather(*(identity.client.post("/api/v1/accounts", json=b) for b in bodies))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 31
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"id_number_already_registered"}
    masked = number[:6] + "********" + number[-4:]
    rows = await identity.fetch(
        "SELECT count(*) FROM accounts a JOIN volunteer_records r ON r.id = a.record_id WHERE r.id_masked = :m",
        m=masked,
    )
    assert rows[0][0] == 1


# -- V3 duplicate records -------------------------------------------------------------------
async def test_number_held_by_two_records_is_refused_and_queued_for_the_national_admin(identity: Identity) -> None:
    number = resident_id()
    first = await add_imported_record(identity, number, "李四", history={"hours": 12})
    second = await add_imported_record(identity, number, "李四", history={"hours": 3})
    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number, real_name="李四"))
    assert response.status_code == 409
    assert response.json()["code"] == "id_number_conflict"
    assert response.json()["message"] == "身份证件信息验证异常"
    # the way out (FAQ V2): the national service line, where the queued case is cleaned up
    assert "全国服务电话" in response.json()["detail"]["way_out"]["zh"]
    assert "national service line" in response.json()["detail"]["way_out"]["en"]

    admin = identity.national_admin()
    forbidden = await identity.client.get("/api/v1/admin/duplicate-cases", headers=identity.bearer())
    assert forbidden.status_code == 403
    page = (await identity.client.get("/api/v1/admin/duplicate-cases", headers=admin, params={"limit": 200})).json()
    masked = number[:6] + "********" + number[-4:]
    [case] = [c for c in page["items"] if c["id_number_masked"] == masked]
    assert {r["record_id"] for r in case["records"]} == {str(first), str(second)}
    assert all(r["masked_name"] == "李*" for r in case["records"])

    seen = [r["record_id"] for r in case["records"]]
    resolved = await identity.client.post(
        f"/api/v1/admin/duplicate-cases/{case['id']}/resolution",
        json={"keep_record_id": str(first), "record_ids": seen},
        headers=admin,
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    merged = await identity.events("volunteer.merged", first)
    assert [(m["merged_account_id"], m["case_id"]) for m in merged] == [(str(second), case["id"])]
    [history] = await identity.fetch("SELECT history FROM volunteer_records WHERE id = :i", i=first)
    assert history[0]["merged"][0]["hours"] == 3

    again = await identity.client.post(
        f"/api/v1/admin/duplicate-cases/{case['id']}/resolution",
        json={"keep_record_id": str(first), "record_ids": seen},
        headers=admin,
    )
    assert again.json()["code"] == "case_already_resolved"
    # With one live record left, the volunteer can claim it.
    _, account = await identity.sign_up(id_number=number, real_name="李四")
    assert account["id"] == str(first)


async def test_a_second_conflicting_sign_up_opens_no_second_case(identity: Identity) -> None:
    number = resident_id()
    await add_imported_record(identity, number, "赵六")
    await add_imported_record(identity, number, "赵六")
    for _ in range(2):
        response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number))
        assert response.json()["code"] == "id_number_conflict"
    masked = number[:6] + "********" + number[-4:]
    rows = await identity.fetch(
        "SELECT count(*) FROM duplicate_cases WHERE id_masked = :m AND status = 'open'", m=masked
    )
    assert rows[0][0] == 1


# -- V4 imported records --------------------------------------------------------------------
async def test_sign_up_with_the_imported_name_claims_the_record_and_keeps_its_history(identity: Identity) -> None:
    number = resident_id()
    record_id = await add_imported_record(identity, number, "孙七", history={"hours": 40})
    _, account = await identity.sign_up(id_number=number, real_name="孙七")
    assert account["id"] == str(record_id)
    [row] = await identity.fetch("SELECT status, history, claimed_at FROM volunteer_records WHERE id = :i", i=record_id)
    assert row[0] == "active"
    assert row[1] == {"hours": 40}
    assert row[2] is not None


async def test_concurrent_claims_of_one_imported_record_give_one_account(identity: Identity) -> None:
    """Sixteen sign-ups at once with an imported number and its name: one claims the record, the
    others are told the number is registered (not that their username is taken)."""
    number = resident_id()
    record_id = await add_imported_record(identity, number, "周九")
    bodies = [sign_up_body(id_number=number, real_name="周九") for _ in range(16)]
    responses = await asyncio.gather(*(identity.client.post("/api/v1/accounts", json=b) for b in bodies))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 15
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"id_number_already_registered"}
    [winner] = [r.json() for r in responses if r.status_code == 201]
    assert winner["id"] == str(record_id)
    rows = await identity.fetch("SELECT count(*) FROM accounts WHERE record_id = :i", i=record_id)
    assert rows[0][0] == 1


async def test_registration_log_says_claimed_only_when_an_imported_record_was_claimed(identity: Identity) -> None:
    number = resident_id()
    await add_imported_record(identity, number, "郭十")
    _, claimed = await identity.sign_up(id_number=number, real_name="郭十")
    _, fresh = await identity.sign_up()

    def claimed_flags(account_id: str) -> list[bool]:
        lines = [json.loads(line) for line in RAW_LOGS.lines if "account_registered" in line and account_id in line]
        return [line["claimed"] for line in lines]

    assert claimed_flags(claimed["id"]) == [True]
    assert claimed_flags(fresh["id"]) == [False]


async def test_sign_up_with_another_name_than_the_imported_one_is_refused(identity: Identity) -> None:
    number = resident_id()
    await add_imported_record(identity, number, "孙七")
    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=number, real_name="孙八"))
    assert response.status_code == 409
    assert response.json()["code"] == "imported_name_mismatch"
    assert response.json()["message"] == "使用该证件号码的志愿者数据已经被导入,请输入正确的姓名进行注册以激活数据!"


# -- V7 permanence, V8 profile --------------------------------------------------------------
@pytest.mark.parametrize("username", ["zhang san!", "张三/../x", "a@b", "ab"])
async def test_a_username_outside_its_character_set_or_too_short_is_refused(identity: Identity, username: str) -> None:
    refused = await identity.client.post("/api/v1/accounts", json=sign_up_body(username=username))
    assert (refused.status_code, refused.json()["code"]) == (422, "validation_failed")


async def test_username_is_unique_and_can_never_change(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    taken = await identity.client.post("/api/v1/accounts", json=sign_up_body(username=body["username"]))
    assert taken.json()["code"] == "username_taken"
    headers = await identity.headers_for(body)
    rename = await identity.client.patch("/api/v1/accounts/me", json={"username": "another"}, headers=headers)
    assert rename.status_code == 422
    assert (await identity.me(headers))["username"] == body["username"]


async def test_an_account_cannot_be_deleted(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    headers = await identity.headers_for(body)
    response = await identity.client.delete("/api/v1/accounts/me", headers=headers)
    assert response.status_code == 405
    assert (await identity.me(headers))["username"] == body["username"]


async def test_contact_details_change_any_time_but_the_name_is_locked_once_verified(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    headers = await identity.headers_for(body)
    await identity.verification(headers, "verified")
    changed = await identity.client.patch(
        "/api/v1/accounts/me",
        json={"mobile": "13811112222", "email": "new-" + body["email"], "address": "北京市朝阳区"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["mobile"], changed.json()["address"]) == ("13811112222", "北京市朝阳区")
    assert await identity.events("account.contact_changed", changed.json()["id"])
    locked = await identity.client.patch("/api/v1/accounts/me", json={"real_name": "张四"}, headers=headers)
    assert locked.status_code == 409
    assert locked.json()["code"] == "name_locked_after_verification"


async def test_a_volunteer_whose_verification_failed_corrects_the_name_and_is_verified(identity: Identity) -> None:
    body, _ = await identity.sign_up(real_name="张验证失败")
    headers = await identity.headers_for(body)
    failed = await identity.verification(headers, "failed")
    assert failed["verification"]["volunteer_number"] is None
    corrected = await identity.client.patch("/api/v1/accounts/me", json={"real_name": "张三"}, headers=headers)
    assert corrected.status_code == 200, corrected.text
    verified = await identity.verification(headers, "verified")
    assert verified["real_name"] == "张三"
    assert not FULL_ID.search(str(verified))


async def test_control_characters_in_names_are_refused_not_stored(identity: Identity) -> None:
    body = sign_up_body(real_name="张\x00三")
    response = await identity.client.post("/api/v1/accounts", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
    _, account = await identity.sign_up(id_number=body["id_number"])  # nothing was left behind
    assert account["real_name"] == "张三"


async def test_full_width_digits_cannot_register_an_id_number_twice(identity: Identity) -> None:
    body, _ = await identity.sign_up()
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in body["id_number"])
    response = await identity.client.post("/api/v1/accounts", json=sign_up_body(id_number=full_width))
    assert response.json()["code"] == "id_number_already_registered"


async def test_the_database_itself_refuses_to_delete_an_account_or_rename_it(identity: Identity) -> None:
    _, account = await identity.sign_up()
    for statement in (
        "DELETE FROM accounts WHERE id = :i",
        "UPDATE accounts SET username = 'renamed-' || username WHERE id = :i",
    ):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="V7"):
            async with identity.runtime.engine.begin() as conn:
                await conn.execute(text(statement), {"i": uuid.UUID(account["id"])})
    rows = await identity.fetch("SELECT username FROM accounts WHERE id = :i", i=uuid.UUID(account["id"]))
    assert rows[0][0] == account["username"]


async def test_guardian_consent_time_must_carry_a_zone_and_not_lie_in_the_future(identity: Identity) -> None:
    number = resident_id(birth=years_ago(identity, 16))
    guardian = {"name": "王五", "relation": "母亲", "phone": "13900000000"}
    tomorrow = (identity.clock.now() + timedelta(days=1)).isoformat()
    before_birth = datetime.combine(years_ago(identity, 16) - timedelta(days=1), time(12), tzinfo=CHINA_TZ).isoformat()
    for consented_at in ("2999-01-01T08:00:00+08:00", tomorrow, "2026-01-01T08:00:00", before_birth):
        refused = await identity.client.post(
            "/api/v1/accounts", json=sign_up_body(id_number=number, guardian={**guardian, "consented_at": consented_at})
        )
        assert refused.status_code == 422, consented_at
        assert refused.json()["code"] == "guardian_consent_time_invalid"
    assert refused.json()["detail"]["problem"] == "before_birth"
    assert refused.json()["message"] == "监护人同意时间不正确:须带时区,不能晚于当前时间,也不能早于出生日期"
    # a moment UTC cannot hold (the calendar's first hours, east of Greenwich) is refused, not a 500
    edge = await identity.client.post(
        "/api/v1/accounts",
        json=sign_up_body(id_number=number, guardian={**guardian, "consented_at": "0001-01-01T00:00:00+08:00"}),
    )
    assert (edge.status_code, edge.json()["code"]) == (422, "validation_failed")
    just_now = identity.clock.now().isoformat()
    _, account = await identity.sign_up(id_number=number, guardian={**guardian, "consented_at": just_now})
    assert account["guardian_consent_recorded"] is True
    # consent at 01:30 on the birth day in China, written in UTC (the day before there), is on the day
    born = years_ago(identity, 16, days=3)
    on_the_day = datetime.combine(born, time(1, 30), tzinfo=CHINA_TZ).astimezone(UTC).isoformat()
    assert on_the_day.startswith((born - timedelta(days=1)).isoformat())
    _, account = await identity.sign_up(
        id_number=resident_id(birth=born), guardian={**guardian, "consented_at": on_the_day}
    )
    assert account["guardian_consent_recorded"] is True


async def test_a_real_name_with_invisible_formatting_is_refused_and_stays_unchanged(identity: Identity) -> None:
    """A right-to-left override would print 张三 reversed on the card; nothing is stored."""
    refused = await identity.client.post("/api/v1/accounts", json=sign_up_body(real_name="\u202e三张"))
    assert refused.status_code == 422
    assert refused.json()["code"] == "validation_failed"
    assert refused.json()["detail"][0]["loc"] == ["body", "real_name"]
    body, _ = await identity.sign_up(real_name="阿依古丽·买买提")
    headers = await identity.headers_for(body)
    renamed = await identity.client.patch("/api/v1/accounts/me", json={"real_name": "张\u200b三"}, headers=headers)
    assert renamed.status_code == 422
    assert (await identity.me(headers))["real_name"] == "阿依古丽·买买提"
