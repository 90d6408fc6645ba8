"""The big-event flow, over HTTP as frontends call it.

Setup (not measured): a national admin (``create-admin``), a city federation (root liaison team)
with its admin, an event team registered under it and approved by that admin, and a published
project with auto-admitting and manually admitting positions, created by the event team's admin.

Each arriving volunteer then: signs up, logs in, waits until projects knows them as verified (the
development provider verifies at once, ``volunteer.verified`` travels identity's outbox, RabbitMQ
and projects' consumer), reads the event, applies; the lead admits a manual application and
records the day's hours. A separate stream records earlier hours in bulk for everyone admitted.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
from stdnum.cn import ric

from shared.clock import SystemClock, local_today
from tests.load.cluster import ADMIN_PASSWORD, Cluster
from tests.load.recorder import Recorder

PASSWORD = "load test passphrase 2026"  # throw-away accounts of the run
CITY, DISTRICT = "330100", "330106"  # Hangzhou, Xihu district
BIRTHPLACE = "110105"  # the ID number's region part (python-stdnum knows the older codes only)
AUTO_POSITIONS = ("赛道补给", "起终点引导", "存衣服务", "观众疏导", "媒体中心", "交通接驳")
MANUAL_POSITIONS = ("医疗急救", "外语翻译")
SINGLE_MINUTES, BULK_MINUTES = 120, 240
SIGN_UP = "POST /accounts (sign up)"
LOG_IN = "POST /tokens (log in)"
READ = "GET /projects/{id}"
APPLY = "POST /positions/{id}/applications"
ADMIT = "POST /applications/{id}/admission"
HOURS = "POST /projects/{id}/hours"
BULK = "POST /projects/{id}/hours/bulk"
#: the order of the report's rows
ENDPOINTS = (SIGN_UP, LOG_IN, READ, APPLY, ADMIT, HOURS, BULK)


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Identities:
    """Sign-up bodies unique within a run: distinct ID numbers (birth date x serial), mobiles,
    usernames and emails, with valid GB 11643 check digits."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.offset = secrets.randbelow(5000)

    def body(self, i: int) -> dict[str, Any]:
        n = self.offset + i
        birth = date(1970, 1, 1) + timedelta(days=n % 12000)
        base = f"{BIRTHPLACE}{birth:%Y%m%d}{(n // 12000) % 1000:03d}"
        id_number = base + str(ric.calc_check_digit(base + "0"))
        return {
            "username": f"load{self.tag}{i}",
            "password": PASSWORD,
            "real_name": "李四",
            "id_number": id_number,
            "mobile": f"13{(n * 7919) % 10**9:09d}",
            "email": f"load{self.tag}{i}@example.org",
            "region_code": DISTRICT,
        }


@dataclass
class Event:
    project_id: str
    auto_positions: list[str]
    manual_positions: list[str]
    lead_token: str
    today: date
    starts_on: date

    @property
    def lead(self) -> dict[str, str]:
        return headers(self.lead_token)


@dataclass
class Clients:
    identity: httpx.AsyncClient
    teams: httpx.AsyncClient
    projects: httpx.AsyncClient

    @classmethod
    def open(cls, cluster: Cluster) -> Clients:
        # open loop: never let the client's pool become the queue (it would hide latency)
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
        timeout = httpx.Timeout(30.0)

        def client(service: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=cluster.url(service), limits=limits, timeout=timeout)

        return cls(identity=client("identity"), teams=client("teams"), projects=client("projects"))

    async def close(self) -> None:
        for c in (self.identity, self.teams, self.projects):
            await c.aclose()


async def _until_created(
    send: Any, what: str, *, expect: int = 201, timeout: float = 90, interval: float = 0.3
) -> dict[str, Any]:
    """Retry a setup request until it succeeds: read models fill over RabbitMQ meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response: httpx.Response = await send()
        if response.status_code == expect:
            result: dict[str, Any] = response.json()
            return result
        if loop.time() > deadline or response.status_code >= 500:
            raise RuntimeError(f"setup: {what} failed: {response.status_code} {response.text[:500]}")
        await asyncio.sleep(interval)


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    response = await client.post("/api/v1/tokens", json={"username": username, "password": password})
    if response.status_code != 200:
        raise RuntimeError(f"setup: login failed: {response.status_code} {response.text[:300]}")
    return str(response.json()["access_token"])


async def set_up_event(cluster: Cluster, clients: Clients, identities: Identities, quota: int) -> Event:
    admin_name = f"chief{identities.tag}"
    await cluster.create_national_admin(admin_name, f"{admin_name}@example.org")
    national = headers(await login(clients.identity, admin_name, ADMIN_PASSWORD))

    people: list[tuple[str, str]] = []  # (account id, token) of the federation admin and the lead
    for i in (-1, -2):
        body = identities.body(i) | {"real_name": "王五" if i == -1 else "赵六"}
        created = await clients.identity.post("/api/v1/accounts", json=body)
        if created.status_code != 201:
            raise RuntimeError(f"setup: sign-up failed: {created.status_code} {created.text[:300]}")
        people.append((created.json()["id"], await login(clients.identity, body["username"], PASSWORD)))
    (federation_admin, federation_token), (lead_id, lead_token) = people

    contact = {
        "person": "赛会志愿者部",
        "phone": "0571-88886666",
        "email": "race@example.org",
        "address": "杭州市西湖区",
    }
    federation = await _until_created(
        lambda: clients.teams.post(
            "/api/v1/root-teams",
            json={
                "name": f"杭州市{identities.tag}志愿服务联合会",
                "region_code": CITY,
                "contact": contact,
                "admin_account_id": federation_admin,
            },
            headers=national,
        ),
        "root team",
    )
    team = await _until_created(
        lambda: clients.teams.post(
            "/api/v1/teams",
            json={
                "name": f"马拉松{identities.tag}志愿服务队",
                "region_code": DISTRICT,
                "kind": "other",
                "liaison_team_id": federation["id"],
                "contact": contact,
            },
            headers=headers(lead_token),
        ),
        "event team",
    )
    decided = await clients.teams.post(
        f"/api/v1/teams/{team['id']}/review/decision", json={"outcome": "approved"}, headers=headers(federation_token)
    )
    if decided.status_code != 200:
        raise RuntimeError(f"setup: approval failed: {decided.status_code} {decided.text[:300]}")

    today = local_today(SystemClock())
    starts_on = today - timedelta(days=7)
    project_body = {
        "team_id": team["id"],
        "title": "西湖国际马拉松赛会志愿服务",
        "description": "赛道补给、引导、医疗与翻译",
        "category": "大型赛会",
        "region_code": DISTRICT,
        "address": "杭州市西湖区黄龙体育中心",
        "contact": {"name": "赛会志愿者部", "phone": "0571-88886666"},
        "starts_on": starts_on.isoformat(),
        "ends_on": (today + timedelta(days=30)).isoformat(),
        "recruit_starts_on": starts_on.isoformat(),
        "recruit_ends_on": (today + timedelta(days=10)).isoformat(),
        "positions": [{"name": n, "quota": quota, "admission_mode": "auto"} for n in AUTO_POSITIONS]
        + [{"name": n, "quota": quota, "admission_mode": "manual"} for n in MANUAL_POSITIONS],
    }
    lead = headers(lead_token)
    # the team's approval and its admin reach projects over RabbitMQ
    project = await _until_created(
        lambda: clients.projects.post("/api/v1/projects", json=project_body, headers=lead), "project"
    )
    published = await clients.projects.post(f"/api/v1/projects/{project['id']}/publication", headers=lead)
    if published.status_code != 200:
        raise RuntimeError(f"setup: publication failed: {published.status_code} {published.text[:300]}")
    by_mode: dict[str, list[str]] = {"auto": [], "manual": []}
    for position in published.json()["positions"]:
        by_mode["manual" if position["name"] in MANUAL_POSITIONS else "auto"].append(position["id"])
    _ = lead_id
    return Event(
        project_id=project["id"],
        auto_positions=by_mode["auto"],
        manual_positions=by_mode["manual"],
        lead_token=lead_token,
        today=today,
        starts_on=starts_on,
    )


class VerifiedWatcher:
    """Resolves when projects' read model holds a volunteer (one query for all who wait), so the
    flow applies as soon as it can, without polling any service's API."""

    def __init__(self, projects_dsn: str, interval: float = 0.1) -> None:
        self.dsn = projects_dsn
        self.interval = interval
        self.waiting: dict[uuid.UUID, asyncio.Future[None]] = {}
        self.task: asyncio.Task[None] | None = None
        self.conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.conn is not None:
            await self.conn.close()

    def wait(self, account_id: uuid.UUID) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[account_id] = future
        return future

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            pending = [a for a, f in self.waiting.items() if not f.done()]
            if not pending:
                continue
            try:
                if self.conn is None or self.conn.is_closed():
                    self.conn = await asyncpg.connect(self.dsn)
                rows = await self.conn.fetch(
                    "SELECT account_id FROM volunteers WHERE account_id = ANY($1::uuid[]) AND merged_into IS NULL",
                    pending,
                )
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                continue  # a shared server out of connection slots: ask again on the next tick
            for row in rows:
                future = self.waiting.pop(row["account_id"], None)
                if future is not None and not future.done():
                    future.set_result(None)


@dataclass
class BulkQueue:
    """Admitted applications waiting for the lead's bulk recording of an earlier day."""

    pending: list[str] = field(default_factory=list)
    recorded: int = 0


@dataclass
class Flow:
    clients: Clients
    event: Event
    recorder: Recorder
    watcher: VerifiedWatcher
    identities: Identities
    bulk: BulkQueue
    manual_every: int = 4  # one volunteer in four applies to a manually admitting position
    verify_timeout: float = 120.0
    completed: int = 0

    async def journey(self, i: int, intended: float) -> None:
        """One volunteer's way through the event; ``intended`` is its scheduled arrival."""
        loop = asyncio.get_running_loop()
        rec, c, ev = self.recorder, self.clients, self.event
        body = self.identities.body(i)
        created = await rec.call(c.identity, SIGN_UP, "POST", "/api/v1/accounts", json=body, intended=intended)
        if created is None:
            return
        account_id = uuid.UUID(created.json()["id"])
        signed_up = loop.time()
        verified = self.watcher.wait(account_id)
        t = loop.time()
        token = await rec.call(
            c.identity,
            LOG_IN,
            "POST",
            "/api/v1/tokens",
            json={"username": body["username"], "password": PASSWORD},
            intended=t,
        )
        if token is None:
            return
        me = headers(token.json()["access_token"])
        try:
            await asyncio.wait_for(verified, timeout=self.verify_timeout)
        except TimeoutError:
            rec.failure("verified in projects", "not_verified_in_time")
            return
        rec.flow("sign-up -> verified in projects", loop.time() - signed_up)
        t = loop.time()
        read = await rec.call(c.projects, READ, "GET", f"/api/v1/projects/{ev.project_id}", headers=me, intended=t)
        if read is None:
            return
        manual = i % self.manual_every == 0
        positions = ev.manual_positions if manual else ev.auto_positions
        position = positions[i % len(positions)]
        t = loop.time()
        applied = await rec.call(
            c.projects,
            APPLY,
            "POST",
            f"/api/v1/positions/{position}/applications",
            json={},
            headers=me,
            intended=t,
        )
        if applied is None:
            return
        application = applied.json()
        if application["stage"] != "admitted":
            t = loop.time()
            admitted = await rec.call(
                c.projects,
                ADMIT,
                "POST",
                f"/api/v1/applications/{application['id']}/admission",
                headers=ev.lead,
                intended=t,
            )
            if admitted is None:
                return
        t = loop.time()
        hours = await rec.call(
            c.projects,
            HOURS,
            "POST",
            f"/api/v1/projects/{ev.project_id}/hours",
            json={"application_id": application["id"], "service_date": ev.today.isoformat(), "minutes": SINGLE_MINUTES},
            headers=ev.lead,
            intended=t,
        )
        if hours is None:
            return
        self.bulk.pending.append(application["id"])
        rec.flow("arrival -> hours recorded", loop.time() - intended)
        self.completed += 1

    async def record_bulk(self, intended: float, max_rows: int) -> None:
        """The lead records the day before for everyone admitted since the last bulk request."""
        rows, self.bulk.pending = self.bulk.pending[:max_rows], self.bulk.pending[max_rows:]
        if not rows:
            return
        day = max(self.event.starts_on, self.event.today - timedelta(days=1)).isoformat()
        response = await self.recorder.call(
            self.clients.projects,
            BULK,
            "POST",
            f"/api/v1/projects/{self.event.project_id}/hours/bulk",
            json={"rows": [{"application_id": a, "service_date": day, "minutes": BULK_MINUTES} for a in rows]},
            headers=self.event.lead,
            intended=intended,
        )
        if response is not None:
            self.bulk.recorded += int(response.json()["recorded"])
