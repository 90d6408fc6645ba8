"""The access matrix on the full stack, over real HTTP: user B's token on user A's objects is refused
(403 or 404 with a code), a volunteer reaches no admin operation, and a regional admin of Beijing
cannot act on objects in Guangdong.

A's objects are real, built through the services' own APIs and events: A's account (verified by
identity's development provider), a team A registered and a liaison admin approved, A's join request
to another team, an invitation to A, A's published project with A's admitted application and hours,
the emails notifications sent A. The operations come from each service's OpenAPI document: every
operation with an object id in its path is tried, so an endpoint added later is covered (a path
parameter or request body this file does not know fails the test with a message saying what to add).
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from stdnum.cn import uscc

from shared.auth import issue_volunteer_match
from shared.clock import SystemClock, local_today
from shared.testing import eventually, resident_id, sign_up_body

from .stack import SERVICES, OpenStack, Stack, User, created

pytestmark = pytest.mark.slow

METHODS = {"get", "post", "put", "patch", "delete"}
PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
    b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82"
)

#: Operations with an object id in the path that anyone (any verified volunteer) may use on
#: another's object, by design. Each is still called with B's token and must not answer 5xx.
PUBLIC_BY_DESIGN: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/regions/{code}"): "administrative regions are public reference data",
    ("GET", "/api/v1/teams/{team_id}"): "an approved team's page is public (T8: volunteers find teams to join)",
    ("POST", "/api/v1/teams/{team_id}/join-requests"): "any verified volunteer may apply to join a team",
    ("DELETE", "/api/v1/teams/{team_id}/members/me"): "acts on the caller's own membership, never on another's",
    ("POST", "/api/v1/positions/{position_id}/applications"): "any verified volunteer may apply to a position",
}

#: Operations on a project tried on A's draft (a copy of A's published project): a draft is its
#: managers' alone (a published project is public, and only a draft is edited or published).
ON_A_DRAFT = {
    ("GET", "/api/v1/projects/{project_id}"),
    ("PATCH", "/api/v1/projects/{project_id}"),
    ("POST", "/api/v1/projects/{project_id}/publication"),
}

#: Known deviations, each refusing B with exactly this (status, code) instead of 403/404. Neither is a
#: bypass (nothing changes, nothing private is shown) but both should be fixed in projects and the
#: entry removed (a 403/404 passes too):
#: - ``check_extension`` tests "closed?" before "team admin?", so B learns the (public) status first;
#: - signing in/out of a project one is not admitted to answers 409, where the rule is an access rule.
KNOWN_DEVIATIONS: dict[tuple[str, str], tuple[int, str]] = {}

#: Platform-admin operations without ``/admin/`` in their path (national or regional admin,
#: data importer, operators). A volunteer gets 403 on every one of them and on every ``/admin/`` path.
ADMIN_OPERATIONS: set[tuple[str, str]] = {
    ("POST", "/api/v1/root-teams"),
    ("PUT", "/api/v1/teams/{team_id}/liaison-authorisation"),
    ("DELETE", "/api/v1/teams/{team_id}/liaison-authorisation"),
    ("POST", "/api/v1/imports"),
    ("GET", "/api/v1/imports/{job_id}"),
    ("GET", "/api/v1/imports/{job_id}/report"),
    ("GET", "/api/v1/emails"),
    ("GET", "/api/v1/emails/{email_id}"),
    ("POST", "/api/v1/emails/{email_id}/replay"),
}


#: Operations reserved to the national admin (and, for imports, data importers): a regional admin
#: gets 403 on each, above all on granting roles (no way to make oneself national admin).
NATIONAL_ONLY: set[tuple[str, str]] = {
    ("PUT", "/api/v1/admin/accounts/{account_id}/roles"),
    ("POST", "/api/v1/admin/accounts/{account_id}/temporary-passwords"),
    ("GET", "/api/v1/admin/duplicate-cases"),
    ("POST", "/api/v1/admin/duplicate-cases/{case_id}/resolution"),
    ("GET", "/api/v1/admin/audit-entries"),
    ("POST", "/api/v1/imports"),
    ("GET", "/api/v1/imports/{job_id}"),
    ("GET", "/api/v1/imports/{job_id}/report"),
    ("GET", "/api/v1/emails"),
    ("GET", "/api/v1/emails/{email_id}"),
    ("POST", "/api/v1/emails/{email_id}/replay"),
}


def credit_code(region: str) -> str:
    """A valid unified social credit code of a civil-affairs registered social group."""
    body = f"51{region}{uuid.uuid4().hex[:9].upper()}"
    return body + uscc.calc_check_digit(body)


def contact() -> dict[str, str]:
    return {"person": "王老师", "phone": "010-88886666", "email": "team@example.org", "address": "北京市朝阳区1号"}


@dataclass
class World:
    """A's objects (ids as strings) and the people of the matrix."""

    stack: Stack
    a: User
    b: User
    beijing: User
    national: User
    ids: dict[str, str] = field(default_factory=dict)

    def params_for(self, method: str, path: str) -> dict[str, str]:
        """Each path parameter bound to A's object of that kind."""
        names = re.findall(r"\{([^}]+)\}", path)
        values: dict[str, str] = {}
        for name in names:
            if name == "team_id":
                # a join request lives in the team A applied to; everything else in A's own team
                values[name] = self.ids["join_team_id"] if "request_id" in names else self.ids["team_id"]
            elif name == "project_id" and (method, path) in ON_A_DRAFT:
                values[name] = self.ids["draft_project_id"]
            elif name in self.ids:
                values[name] = self.ids[name]
            else:
                raise AssertionError(f"path parameter {{{name}}} of {path}: bind it to one of A's objects in World")
        return values

    def concrete(self, method: str, path: str, overrides: dict[str, str] | None = None) -> str:
        for name, value in {**self.params_for(method, path), **(overrides or {})}.items():
            path = path.replace("{" + name + "}", value)
        return path

    def body_for(self, method: str, path: str) -> dict[str, Any]:
        """Request arguments (json/files/params) that are valid for the operation, so that a refusal
        is the access rule's and not the body's validation."""
        today = local_today(SystemClock())
        ids = self.ids
        bodies: dict[tuple[str, str], dict[str, Any]] = {
            # identity
            ("PUT", "/api/v1/admin/accounts/{account_id}/roles"): {"json": {"roles": ["volunteer", "national_admin"]}},
            ("POST", "/api/v1/admin/accounts/{account_id}/temporary-passwords"): {"json": {"reason": "访问矩阵测试"}},
            ("POST", "/api/v1/admin/duplicate-cases/{case_id}/resolution"): {
                "json": {"keep_record_id": ids["account_id"], "record_ids": [ids["account_id"]]}
            },
            ("POST", "/api/v1/admin/account-searches"): {
                "json": {"username": self.a.username, "reason": "访问矩阵测试"}
            },
            ("POST", "/api/v1/admin/id-card-reviews/{upload_id}/decision"): {"json": {"approved": True}},
            ("POST", "/api/v1/admin/accounts/{account_id}/id-number-disclosures"): {"json": {"reason": "访问矩阵测试"}},
            ("POST", "/api/v1/imports"): {"files": {"file": ("a.csv", import_csv(), "text/csv")}},
            # teams
            ("POST", "/api/v1/root-teams"): {
                "json": {
                    "name": f"越权{uuid.uuid4().hex[:6]}志愿服务联合会",
                    "region_code": "110105",
                    "contact": contact(),
                }
            },
            ("PATCH", "/api/v1/teams/{team_id}"): {"json": {"join_mode": "anyone"}},
            ("POST", "/api/v1/teams/{team_id}/review/decision"): {"json": {"outcome": "approved"}},
            ("POST", "/api/v1/teams/{team_id}/join-requests"): {"json": {}},
            ("POST", "/api/v1/teams/{team_id}/join-requests/{request_id}/decision"): {"json": {"outcome": "approved"}},
            ("POST", "/api/v1/teams/{team_id}/invitations"): {"json": {"account_id": str(self.b.account_id)}},
            # a genuine match token, made for B (an admin elsewhere gets them): B is refused as no admin of
            # A's team before the token is read (tokens themselves: teams' test_found_volunteers)
            ("POST", "/api/v1/teams/{team_id}/members"): {"json": {"match_token": self.match_token_of_b()}},
            # projects
            ("POST", "/api/v1/projects/{project_id}/copies"): {
                "json": {
                    "starts_on": (today + timedelta(days=40)).isoformat(),
                    "ends_on": (today + timedelta(days=50)).isoformat(),
                    "recruit_starts_on": (today + timedelta(days=40)).isoformat(),
                    "recruit_ends_on": (today + timedelta(days=45)).isoformat(),
                }
            },
            ("PATCH", "/api/v1/projects/{project_id}"): {"json": {"title": "越权修改的标题"}},
            ("POST", "/api/v1/projects/{project_id}/positions"): {"json": {"name": "越权岗位", "quota": 99}},
            ("PUT", "/api/v1/positions/{position_id}/quota"): {"json": {"quota": 99}},
            ("PUT", "/api/v1/projects/{project_id}/lead"): {"json": {"lead_account_id": str(self.a.account_id)}},
            ("POST", "/api/v1/projects/{project_id}/extensions"): {
                "json": {"new_end_date": (today + timedelta(days=35)).isoformat()}
            },
            ("POST", "/api/v1/positions/{position_id}/applications"): {"json": {}},
            ("POST", "/api/v1/applications/{application_id}/stage"): {"json": {"stage": "serving"}},
            ("PUT", "/api/v1/applications/{application_id}/team-rating"): {"json": {"score": 1}},
            ("PUT", "/api/v1/applications/{application_id}/volunteer-rating"): {"json": {"score": 1}},
            ("POST", "/api/v1/projects/{project_id}/hours"): {"json": self.hours_row(today)},
            ("POST", "/api/v1/projects/{project_id}/hours/bulk"): {"json": {"rows": [self.hours_row(today)]}},
            ("POST", "/api/v1/hours/{record_id}/corrections"): {"json": {"minutes": 1, "reason": "越权修改"}},
            ("POST", "/api/v1/projects/{project_id}/sign-codes"): {"params": {"kind": "in"}},
            ("POST", "/api/v1/projects/{project_id}/sign-ins"): {"json": {"code": ids["sign_in_code"]}},
            ("POST", "/api/v1/projects/{project_id}/sign-outs"): {"json": {"code": ids["sign_out_code"]}},
        }
        return bodies.get((method, path), {})

    def match_token_of_b(self) -> str:
        signer = self.stack.apps["identity"].state.runtime.signer
        token, _, _ = issue_volunteer_match(signer, self.b.account_id, self.b.account_id)
        return token

    def hours_row(self, today: Any) -> dict[str, Any]:
        return {"application_id": self.ids["application_id"], "service_date": today.isoformat(), "minutes": 600}


def import_csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["姓名", "证件类型", "证件号码", "手机号码", "电子邮箱", "地区代码", "志愿者编号", "服务时长"])
    writer.writerow(["赵六", "居民身份证", "110105199001010000", "13900000000", "", "110105", "", "0"])
    return out.getvalue().encode()


def operations(stack: Stack) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(service, METHOD, path template, operation) of every operation in the four OpenAPI documents."""
    for service in SERVICES:
        for path, item in stack.apps[service].openapi().get("paths", {}).items():
            for method, op in item.items():
                if method in METHODS:
                    yield service, method.upper(), path, op


def code_of(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    body = response.json()
    return body.get("code") if isinstance(body, dict) else None


async def call(
    client: httpx.AsyncClient,
    world: World,
    service: str,
    method: str,
    path: str,
    op: dict[str, Any],
    user: User,
    overrides: dict[str, str] | None = None,
) -> httpx.Response:
    arguments = world.body_for(method, path)
    if "requestBody" in op and not ({"json", "files"} & arguments.keys()):
        raise AssertionError(f"{method} {path} takes a body: add a valid one to World.body_for")
    url = world.stack.url(service, world.concrete(method, path, overrides))
    return await client.request(method, url, headers=user.headers, **arguments)


# -- building A's objects ------------------------------------------------------------------------
async def log_in(client: httpx.AsyncClient, stack: Stack, username: str, password: str, role: str) -> User:
    response = await client.post(
        stack.url("identity", "/api/v1/tokens"), json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    me = await client.get(
        stack.url("identity", "/api/v1/accounts/me"),
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
    )
    return User(role, uuid.UUID(me.json()["id"]), response.json()["access_token"], username, password)


async def build_world(stack: Stack, client: httpx.AsyncClient) -> World:
    users = stack.users
    world = World(stack, users["volunteer"], users["other_volunteer"], users["regional_admin"], users["national_admin"])
    a, beijing, national, ids = world.a, world.beijing, world.national, world.ids

    def teams(path: str) -> str:
        return stack.url("teams", path)

    def projects(path: str) -> str:
        return stack.url("projects", path)

    ids["account_id"] = str(a.account_id)
    ids["code"] = "110000"

    # Teams: Beijing's root liaison team (admin: the Beijing regional admin, a verified volunteer);
    # A registers a team under it, the liaison admin approves it.
    liaison = await created(
        client,
        "POST",
        teams("/api/v1/root-teams"),
        national,
        json={
            "name": f"北京{uuid.uuid4().hex[:6]}志愿服务联合会",
            "region_code": "110000",
            "contact": contact(),
            "admin_account_id": str(beijing.account_id),
        },
    )
    registration = {
        "name": f"阳光{uuid.uuid4().hex[:6]}志愿服务队",
        "region_code": "110105",
        "kind": "other",
        "liaison_team_id": liaison["id"],
        "contact": contact(),
    }
    team = await created(client, "POST", teams("/api/v1/teams"), a, json=registration)
    ids["team_id"] = team["id"]
    approved = await client.post(
        teams(f"/api/v1/teams/{team['id']}/review/decision"), json={"outcome": "approved"}, headers=beijing.headers
    )
    assert approved.status_code == 200, approved.text

    # A's join request to another team (join on approval), and an invitation to A from the liaison team
    other = await created(
        client,
        "POST",
        teams("/api/v1/root-teams"),
        national,
        json={
            "name": f"海淀{uuid.uuid4().hex[:6]}志愿服务联合会",
            "region_code": "110108",
            "contact": contact(),
            "admin_account_id": str(beijing.account_id),
        },
    )
    mode = await client.patch(
        teams(f"/api/v1/teams/{other['id']}"), json={"join_mode": "approval"}, headers=beijing.headers
    )
    assert mode.status_code == 200, mode.text
    joined = await created(client, "POST", teams(f"/api/v1/teams/{other['id']}/join-requests"), a, json={})
    assert joined["status"] == "pending", joined
    ids["join_team_id"], ids["request_id"] = other["id"], joined["request_id"]
    invitation = await created(
        client,
        "POST",
        teams(f"/api/v1/teams/{liaison['id']}/invitations"),
        beijing,
        json={"account_id": str(a.account_id)},
    )
    ids["invitation_id"] = invitation["id"]

    # Projects: A's project in A's team, published, A admitted by its automatic position, A's hours
    today = local_today(SystemClock())
    project = await created(
        client,
        "POST",
        projects("/api/v1/projects"),
        a,
        json={
            "team_id": team["id"],
            "title": "社区敬老服务",
            "description": "陪伴社区老人",
            "category": "敬老",
            "region_code": "110105",
            "address": "北京市朝阳区",
            "contact": {"name": "王队长", "phone": "010-87654321"},
            "starts_on": today.isoformat(),
            "ends_on": (today + timedelta(days=30)).isoformat(),
            "recruit_starts_on": today.isoformat(),
            "recruit_ends_on": (today + timedelta(days=10)).isoformat(),
            "positions": [{"name": "陪伴员", "quota": 5, "admission_mode": "auto"}],
        },
    )
    ids["project_id"], ids["position_id"] = project["id"], project["positions"][0]["id"]
    published = await client.post(projects(f"/api/v1/projects/{project['id']}/publication"), headers=a.headers)
    assert published.status_code == 200, published.text
    draft = await created(
        client,
        "POST",
        projects(f"/api/v1/projects/{project['id']}/copies"),
        a,
        json={
            "starts_on": (today + timedelta(days=40)).isoformat(),
            "ends_on": (today + timedelta(days=50)).isoformat(),
            "recruit_starts_on": (today + timedelta(days=40)).isoformat(),
            "recruit_ends_on": (today + timedelta(days=45)).isoformat(),
        },
    )
    ids["draft_project_id"] = draft["id"]
    application = await created(
        client, "POST", projects(f"/api/v1/positions/{ids['position_id']}/applications"), a, json={}
    )
    assert application["stage"] == "admitted", application
    ids["application_id"] = application["id"]
    hours = await created(
        client,
        "POST",
        projects(f"/api/v1/projects/{project['id']}/hours"),
        a,
        json={"application_id": application["id"], "service_date": today.isoformat(), "minutes": 90},
    )
    ids["record_id"] = hours["id"]
    for kind in ("in", "out"):
        code = await created(
            client,
            "POST",
            projects(f"/api/v1/projects/{project['id']}/sign-codes"),
            a,
            status=200,
            params={"kind": kind},
        )
        ids[f"sign_{kind}_code"] = code["code"]

    # Notifications: an email sent to A (welcome, admission…), found by the operators' view
    async def emails_of_a() -> str | None:
        response = await client.get(
            stack.url("notifications", "/api/v1/emails"),
            params={"account_id": str(a.account_id)},
            headers=national.headers,
        )
        items = response.json()["items"] if response.status_code == 200 else []
        return str(items[0]["id"]) if items else None

    ids["email_id"] = await eventually(emails_of_a, timeout=60, interval=0.5)

    # Identity: an import job (national admin), a duplicate case id no case has (refused by role
    # before any lookup), and a Guangdong volunteer whose verification failed with an ID card upload
    job = await created(
        client,
        "POST",
        stack.url("identity", "/api/v1/imports"),
        national,
        status=202,
        files={"file": ("legacy.csv", import_csv(), "text/csv")},
    )
    ids["job_id"] = job["id"]
    ids["case_id"] = str(uuid.uuid4())
    ids["upload_id"], ids["guangdong_account_id"], ids["guangdong_username"] = await guangdong_upload(stack, client)

    # Guangdong teams: a root team (no admin) and a social group pending its registration authority
    ids["guangdong_team_id"] = (
        await created(
            client,
            "POST",
            teams("/api/v1/root-teams"),
            national,
            json={"name": f"广州{uuid.uuid4().hex[:6]}志愿服务联合会", "region_code": "440100", "contact": contact()},
        )
    )["id"]
    for key, region in (("guangdong_pending_team_id", "440106"), ("beijing_pending_team_id", "110105")):
        pending = await created(
            client,
            "POST",
            teams("/api/v1/teams"),
            a,
            json={
                "name": f"{region}社团{uuid.uuid4().hex[:6]}志愿服务队",
                "region_code": region,
                "kind": "social_group",
                "uscc": credit_code(region),
                "registration_authority_region": region,
                "contact": contact(),
            },
        )
        ids[key] = pending["id"]
    return world


async def guangdong_upload(stack: Stack, client: httpx.AsyncClient) -> tuple[str, str, str]:
    body = sign_up_body(real_name="陈验证失败", region_code="440106", id_number=resident_id(region="440106"))
    signed_up = await client.post(stack.url("identity", "/api/v1/accounts"), json=body)
    assert signed_up.status_code == 201, signed_up.text
    person = await log_in(client, stack, body["username"], body["password"], "guangdong_volunteer")

    async def failed() -> bool:
        me = (await client.get(stack.url("identity", "/api/v1/accounts/me"), headers=person.headers)).json()
        return bool(me.get("verification") and me["verification"]["status"] == "failed")

    await eventually(failed, timeout=60, interval=0.3)
    upload = await client.post(
        stack.url("identity", "/api/v1/accounts/me/id-card-images"),
        files={"file": ("front.png", PNG_BYTES, "image/png")},
        headers=person.headers,
    )
    assert upload.status_code == 201, upload.text
    return str(upload.json()["id"]), str(person.account_id), body["username"]


@pytest.fixture(scope="module")
async def world(open_stack: OpenStack) -> AsyncIterator[World]:
    async with open_stack() as stack, httpx.AsyncClient(timeout=60) as client:
        yield await build_world(stack, client)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


# -- the matrix ----------------------------------------------------------------------------------
@dataclass
class Tally:
    tried: int = 0
    refused: int = 0
    known: int = 0
    allowed: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"endpoints tried={self.tried} refused_403_404={self.refused} refused_with_known_deviation={self.known}"
            f" allowed_by_design={self.allowed} let_through={len(self.failures)}"
        )


def object_operations(world: World, public: dict[tuple[str, str], str]) -> list[tuple[str, str, str, dict[str, Any]]]:
    found = [o for o in operations(world.stack) if "{" in o[2]]
    # the public ones last: B applying to A's position (auto-admitted) must not make B a member of
    # A's project before the operations reserved to its members are tried
    found.sort(key=lambda o: (o[1], o[2]) in public)
    return found


async def b_on_a_objects(world: World, client: httpx.AsyncClient, public: dict[tuple[str, str], str]) -> Tally:
    tally = Tally()
    for service, method, path, op in object_operations(world, public):
        response = await call(client, world, service, method, path, op, world.b)
        tally.tried += 1
        code = code_of(response)
        if (method, path) in public:
            tally.allowed += 1
            if response.status_code >= 500:
                tally.failures.append(f"{service} {method} {path} (public) → {response.status_code}")
        elif response.status_code in (403, 404) and code:
            tally.refused += 1
        elif KNOWN_DEVIATIONS.get((method, path)) == (response.status_code, code):
            tally.known += 1
            print(f"\n  known deviation: {method} {path} → {response.status_code} {code}")
        else:
            tally.failures.append(f"{service} {method} {path} → {response.status_code} {code}: {response.text[:200]}")
    return tally


async def test_another_volunteer_is_refused_on_every_object_of_a(world: World, client: httpx.AsyncClient) -> None:
    # control: the ids are right, A reads every one of A's objects B is refused (a 404 for B means
    # "not yours", not "no such object")
    owner_reads = 0
    for service, method, path, op in object_operations(world, PUBLIC_BY_DESIGN):
        if method != "GET" or is_admin_operation(method, path) or path.startswith("/api/v1/mailbox/"):
            continue  # the mailbox exists in standalone mode only (this stack sends real SMTP)
        response = await call(client, world, service, method, path, op, world.a)
        assert response.status_code == 200, f"A on A's object: {method} {path} → {response.status_code} {response.text}"
        owner_reads += 1
    tally = await b_on_a_objects(world, client, PUBLIC_BY_DESIGN)
    print(f"\naccess matrix, B on A's objects: {tally.line()}; owner control reads={owner_reads} all 200")
    assert tally.tried >= 40, "the OpenAPI documents lost their object endpoints"
    assert not tally.failures, "\n".join(tally.failures)
    await a_objects_are_untouched(world, client, members=[world.a])


#: What B may do once a member of A's team and admitted to A's project, on top of the public ones.
INSIDER_ALLOWED: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/projects/{project_id}/sign-ins"): "B is admitted: signs itself in with the lead's code",
    ("POST", "/api/v1/projects/{project_id}/sign-outs"): "B is admitted: signs itself out with the lead's code",
}


async def test_a_fellow_member_and_volunteer_of_a_is_refused_on_a_objects_too(
    world: World, client: httpx.AsyncClient
) -> None:
    """The insider: B joins A's team and is admitted to A's project, and still cannot read or
    change A's application or hours, manage the team or the project."""
    stack, a, b, ids = world.stack, world.a, world.b, world.ids
    opened = await client.patch(
        stack.url("teams", f"/api/v1/teams/{ids['team_id']}"), json={"join_mode": "anyone"}, headers=a.headers
    )
    assert opened.status_code == 200, opened.text
    joined = await client.post(
        stack.url("teams", f"/api/v1/teams/{ids['team_id']}/join-requests"), json={}, headers=b.headers
    )
    assert joined.status_code in (200, 201), joined.text
    assert joined.json()["status"] == "member"
    applied = await client.post(
        stack.url("projects", f"/api/v1/positions/{ids['position_id']}/applications"), json={}, headers=b.headers
    )
    assert applied.status_code < 500, applied.text  # 201, or refused as a second application
    mine = (await client.get(stack.url("projects", "/api/v1/me/applications"), headers=b.headers)).json()
    assert [(x["project_id"], x["stage"]) for x in mine["items"]] == [(ids["project_id"], "admitted")], mine

    # DELETE members/me (public) runs last, so B is a member while everything else is tried
    tally = await b_on_a_objects(world, client, {**PUBLIC_BY_DESIGN, **INSIDER_ALLOWED})
    print(f"\naccess matrix, B as a fellow member and volunteer on A's objects: {tally.line()}")
    assert not tally.failures, "\n".join(tally.failures)
    await a_objects_are_untouched(world, client, members=[a])


async def a_objects_are_untouched(world: World, client: httpx.AsyncClient, members: list[User]) -> None:
    """Nothing B tried changed A's objects: A's application, hours, team, join request and invitation."""
    a, ids, stack = world.a, world.ids, world.stack
    application = await client.get(
        stack.url("projects", f"/api/v1/applications/{ids['application_id']}"), headers=a.headers
    )
    assert application.status_code == 200, application.text
    assert application.json()["stage"] == "admitted"
    assert application.json()["team_rating"] is None
    for key in ("project_id", "draft_project_id"):
        project = await client.get(stack.url("projects", f"/api/v1/projects/{ids[key]}"), headers=a.headers)
        assert project.status_code == 200, project.text
        assert project.json()["title"] == "社区敬老服务"
        assert [(p["name"], p["quota"]) for p in project.json()["positions"]] == [("陪伴员", 5)]
    record = await client.get(stack.url("projects", f"/api/v1/hours/{ids['record_id']}"), headers=a.headers)
    assert record.status_code == 200, record.text
    assert record.json()["minutes"] == 90
    mine = (await client.get(stack.url("projects", "/api/v1/me/hours"), headers=a.headers)).json()
    assert mine["minutes"] == 90
    listed = await client.get(stack.url("teams", f"/api/v1/teams/{ids['team_id']}/members"), headers=a.headers)
    assert listed.status_code == 200, listed.text
    assert [m["account_id"] for m in listed.json()["items"]] == [str(m.account_id) for m in members]
    requests = (await client.get(stack.url("teams", "/api/v1/me/join-requests"), headers=a.headers)).json()
    assert [(r["id"], r["status"]) for r in _items(requests)] == [(ids["request_id"], "pending")]
    invitations = (await client.get(stack.url("teams", "/api/v1/me/invitations"), headers=a.headers)).json()
    assert [i["id"] for i in _items(invitations)] == [ids["invitation_id"]]
    b_me = (await client.get(stack.url("identity", "/api/v1/accounts/me"), headers=world.b.headers)).json()
    assert b_me["roles"] == ["volunteer"], "B granted itself a role"


def _items(page: Any) -> list[dict[str, Any]]:
    return page["items"] if isinstance(page, dict) else page  # type: ignore[no-any-return]


def is_admin_operation(method: str, path: str) -> bool:
    return "/admin/" in path or (method, path) in ADMIN_OPERATIONS


async def test_a_volunteer_reaches_no_admin_operation(world: World, client: httpx.AsyncClient) -> None:
    # A administers a team and leads a project: the strongest volunteer there is; B is a plain one
    tried = refused = 0
    failures: list[str] = []
    listed = {(m, p) for _, m, p, _ in operations(world.stack)}
    assert listed >= ADMIN_OPERATIONS, f"admin operations gone from OpenAPI: {ADMIN_OPERATIONS - listed}"
    for volunteer in (world.a, world.b):
        for service, method, path, op in operations(world.stack):
            if not is_admin_operation(method, path):
                continue
            response = await call(client, world, service, method, path, op, volunteer)
            tried += 1
            if response.status_code == 403 and code_of(response):
                refused += 1
            else:
                failures.append(
                    f"{volunteer.role}: {service} {method} {path} → {response.status_code} {code_of(response)}"
                )
    print(f"\nadmin operations as volunteers: tried={tried} refused_403={refused} let_through={len(failures)}")
    assert tried >= 2 * 15
    assert not failures, "\n".join(failures)


async def test_a_regional_admin_of_beijing_cannot_act_in_guangdong(world: World, client: httpx.AsyncClient) -> None:
    stack, beijing, ids = world.stack, world.beijing, world.ids

    def identity(path: str) -> str:
        return stack.url("identity", path)

    def teams(path: str) -> str:
        return stack.url("teams", path)

    guangdong: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", identity(f"/api/v1/admin/id-card-reviews/{ids['upload_id']}/image"), {}),
        ("POST", identity(f"/api/v1/admin/id-card-reviews/{ids['upload_id']}/decision"), {"json": {"approved": True}}),
        (
            "POST",
            identity(f"/api/v1/admin/accounts/{ids['guangdong_account_id']}/id-number-disclosures"),
            {"json": {"reason": "跨区域查看"}},
        ),
        ("PUT", teams(f"/api/v1/teams/{ids['guangdong_team_id']}/liaison-authorisation"), {}),
        ("DELETE", teams(f"/api/v1/teams/{ids['guangdong_team_id']}/liaison-authorisation"), {}),
        ("GET", teams(f"/api/v1/teams/{ids['guangdong_team_id']}/history"), {}),
        (
            "POST",
            teams(f"/api/v1/teams/{ids['guangdong_pending_team_id']}/review/decision"),
            {"json": {"outcome": "approved"}},
        ),
    ]
    # a team under review is hidden from those who may not see it, whatever the route: not found
    hidden = {teams(f"/api/v1/teams/{ids['guangdong_pending_team_id']}/review/decision")}
    failures = []
    for method, url, kwargs in guangdong:
        response = await client.request(method, url, headers=beijing.headers, **kwargs)
        expected = (404, "team_not_found") if url in hidden else (403, code_of(response) or "a code")
        if (response.status_code, code_of(response)) != expected:
            failures.append(f"{method} {url} → {response.status_code} {response.text[:200]}")
    # nor does Guangdong's upload show in Beijing's review queue, nor its volunteer in a search
    queue = await client.get(identity("/api/v1/admin/id-card-reviews"), params={"limit": 200}, headers=beijing.headers)
    assert queue.status_code == 200, queue.text
    assert ids["upload_id"] not in {item["id"] for item in queue.json()["items"]}
    national_queue = await client.get(
        identity("/api/v1/admin/id-card-reviews"), params={"limit": 200}, headers=world.national.headers
    )
    assert ids["upload_id"] in {item["id"] for item in national_queue.json()["items"]}

    searches = {}
    for who, username in (("guangdong", ids["guangdong_username"]), ("beijing", world.a.username)):
        found = await client.post(
            identity("/api/v1/admin/account-searches"),
            json={"username": username, "reason": "核对账号"},
            headers=beijing.headers,
        )
        assert found.status_code == 200, found.text
        searches[who] = [item["id"] for item in found.json()["items"]]
    assert searches == {"guangdong": [], "beijing": [str(world.a.account_id)]}, searches

    # the same acts on Beijing's objects succeed: the refusals above are the region rule's
    controls: list[tuple[str, str, dict[str, Any], int]] = [
        ("PUT", teams(f"/api/v1/teams/{ids['join_team_id']}/liaison-authorisation"), {}, 200),
        ("GET", teams(f"/api/v1/teams/{ids['team_id']}/history"), {}, 200),
        (
            "POST",
            teams(f"/api/v1/teams/{ids['beijing_pending_team_id']}/review/decision"),
            {"json": {"outcome": "approved"}},
            200,
        ),
        (
            "POST",
            identity(f"/api/v1/admin/accounts/{world.a.account_id}/id-number-disclosures"),
            {"json": {"reason": "核对身份"}},
            200,
        ),
    ]
    for method, url, kwargs, status in controls:
        response = await client.request(method, url, headers=beijing.headers, **kwargs)
        if response.status_code != status:
            failures.append(f"control {method} {url} → {response.status_code} {response.text[:200]}")
    print(
        f"\nregional admin of 110000 on Guangdong (440000) objects: tried={len(guangdong)}"
        f" refused={len(guangdong) - sum(1 for f in failures if not f.startswith('control'))};"
        f" in-region controls={len(controls)}"
    )
    assert not failures, "\n".join(failures)


async def test_a_regional_admin_cannot_use_the_national_admins_operations(
    world: World, client: httpx.AsyncClient
) -> None:
    listed = {(m, p) for _, m, p, _ in operations(world.stack)}
    assert listed >= NATIONAL_ONLY, f"national operations gone from OpenAPI: {NATIONAL_ONLY - listed}"
    failures = []
    # the roles operation on the regional admin's own account: trying to become national admin
    own = {"account_id": str(world.beijing.account_id)}
    for service, method, path, op in operations(world.stack):
        if (method, path) not in NATIONAL_ONLY:
            continue
        response = await call(client, world, service, method, path, op, world.beijing, own)
        if response.status_code != 403 or not code_of(response):
            failures.append(f"{service} {method} {path} → {response.status_code} {response.text[:200]}")
    me = await client.get(world.stack.url("identity", "/api/v1/accounts/me"), headers=world.beijing.headers)
    assert sorted(me.json()["roles"]) == ["regional_admin", "volunteer"], me.json()["roles"]
    tried = len(NATIONAL_ONLY)
    print(f"\nnational-only operations as Beijing's regional admin: tried={tried} refused_403={tried - len(failures)}")
    assert not failures, "\n".join(failures)
