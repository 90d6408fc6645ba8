"""Simultaneous requests: one name per region, one reminder a day, one decision, one last admin."""

from __future__ import annotations

import asyncio
from typing import Any


async def test_simultaneous_registrations_of_one_name_leave_exactly_one_team(teams: Any) -> None:
    [liaison_admin, *applicants] = await teams.volunteers(7)
    city = await teams.root_team("330100", liaison_admin)
    body = teams.registration("330106", city["id"])
    responses = await asyncio.gather(*(teams.register(a, body) for a in applicants))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(applicants) - 1)
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"team_name_taken"}


async def test_double_clicked_reminder_sends_one(teams: Any) -> None:
    [liaison_admin, applicant] = await teams.volunteers(2)
    city = await teams.root_team("330100", liaison_admin)
    team = (await teams.register(applicant, teams.registration("330106", city["id"]))).json()
    teams.clock.advance(days=4)
    path = f"/api/v1/teams/{team['id']}/review/reminders"
    responses = await asyncio.gather(*(teams.client.post(path, headers=teams.auth(applicant)) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [202, 429, 429, 429, 429]
    assert len(await teams.events("team.review_reminder_requested", team["id"])) == 1


async def test_two_admins_stepping_down_at_once_leave_one_admin(teams: Any) -> None:
    [first, second] = await teams.volunteers(2)
    team = await teams.approved_team(first, join_mode="anyone")
    base = f"/api/v1/teams/{team['id']}"
    assert (await teams.client.post(f"{base}/join-requests", json={}, headers=teams.auth(second))).status_code == 201
    assert (await teams.client.put(f"{base}/admins/{second.account_id}", headers=teams.auth(first))).status_code == 200
    responses = await asyncio.gather(
        teams.client.delete(f"{base}/admins/{first.account_id}", headers=teams.auth(first)),
        teams.client.delete(f"{base}/admins/{second.account_id}", headers=teams.auth(second)),
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    remaining = first if responses[1].status_code == 200 else second  # the one whose step-down was refused
    members = (await teams.client.get(f"{base}/members", headers=teams.auth(remaining))).json()["items"]
    assert [m["account_id"] for m in members if m["is_admin"]] == [str(remaining.account_id)]


async def test_approved_teams_are_listed_by_region_page_by_page(teams: Any) -> None:
    [admin] = await teams.volunteers(1)
    created = [await teams.root_team("330782", admin) for _ in range(3)]  # Yiwu, a county-level city
    first = (await teams.client.get("/api/v1/teams", params={"region_code": "330782", "limit": 2})).json()
    assert len(first["items"]) == 2
    rest = (
        await teams.client.get(
            "/api/v1/teams", params={"region_code": "330782", "limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    listed = [t["id"] for t in first["items"] + rest["items"]]
    assert set(listed) >= {t["id"] for t in created}
    assert all(t["region_code"] == "330782" for t in first["items"] + rest["items"])
