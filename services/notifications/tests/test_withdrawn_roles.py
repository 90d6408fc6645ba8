"""The operator API (national admins) refuses a token whose role identity withdrew after issuing it,
as soon as ``account.roles_changed`` has come over RabbitMQ; a volunteer's token is never looked up.

Tokens here are signed on the system clock, as the producer's events are stamped."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from notifications.models import platform_roles
from shared.auth import ROLE_CHANGE_MARGIN_SECONDS, ROLE_NATIONAL_ADMIN, ROLE_VOLUNTEER
from shared.contracts.identity import AccountRolesChanged
from shared.testing import SmtpServer, recorded_statements

from .conftest import Service, StartService

HANDLER = "platform_roles"


def bearer(service: Service, account_id: uuid.UUID, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.signer.issue(account_id, roles=roles)}"}


async def emails(service: Service, headers: dict[str, str]) -> Any:
    return await service.client.get("/api/v1/emails", params={"limit": 1}, headers=headers)


async def row(service: Service, account_id: uuid.UUID) -> Any:
    async with service.runtime.engine.connect() as conn:
        stmt = select(platform_roles).where(platform_roles.c.account_id == account_id)
        return (await conn.execute(stmt)).one()


async def test_operator_emails_list_refuses_a_withdrawn_national_admins_old_token(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        admin_id = uuid.uuid4()
        old_token = bearer(service, admin_id, ROLE_NATIONAL_ADMIN)
        assert (await emails(service, old_token)).status_code == 200

        [withdrawn] = await service.produce(AccountRolesChanged(account_id=admin_id, roles=[ROLE_VOLUNTEER]))
        await service.handled(withdrawn, HANDLER)
        refused = await emails(service, old_token)
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
        some_email = uuid.uuid4()
        for path in (f"/api/v1/emails/{some_email}", f"/api/v1/emails/{some_email}/replay"):
            method = service.client.post if path.endswith("replay") else service.client.get
            response = await method(path, headers=old_token)
            assert (response.status_code, response.json()["code"]) == (403, "forbidden")

        # a token issued after the change carries the roles identity gave then
        stored = await row(service, admin_id)
        await asyncio.sleep(max(0.0, stored.changed_at.timestamp() + ROLE_CHANGE_MARGIN_SECONDS + 1 - time.time()))
        assert (await emails(service, bearer(service, admin_id, ROLE_VOLUNTEER))).status_code == 403
        # ... and stands when it carries a role granted since (whose event may still be on its way)
        assert (await emails(service, bearer(service, admin_id, ROLE_NATIONAL_ADMIN))).status_code == 200
        # the role granted again: the old token serves again
        [granted] = await service.produce(AccountRolesChanged(account_id=admin_id, roles=[ROLE_NATIONAL_ADMIN]))
        await service.handled(granted, HANDLER)
        assert (await emails(service, old_token)).status_code == 200


async def test_an_older_role_change_arriving_after_a_newer_one_does_not_restore_the_role(
    start_service: StartService, smtp_server: SmtpServer
) -> None:
    async with start_service(smtp_server) as service:
        admin_id = uuid.uuid4()
        old_token = bearer(service, admin_id, ROLE_NATIONAL_ADMIN)
        now = datetime.now(UTC)
        withdrawal = AccountRolesChanged(account_id=admin_id, roles=[ROLE_VOLUNTEER])
        stale_grant = AccountRolesChanged(account_id=admin_id, roles=[ROLE_NATIONAL_ADMIN])
        first = await service.publish(withdrawal, occurred_at=now + timedelta(seconds=2))
        await service.handled(first.event_id, HANDLER)
        late = await service.publish(stale_grant, occurred_at=now + timedelta(seconds=1))
        await service.handled(late.event_id, HANDLER)

        stored = await row(service, admin_id)
        assert (stored.roles, stored.changed_at) == ([ROLE_VOLUNTEER], now + timedelta(seconds=2))
        refused = await emails(service, old_token)
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")


async def test_volunteer_requests_make_no_role_lookup(start_service: StartService, smtp_server: SmtpServer) -> None:
    async with start_service(smtp_server) as service:
        volunteer = bearer(service, uuid.uuid4(), ROLE_VOLUNTEER)
        with recorded_statements(service.runtime.engine) as seen:
            assert (await emails(service, volunteer)).status_code == 403
        assert [s for s in seen if "platform_roles" in s] == []
        with recorded_statements(service.runtime.engine) as seen:
            assert (await emails(service, service.admin)).status_code == 200
        assert len([s for s in seen if "platform_roles" in s]) == 1
