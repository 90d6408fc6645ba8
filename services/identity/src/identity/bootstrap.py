"""The one place the identity service is wired."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from identity import import_models  # noqa: F401 - the importer's tables join the metadata
from identity.config import IdentitySettings
from identity.consumers import handlers
from identity.crypto import DataCipher, build_cipher
from identity.models import Account, messaging
from identity.passwords import Passwords
from identity.verification import VerificationProvider, build_provider, run_verifier
from shared.aio import every
from shared.auth import JwksSource, KnownRoles, RolesLookup, TokenSigner, TokenVerifier
from shared.clock import Clock, SystemClock
from shared.logging import get_logger
from shared.messaging.broker import Broker
from shared.runtime import Runtime

if TYPE_CHECKING:
    from identity.importer import ImportQueue

SERVICE_ROOT = Path(__file__).resolve().parents[2]
log = get_logger("identity.bootstrap")


class IdentityRuntime(Runtime):
    settings: IdentitySettings
    signer: TokenSigner
    passwords: Passwords
    cipher: DataCipher
    verification_provider: VerificationProvider
    #: this process's uploaded imports, at most ``import_concurrency`` at once
    imports: ImportQueue

    async def stop(self) -> None:
        # the imports first: a running one holds a loader connection of its own, outside the pool
        await self._within("imports", self.imports.close())
        await super().stop()


def build_signer(settings: IdentitySettings, clock: Clock) -> TokenSigner:
    if settings.jwt_private_key is not None:
        text = settings.jwt_private_key.get_secret_value()
        if "\n" not in text and "\\n" in text:
            # written on one line with \n escapes (env files, secret stores that keep one line)
            text = text.replace("\\n", "\n")
        pem = text.encode()
    else:
        log.warning("jwt_key_generated", reason="IDENTITY_JWT_PRIVATE_KEY not set; tokens die with this process")
        pem = TokenSigner.generate_pem(settings.jwt_algorithm)
    return TokenSigner(
        pem, issuer=settings.jwt_issuer, audience=settings.jwt_audience, algorithm=settings.jwt_algorithm, clock=clock
    )


def account_roles_lookup(engine: AsyncEngine) -> RolesLookup:
    """An account's roles and admin region as identity holds them now: a token's roles are bounded
    by them, so a withdrawn role stops working at once. An unknown account bounds nothing."""
    query = select(Account.roles, Account.admin_region).where(Account.id == bindparam("account_id"))

    async def lookup(account_id: uuid.UUID) -> KnownRoles | None:
        async with engine.connect() as conn:
            row = (await conn.execute(query, {"account_id": account_id})).first()
        return None if row is None else KnownRoles(roles=frozenset(row.roles), region=row.admin_region)

    return lookup


def build_runtime(
    settings: IdentitySettings,
    *,
    broker: Broker | None = None,
    clock: Clock | None = None,
    signer: TokenSigner | None = None,
) -> IdentityRuntime:
    clock = clock or SystemClock()
    signer = signer or build_signer(settings, clock)
    # identity verifies its own tokens from its own key set, never over HTTP.
    verifier = TokenVerifier(
        JwksSource(keys_provider=signer.jwks),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithm=settings.jwt_algorithm,
        leeway_seconds=settings.jwt_leeway_seconds,
        clock=clock,
    )
    runtime = IdentityRuntime(settings, messaging, handlers=handlers, broker=broker, clock=clock, verifier=verifier)
    runtime.principal_roles = account_roles_lookup(runtime.engine)
    runtime.signer = signer
    runtime.passwords = Passwords(
        memory_kib=settings.argon2_memory_kib,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
    )
    runtime.cipher = build_cipher(settings)
    runtime.verification_provider = build_provider(settings)
    from identity.importer import ImportQueue  # the importer imports this module

    runtime.imports = ImportQueue(settings, runtime.engine, runtime.cipher, clock, limit=settings.import_concurrency)

    async def verifier_job() -> None:
        await run_verifier(runtime)

    async def import_watch() -> None:
        # at start (jobs a restart cut off) and then every minute (another replica's); keeps this
        # process's queued jobs alive meanwhile
        from identity.importer import watch_imports

        await every(
            60,
            lambda: watch_imports(runtime.imports, runtime.engine, runtime.clock),
            failed="import_watch_failed",
            log=log,
        )

    async def purge_job() -> None:
        from identity.retention import INTERVAL_SECONDS, purge_spent

        await every(
            INTERVAL_SECONDS, lambda: purge_spent(runtime.engine, runtime.clock), failed="purge_failed", log=log
        )

    runtime.background += [verifier_job, import_watch, purge_job]
    return runtime
