"""The parts of a service's entry points that do not differ between services.

``build_app`` makes the FastAPI app (errors, middleware, health, lifespan that migrates,
then starts relay, consumers and background jobs); ``main`` is the command line
(``serve``, ``worker``, ``migrate``) each service exposes as ``python -m <service>``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from shared.docs import document_common_refusals, install_docs
from shared.logging import configure_logging, get_logger
from shared.migrations import upgrade_head
from shared.runtime import Runtime
from shared.settings import ServiceSettings
from shared.web import configure_app, database_check, health_router

log = get_logger("shared.service")

#: allocations (net of frees) between two collections of the youngest generation; CPython's default
#: is 700, which a request building hundreds of rows passes several times over
YOUNG_COLLECTION_THRESHOLD = 10_000

_heap_settled = False


def settle_heap() -> None:
    """Once per process, after start-up (the app's lifespan, the worker), two settings of the cyclic
    garbage collector, which the services otherwise spend a share of every request in:

    - the objects alive now (modules, the app, its routes and models, the engine) are moved out of
      the collector's sight (``gc.freeze``, the documented remedy). They live as long as the
      process, yet every full collection walked them all: about 160,000 objects in the projects
      service, 100 ms on the benchmark's machine, triggered every few bulk recordings.
    - the youngest generation is collected every 10,000 allocations instead of 700. A bulk
      recording of 500 rows allocates tens of thousands of objects, nearly all freed by reference
      counting when the request ends, but at 700 the collector ran dozens of times per request
      while they were alive, moved them to older generations and so brought the next full
      collection closer. Measured on the projects benchmark (collector CPU time, 64 bulk sheets of
      500 rows, 3,000 hot-position applications): 154 ms -> 10 ms and 105 ms -> 19 ms. Each young
      collection then walks at most 10,000 objects (a few milliseconds), and garbage in reference
      cycles waits that much longer to be freed.

    Objects made later are collected as before, only less often."""
    global _heap_settled
    if _heap_settled:
        return
    _heap_settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


def build_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    service_root: Path | None,
    body_limits: dict[str, int] | None = None,
    migrate_on_start: bool = True,
) -> FastAPI:
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate_on_start and service_root is not None:
            await upgrade_head(runtime.engine, service_root)
        settle_heap()
        await runtime.start(relay=settings.run_relay, consumers=settings.run_consumers)
        log.info("service_started", service=runtime.service, version=settings.version)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=title,
        description=description,
        version=settings.version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.runtime = runtime
    app.state.verifier = runtime.verifier
    app.state.principal_roles = runtime.principal_roles
    app.state.clock = runtime.clock
    configure_app(
        app,
        service=runtime.service,
        cors_origins=settings.cors_origins,
        max_body_bytes=settings.max_body_bytes,
        body_limits=body_limits,
        body_timeout=settings.request_body_timeout_seconds,
        body_min_rate=settings.request_body_min_rate,
        body_max_seconds=settings.request_body_max_seconds,
    )
    app.include_router(
        health_router(
            {"database": database_check(runtime.engine), "broker": runtime.broker_ready}, degrading={"broker"}
        )
    )
    for router in routers:
        app.include_router(router)
    # last: every request walks the routes in order, and the API's are the ones it looks for
    install_docs(app, title=title)
    document_common_refusals(app)
    return app


def main(
    *,
    service: str,
    settings_factory: Callable[[], ServiceSettings],
    app_factory: str,
    runtime_factory: Callable[[ServiceSettings], Runtime],
    service_root: Path,
    default_port: int,
    argv: Sequence[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {service}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (with relay and consumers unless disabled)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=default_port)
    serve.add_argument("--workers", type=int, default=1)
    sub.add_parser("worker", help="run only the outbox relay, consumers and background jobs")
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)
    settings = settings_factory()
    configure_logging(service, settings.resolved_log_format, settings.log_level)

    if args.command == "serve":
        import uvicorn

        uvicorn.run(
            app_factory,
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=None,
            access_log=False,  # shared.web logs each request by its route, without its query
            proxy_headers=True,
            # connections still open at a stop (a request in flight, or one a client left half-sent)
            # are waited for this long, then cut, so the lifespan's own stop always runs
            timeout_graceful_shutdown=max(1, round(settings.shutdown_step_seconds)),
        )
    elif args.command == "migrate":
        asyncio.run(_migrate(runtime_factory(settings), service_root))
    else:
        asyncio.run(_worker(runtime_factory(settings), service_root))


async def _migrate(runtime: Runtime, service_root: Path) -> None:
    try:
        await upgrade_head(runtime.engine, service_root)
        log.info("migrated", service=runtime.service)
    finally:
        await runtime.engine.dispose()


async def _worker(runtime: Runtime, service_root: Path) -> None:
    await upgrade_head(runtime.engine, service_root)
    settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start(relay=runtime.settings.run_relay, consumers=runtime.settings.run_consumers)
    log.info("worker_started", service=runtime.service)
    await stop.wait()
    await runtime.stop()
