"""Handlers of other services' events: the read models of verified volunteers, team roles and platform roles."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from projects import repository as repo
from projects import services
from projects.models import platform_roles
from projects.unit_of_work import ProjectsUnitOfWork
from shared.contracts.base import Event
from shared.contracts.identity import AccountRolesChanged, VolunteerMerged, VolunteerVerified
from shared.contracts.teams import (
    TeamAdminAppointed,
    TeamAdminRemoved,
    TeamApproved,
    TeamProjectLeadAppointed,
    TeamProjectLeadRemoved,
)
from shared.db import UnitOfWork
from shared.messaging.consumer import Handlers
from shared.messaging.envelope import Envelope
from shared.platform_roles import keep_platform_roles

if TYPE_CHECKING:
    from projects.bootstrap import ProjectsRuntime

handlers = Handlers("projects")

ADMIN = "admin"
LEAD = "lead"


@handlers("volunteers")
async def on_volunteer(
    event: VolunteerVerified | VolunteerMerged, envelope: Envelope, uow: ProjectsUnitOfWork, runtime: ProjectsRuntime
) -> None:
    if isinstance(event, VolunteerVerified):
        await repo.upsert_volunteer(
            uow.session,
            event.account_id,
            event.volunteer_number,
            event.masked_name,
            event.region_code,
            event.verified_at,
        )
    else:
        freed = await repo.merge_volunteer(
            uow.session, kept=event.account_id, merged=event.merged_account_id, now=uow.clock.now()
        )
        # A place given back goes to those waiting once the merge has committed, as after a leave or
        # a raised quota (services.admit_waiting): an application made while this transaction runs
        # reads the position as full and goes into line unseen by it, and a waiter is locked before
        # the position's row, which this transaction holds from the release on. The admissions carry
        # the merge's correlation; one per waiter, in a transaction of its own per position.
        for position_id in freed:
            await repo.mark_places_to_give(uow.session, position_id, uow.clock.now())
            follow_up = runtime.uow(correlation_id=uow.correlation_id, causation_id=uow.causation_id)
            uow.after_commit(functools.partial(services.admit_waiting_after_commit, follow_up, position_id))


@handlers("team_roles")
async def on_team(
    event: TeamApproved | TeamAdminAppointed | TeamAdminRemoved | TeamProjectLeadAppointed | TeamProjectLeadRemoved,
    envelope: Envelope,
    uow: UnitOfWork,
    runtime: Any,
) -> None:
    s = uow.session
    if isinstance(event, TeamApproved):
        # Admins come only from team.admin_appointed (raised after team.approved, in this lane):
        # the applicant of a root team is the operator who created it, no admin of the team.
        await repo.upsert_team(s, event.team_id, event.name, event.region_code)
    elif isinstance(event, TeamAdminAppointed):
        await repo.grant_team_role(s, event.team_id, event.account_id, ADMIN, envelope.sequence)
    elif isinstance(event, TeamAdminRemoved):
        await repo.revoke_team_role(s, event.team_id, event.account_id, ADMIN, envelope.sequence)
    elif isinstance(event, TeamProjectLeadAppointed):
        await repo.grant_team_role(s, event.team_id, event.account_id, LEAD, envelope.sequence)
    else:
        await repo.revoke_team_role(s, event.team_id, event.account_id, LEAD, envelope.sequence)


@handlers("platform_roles")
async def on_roles_changed(event: AccountRolesChanged, envelope: Envelope, uow: UnitOfWork, runtime: Any) -> None:
    await keep_platform_roles(uow.session, platform_roles, event, envelope.occurred_at)


@handlers("project_activity")
async def on_project_fact(event: Event, envelope: Envelope, uow: UnitOfWork, runtime: Any) -> None:
    project_id = getattr(event, "project_id", None)
    if project_id is None:
        return
    await repo.add_activity(
        uow.session,
        envelope.event_id,
        project_id,
        envelope.event_type,
        envelope.occurred_at,
        event.model_dump(mode="json"),
    )
