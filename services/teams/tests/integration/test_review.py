"""T5: review by the liaison team or the registration authority; reminders from day 4 at most daily;
reviewer contact and a single escalation from day 7. Time moves on the injected clock."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from stdnum.cn import uscc

from shared.clock import CHINA_TZ
from shared.contracts.identity import AccountRolesChanged
from shared.testing import eventually
from teams.models import RegionAdmin


async def pending_team(teams: Any) -> tuple[dict[str, Any], Any, Any, dict[str, Any]]:
    """A team waiting for its liaison team's review: (team, applicant, liaison admin, liaison team)."""
    [liaison_admin, applicant] = await teams.volunteers(2)
    liaison = await teams.root_team("330100", liaison_admin)
    response = await teams.register(applicant, teams.registration("330106", liaison["id"]))
    assert response.status_code == 201, response.text
    return response.json(), applicant, liaison_admin, liaison


async def decide(teams: Any, team_id: str, who: Any, outcome: str, reason: str | None = None) -> Any:
    body: dict[str, Any] = {"outcome": outcome}
    if reason is not None:
        body["reason"] = reason
    return await teams.client.post(f"/api/v1/teams/{team_id}/review/decision", json=body, headers=teams.auth(who))


async def remind(teams: Any, team_id: str, who: Any, lang: str = "zh") -> Any:
    headers = {**teams.auth(who), "Accept-Language": lang}
    return await teams.client.post(f"/api/v1/teams/{team_id}/review/reminders", headers=headers)


async def test_liaison_team_admin_approves_and_the_applicant_becomes_admin_member(teams: Any) -> None:
    team, applicant, liaison_admin, _ = await pending_team(teams)
    [stranger] = await teams.volunteers(1)
    refused = await decide(teams, team["id"], stranger, "approved")
    assert refused.status_code == 404  # a team under review is not shown to strangers
    assert refused.json()["code"] == "team_not_found"
    waiting = (await teams.client.get("/api/v1/reviews", headers=teams.auth(liaison_admin))).json()["items"]
    assert [t["id"] for t in waiting] == [team["id"]]
    own = await decide(teams, team["id"], applicant, "approved")
    assert own.status_code == 403
    assert own.json()["code"] == "not_reviewer"

    approved = await decide(teams, team["id"], liaison_admin, "approved")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    [event] = await teams.events("team.approved", team["id"])
    assert event["applicant_account_id"] == str(applicant.account_id)
    assert event["reviewed_by_account_id"] == str(liaison_admin.account_id)
    assert event["root_team"] is False  # a real application: its applicant is told
    assert [e["account_id"] for e in await teams.events("team.member_joined", team["id"])] == [
        str(applicant.account_id)
    ]
    assert len(await teams.events("team.admin_appointed", team["id"])) == 1
    twice = await decide(teams, team["id"], liaison_admin, "rejected", "重复")
    assert twice.status_code == 409
    assert twice.json()["code"] == "team_already_reviewed"
    await eventually(lambda: teams.published("team.approved", uuid.UUID(team["id"])), timeout=30)


async def test_rejection_needs_a_reason_and_frees_the_name(teams: Any) -> None:
    team, applicant, liaison_admin, liaison = await pending_team(teams)
    no_reason = await decide(teams, team["id"], liaison_admin, "rejected")
    assert no_reason.status_code == 422
    assert no_reason.json()["code"] == "rejection_reason_required"
    rejected = await decide(teams, team["id"], liaison_admin, "rejected", "材料不全,请补充团队章程")
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    [event] = await teams.events("team.rejected", team["id"])
    assert event["reason"] == "材料不全,请补充团队章程"
    status = (await teams.client.get(f"/api/v1/teams/{team['id']}/review", headers=teams.auth(applicant))).json()
    assert status["status"] == "rejected"
    assert status["reason"] == "材料不全,请补充团队章程"
    assert status["can_remind"] is False
    again = await teams.register(applicant, teams.registration("330106", liaison["id"], name=team["name"]))
    assert again.status_code == 201, again.text


async def test_a_rejected_registration_stays_as_it_was_and_says_it_was_rejected(teams: Any) -> None:
    """Under review the applicant may still set the team's contact and join mode; once rejected
    the team changes no more, and every refusal says it was rejected (not "not yet approved")."""
    team, applicant, liaison_admin, _ = await pending_team(teams)
    path = f"/api/v1/teams/{team['id']}"
    while_pending = await teams.client.patch(path, json={"join_mode": "approval"}, headers=teams.auth(applicant))
    assert while_pending.status_code == 200, while_pending.text
    assert (await decide(teams, team["id"], liaison_admin, "rejected", "材料不全")).status_code == 200
    [volunteer] = await teams.volunteers(1)
    attempts = {
        "settings": teams.client.patch(path, json={"join_mode": "anyone"}, headers=teams.auth(applicant)),
        "leave": teams.client.delete(f"{path}/members/me", headers=teams.auth(applicant)),
        "invite": teams.client.post(
            f"{path}/invitations", json={"account_id": str(volunteer.account_id)}, headers=teams.auth(applicant)
        ),
        "join": teams.client.post(f"{path}/join-requests", json={}, headers=teams.auth(liaison_admin)),
    }
    for what, attempt in attempts.items():
        refused = await attempt
        assert (refused.status_code, refused.json()["code"]) == (409, "team_rejected"), what
    assert refused.json()["message"].startswith("该志愿团体的注册申请未通过审核")
    hidden = await teams.client.post(f"{path}/join-requests", json={}, headers=teams.auth(volunteer))
    assert (hidden.status_code, hidden.json()["code"]) == (404, "team_not_found")  # as GET hides it
    async with teams.runtime.session_factory() as session:
        join_mode = await session.scalar(text("SELECT join_mode FROM teams WHERE id = :id"), {"id": team["id"]})
    assert join_mode == "approval"


async def register_social_group(teams: Any, applicant: Any, region: str) -> Any:
    """A social group registered in ``region`` with that region's civil-affairs bureau as authority."""
    body = f"51{region}{uuid.uuid4().hex[:9].upper()}"
    return await teams.register(
        applicant,
        teams.registration(
            region, kind="social_group", uscc=body + uscc.calc_check_digit(body), registration_authority_region=region
        ),
    )


async def test_social_organisation_is_reviewed_by_its_registration_authority(teams: Any) -> None:
    [applicant] = await teams.volunteers(1)
    authority_admin = await teams.region_admin("330106")
    other_admin = await teams.region_admin("330200")
    response = await register_social_group(teams, applicant, "330106")
    assert response.status_code == 201, response.text
    team = response.json()
    [registered] = await teams.events("team.registered", team["id"])
    assert registered["reviewer_account_ids"] == [str(authority_admin.account_id)]
    listed = (await teams.client.get("/api/v1/reviews", headers=teams.auth(authority_admin))).json()["items"]
    assert team["id"] in [t["id"] for t in listed]
    outside = await decide(teams, team["id"], other_admin, "approved")
    assert outside.status_code == 404  # an admin of another region is not shown it
    assert outside.json()["code"] == "team_not_found"
    teams.clock.advance(days=7)
    await teams.runtime.sweep_overdue_reviews()
    [overdue] = await teams.events("team.review_overdue", team["id"])
    assert overdue["registration_authority_region"] == "330106"
    assert overdue["liaison_team_name"] is None
    path = f"/api/v1/teams/{team['id']}/review"
    chinese = (await teams.client.get(path, headers=teams.auth(applicant))).json()
    assert chinese["reviewer"]["name"] == "西湖区民政部门"
    english = await teams.client.get(path, headers={**teams.auth(applicant), "Accept-Language": "en"})
    assert english.json()["reviewer"]["name"] == "Civil affairs bureau of 西湖区"
    approved = await decide(teams, team["id"], authority_admin, "approved")
    assert approved.status_code == 200, approved.text


async def test_reviewers_see_the_credit_code_the_authority_and_who_applied(teams: Any) -> None:
    """A civil-affairs reviewer approved a social organisation without any view showing the credit
    code they check, or who applied (T1, T5)."""
    [applicant] = await teams.volunteers(1)
    authority_admin = await teams.region_admin("330106")
    response = await register_social_group(teams, applicant, "330106")
    team = response.json()
    code = team["uscc"]
    assert len(code) == 18
    async with teams.runtime.session_factory() as session:
        shown_as = (
            await session.execute(
                text("SELECT masked_name, volunteer_number FROM volunteers WHERE account_id = :a"),
                {"a": applicant.account_id},
            )
        ).one()
    expected = {
        "account_id": str(applicant.account_id),
        "masked_name": shown_as.masked_name,
        "volunteer_number": shown_as.volunteer_number,
    }
    listed = (await teams.client.get("/api/v1/reviews", headers=teams.auth(authority_admin))).json()["items"]
    [waiting] = [t for t in listed if t["id"] == team["id"]]
    viewed = (await teams.client.get(f"/api/v1/teams/{team['id']}", headers=teams.auth(authority_admin))).json()
    for view in (waiting, viewed):
        assert (view["uscc"], view["registration_authority_region"]) == (code, "330106")
        assert view["applicant"] == expected
    assert (await decide(teams, team["id"], authority_admin, "approved")).status_code == 200
    public = (await teams.client.get(f"/api/v1/teams/{team['id']}")).json()
    assert (public["uscc"], public["applicant"]) == (code, None)  # decided: who applied is the team's business


async def test_remind_review_is_refused_before_day_four_then_allowed_once_a_day(teams: Any) -> None:
    team, applicant, liaison_admin, _ = await pending_team(teams)
    teams.clock.advance(days=3)
    early = await remind(teams, team["id"], applicant)
    assert early.status_code == 409
    assert early.json()["code"] == "reminder_too_early"
    assert "可提醒时间" in early.json()["message"]
    submitted = datetime.fromisoformat(team["submitted_at"])
    assert datetime.fromisoformat(early.json()["detail"]["available_at"]) == submitted + timedelta(days=4)
    early_en = await remind(teams, team["id"], applicant, lang="en")
    assert "from " in early_en.json()["message"]

    teams.clock.advance(days=1)
    first = await remind(teams, team["id"], applicant)
    assert first.status_code == 202, first.text
    [event] = await teams.events("team.review_reminder_requested", team["id"])
    assert event["reviewer_account_ids"] == [str(liaison_admin.account_id)]
    assert event["days_waiting"] == 4

    teams.clock.advance(hours=20)
    same_day = await remind(teams, team["id"], applicant)
    assert same_day.status_code == 429
    assert same_day.json()["code"] == "reminder_already_sent_today"
    assert "next_available_at" in same_day.json()["detail"]

    teams.clock.advance(hours=4)
    assert (await remind(teams, team["id"], applicant)).status_code == 202
    assert len(await teams.events("team.review_reminder_requested", team["id"])) == 2

    [stranger] = await teams.volunteers(1)
    not_applicant = await remind(teams, team["id"], stranger)
    assert not_applicant.status_code == 404  # a team under review is not shown to strangers
    by_reviewer = await remind(teams, team["id"], liaison_admin)
    assert by_reviewer.status_code == 403
    assert by_reviewer.json()["code"] == "not_applicant"


async def test_applicant_sees_reviewer_contact_only_from_day_seven(teams: Any) -> None:
    team, applicant, _, liaison = await pending_team(teams)
    path = f"/api/v1/teams/{team['id']}/review"
    teams.clock.advance(days=3)
    day3 = (await teams.client.get(path, headers=teams.auth(applicant))).json()
    assert day3["can_remind"] is False
    assert day3["reviewer"]["kind"] == "liaison_team"
    assert day3["reviewer"]["name"] == liaison["name"]
    assert day3["reviewer"]["contact"] is None
    teams.clock.advance(days=1)
    day4 = (await teams.client.get(path, headers=teams.auth(applicant))).json()
    assert day4["can_remind"] is True
    assert day4["reviewer"]["contact"] is None
    teams.clock.advance(days=3)
    day7 = (await teams.client.get(path, headers=teams.auth(applicant))).json()
    assert day7["overdue"] is True
    assert day7["days_waiting"] == 7
    assert day7["reviewer"]["contact"] == liaison["contact"]


async def test_overdue_review_is_escalated_once_to_reviewers_and_region_admins(teams: Any) -> None:
    region_admin = await teams.region_admin("330106")
    liaison_region_admin = await teams.region_admin("330100")
    team, _, liaison_admin, liaison = await pending_team(teams)
    approved_team, _, approved_liaison_admin, _ = await pending_team(teams)
    assert (await decide(teams, approved_team["id"], approved_liaison_admin, "approved")).status_code == 200

    teams.clock.advance(days=6, hours=23)
    await teams.runtime.sweep_overdue_reviews()
    assert await teams.events("team.review_overdue", team["id"]) == []

    teams.clock.advance(hours=1)
    await teams.runtime.sweep_overdue_reviews()
    [event] = await teams.events("team.review_overdue", team["id"])
    assert event["reviewer_account_ids"] == [str(liaison_admin.account_id)]
    assert str(region_admin.account_id) in event["region_admin_account_ids"]
    # and the liaison team's regional admin (Hangzhou's), who authorised it to take sub-teams
    assert str(liaison_region_admin.account_id) in event["region_admin_account_ids"]
    # the escalation email names who reviews: here the liaison team
    assert event["liaison_team_id"] == liaison["id"]
    assert event["liaison_team_name"] == liaison["name"]
    assert event["registration_authority_region"] is None

    teams.clock.advance(days=1)  # day 8: no second escalation
    await teams.runtime.sweep_overdue_reviews()
    assert len(await teams.events("team.review_overdue", team["id"])) == 1
    assert await teams.events("team.review_overdue", approved_team["id"]) == []


async def test_the_sweep_runs_on_its_own_as_a_background_job(start_teams: Any) -> None:
    async with start_teams(review_sweep_interval_seconds=0.2) as teams:
        team, _, _, _ = await pending_team(teams)
        teams.clock.advance(days=7)
        events = await eventually(lambda: teams.events("team.review_overdue", team["id"]), timeout=30)
        assert len(events) == 1
        history = await eventually(
            lambda: _history_types(teams, team["id"], teams.national_admin()), timeout=30, interval=0.2
        )
        assert "team.registered" in history


async def _history_types(teams: Any, team_id: str, who: Any) -> list[str] | None:
    response = await teams.client.get(f"/api/v1/teams/{team_id}/history", headers=teams.auth(who))
    assert response.status_code == 200, response.text
    types = [item["event_type"] for item in response.json()["items"]]
    return types if "team.review_overdue" in types else None


async def test_authority_contact_from_settings_is_shown_from_day_seven(start_teams: Any) -> None:
    contacts = {
        "330100": {
            "name": "杭州市民政局",
            "person": "社会组织管理处",
            "phone": "0571-87000000",
            "email": "shzz@example.gov.cn",
            "address": "杭州市解放东路18号",
            "working_hours": "工作日 9:00-17:00",
        }
    }
    async with start_teams(authority_contacts=contacts) as teams:
        [applicant] = await teams.volunteers(1)
        body = f"53330106{uuid.uuid4().hex[:9].upper()}"
        response = await teams.register(
            applicant,
            teams.registration(
                "330106",
                kind="foundation",
                uscc=body + uscc.calc_check_digit(body),
                registration_authority_region="330106",
            ),
        )
        assert response.status_code == 201, response.text
        path = f"/api/v1/teams/{response.json()['id']}/review"
        before = (await teams.client.get(path, headers=teams.auth(applicant))).json()["reviewer"]
        assert before["kind"] == "registration_authority"
        assert before["name"] == "杭州市民政局"
        assert before["contact"] is None
        teams.clock.advance(timedelta(days=7))
        after = (await teams.client.get(path, headers=teams.auth(applicant))).json()["reviewer"]
        assert after["contact"]["phone"] == "0571-87000000"
        assert after["working_hours"] == "工作日 9:00-17:00"


async def test_admin_whose_role_is_withdrawn_is_no_longer_escalated_to(teams: Any) -> None:
    former = await teams.region_admin("330106")
    await teams.identity.produce(AccountRolesChanged(account_id=former.account_id, roles=["volunteer"]))
    current = await teams.region_admin("330106")

    async def forgotten() -> bool:
        # kept as an account whose roles changed (bounding its older tokens), with no region left
        async with teams.runtime.session_factory() as session:
            row = await session.get(RegionAdmin, former.account_id)
            return row is not None and row.region_code is None and not row.is_national

    await eventually(forgotten, timeout=30, interval=0.1)
    team, _, _, _ = await pending_team(teams)
    teams.clock.advance(days=7)
    await teams.runtime.sweep_overdue_reviews()
    [event] = await teams.events("team.review_overdue", team["id"])
    assert str(current.account_id) in event["region_admin_account_ids"]
    assert str(former.account_id) not in event["region_admin_account_ids"]


# -- the applicant never reviews; a registration always has a reviewer ------------------------
async def verified_region_admin(teams: Any, region: str) -> Any:
    """A verified volunteer who is also a regional admin of ``region`` (both known to teams)."""
    [volunteer] = await teams.volunteers(1)
    return await teams.region_admin(region, volunteer)


async def waiting_ids(teams: Any, who: Any) -> list[str]:
    response = await teams.client.get("/api/v1/reviews", headers=teams.auth(who))
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]


async def applicant_is_no_reviewer(teams: Any, team: dict[str, Any], applicant: Any, reviewers: list[Any]) -> None:
    """The applicant is refused a decision and does not see the team among those waiting; the
    registration names ``reviewers`` instead."""
    own = await decide(teams, team["id"], applicant, "approved")
    assert own.status_code == 403
    assert own.json()["code"] == "not_reviewer"
    assert team["id"] not in await waiting_ids(teams, applicant)
    [registered] = await teams.events("team.registered", team["id"])
    assert registered["reviewer_account_ids"] == [str(r.account_id) for r in reviewers]


async def test_root_team_admin_cannot_approve_the_sub_team_they_registered_under_it(teams: Any) -> None:
    """The applicant is the liaison's only admin: the liaison region's admins review instead."""
    region_admin = await teams.region_admin("330300")
    [root_admin] = await teams.volunteers(1)
    root = await teams.root_team("330300", root_admin)
    response = await teams.register(root_admin, teams.registration("330302", root["id"]))
    assert response.status_code == 201, response.text
    team = response.json()

    await applicant_is_no_reviewer(teams, team, root_admin, reviewers=[region_admin])

    teams.clock.advance(days=4)
    assert (await remind(teams, team["id"], root_admin)).status_code == 202
    [reminder] = await teams.events("team.review_reminder_requested", team["id"])
    assert reminder["reviewer_account_ids"] == [str(region_admin.account_id)]
    teams.clock.advance(days=3)
    await teams.runtime.sweep_overdue_reviews()
    [overdue] = await teams.events("team.review_overdue", team["id"])
    assert overdue["reviewer_account_ids"] == [str(region_admin.account_id)]
    assert str(root_admin.account_id) not in overdue["region_admin_account_ids"]

    assert team["id"] in await waiting_ids(teams, region_admin)
    approved = await decide(teams, team["id"], region_admin, "approved")
    assert approved.status_code == 200, approved.text


async def test_regional_admin_cannot_approve_the_social_group_they_registered(teams: Any) -> None:
    applicant = await verified_region_admin(teams, "330402")
    city_admin = await teams.region_admin("330400")
    response = await register_social_group(teams, applicant, "330402")
    assert response.status_code == 201, response.text
    team = response.json()

    await applicant_is_no_reviewer(teams, team, applicant, reviewers=[city_admin])
    teams.clock.advance(days=7)
    await teams.runtime.sweep_overdue_reviews()
    [overdue] = await teams.events("team.review_overdue", team["id"])
    assert str(applicant.account_id) not in overdue["reviewer_account_ids"] + overdue["region_admin_account_ids"]

    assert team["id"] in await waiting_ids(teams, city_admin)
    approved = await decide(teams, team["id"], city_admin, "approved")
    assert approved.status_code == 200, approved.text


async def test_sub_team_of_a_root_team_without_admins_is_reviewed_by_the_liaison_regions_admins(teams: Any) -> None:
    region_admin = await teams.region_admin("330500")
    elsewhere = await teams.region_admin("330300")
    root = await teams.root_team("330500")  # a federation created without an admin
    offered = (await teams.client.get("/api/v1/liaison-candidates", params={"region_code": "330502"})).json()
    assert root["id"] in [t["id"] for t in offered["items"]]  # still offered: its region's admins review
    [applicant] = await teams.volunteers(1)
    response = await teams.register(applicant, teams.registration("330502", root["id"]))
    assert response.status_code == 201, response.text
    team = response.json()

    [registered] = await teams.events("team.registered", team["id"])
    assert registered["reviewer_account_ids"] == [str(region_admin.account_id)]
    assert team["id"] in await waiting_ids(teams, region_admin)
    assert team["id"] not in await waiting_ids(teams, elsewhere)
    outside = await decide(teams, team["id"], elsewhere, "approved")
    assert outside.json()["code"] == "team_not_found"  # not shown to an admin of another region

    teams.clock.advance(days=4)
    assert (await remind(teams, team["id"], applicant)).status_code == 202
    [reminder] = await teams.events("team.review_reminder_requested", team["id"])
    assert reminder["reviewer_account_ids"] == [str(region_admin.account_id)]
    teams.clock.advance(days=3)
    await teams.runtime.sweep_overdue_reviews()
    [overdue] = await teams.events("team.review_overdue", team["id"])
    assert overdue["reviewer_account_ids"] == [str(region_admin.account_id)]
    status = (await teams.client.get(f"/api/v1/teams/{team['id']}/review", headers=teams.auth(applicant))).json()
    assert (status["reviewer"]["kind"], status["reviewer"]["name"]) == ("region_admins", "湖州市地区管理员")
    english = await teams.client.get(
        f"/api/v1/teams/{team['id']}/review", headers={**teams.auth(applicant), "Accept-Language": "en"}
    )
    assert english.json()["reviewer"]["name"] == "Region admins of 湖州市"

    approved = await decide(teams, team["id"], region_admin, "approved")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"


async def test_national_admins_review_where_no_regional_admin_is_known(teams: Any) -> None:
    national = teams.national_admin()
    await teams.identity.produce(AccountRolesChanged(account_id=national.account_id, roles=list(national.roles)))

    async def arrived() -> bool:
        async with teams.runtime.session_factory() as session:
            return await session.get(RegionAdmin, national.account_id) is not None

    await eventually(arrived, timeout=30, interval=0.1)
    root = await teams.root_team("340100")
    [applicant] = await teams.volunteers(1)
    response = await teams.register(applicant, teams.registration("340102", root["id"]))
    assert response.status_code == 201, response.text
    [registered] = await teams.events("team.registered", response.json()["id"])
    assert str(national.account_id) in registered["reviewer_account_ids"]
    assert (await decide(teams, response.json()["id"], national, "approved")).status_code == 200


async def test_region_admins_who_get_the_escalation_can_read_the_review(teams: Any) -> None:
    """The team's region admins see a team under review (and are emailed on day 7): its review
    status is theirs to read too; another region's admin still gets 404."""
    team, _, _, liaison = await pending_team(teams)
    district_admin = await teams.region_admin("330106")
    other_admin = await teams.region_admin("330200")
    path = f"/api/v1/teams/{team['id']}/review"
    teams.clock.advance(days=7)
    seen = await teams.client.get(path, headers=teams.auth(district_admin))
    assert seen.status_code == 200, seen.text
    assert seen.json()["overdue"] is True
    assert seen.json()["reviewer"]["contact"] == liaison["contact"]
    assert (await teams.client.get(f"/api/v1/teams/{team['id']}", headers=teams.auth(other_admin))).status_code == 404
    assert (await teams.client.get(path, headers=teams.auth(other_admin))).status_code == 404


async def test_reminder_refusals_say_their_time_is_beijing_time(teams: Any) -> None:
    """The message gives the time in Beijing time (the detail's timestamp is UTC): it says so."""
    team, applicant, _, _ = await pending_team(teams)
    submitted = datetime.fromisoformat(team["submitted_at"])
    beijing = (submitted + timedelta(days=4)).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")
    early_en = (await remind(teams, team["id"], applicant, lang="en")).json()
    assert early_en["code"] == "reminder_too_early"
    assert early_en["message"].endswith(f"from {beijing} (Beijing time)")
    early_zh = (await remind(teams, team["id"], applicant)).json()
    assert early_zh["message"].endswith(f"可提醒时间:{beijing}(北京时间)")
    teams.clock.advance(days=4)
    assert (await remind(teams, team["id"], applicant)).status_code == 202
    again = (await remind(teams, team["id"], applicant, lang="en")).json()
    assert again["code"] == "reminder_already_sent_today"
    assert again["message"].endswith("(Beijing time)")
    assert (await remind(teams, team["id"], applicant)).json()["message"].endswith("(北京时间)")


async def test_a_team_under_review_is_not_found_by_any_route_for_those_who_may_not_see_it(teams: Any) -> None:
    """GET hides a registration under review from strangers; every other route answers the same
    ``team_not_found`` before any other check, so none of their refusals shows it exists."""
    team, applicant, liaison_admin, _ = await pending_team(teams)
    [stranger] = await teams.volunteers(1)
    other_region_admin = await teams.region_admin("330200")
    base = f"/api/v1/teams/{team['id']}"
    target = str(applicant.account_id)
    calls = {
        "get": ("GET", base, None),
        "join": ("POST", f"{base}/join-requests", {}),
        "leave": ("DELETE", f"{base}/members/me", None),
        "settings": ("PATCH", base, {"join_mode": "anyone"}),
        "members": ("GET", f"{base}/members", None),
        "join requests": ("GET", f"{base}/join-requests", None),
        "invitations": ("GET", f"{base}/invitations", None),
        "invite": ("POST", f"{base}/invitations", {"account_id": target}),
        "remove": ("DELETE", f"{base}/members/{target}", None),
        "make admin": ("PUT", f"{base}/admins/{target}", None),
        "make lead": ("PUT", f"{base}/project-leads/{target}", None),
        "history": ("GET", f"{base}/history", None),
        "review": ("GET", f"{base}/review", None),
        "remind": ("POST", f"{base}/review/reminders", None),
        "decide": ("POST", f"{base}/review/decision", {"outcome": "approved"}),
        "withdraw": ("POST", f"{base}/withdrawal", None),
    }
    for who in (stranger, other_region_admin):
        for what, (method, path, body) in calls.items():
            answer = await teams.client.request(method, path, json=body, headers=teams.auth(who))
            assert (answer.status_code, answer.json()["code"]) == (404, "team_not_found"), what
    first_admin = await teams.client.put(f"{base}/admins/first/{target}", headers=teams.auth(other_region_admin))
    assert (first_admin.status_code, first_admin.json()["code"]) == (404, "team_not_found")
    authorise = await teams.client.put(f"{base}/liaison-authorisation", headers=teams.auth(other_region_admin))
    assert (authorise.status_code, authorise.json()["code"]) == (404, "team_not_found")
    # those who see it get the refusal that applies to them
    joined = await teams.client.post(f"{base}/join-requests", json={}, headers=teams.auth(liaison_admin))
    assert (joined.status_code, joined.json()["code"]) == (409, "team_not_approved")
    left = await teams.client.delete(f"{base}/members/me", headers=teams.auth(applicant))
    assert (left.status_code, left.json()["code"]) == (409, "team_not_approved")
    listed = await teams.client.get(f"{base}/members", headers=teams.auth(liaison_admin))
    assert (listed.status_code, listed.json()["code"]) == (403, "not_team_admin")
    reminded = await teams.client.post(f"{base}/review/reminders", headers=teams.auth(liaison_admin))
    assert (reminded.status_code, reminded.json()["code"]) == (403, "not_applicant")


async def test_the_applicant_withdraws_a_registration_stuck_with_a_withdrawn_liaison_and_registers_again(
    teams: Any,
) -> None:
    """A liaison that lost its right to take sub-teams keeps the registrations made under it; the
    applicant withdraws theirs (the name and review are freed) and registers under another."""
    [admin_a, admin_b, applicant] = await teams.volunteers(3)
    hz_admin = await teams.region_admin("330100")
    a, b = await teams.root_team("330100", admin_a), await teams.root_team("330100", admin_b)
    body = teams.registration("330106", a["id"])
    team = (await teams.register(applicant, body)).json()
    withdrawn = await teams.client.delete(
        f"/api/v1/teams/{a['id']}/liaison-authorisation", headers=teams.auth(hz_admin)
    )
    assert withdrawn.json()["liaison_authorised"] is False
    taken = await teams.register(applicant, {**body, "liaison_team_id": b["id"]})
    assert (taken.status_code, taken.json()["code"]) == (409, "team_name_taken")

    path = f"/api/v1/teams/{team['id']}/withdrawal"
    by_reviewer = await teams.client.post(path, headers=teams.auth(admin_a))
    assert (by_reviewer.status_code, by_reviewer.json()["code"]) == (403, "not_applicant")
    done = await teams.client.post(path, headers=teams.auth(applicant))
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "withdrawn"
    again = await teams.client.post(path, headers=teams.auth(applicant))  # asked twice: as it is
    assert (again.status_code, again.json()["status"]) == (200, "withdrawn")
    assert team["id"] not in await waiting_ids(teams, admin_a)

    moved = await teams.register(applicant, {**body, "liaison_team_id": b["id"]})
    assert moved.status_code == 201, moved.text
    assert moved.json()["name"] == body["name"]
    assert moved.json()["id"] in await waiting_ids(teams, admin_b)

    # the withdrawn registration is a record: it changes no more and nobody decides it
    late = await decide(teams, team["id"], admin_a, "approved")
    assert (late.status_code, late.json()["code"]) == (409, "team_withdrawn")
    teams.clock.advance(days=7)
    reminded = await remind(teams, team["id"], applicant)
    assert (reminded.status_code, reminded.json()["code"]) == (409, "team_withdrawn")
    settings = await teams.client.patch(
        f"/api/v1/teams/{team['id']}", json={"join_mode": "anyone"}, headers=teams.auth(applicant)
    )
    assert (settings.status_code, settings.json()["code"]) == (409, "team_withdrawn")
    await teams.runtime.sweep_overdue_reviews()
    assert await teams.events("team.review_overdue", team["id"]) == []
    assert len(await teams.events("team.review_overdue", moved.json()["id"])) == 1
    mine = (await teams.client.get("/api/v1/me/teams", headers=teams.auth(applicant))).json()
    assert {t["team_id"]: t["status"] for t in mine} == {team["id"]: "withdrawn", moved.json()["id"]: "pending"}
    seen = await teams.client.get(f"/api/v1/teams/{team['id']}", headers=teams.auth(applicant))
    assert seen.json()["status"] == "withdrawn"


async def test_a_decided_registration_cannot_be_withdrawn(teams: Any) -> None:
    team, applicant, liaison_admin, _ = await pending_team(teams)
    assert (await decide(teams, team["id"], liaison_admin, "approved")).status_code == 200
    refused = await teams.client.post(f"/api/v1/teams/{team['id']}/withdrawal", headers=teams.auth(applicant))
    assert (refused.status_code, refused.json()["code"]) == (409, "team_already_reviewed")
    assert refused.json()["detail"]["status"] == "approved"
    other, other_applicant, other_admin, _ = await pending_team(teams)
    assert (await decide(teams, other["id"], other_admin, "rejected", "材料不全")).status_code == 200
    rejected = await teams.client.post(f"/api/v1/teams/{other['id']}/withdrawal", headers=teams.auth(other_applicant))
    assert (rejected.status_code, rejected.json()["code"]) == (409, "team_already_reviewed")
