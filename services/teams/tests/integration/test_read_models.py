"""The volunteers read model against events delivered late: an older verification (a dead letter
replayed) and a merged record's own verification arriving after its merge."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from shared.contracts.base import Event
from shared.contracts.identity import VolunteerMerged, VolunteerVerified
from shared.testing import envelope_for
from teams.models import MergedVolunteer, Volunteer


async def deliver(teams: Any, event: Event) -> None:
    """``event`` straight through teams' dispatcher, as a consumer delivers it."""
    envelope = envelope_for(event)
    dispatcher = teams.runtime.dispatcher
    spec = next(s for s in dispatcher.handlers.specs.values() if event.event_type in s.subscription.routing_keys)
    await dispatcher.handle(spec.subscription, envelope)


def verified(account_id: uuid.UUID, number: str, at: datetime) -> VolunteerVerified:
    return VolunteerVerified(
        account_id=account_id, volunteer_number=number, masked_name="周*", region_code="330106", verified_at=at
    )


async def test_an_older_verification_delivered_late_leaves_the_newer_one(teams: Any) -> None:
    account_id, now = uuid.uuid4(), datetime.now(UTC)
    await deliver(teams, verified(account_id, "330000000000000002", now))
    await deliver(teams, verified(account_id, "330000000000000001", now - timedelta(days=2)))
    async with teams.runtime.session_factory() as session:
        number = await session.scalar(select(Volunteer.volunteer_number).where(Volunteer.account_id == account_id))
    assert number == "330000000000000002"


async def test_a_merged_records_verification_arriving_after_the_merge_makes_no_volunteer(teams: Any) -> None:
    """The merge comes in the kept account's lane, the merged record's verification in its own."""
    [kept] = await teams.volunteers(1)
    merged = uuid.uuid4()
    await deliver(teams, VolunteerMerged(account_id=kept.account_id, merged_account_id=merged, case_id=uuid.uuid4()))
    await deliver(teams, verified(merged, "330000000000000003", datetime.now(UTC)))
    async with teams.runtime.session_factory() as session:
        assert await session.get(Volunteer, merged) is None
        tombstone = await session.get(MergedVolunteer, merged)
    assert tombstone is not None
    assert tombstone.merged_into == kept.account_id
    invited = await teams.client.post(
        f"/api/v1/teams/{(await teams.approved_team(kept))['id']}/invitations",
        json={"account_id": str(merged)},
        headers=teams.auth(kept),
    )
    assert (invited.status_code, invited.json()["code"]) == (404, "volunteer_not_found")
