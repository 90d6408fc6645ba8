"""X3 (FAQ O3): every web page the system ships works in current Chrome and Firefox. Each page is
opened in real headless Chromium and Firefox (Debian's packages), served by the system running in
standalone mode, as a newcomer or a phone would meet it:

- the card check page, reached by reading the QR code off a volunteer's rendered card (V9), at a
  phone's width, with its styles applied under its Content-Security-Policy;
- the standalone mailbox: its list, an email's page, and the email's own HTML;
- each service's API documentation (/docs), rendered by its scripts with every operation
  listed, with nothing loaded from outside the service.

Every page must load with no script error, console error or failed load.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import zxingcpp
from PIL import Image

from shared.testing import sign_up_body
from tests.standalone.browsers import Tab, open_tab
from tests.standalone.system import SERVICES, Standalone, standalone_system, wait_ready, wait_until

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "firefox")
PHONE = (390, 844)  # CSS pixels of a common phone screen
DESKTOP = (1280, 900)


@dataclass
class Site:
    system: Standalone
    card_url: str
    volunteer_number: str
    welcome_id: str
    welcome_subject: str
    welcome_html: str
    operations: dict[str, int]


def scanned(png: bytes) -> str:
    """What a phone's camera reads off the card: the URL in its QR code."""
    codes = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert [c.format for c in codes] == [zxingcpp.BarcodeFormat.QRCode]
    text: str = codes[0].text
    return text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with standalone_system(tmp_path_factory.mktemp("standalone")) as system, httpx.Client(timeout=30) as client:
        wait_ready(system, client)
        email = f"card-{uuid.uuid4().hex[:8]}@example.org"
        body = sign_up_body(real_name="黄志愿", email=email)
        assert client.post(system.url("identity", "/api/v1/accounts"), json=body).status_code == 201
        login = {"username": body["username"], "password": body["password"]}
        token = client.post(system.url("identity", "/api/v1/tokens"), json=login).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        def verified() -> dict[str, Any] | None:
            me: dict[str, Any] = client.get(system.url("identity", "/api/v1/accounts/me"), headers=auth).json()
            return me if me["verification"]["status"] == "verified" else None

        me = wait_until(verified, system, timeout=30, what="the volunteer's verification")
        png = client.get(system.url("identity", "/api/v1/accounts/me/card.png"), headers=auth)
        assert png.status_code == 200, png.text

        def welcome() -> dict[str, Any] | None:
            items = client.get(system.url("notifications", "/api/v1/mailbox")).json()["items"]
            return next((m for m in items if m["to_address"] == email and "欢迎" in m["subject"]), None)

        item = wait_until(welcome, system, timeout=30, what="the welcome email")
        full = client.get(system.url("notifications", f"/api/v1/mailbox/{item['id']}")).json()
        operations = {
            s: sum(len(ops) for ops in client.get(system.url(s, "/openapi.json")).json()["paths"].values())
            for s in SERVICES
        }
        yield Site(
            system=system,
            card_url=scanned(png.content),
            volunteer_number=me["verification"]["volunteer_number"],
            welcome_id=item["id"],
            welcome_subject=full["subject"],
            welcome_html=full["body_html"],
            operations=operations,
        )


@pytest.fixture(scope="module", params=BROWSERS)
async def tab(request: pytest.FixtureRequest) -> AsyncIterator[Tab]:
    async with open_tab(request.param) as opened:
        yield opened


async def settled(tab: Tab) -> list[str]:
    """The page's errors once late ones (a failed load's, a script's) have had half a second to
    arrive; none of these pages runs a timer that could fail later (/docs renders once its script
    and the OpenAPI document are in, which the test waits for)."""
    await asyncio.sleep(0.5)
    return tab.errors


async def test_a_scanned_card_opens_its_check_page_on_a_phone(site: Site, tab: Tab) -> None:
    identity = site.system.url("identity", "")
    assert site.card_url.startswith(f"{identity}/api/v1/card-verifications?token=")
    await tab.viewport(*PHONE)
    await tab.open(site.card_url)
    text = await tab.value("document.body.innerText")
    assert "此志愿服务证真实有效" in text
    assert "黄**" in text
    assert site.volunteer_number in text
    assert await tab.value("document.title") == "志愿服务证核验"
    # the inline style ran under the page's Content-Security-Policy: the verdict is green on green,
    # the facts laid out as a grid
    verdict = await tab.value(
        "(s => [s.backgroundColor, s.color])(getComputedStyle(document.querySelector('.verdict')))"
    )
    assert verdict == ["rgb(230, 244, 234)", "rgb(19, 115, 51)"]
    assert await tab.value("getComputedStyle(document.querySelector('dl')).display") == "grid"
    # it fits the phone's width: nothing to scroll sideways
    assert await tab.value("document.documentElement.scrollWidth <= window.innerWidth")
    assert await tab.value("window.innerWidth") == PHONE[0]
    assert await settled(tab) == []


@pytest.mark.parametrize("browser", BROWSERS)
async def test_a_phone_set_to_english_gets_the_card_page_in_english(site: Site, browser: str) -> None:
    async with open_tab(browser, language="en-US,en") as english:
        await english.viewport(*PHONE)
        await english.open(site.card_url)
        assert await english.value("document.documentElement.lang") == "en"
        text = await english.value("document.body.innerText")
        assert "This volunteer service card is genuine and current" in text
        assert site.volunteer_number in text
        assert await settled(english) == []


async def test_a_qr_code_read_wrong_shows_that_the_card_cannot_be_verified(site: Site, tab: Tab) -> None:
    await tab.viewport(*PHONE)
    await tab.open(site.card_url[:-6])  # the end of the link cut off
    text = await tab.value("document.body.innerText")
    assert "无法核验" in text
    assert site.volunteer_number not in text
    assert await tab.value("getComputedStyle(document.querySelector('.verdict')).backgroundColor") == (
        "rgb(252, 232, 230)"
    )
    assert await settled(tab) == []


async def test_the_mailbox_lists_emails_and_shows_each_with_its_html_in_a_sandbox(site: Site, tab: Tab) -> None:
    await tab.viewport(*DESKTOP)
    # what `make run` prints for the mailbox, opened in a browser: a page, not JSON
    await tab.open(site.system.url("notifications", "/api/v1/mailbox"))
    assert await tab.value("document.title") == "邮箱 / Mailbox"
    link = await tab.value(f"document.querySelector('a[href$=\"/{site.welcome_id}.html\"]').href")
    assert await tab.value(f"document.querySelector('a[href$=\"/{site.welcome_id}.html\"]').innerText") == (
        site.welcome_subject
    )
    assert await settled(tab) == []

    await tab.open(link)
    assert await tab.value("document.title") == site.welcome_subject
    frame = await tab.value(
        "(f => ({sandbox: f.getAttribute('sandbox'), height: f.getBoundingClientRect().height, html: f.srcdoc}))"
        "(document.querySelector('iframe'))"
    )
    assert "allow-scripts" not in frame["sandbox"]
    assert frame["height"] > 200
    # the email's own HTML, whole, in the frame (as rendered on its own: the next test)
    assert frame["html"] == site.welcome_html
    assert await settled(tab) == []

    # and back to the list
    await tab.open(await tab.value("document.querySelector('a').href"))
    assert await tab.value("document.title") == "邮箱 / Mailbox"
    assert await settled(tab) == []


async def test_an_emails_own_html_renders(site: Site, tab: Tab) -> None:
    await tab.viewport(*DESKTOP)
    await tab.open("data:text/html;charset=utf-8," + quote(site.welcome_html))
    text = await tab.value("document.body.innerText")
    assert "黄志愿,您好" in text
    assert "noreply@volunteer.example.org" in text
    assert await settled(tab) == []


@pytest.mark.parametrize("service", SERVICES)
async def test_swagger_ui_lists_every_operation_without_the_internet(site: Site, tab: Tab, service: str) -> None:
    await tab.viewport(*DESKTOP)
    await tab.open(site.system.url(service, "/docs"))
    expected = site.operations[service]
    shown = await tab.wait_for(
        f"document.querySelectorAll('.opblock').length >= {expected} && document.querySelectorAll('.opblock').length"
    )
    assert shown == expected
    assert await tab.value("document.querySelector('.info .title').innerText") != ""
    # everything it loaded came from the service (the machine has no internet, but a deployment may)
    loaded = await tab.value("performance.getEntriesByType('resource').map(e => e.name)")
    assert any(url.endswith("/docs/static/swagger-ui-bundle.js") for url in loaded)
    assert [url for url in loaded if not url.startswith(site.system.url(service, "/"))] == []
    assert await settled(tab) == []


#: in Swagger UI, open an operation, press "Try it out" and "Execute", and give what it shows of the
#: answer; each step waits for the element it presses to be drawn
TRY_IT_OUT = """
(async (selector) => {
  const drawn = async (find) => {
    for (let i = 0; i < 100; i++) {
      const found = find();
      if (found) return found;
      await new Promise(r => setTimeout(r, 100));
    }
    throw new Error("not drawn: " + find);
  };
  const operation = await drawn(() => document.querySelector(selector));
  operation.querySelector(".opblock-summary-control").click();
  (await drawn(() => operation.querySelector(".try-out__btn"))).click();
  (await drawn(() => operation.querySelector(".execute"))).click();
  const answer = await drawn(() => operation.querySelector(".live-responses-table tr.response"));
  const status = answer.querySelector(".response-col_status");
  const body = await drawn(() => answer.querySelector(".highlight-code pre"));
  return {status: status.innerText.trim(), body: body.innerText};
})
"""


async def test_swagger_ui_calls_the_service_it_documents(site: Site, tab: Tab) -> None:
    """What a frontend developer does first: try a public operation from /docs."""
    await tab.viewport(*DESKTOP)
    await tab.open(site.system.url("teams", "/docs"))
    answer = await tab.value(f"{TRY_IT_OUT}('[id^=\"operations-support-\"]')")
    assert answer["status"] == "200"
    assert json.loads(answer["body"])["browsers"]["recommended"] == ["Google Chrome", "Mozilla Firefox"]
    assert await settled(tab) == []


def test_the_system_kept_running(site: Site) -> None:
    assert site.system.proc.poll() is None, site.system.log()
