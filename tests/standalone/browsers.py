"""Real Chromium and Firefox, headless, for the pages the system ships (X3: they must work in both).

Each browser is driven over the protocol it speaks itself, with no driver binary between: Chromium
over the DevTools protocol, Firefox over WebDriver BiDi (the W3C protocol it serves since version
129). Both come from Debian's packages (``deploy/ensure-browsers.sh``). A :class:`Tab` opens a
URL and waits for that navigation's load event, evaluates JavaScript in the page (results come back
as JSON), and gathers what the page got wrong: uncaught exceptions, console errors, loads that
failed or answered 4xx/5xx, and refusals by the page's Content-Security-Policy. The browser's own
look for ``/favicon.ico``, which a page did not ask for, is not the page's error.

Each browser picks its own free port (port 0) and says which: Chromium in its profile's
``DevToolsActivePort``, Firefox on its output. Each runs in its own process group with its own
temporary directory (profile, HOME, TMPDIR), and the whole group is killed when the tab closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect

#: each browser and the names its Debian package installs it under
EXECUTABLES = {"chromium": ("chromium", "chromium-browser"), "firefox": ("firefox-esr", "firefox")}

T = TypeVar("T")
Event = dict[str, Any]


def executable(browser: str) -> str:
    for name in EXECUTABLES[browser]:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"{browser} is not installed: deploy/ensure-browsers.sh installs it (Debian, as root)")


class BrowserError(AssertionError):
    pass


def _not_the_page_s(url: str) -> bool:
    return url.endswith("/favicon.ico")


class _Connection:
    """JSON commands over one WebSocket, answered by id; everything else is an event. When the
    connection ends (the browser died, an event could not be handled), every command waiting and
    every later one fails at once with ``why()``, instead of waiting out its timeout."""

    def __init__(self, ws: ClientConnection, why: Callable[[], str]) -> None:
        self.ws = ws
        self.why = why
        self.on_event: Callable[[Event], None] = lambda _: None
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ended: BrowserError | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                future = self.waiting.pop(message.get("id", -1), None)
                if future is not None and not future.done():
                    future.set_result(message)
                elif "method" in message:
                    self.on_event(message)
        except Exception as exc:  # whatever ended it is reported to the commands waiting
            self.ended = BrowserError(f"the browser connection failed ({exc!r}): {self.why()}")
        finally:
            self.ended = self.ended or BrowserError(f"the browser connection closed: {self.why()}")
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(self.ended)
            self.waiting.clear()

    async def send(self, method: str, params: dict[str, Any], timeout: float = 30, **extra: Any) -> dict[str, Any]:
        if self.ended is not None:
            raise self.ended
        command_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[command_id] = future
        await self.ws.send(json.dumps({"id": command_id, "method": method, "params": params, **extra}))
        async with asyncio.timeout(timeout):
            message = await future
        if "error" in message:
            raise BrowserError(f"{method}: {message['error']} {message.get('message', '')}")
        result: dict[str, Any] = message["result"]
        return result

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader
        with contextlib.suppress(Exception):
            await self.ws.close()


class Tab:
    """One page in a headless browser."""

    name: str

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        connection.on_event = self._event
        #: what went wrong in the page since it was opened (cleared by :meth:`open`)
        self.errors: list[str] = []

    async def start(self) -> None:
        raise NotImplementedError

    def _event(self, message: Event) -> None:
        raise NotImplementedError

    async def open(self, url: str) -> None:
        """Navigate to ``url`` and wait for that navigation's load event."""
        raise NotImplementedError

    async def _evaluate(self, expression: str) -> str:
        raise NotImplementedError

    async def viewport(self, width: int, height: int) -> None:
        """The page's size in CSS pixels (a phone's, say); applies to the next :meth:`open`."""
        raise NotImplementedError

    async def value(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise), through JSON."""
        text = await self._evaluate(f"(async () => JSON.stringify(await ({expression})))()")
        return None if text is None else json.loads(text)

    async def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """The expression's value once it is truthy (pages that render with scripts)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = await self.value(expression)
            if found:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise BrowserError(f"{self.name}: {expression} still falsy after {timeout}s; errors: {self.errors}")
            await asyncio.sleep(0.2)


class _ChromiumTab(Tab):
    name = "chromium"

    def __init__(self, connection: _Connection) -> None:
        super().__init__(connection)
        self.session = ""
        #: the navigations (loader ids) whose page has loaded, and a pulse on each
        self.loaded: set[str] = set()
        self.load_seen = asyncio.Event()

    async def start(self) -> None:
        target = await self.connection.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.connection.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await self._send(f"{domain}.enable", {})
        await self._send("Page.setLifecycleEventsEnabled", {"enabled": True})

    async def _send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.connection.send(method, params, sessionId=self.session)

    def _event(self, message: Event) -> None:
        method, params = message["method"], message.get("params", {})
        if method == "Page.lifecycleEvent" and params["name"] == "load":
            self.loaded.add(params["loaderId"])
            self.load_seen.set()
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            # failed loads and 4xx/5xx answers ("network"), CSP refusals ("security"), and others
            entry = params["entry"]
            if not _not_the_page_s(entry.get("url", "")):
                self.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())

    async def open(self, url: str) -> None:
        self.errors.clear()
        navigated = await self._send("Page.navigate", {"url": url})
        if navigated.get("errorText"):
            raise BrowserError(f"chromium could not open {url}: {navigated['errorText']}")
        loader = navigated["loaderId"]
        async with asyncio.timeout(30):
            while loader not in self.loaded:
                self.load_seen.clear()
                await self.load_seen.wait()

    async def viewport(self, width: int, height: int) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 0, "mobile": width < 600}
        await self._send("Emulation.setDeviceMetricsOverride", metrics)

    async def _evaluate(self, expression: str) -> str:
        result = await self._send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"chromium: {expression}: {result['exceptionDetails']}")
        value: str = result["result"].get("value")
        return value


class _FirefoxTab(Tab):
    name = "firefox"

    def __init__(self, connection: _Connection) -> None:
        super().__init__(connection)
        self.context = ""

    async def start(self) -> None:
        await self.connection.send("session.new", {"capabilities": {}})
        self.context = (await self.connection.send("browsingContext.create", {"type": "tab"}))["context"]
        events = ["log.entryAdded", "network.fetchError", "network.responseCompleted"]
        await self.connection.send("session.subscribe", {"events": events})

    def _event(self, message: Event) -> None:
        method, params = message["method"], message["params"]
        if method == "log.entryAdded" and params.get("level") == "error":
            # script errors and console errors; CSP refusals come as script errors too
            self.errors.append(f"{params.get('type')}: {params.get('text')}")
        elif method == "network.fetchError" and not _not_the_page_s(params["request"]["url"]):
            self.errors.append(f"network: {params['errorText']} {params['request']['url']}")
        elif method == "network.responseCompleted" and params["response"]["status"] >= 400:
            url = params["request"]["url"]
            if not _not_the_page_s(url):
                self.errors.append(f"network: status {params['response']['status']} {url}")

    async def open(self, url: str) -> None:
        self.errors.clear()
        await self.connection.send(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )

    async def viewport(self, width: int, height: int) -> None:
        size = {"width": width, "height": height}
        await self.connection.send("browsingContext.setViewport", {"context": self.context, "viewport": size})

    async def _evaluate(self, expression: str) -> str:
        result = await self.connection.send(
            "script.evaluate",
            {"expression": expression, "target": {"context": self.context}, "awaitPromise": True},
        )
        if result["type"] == "exception":
            raise BrowserError(f"firefox: {expression}: {result['exceptionDetails']}")
        value: str = result["result"].get("value")
        return value


def _command(browser: str, profile: Path, language: str) -> list[str]:
    if browser == "chromium":
        return [
            executable("chromium"),
            "--headless=new",
            "--no-sandbox",  # the suite runs as root, which Chromium's sandbox refuses
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            f"--lang={language}",
            f"--accept-lang={language}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
    (profile / "user.js").write_text(f'user_pref("intl.accept_languages", "{language}");\n')
    return [
        executable("firefox"),
        "--headless",
        "--no-remote",
        "--profile",
        str(profile),
        "--remote-debugging-port",
        "0",
        "about:blank",
    ]


def _endpoint(browser: str, profile: Path, log: Path) -> str | None:
    """Where the starting browser listens, once it says so."""
    if browser == "chromium":
        active = profile / "DevToolsActivePort"
        lines = active.read_text().splitlines() if active.exists() else []
        return f"ws://127.0.0.1:{lines[0]}{lines[1]}" if len(lines) >= 2 else None
    said = re.search(r"WebDriver BiDi listening on (ws://\S+)", log.read_text(errors="replace"))
    return f"{said[1]}/session" if said else None


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


async def _until(
    found: Callable[[], Awaitable[T | None]], process: asyncio.subprocess.Process, log: Path, timeout: float = 60
) -> T:
    """``found()`` once it answers (the browser dying, or ``timeout``, ends the wait)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if process.returncode is not None:
            raise BrowserError(f"the browser exited ({process.returncode}): {_log_tail(log)}")
        with contextlib.suppress(OSError):
            answer = await found()
            if answer is not None:
                return answer
        if asyncio.get_running_loop().time() > deadline:
            raise BrowserError(f"the browser did not start within {timeout}s: {_log_tail(log)}")
        await asyncio.sleep(0.1)


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    """The browser and every helper process it started: asked to stop, then killed, then gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
    for _ in range(50):  # the helpers go a moment after the kill
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def open_tab(browser: str, language: str = "zh-CN") -> AsyncIterator[Tab]:
    """A fresh profile in a headless ``browser`` ("chromium" or "firefox"), one tab open in it,
    asking pages for ``language`` first (a phone set to Chinese, by default)."""
    with tempfile.TemporaryDirectory(prefix=f"vs-{browser}-") as home:
        profile, log = Path(home) / "profile", Path(home) / "browser.log"
        profile.mkdir()
        env = {**os.environ, "HOME": home, "TMPDIR": home, "MOZ_CRASHREPORTER_DISABLE": "1"}
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *_command(browser, profile, language),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stopped with all its helpers
            )
        try:

            async def endpoint() -> str | None:
                return _endpoint(browser, profile, log)

            url = await _until(endpoint, process, log)
            ws = await _until(lambda: connect(url, max_size=None, open_timeout=5), process, log)
            connection = _Connection(ws, lambda: _log_tail(log))
            try:
                tab = _ChromiumTab(connection) if browser == "chromium" else _FirefoxTab(connection)
                await tab.start()
                yield tab
            finally:
                await connection.close()
        finally:
            await _stop_group(process)
