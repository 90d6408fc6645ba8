"""``make run``: the whole system on one machine.

``--mode standalone`` (the default when no ``*_DATABASE_URL`` is configured) needs nothing but
Python: an embedded PostgreSQL from ``pgserver`` (one database per service), the in-process
bus shared by the four services, and emails kept in a local mailbox readable over HTTP. All
four FastAPI apps are served by four uvicorn servers in one process and one event loop.

``--mode distributed`` starts ``python -m <service> serve`` four times against the configured
PostgreSQL and RabbitMQ (``IDENTITY_DATABASE_URL``, ``IDENTITY_AMQP_URL``, ... as each service
reads them) and stops all four when one of them dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("identity", "teams", "projects", "notifications")
DEFAULT_PORTS = {"identity": 8001, "teams": 8002, "projects": 8003, "notifications": 8004}
DATABASE_URL_VARS = tuple(f"{s.upper()}_DATABASE_URL" for s in SERVICES)


@dataclass(frozen=True)
class Options:
    mode: str
    host: str
    ports: dict[str, int]
    data_dir: Path
    log_level: str


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="deploy/run.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--mode",
        choices=("auto", "standalone", "distributed"),
        default=os.environ.get("VS_RUN_MODE", "auto"),
        help="auto: distributed when any *_DATABASE_URL is set, else standalone",
    )
    parser.add_argument("--host", default=os.environ.get("VS_RUN_HOST", "127.0.0.1"))
    for service in SERVICES:
        parser.add_argument(
            f"--{service}-port",
            type=int,
            default=int(os.environ.get(f"VS_{service.upper()}_PORT", DEFAULT_PORTS[service])),
        )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("VS_STANDALONE_DIR", REPO_ROOT / ".standalone")),
        help="standalone mode: where the embedded PostgreSQL keeps its data (pgdata/ inside)",
    )
    parser.add_argument("--log-level", default=os.environ.get("VS_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    mode = args.mode
    if mode == "auto":
        mode = "distributed" if any(os.environ.get(v) for v in DATABASE_URL_VARS) else "standalone"
    ports = {s: int(getattr(args, f"{s}_port")) for s in SERVICES}
    return Options(mode=mode, host=args.host, ports=ports, data_dir=args.data_dir.resolve(), log_level=args.log_level)


def reachable_host(options: Options) -> str:
    """The host of the URLs to give people for this machine, as a URL writes it: the one listened
    on, or loopback when listening on every address (which address other machines reach is the
    network's to say: ``IDENTITY_CARD_VERIFICATION_URL`` for the cards' QR codes)."""
    host = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host  # noqa: S104 - a printed hint
    return f"[{host}]" if ":" in host else host


def card_font_note() -> list[str]:
    """A note when the phone card's image would show names as boxes (no font with Chinese glyphs)."""
    from identity.cards import find_font

    if find_font(os.environ.get("IDENTITY_CARD_FONT_PATH") or None) is not None:
        return []
    return [
        "  note: no font with Chinese glyphs is installed: the phone card image (card.png) shows",
        "        names as boxes (the PDF card is fine). Install one (Debian: apt-get install",
        "        fonts-wqy-microhei) or set IDENTITY_CARD_FONT_PATH, then start again.",
    ]


def print_urls(options: Options, *, mailbox: bool) -> None:
    host = reachable_host(options)
    lines = ["", "Volunteer service information system is up:"]
    for service in SERVICES:
        base = f"http://{host}:{options.ports[service]}"
        lines.append(f"  {service:<14} {base}   (OpenAPI: {base}/docs)")
    if mailbox:
        lines.append(f"  mailbox        http://{host}:{options.ports['notifications']}/api/v1/mailbox")
    lines += card_font_note()
    lines += ["Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)


# --------------------------------------------------------------------------------------------
# standalone


def start_embedded_postgres(data_dir: Path) -> Any:
    """pgserver: initdb on first use, then start (or reuse) the server on a unix socket."""
    from pgserver.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    return get_server(data_dir / "pgdata", cleanup_mode="stop")


def database_url(server: Any, database: str) -> str:
    info = server.get_postmaster_info()
    if info.socket_dir is not None:
        # asyncpg reads ``host`` as the socket directory; pgserver's socket keeps the default port.
        return f"postgresql+asyncpg://postgres:@/{database}?host={info.socket_dir}"
    return f"postgresql+asyncpg://postgres:@127.0.0.1:{info.port}/{database}"


async def ensure_databases(urls: dict[str, str]) -> None:
    """Create each service's database on its server when missing (asyncpg, maintenance db ``postgres``)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    for service, url in urls.items():
        target = make_url(url)
        name = target.database
        if not name:
            continue
        admin = target.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        try:
            conn = await asyncpg.connect(admin, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            print(f"cannot reach the PostgreSQL of {service} to create its database: {exc!r}", file=sys.stderr)
            continue
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                # A database name cannot be a bind parameter; quote it as an identifier.
                quoted = '"' + name.replace('"', '""') + '"'
                await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.PostgresError as exc:
            print(f"could not create database {name!r} for {service}: {exc!r}", file=sys.stderr)
        finally:
            await conn.close()


class _Server:
    """Built lazily so importing this module does not import uvicorn."""

    @staticmethod
    def make(app: Any, host: str, port: int, log_level: str) -> Any:
        import uvicorn

        class QuietServer(uvicorn.Server):
            # Four servers share one process: signals are handled once, by run_standalone.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        # no uvicorn access line (it quotes query strings); shared.web logs each request by its route
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, log_level=log_level.lower(), access_log=False
        )
        return QuietServer(config)


async def wait_started(server: Any, task: asyncio.Task[None], stop: asyncio.Event) -> bool:
    """True once uvicorn ran the lifespan and listens; False if it died or we are told to stop."""
    while True:
        if server.started:
            return True
        if task.done() or stop.is_set():
            return False
        await asyncio.sleep(0.05)


async def serve_standalone(options: Options, urls: dict[str, str]) -> int:
    from identity.bootstrap import build_runtime as build_identity
    from identity.config import IdentitySettings
    from identity.main import create_app as identity_app
    from notifications.bootstrap import build_runtime as build_notifications
    from notifications.config import NotificationsSettings
    from notifications.main import create_app as notifications_app
    from projects.bootstrap import build_runtime as build_projects
    from projects.config import ProjectsSettings
    from projects.main import create_app as projects_app
    from shared.auth import JwksSource, TokenVerifier
    from shared.clock import SystemClock
    from shared.logging import get_logger
    from shared.messaging.inprocess import InProcessBroker
    from shared.runtime import Runtime
    from teams.bootstrap import build_runtime as build_teams
    from teams.config import TeamsSettings
    from teams.main import create_app as teams_app

    log = get_logger("deploy.standalone")
    # The relays are started here once all four services subscribed, not by each lifespan:
    # the in-process bus, like a queue nobody declared yet, would drop an event published
    # before its consumer attached.
    common: dict[str, Any] = {"bus": "inprocess", "run_relay": False}
    # The card's QR code points at this identity, on the port chosen, unless the operator said where.
    card_url: dict[str, Any] = {}
    if not any(name.upper() == "IDENTITY_CARD_VERIFICATION_URL" for name in os.environ):
        identity_base = f"http://{reachable_host(options)}:{options.ports['identity']}"
        card_url["card_verification_url"] = f"{identity_base}/api/v1/card-verifications"
    id_settings = IdentitySettings(database_url=urls["identity"], **card_url, **common)
    teams_settings = TeamsSettings(database_url=urls["teams"], **common)
    projects_settings = ProjectsSettings(database_url=urls["projects"], **common)
    notif_settings = NotificationsSettings(database_url=urls["notifications"], mail_transport="mailbox", **common)

    clock = SystemClock()
    broker = InProcessBroker(max_attempts=id_settings.max_handler_attempts)
    identity = build_identity(id_settings, broker=broker, clock=clock)
    # One verifier over identity's key set, read in-process: no HTTP round trip to a JWKS URL.
    verifier = TokenVerifier(
        JwksSource(keys_provider=identity.signer.jwks),
        issuer=id_settings.jwt_issuer,
        audience=id_settings.jwt_audience,
        algorithm=id_settings.jwt_algorithm,
        leeway_seconds=id_settings.jwt_leeway_seconds,
        clock=clock,
    )
    teams = build_teams(teams_settings, broker=broker, clock=clock, verifier=verifier)
    projects = build_projects(projects_settings, broker=broker, clock=clock, verifier=verifier)
    notifications = build_notifications(notif_settings, broker=broker, clock=clock, verifier=verifier)
    runtimes: dict[str, Runtime] = {
        "identity": identity,
        "teams": teams,
        "projects": projects,
        "notifications": notifications,
    }
    apps = {
        "identity": identity_app(id_settings, identity),
        "teams": teams_app(teams_settings, teams),
        "projects": projects_app(projects_settings, projects),
        "notifications": notifications_app(notif_settings, notifications),
    }
    servers = {s: _Server.make(apps[s], options.host, options.ports[s], options.log_level) for s in SERVICES}

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    tasks: dict[str, asyncio.Task[None]] = {}
    started_relays: list[Runtime] = []
    exit_code = 0
    try:
        # One after the other: each lifespan runs Alembic, whose module-level context is not
        # safe to use from two migrations interleaved in one event loop.
        for service in SERVICES:
            tasks[service] = asyncio.create_task(servers[service].serve(), name=f"serve-{service}")
            if not await wait_started(servers[service], tasks[service], stop):
                if not stop.is_set():
                    log.error("standalone_start_failed", service=service)
                    exit_code = 1
                break
        else:
            await broker.start()
            for runtime in runtimes.values():
                await runtime.relay.start()
                started_relays.append(runtime)
            log.info("standalone_started", ports=options.ports)
            print_urls(options, mailbox=True)
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stopper not in done:
                log.error("standalone_server_exited", services=[s for s, t in tasks.items() if t.done()])
                exit_code = 1
    finally:
        log.info("standalone_stopping")
        for runtime in started_relays:
            await runtime.relay.stop()
        for server in servers.values():
            server.should_exit = True
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        if any(isinstance(r, BaseException) for r in results):
            exit_code = exit_code or 1
        await broker.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return exit_code


def run_standalone(options: Options) -> int:
    from shared.logging import configure_logging

    configure_logging("standalone", "console", options.log_level)
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every pg_ctl call
    print(f"Starting the embedded PostgreSQL in {options.data_dir / 'pgdata'} ...", flush=True)
    server = start_embedded_postgres(options.data_dir)
    try:
        urls = {s: database_url(server, s) for s in SERVICES}
        asyncio.run(ensure_databases(urls))
        try:
            return asyncio.run(serve_standalone(options, urls))
        except (KeyboardInterrupt, SystemExit) as exc:
            # uvicorn exits the process when a lifespan fails to start; keep the cleanup below.
            code = exc.code if isinstance(exc, SystemExit) else 130
            return code if isinstance(code, int) else 1
    finally:
        # a terminal's Ctrl-C reaches every process of the group, and a second press is common: the
        # embedded PostgreSQL is stopped to the end either way
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.cleanup()
        print("Stopped.", flush=True)


# --------------------------------------------------------------------------------------------
# distributed


def child_env(options: Options) -> dict[str, str]:
    env = dict(os.environ)
    jwks = f"http://127.0.0.1:{options.ports['identity']}/.well-known/jwks.json"
    for service in SERVICES[1:]:
        # The other services fetch identity's keys from wherever identity listens here.
        env.setdefault(f"{service.upper()}_JWKS_URL", jwks)
    return env


def configured_database_urls() -> dict[str, str]:
    from identity.config import IdentitySettings
    from notifications.config import NotificationsSettings
    from projects.config import ProjectsSettings
    from teams.config import TeamsSettings

    return {
        "identity": IdentitySettings().database_url,
        "teams": TeamsSettings().database_url,
        "projects": ProjectsSettings().database_url,
        "notifications": NotificationsSettings().database_url,
    }


def run_distributed(options: Options) -> int:
    asyncio.run(ensure_databases(configured_database_urls()))
    env = child_env(options)
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for service in SERVICES:
        children[service] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", service, "serve", "--host", options.host, "--port", str(options.ports[service])],
            env=env,
            cwd=REPO_ROOT,
        )
    print_urls(options, mailbox=False)
    exit_code = 0
    while not stopping:
        dead = {s: p.returncode for s, p in children.items() if p.poll() is not None}
        if dead:
            print(f"service exited: {dead}; stopping the others", file=sys.stderr, flush=True)
            exit_code = next(iter(dead.values())) or 1
            break
        time.sleep(0.3)
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print("Stopped.", flush=True)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.mode == "standalone":
        return run_standalone(options)
    return run_distributed(options)


if __name__ == "__main__":
    sys.exit(main())
