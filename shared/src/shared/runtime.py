"""Wiring shared by the four services: engine, unit of work, broker, relay, consumers, verifier.

Each service's ``bootstrap`` builds one :class:`Runtime`; the HTTP app's lifespan and the
``worker`` entry point both start it. Standalone mode passes one in-process broker to all four.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.aio import cancel_and_wait
from shared.auth import JwksSource, RolesLookup, TokenVerifier
from shared.clock import Clock, SystemClock
from shared.db import UnitOfWork, asyncpg_dsn, make_engine, make_session_factory
from shared.logging import get_logger
from shared.messaging.amqp import AmqpBroker
from shared.messaging.broker import Broker
from shared.messaging.consumer import Dispatcher, Handlers
from shared.messaging.inprocess import InProcessBroker
from shared.messaging.relay import OutboxRelay
from shared.messaging.tables import MessagingTables
from shared.settings import ServiceSettings
from shared.web import correlation_id_var

log = get_logger("shared.runtime")


def build_broker(settings: ServiceSettings) -> Broker:
    if settings.bus == "inprocess":
        return InProcessBroker(max_attempts=settings.max_handler_attempts)
    return AmqpBroker(
        settings.amqp_url,
        exchange=settings.exchange,
        prefetch=settings.consumer_prefetch,
        lanes=settings.consumer_lanes,
        max_attempts=settings.max_handler_attempts,
        delivery_limit=settings.delivery_limit,
    )


def build_verifier(settings: ServiceSettings, clock: Clock) -> TokenVerifier:
    return TokenVerifier(
        JwksSource(settings.jwks_url, cache_seconds=settings.jwks_cache_seconds),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithm=settings.jwt_algorithm,
        leeway_seconds=settings.jwt_leeway_seconds,
        clock=clock,
    )


class Runtime:
    def __init__(
        self,
        settings: ServiceSettings,
        messaging: MessagingTables,
        *,
        handlers: Handlers | None = None,
        broker: Broker | None = None,
        clock: Clock | None = None,
        verifier: TokenVerifier | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.settings = settings
        self.service = settings.service_name
        self.messaging = messaging
        self.clock = clock or SystemClock()
        self.engine = engine or make_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pre_ping=settings.database_pre_ping,
        )
        self.session_factory = make_session_factory(self.engine)
        self.owns_broker = broker is None
        self.broker: Broker = broker or build_broker(settings)
        self.verifier = verifier or build_verifier(settings, self.clock)
        #: the platform roles the service knows now, bounding privileged tokens (``shared.auth``);
        #: None: tokens are taken as they are
        self.principal_roles: RolesLookup | None = None
        self.handlers = handlers
        self.dispatcher = (
            Dispatcher(handlers, self.uow, messaging, context=self, batch_size=settings.consumer_batch_size)
            if handlers and handlers.specs
            else None
        )
        self.relay = OutboxRelay(
            self.engine,
            messaging,
            self.broker,
            service=self.service,
            listen_dsn=asyncpg_dsn(settings.database_url),
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval,
            retention_days=settings.outbox_retention_days,
        )
        self._started_relay = False
        self._started_consumers = False
        #: background jobs a service adds (sweeps, mail sender); started and stopped with the runtime
        self.background: list[Any] = []
        self._background_tasks: list[asyncio.Task[None]] = []

    def uow(self, correlation_id: str | None = None, causation_id: str | None = None) -> UnitOfWork:
        return UnitOfWork(
            self.session_factory,
            self.messaging,
            producer=self.service,
            clock=self.clock,
            correlation_id=correlation_id or correlation_id_var.get(),
            causation_id=causation_id,
        )

    async def start(self, *, relay: bool = True, consumers: bool = True, background: bool = True) -> None:
        if consumers and self.dispatcher is not None:
            self.dispatcher.attach(self.broker)
            self._started_consumers = True
        if self.owns_broker or self._started_consumers:
            await self.broker.start()
        if relay:
            await self.relay.start()
            self._started_relay = True
        if background:
            for job in self.background:
                self._background_tasks.append(asyncio.create_task(job(), name=f"{self.service}-job"))

    async def stop(self) -> None:
        """Stop in order (jobs, relay, consumers, pool), each step within ``shutdown_step_seconds``:
        a step still running then is logged with where every pending task waits, and cut short,
        so a stop always ends (an orchestrator would otherwise kill the process unexplained)."""
        await self._within("background_jobs", cancel_and_wait(*self._background_tasks))
        self._background_tasks = []
        if self._started_relay:
            await self._within("relay", self.relay.stop())
        if self.owns_broker:
            await self._within("broker", self.broker.close())
        await self._within("database_pool", self.engine.dispose())

    async def _within(self, step: str, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=self.settings.shutdown_step_seconds)
        if task in done:
            task.result()
            return
        here = asyncio.current_task()
        waiting = [awaiting(t) for t in asyncio.all_tasks() if t is not here and not t.done()]
        log.error("shutdown_step_stuck", step=step, seconds=self.settings.shutdown_step_seconds, tasks=waiting[:30])
        task.cancel()

    async def broker_ready(self) -> bool:
        ready = getattr(self.broker, "consumers_ready", None)
        if self._started_consumers and ready is not None:
            return bool(ready.is_set())
        probe = getattr(self.broker, "_publisher", None)
        if probe is not None:
            await probe()
        return True


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where a task waits: its chain of awaits, outermost first ("function (file:line)" each)."""
    parts: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(parts) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            # no "@" between name and file: that reads as an email address to the log privacy scan
            parts.append(f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return f"{task.get_name()}: " + " > ".join(parts)
