"""Regions, root liaison teams, liaison authorisation and registering a team (T1–T4)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import text
from stdnum.cn import uscc

from shared.testing import eventually, lock_waiters


def credit_code(department: str, category: str, org: str) -> str:
    body = f"{department}{category}330106{org}"
    return body + uscc.calc_check_digit(body)


async def test_regions_can_be_browsed_from_provinces_to_townships(teams: Any) -> None:
    provinces = (await teams.client.get("/api/v1/regions")).json()
    assert {"code": "330000", "name": "浙江省", "level": "province", "parent_code": None} in provinces
    zhejiang = (await teams.client.get("/api/v1/regions/330000")).json()
    assert any(c["code"] == "330100" and c["name"] == "杭州市" for c in zhejiang["children"])
    hangzhou = (await teams.client.get("/api/v1/regions/330100")).json()
    assert any(c["code"] == "330106" and c["level"] == "county" for c in hangzhou["children"])
    xihu = (await teams.client.get("/api/v1/regions/330106")).json()
    townships = xihu["children"]
    assert townships
    assert all(len(t["code"]) == 9 and t["level"] == "township" for t in townships)
    assert any(t["name"].endswith("街道") for t in townships)
    missing = await teams.client.get("/api/v1/regions/999999", headers={"Accept-Language": "en"})
    assert missing.status_code == 404
    assert missing.json()["code"] == "region_not_found"
    assert missing.json()["message"] == "No such administrative region"


async def test_only_a_verified_volunteer_registers_a_team_and_becomes_its_first_admin(teams: Any) -> None:
    [liaison_admin, applicant] = await teams.volunteers(2)
    city = await teams.root_team("330100", liaison_admin)
    stranger = teams.national_admin().__class__(uuid.uuid4())  # an account identity never verified
    refused = await teams.register(stranger, teams.registration("330106", city["id"]))
    assert refused.status_code == 403
    assert refused.json()["code"] == "volunteer_not_verified"
    assert refused.json()["message"] == "只有通过实名认证的志愿者才能进行此操作"

    body = teams.registration("330106", city["id"])
    response = await teams.register(applicant, body)
    assert response.status_code == 201, response.text
    team = response.json()
    assert team["status"] == "pending"
    assert team["level"] == "county"
    assert team["join_mode"] == "reject_anyone"
    assert team["contact"] == teams.contact()
    [registered] = await teams.events("team.registered", team["id"])
    assert registered["applicant_account_id"] == str(applicant.account_id)
    assert registered["reviewer_account_ids"] == [str(liaison_admin.account_id)]
    mine = (await teams.client.get("/api/v1/me/teams", headers=teams.auth(applicant))).json()
    assert [(t["team_id"], t["is_admin"]) for t in mine] == [(team["id"], True)]
    await eventually(lambda: teams.published("team.registered", uuid.UUID(team["id"])), timeout=30)


async def test_company_name_is_refused_with_the_team_form_to_use(teams: Any) -> None:
    [admin, applicant] = await teams.volunteers(2)
    city = await teams.root_team("330100", admin)
    response = await teams.register(applicant, teams.registration("330106", city["id"], name="杭州某某科技有限公司"))
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "team_name_not_allowed"
    assert "杭州某某科技有限公司志愿服务队" in body["message"]


async def test_team_names_are_unique_within_a_region(teams: Any) -> None:
    [admin, first, second] = await teams.volunteers(3)
    city = await teams.root_team("330100", admin)
    body = teams.registration("330106", city["id"])
    assert (await teams.register(first, body)).status_code == 201
    again = await teams.register(second, body)
    assert again.status_code == 409
    assert again.json()["code"] == "team_name_taken"
    # the same name in another district of the city is a different team
    elsewhere = await teams.register(second, {**body, "region_code": "330105"})
    assert elsewhere.status_code == 201, elsewhere.text


async def test_social_organisation_gives_a_valid_credit_code_and_authority(teams: Any) -> None:
    [applicant] = await teams.volunteers(1)
    org = uuid.uuid4().hex[:9].upper()
    bad = credit_code("5", "1", org)
    bad = bad[:-1] + ("0" if bad[-1] != "0" else "1")
    refused = await teams.register(
        applicant,
        teams.registration("330106", kind="social_group", uscc=bad, registration_authority_region="330106"),
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "uscc_invalid"
    missing = await teams.register(applicant, teams.registration("330106", kind="foundation"))
    assert missing.status_code == 422
    assert missing.json()["code"] == "uscc_required"
    company = await teams.register(
        applicant,
        teams.registration(
            "330106", kind="social_group", uscc=credit_code("9", "1", org), registration_authority_region="330106"
        ),
    )
    assert company.json()["code"] == "uscc_not_civil_affairs"
    good = credit_code("5", "1", org)
    accepted = await teams.register(
        applicant,
        teams.registration("330106", kind="social_group", uscc=good, registration_authority_region="330106"),
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["liaison_team_id"] is None  # reviewed by its registration authority
    twice = await teams.register(
        applicant,
        teams.registration("330106", kind="social_group", uscc=good, registration_authority_region="330106"),
    )
    assert twice.status_code == 409
    assert twice.json()["code"] == "uscc_taken"


async def test_the_authority_that_reviews_is_the_one_that_issued_the_credit_code(teams: Any) -> None:
    """T5: a Hangzhou Xihu code with a Beijing authority would have Beijing's admins review it."""
    [applicant] = await teams.volunteers(1)
    beijing = await teams.register(
        applicant,
        teams.registration(
            "330106",
            kind="social_group",
            uscc=credit_code("5", "1", uuid.uuid4().hex[:9].upper()),
            registration_authority_region="110105",
        ),
    )
    assert (beijing.status_code, beijing.json()["code"]) == (422, "uscc_authority_mismatch")
    assert beijing.json()["detail"] == {"issued_in": "330106", "authority_region": "110105"}
    registered = await teams.events("team.registered")
    assert str(applicant.account_id) not in [e["applicant_account_id"] for e in registered]


async def test_a_name_with_invisible_characters_is_the_visible_name(teams: Any) -> None:
    [admin, first, second] = await teams.volunteers(3)
    city = await teams.root_team("330100", admin)
    name = f"阳光{uuid.uuid4().hex[:4]}志愿服务队"
    assert (await teams.register(first, teams.registration("330106", city["id"], name=name))).status_code == 201
    look_alike = await teams.register(
        second, teams.registration("330106", city["id"], name=f"{name[:2]}\u200b{name[2:]}\u2060")
    )
    assert (look_alike.status_code, look_alike.json()["code"]) == (409, "team_name_taken")
    blank = await teams.register(second, teams.registration("330106", city["id"], name="\u200b\u3164志愿服务队"))
    assert (blank.status_code, blank.json()["code"]) == (422, "team_name_form_required")


async def test_other_groups_must_choose_a_liaison(teams: Any) -> None:
    [applicant] = await teams.volunteers(1)
    response = await teams.register(applicant, teams.registration("330106"))
    assert response.status_code == 422
    assert response.json()["code"] == "liaison_required"
    assert response.json()["detail"]["liaison_region_code"] == "330100"


async def test_liaison_refusals_say_which_rule_failed(teams: Any) -> None:
    [admin, applicant] = await teams.volunteers(2)
    ningbo = await teams.root_team("330200", admin)
    zhejiang = await teams.root_team("330000", admin)
    hangzhou_unauthorised = await teams.root_team("330100", admin, authorised=False)
    xicheng = await teams.root_team("330102", admin)  # a county of Hangzhou
    cases = [
        ("330106", ningbo["id"], "liaison_cross_city", "不能跨地市选择联络团体,请选择本地市的联络团体"),
        ("330106", zhejiang["id"], "liaison_cross_level", "不能跨级选择联络团体,请选择所在地区上一级的联络团体"),
        ("330106", hangzhou_unauthorised["id"], "liaison_not_authorised", None),
        ("330106", str(uuid.uuid4()), "liaison_not_found", None),
    ]
    township = (await teams.client.get("/api/v1/regions/330106")).json()["children"][0]["code"]
    cases.append((township, xicheng["id"], "liaison_outside_region", None))
    for region, liaison, code, message in cases:
        response = await teams.register(applicant, teams.registration(region, liaison))
        assert response.status_code == 422, (code, response.text)
        assert response.json()["code"] == code
        if message:
            assert response.json()["message"] == message


async def test_liaison_picker_lists_only_authorised_teams_one_level_up_in_the_city(teams: Any) -> None:
    [admin] = await teams.volunteers(1)
    valid = await teams.root_team("330100", admin)
    unauthorised = await teams.root_team("330100", admin, authorised=False)
    other_city = await teams.root_team("330200", admin)
    province = await teams.root_team("330000", admin)
    response = await teams.client.get("/api/v1/liaison-candidates", params={"region_code": "330106"})
    assert response.status_code == 200
    body = response.json()
    assert body["liaison_region_code"] == "330100"
    ids = {c["id"] for c in body["items"]}
    assert valid["id"] in ids
    assert not ids & {unauthorised["id"], other_city["id"], province["id"]}
    assert all(c["region_code"] == "330100" for c in body["items"])


async def test_regional_admin_authorises_and_withdraws_liaison_rights_in_their_region_only(teams: Any) -> None:
    [admin, applicant] = await teams.volunteers(2)
    hangzhou_admin = await teams.region_admin("330100")
    ningbo_admin = await teams.region_admin("330200")
    team = await teams.root_team("330100", admin, authorised=False)
    path = f"/api/v1/teams/{team['id']}/liaison-authorisation"

    outside = await teams.client.put(path, headers=teams.auth(ningbo_admin))
    assert outside.status_code == 403
    assert outside.json()["code"] == "not_region_admin"
    volunteer = await teams.client.put(path, headers=teams.auth(applicant))
    assert volunteer.status_code == 403

    granted = await teams.client.put(path, headers=teams.auth(hangzhou_admin))
    assert granted.status_code == 200
    assert granted.json()["liaison_authorised"] is True
    assert (await teams.register(applicant, teams.registration("330106", team["id"]))).status_code == 201

    withdrawn = await teams.client.delete(path, headers=teams.auth(hangzhou_admin))
    assert withdrawn.json()["liaison_authorised"] is False
    refused = await teams.register(applicant, teams.registration("330106", team["id"]))
    assert refused.json()["code"] == "liaison_not_authorised"
    [authorised] = await teams.events("team.liaison_authorised", team["id"])
    assert authorised["by_account_id"] == str(hangzhou_admin.account_id)
    assert len(await teams.events("team.liaison_withdrawn", team["id"])) == 1


async def test_a_registration_waits_for_a_withdrawal_of_its_liaison_in_progress(teams: Any) -> None:
    """T4: a withdrawal not yet committed holds the liaison's row; a registration naming that liaison
    waits for it and is then refused, instead of being taken under the liaison as it was a moment
    before (the withdrawal saw no registration to stop it, the registration no withdrawal)."""
    [admin, applicant] = await teams.volunteers(2)
    liaison = await teams.root_team("330100", admin)
    async with teams.runtime.engine.connect() as withdrawal:
        await withdrawal.execute(
            text("UPDATE teams SET liaison_authorised = false WHERE id = :id"), {"id": liaison["id"]}
        )
        registering = asyncio.ensure_future(teams.register(applicant, teams.registration("330106", liaison["id"])))

        async def waiting_or_done() -> bool:
            return registering.done() or bool(await lock_waiters(teams.runtime.engine))

        await eventually(waiting_or_done)
        await withdrawal.commit()
    refused = await registering
    assert (refused.status_code, refused.json().get("code")) == (422, "liaison_not_authorised")


async def test_root_teams_are_created_by_admins_of_the_region_only(teams: Any) -> None:
    [volunteer] = await teams.volunteers(1)
    ningbo_admin = await teams.region_admin("330200")
    body = {"name": "杭州市志愿服务联合会", "region_code": "330100", "contact": teams.contact()}
    outside = await teams.client.post("/api/v1/root-teams", json=body, headers=teams.auth(ningbo_admin))
    assert outside.status_code == 403
    assert outside.json()["code"] == "not_region_admin"
    plain = await teams.client.post("/api/v1/root-teams", json=body, headers=teams.auth(volunteer))
    assert plain.status_code == 403
    assert plain.json()["code"] == "forbidden"
    inside = await teams.client.post(
        "/api/v1/root-teams", json={**body, "region_code": "330203"}, headers=teams.auth(ningbo_admin)
    )
    assert inside.status_code == 201, inside.text
    assert inside.json()["is_root"]
    assert inside.json()["status"] == "approved"
    [approved] = await teams.events("team.approved", inside.json()["id"])
    assert approved["reviewed_by_account_id"] == str(ningbo_admin.account_id)
    # nobody applied for it: notifications tells nobody "your application was approved"
    assert approved["root_team"] is True
    assert await teams.events("team.liaison_authorised", inside.json()["id"])


async def test_unknown_fields_and_bad_input_are_refused_with_codes(teams: Any) -> None:
    [applicant] = await teams.volunteers(1)
    response = await teams.register(applicant, {**teams.registration("330106"), "surprise": 1})
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
    bad_email = teams.registration("330106", contact={**teams.contact(), "email": "not-an-address"})
    assert (await teams.register(applicant, bad_email)).json()["code"] == "validation_failed"
    nul = await teams.register(applicant, teams.registration("330106", name="阳光\x00志愿服务队"))
    assert nul.status_code == 422
    assert nul.json()["code"] == "validation_failed"
    unknown_region = await teams.register(applicant, teams.registration("339999"))
    assert unknown_region.status_code == 422
    assert unknown_region.json()["code"] == "region_invalid"


async def test_names_in_an_equivalent_team_form_register_and_bare_institution_names_do_not(teams: Any) -> None:
    [admin, applicant] = await teams.volunteers(2)
    city = await teams.root_team("330100", admin)
    tag = uuid.uuid4().hex[:4]
    for name in (f"西湖{tag}大学青年志愿者服务总队", f"西湖区{tag}义工联合会", f"西湖区{tag}蓝天救援队"):
        response = await teams.register(applicant, teams.registration("330106", city["id"], name=name))
        assert response.status_code == 201, (name, response.text)
        assert response.json()["name"] == name
    root = await teams.client.post(
        "/api/v1/root-teams",
        json={"name": f"深圳市{tag}义工联合会", "region_code": "440300", "contact": teams.contact("sz")},
        headers=teams.auth(teams.national_admin()),
    )
    assert root.status_code == 201, root.text
    for name, refusal in ((f"西湖{tag}大学", "team_name_not_allowed"), ("义工联合会", "team_name_form_required")):
        refused = await teams.register(applicant, teams.registration("330106", city["id"], name=name))
        assert (refused.status_code, refused.json()["code"]) == (422, refusal)
        assert "XXX志愿服务队" in refused.json()["message"]


async def test_names_that_differ_only_in_spaces_width_or_case_are_one_name_in_a_region(teams: Any) -> None:
    [admin, first, second, third, fourth] = await teams.volunteers(5)
    city = await teams.root_team("330100", admin)
    ningbo = await teams.root_team("330200", admin)
    tag = uuid.uuid4().hex[:4].upper()
    name = f"西湖阳光{tag}F3志愿服务队"
    assert (await teams.register(first, teams.registration("330106", city["id"], name=name))).status_code == 201
    for who, twin in ((second, f"西湖 阳光{tag}F3志愿服务队"), (third, f"西湖阳光{tag.lower()}ｆ3志愿服务队")):
        again = await teams.register(who, teams.registration("330106", city["id"], name=twin))
        assert (again.status_code, again.json()["code"]) == (409, "team_name_taken"), twin
    elsewhere = await teams.register(fourth, teams.registration("330203", ningbo["id"], name=name.lower()))
    assert elsewhere.status_code == 201, elsewhere.text  # unique within a region only
