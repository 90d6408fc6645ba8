"""Real Chromium and Firefox, headless, for the pages the system ships (X3: they must work in both).

Each browser is driven over the protocol it speaks itself, with no driver binary between: Chromium
over the DevTools protocol, Firefox over WebDriver BiDi (the W3C protocol it serves since version
129). Both come from Debian's packages (``deploy/ensure-browsers.sh``). A :class:`Tab` opens a
URL and waits for its load event, evaluates JavaScript in the page (results come back as JSON), and
gathers what the page got wrong: uncaught exceptions, console errors, failed loads and, in
Chromium, refusals by the page's Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect

#: each browser and the names its Debian package installs it under
EXECUTABLES = {"chromium": ("chromium", "chromium-browser"), "firefox": ("firefox-esr", "firefox")}


def executable(browser: str) -> str:
    for name in EXECUTABLES[browser]:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"{browser} is not installed: deploy/ensure-browsers.sh installs it (Debian)")


class BrowserError(AssertionError):
    pass


class _Connection:
    """JSON commands over one WebSocket, answered by id; everything else is an event."""

    def __init__(self, ws: ClientConnection, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.ws = ws
        self.on_event = on_event
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            future = self.waiting.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)
            elif "method" in message:
                self.on_event(message)

    async def send(self, method: str, params: dict[str, Any], timeout: float = 30, **extra: Any) -> dict[str, Any]:
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
        await self.ws.close()


class Tab:
    """One page in a headless browser."""

    name: str

    def __init__(self) -> None:
        #: what went wrong in the page since it was opened (cleared by :meth:`open`)
        self.errors: list[str] = []

    async def open(self, url: str) -> None:
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

    def __init__(self, connection_factory: Callable[[Callable[[dict[str, Any]], None]], _Connection]) -> None:
        super().__init__()
        self.connection = connection_factory(self._event)
        self.session = ""
        self.loaded = asyncio.Event()

    async def start(self) -> None:
        target = await self.connection.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.connection.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await self.connection.send(f"{domain}.enable", {}, sessionId=self.session)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message["method"], message.get("params", {})
        if method == "Page.loadEventFired":
            self.loaded.set()
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if entry.get("url", "").endswith("/favicon.ico"):
                return  # Chromium's own look for an icon the page did not name, not the page's
            self.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())

    async def open(self, url: str) -> None:
        self.errors.clear()
        self.loaded.clear()
        navigated = await self.connection.send("Page.navigate", {"url": url}, sessionId=self.session)
        if navigated.get("errorText"):
            raise BrowserError(f"chromium could not open {url}: {navigated['errorText']}")
        async with asyncio.timeout(30):
            await self.loaded.wait()

    async def viewport(self, width: int, height: int) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 0, "mobile": width < 600}
        await self.connection.send("Emulation.setDeviceMetricsOverride", metrics, sessionId=self.session)

    async def _evaluate(self, expression: str) -> str:
        result = await self.connection.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            sessionId=self.session,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"chromium: {expression}: {result['exceptionDetails']}")
        value: str = result["result"].get("value")
        return value


class _FirefoxTab(Tab):
    name = "firefox"

    def __init__(self, connection_factory: Callable[[Callable[[dict[str, Any]], None]], _Connection]) -> None:
        super().__init__()
        self.connection = connection_factory(self._event)
        self.context = ""

    async def start(self) -> None:
        await self.connection.send("session.new", {"capabilities": {}})
        tree = await self.connection.send("browsingContext.getTree", {})
        self.context = tree["contexts"][0]["context"]
        await self.connection.send("session.subscribe", {"events": ["log.entryAdded"]})

    def _event(self, message: dict[str, Any]) -> None:
        if message["method"] == "log.entryAdded" and message["params"].get("level") == "error":
            entry = message["params"]
            self.errors.append(f"{entry.get('type')}: {entry.get('text')}")

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


T = TypeVar("T")


def _exited(process: asyncio.subprocess.Process, log: Path) -> BrowserError:
    return BrowserError(f"the browser exited ({process.returncode}): {log.read_text(errors='replace')[-2000:]}")


async def _once_up(
    attempt: Callable[[], Awaitable[T]], process: asyncio.subprocess.Process, log: Path, timeout: float = 60
) -> T:
    """``attempt``'s result once the starting browser answers it (the browser dying ends the wait)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if process.returncode is not None:
            raise _exited(process, log)
        try:
            return await attempt()
        except (OSError, httpx.TransportError, ValueError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


def _command(browser: str, profile: Path, port: int, language: str) -> list[str]:
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
            f"--remote-debugging-port={port}",
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
        str(port),
        "about:blank",
    ]


@contextlib.asynccontextmanager
async def open_tab(browser: str, language: str = "zh-CN") -> AsyncIterator[Tab]:
    """A fresh profile in a headless ``browser`` ("chromium" or "firefox"), one tab open in it,
    asking pages for ``language`` first (a phone set to Chinese, by default)."""
    # its helper processes may still be writing to the profile as it goes
    with tempfile.TemporaryDirectory(prefix=f"vs-{browser}-", ignore_cleanup_errors=True) as home:
        profile, log = Path(home) / "profile", Path(home) / "browser.log"
        profile.mkdir()
        port = _free_port()
        env = {**os.environ, "HOME": home, "MOZ_CRASHREPORTER_DISABLE": "1"}
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *_command(browser, profile, port, language),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stopped with all its helpers
            )
        connection: _Connection | None = None
        try:
            if browser == "chromium":
                async with httpx.AsyncClient(timeout=5) as client:

                    async def version() -> dict[str, Any]:
                        found: dict[str, Any] = (await client.get(f"http://127.0.0.1:{port}/json/version")).json()
                        return found

                    ws_url = (await _once_up(version, process, log))["webSocketDebuggerUrl"]
            else:
                ws_url = f"ws://127.0.0.1:{port}/session"
            ws = await _once_up(lambda: connect(ws_url, max_size=None, open_timeout=5), process, log)

            def factory(on_event: Callable[[dict[str, Any]], None]) -> _Connection:
                nonlocal connection
                connection = _Connection(ws, on_event)
                return connection

            tab = _ChromiumTab(factory) if browser == "chromium" else _FirefoxTab(factory)
            await tab.start()
            yield tab
        finally:
            if connection is not None:
                await connection.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
