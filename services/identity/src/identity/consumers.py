"""Handlers of other services' events: the team memberships read model (T7): members, admins, project leads."""

from __future__ import annotations

from typing import Any

from identity.repository import Memberships
from shared.contracts.teams import (
    TeamAdminAppointed,
    TeamAdminRemoved,
    TeamMemberJoined,
    TeamMemberLeft,
    TeamProjectLeadAppointed,
    TeamProjectLeadRemoved,
)
from shared.db import UnitOfWork
from shared.messaging.consumer import Handlers
from shared.messaging.envelope import Envelope

handlers = Handlers("identity")

_FLAGS: dict[type, dict[str, bool]] = {
    TeamMemberJoined: {"member": True},
    TeamMemberLeft: {"member": False, "admin": False, "project_lead": False},
    TeamAdminAppointed: {"admin": True},
    TeamAdminRemoved: {"admin": False},
    TeamProjectLeadAppointed: {"project_lead": True},
    TeamProjectLeadRemoved: {"project_lead": False},
}


@handlers("team_memberships")
async def follow_team_memberships(
    event: TeamMemberJoined
    | TeamMemberLeft
    | TeamAdminAppointed
    | TeamAdminRemoved
    | TeamProjectLeadAppointed
    | TeamProjectLeadRemoved,
    envelope: Envelope,
    uow: UnitOfWork,
    runtime: Any,
) -> None:
    memberships = Memberships(uow.session)
    await memberships.set(event.team_id, event.account_id, uow.clock.now(), envelope.sequence, **_FLAGS[type(event)])
