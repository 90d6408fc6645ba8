"""Handlers of other services' events: the read models of verified volunteers and of admins' roles."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.auth import ROLE_NATIONAL_ADMIN
from shared.contracts.base import Event
from shared.contracts.identity import AccountRolesChanged, VolunteerMerged, VolunteerVerified
from shared.db import UnitOfWork
from shared.messaging.consumer import Handlers
from shared.messaging.envelope import Envelope
from shared.platform_roles import keep_platform_roles
from teams import membership
from teams.models import REGION_ADMINS, TeamHistory, Volunteer
from teams.repository import TeamsRepository

handlers = Handlers("teams")


@handlers("volunteers")
async def keep_volunteers(event: Any, envelope: Envelope, uow: UnitOfWork, context: Any) -> None:
    if isinstance(event, VolunteerVerified):
        repo = TeamsRepository(uow.session)
        await repo.lock_volunteer(event.account_id)
        if await repo.merged(event.account_id):
            return  # merged into another record before its verification arrived: no volunteer
        values = {
            "account_id": event.account_id,
            "volunteer_number": event.volunteer_number,
            "masked_name": event.masked_name,
            "region_code": event.region_code,
            "verified_at": event.verified_at,
        }
        stmt = pg_insert(Volunteer).values(**values)
        await uow.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Volunteer.account_id],
                set_={k: v for k, v in values.items() if k != "account_id"},
                # an older verification delivered late (a dead letter replayed) leaves the newer one
                where=Volunteer.verified_at <= stmt.excluded.verified_at,
            )
        )
    elif isinstance(event, VolunteerMerged):
        await membership.merge_accounts(uow, kept=event.account_id, merged=event.merged_account_id)


@handlers("region_admins")
async def keep_region_admins(event: AccountRolesChanged, envelope: Envelope, uow: UnitOfWork, context: Any) -> None:
    """The account's roles as last changed: a withdrawn admin keeps a row without region or
    ``is_national`` (no longer a reviewer), which bounds the tokens issued before the change."""
    await keep_platform_roles(
        uow.session,
        REGION_ADMINS,
        event,
        envelope.occurred_at,
        is_national=ROLE_NATIONAL_ADMIN in event.roles,
    )


@handlers("team_history")
async def keep_team_history(event: Event, envelope: Envelope, uow: UnitOfWork, context: Any) -> None:
    stmt = pg_insert(TeamHistory).values(
        event_id=envelope.event_id,
        team_id=uuid.UUID(str(envelope.payload["team_id"])),
        event_type=envelope.event_type,
        occurred_at=envelope.occurred_at,
        payload=envelope.payload,
    )
    await uow.session.execute(stmt.on_conflict_do_nothing(index_elements=[TeamHistory.event_id]))
