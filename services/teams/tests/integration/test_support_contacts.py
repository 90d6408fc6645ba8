"""X2: the support contacts are the deployment's settings (TEAMS_SUPPORT_CONTACTS), shown by the API
to anyone, in the language asked for; a region's visitors see their own province's line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from teams.bootstrap import warn_of_missing_contacts
from teams.config import TeamsSettings
from teams.support import SCOPES

CONTACTS: dict[str, Any] = {
    "national": {"phones": ["010-12345671", "010-12345672", "400-800-1234"]},
    "data_import": {"phones": ["010-87654321"], "emails": ["data-import@volunteer.example.cn"]},
    "provincial": {
        "330000": {"phones": ["0571-88886666"], "emails": ["zj@volunteer.example.cn"]},
        "110000": {"phones": ["010-66668888"], "working_hours": "工作日 9:00-17:00"},
        # configured without a way to reach it: not shown
        "440000": {"working_hours": "工作日 8:30-17:30"},
    },
    "working_hours": "工作日 8:30-17:30",
    "working_hours_en": "Working days, 8:30-17:30",
}


async def test_the_configured_lines_are_shown_to_anyone_national_first_with_what_each_answers(
    start_teams: Any,
) -> None:
    async with start_teams(support_contacts=CONTACTS) as teams:
        response = await teams.client.get("/api/v1/support-contacts")

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "public, max-age=300"
    lines = response.json()["lines"]
    assert [(line["kind"], line["region_code"]) for line in lines] == [
        ("national", None),
        ("data_import", None),
        ("provincial", "110000"),
        ("provincial", "330000"),
    ]
    national, data_import, beijing, zhejiang = lines
    assert national["phones"] == CONTACTS["national"]["phones"]
    assert national["emails"] == []
    assert national["scope"] == SCOPES["national"]["zh"]
    assert "密码" in national["scope"]
    assert data_import["emails"] == ["data-import@volunteer.example.cn"]
    assert "不回答志愿者个人问题" in zhejiang["scope"]
    assert (zhejiang["region_name"], zhejiang["working_hours"]) == ("浙江省", "工作日 8:30-17:30")
    assert (beijing["region_name"], beijing["working_hours"]) == ("北京市", "工作日 9:00-17:00")
    # FAQ O3: the browsers the system recommends, with the sentence a help page shows
    assert response.json()["browsers"] == {
        "recommended": ["Google Chrome", "Mozilla Firefox"],
        "advice": "建议使用 Google Chrome(谷歌)或 Mozilla Firefox(火狐)浏览器访问本系统。",
    }


async def test_english_is_given_when_asked_for_and_a_line_s_own_hours_win(start_teams: Any) -> None:
    async with start_teams(support_contacts=CONTACTS) as teams:
        response = await teams.client.get("/api/v1/support-contacts", headers={"Accept-Language": "en-GB,en;q=0.9"})

    lines = {line["region_code"] or line["kind"]: line for line in response.json()["lines"]}
    assert response.headers["vary"] == "Accept-Language"
    assert response.headers["content-language"] == "en"
    assert lines["national"]["scope"] == SCOPES["national"]["en"]
    assert lines["national"]["working_hours"] == "Working days, 8:30-17:30"
    # Beijing's own hours, given in Chinese only, rather than the general hours in English
    assert lines["110000"]["working_hours"] == "工作日 9:00-17:00"
    assert response.json()["browsers"]["advice"] == "We recommend Google Chrome or Mozilla Firefox for this system."


async def test_a_region_sees_the_national_lines_and_its_own_province_only(start_teams: Any) -> None:
    cases = {"330106": "330000", "330106002": "330000", "330000": "330000", "110105": "110000", "440300": None}
    found: dict[str, list[tuple[str, str | None]]] = {}
    async with start_teams(support_contacts=CONTACTS) as teams:
        for region_code in cases:
            response = await teams.client.get("/api/v1/support-contacts", params={"region_code": region_code})
            assert response.status_code == 200, response.text
            found[region_code] = [(line["kind"], line["region_code"]) for line in response.json()["lines"]]

    national: list[tuple[str, str | None]] = [("national", None), ("data_import", None)]
    assert found == {
        region_code: national + ([("provincial", province)] if province else [])
        for region_code, province in cases.items()
    }


async def test_an_unknown_or_malformed_region_is_refused_with_a_code(teams: Any) -> None:
    unknown = await teams.client.get("/api/v1/support-contacts", params={"region_code": "999999"})
    malformed = await teams.client.get("/api/v1/support-contacts", params={"region_code": "33x106"})

    assert (unknown.status_code, unknown.json()["code"]) == (404, "region_not_found")
    assert (malformed.status_code, malformed.json()["code"]) == (422, "validation_failed")


async def test_no_line_is_shown_that_the_deployment_did_not_configure(teams: Any) -> None:
    response = await teams.client.get("/api/v1/support-contacts")

    assert response.status_code == 200
    # no line configured; the browser advice is the system's own
    assert response.json()["lines"] == []
    assert response.json()["browsers"]["recommended"] == ["Google Chrome", "Mozilla Firefox"]


def test_the_setting_is_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMS_SUPPORT_CONTACTS", json.dumps(CONTACTS, ensure_ascii=False))

    settings = TeamsSettings()

    assert settings.support_contacts.national.phones == CONTACTS["national"]["phones"]
    assert sorted(settings.support_contacts.provincial) == ["110000", "330000", "440000"]


@pytest.mark.parametrize(
    ("contacts", "named"),
    [
        ({"provincial": {"330100": {"phones": ["0571-1234567"]}}}, "330100"),  # a city, not a province
        ({"provincial": {"990000": {"phones": ["0571-1234567"]}}}, "990000"),
        ({"national": {"phones": ["call us"]}}, "phones"),
        ({"national": {"emails": ["not-an-address"]}}, "emails"),
        ({"national": {"phone": ["010-12345671"]}}, "phone"),  # a misspelt field is not ignored
        ({"hotline": {"phones": ["010-12345671"]}}, "hotline"),
    ],
)
def test_a_wrong_setting_stops_the_service_from_starting_and_says_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, contacts: dict[str, Any], named: str
) -> None:
    monkeypatch.setenv("TEAMS_SUPPORT_CONTACTS", json.dumps(contacts))

    with pytest.raises(ValidationError) as refused:
        TeamsSettings()

    assert "support_contacts" in str(refused.value)
    assert named in str(refused.value)


def test_contacts_the_deployment_did_not_give_are_said_at_start_up() -> None:
    with capture_logs() as bare:
        warn_of_missing_contacts(TeamsSettings())
    with capture_logs() as unreachable:  # a line without a phone or an address is not shown
        warn_of_missing_contacts(TeamsSettings(support_contacts={"provincial": {"440000": {"working_hours": "8:30"}}}))
    authority = {"330000": {"name": "浙江省民政厅", "phone": "0571-87052000"}}
    with capture_logs() as configured:
        warn_of_missing_contacts(TeamsSettings(support_contacts=CONTACTS, authority_contacts=authority))

    assert [(e["event"], e["setting"]) for e in bare] == [
        ("authority_contacts_missing", "TEAMS_AUTHORITY_CONTACTS"),
        ("support_contacts_missing", "TEAMS_SUPPORT_CONTACTS"),
    ]
    assert configured == []
    assert "support_contacts_missing" in [e["event"] for e in unreachable]
