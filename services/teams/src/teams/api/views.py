"""Response shapes built from the models."""

from __future__ import annotations

from shared import regions
from teams.api.schemas import TeamOut
from teams.models import Team
from teams.registration import contact_of


def team_out(team: Team) -> TeamOut:
    region = regions.get(team.region_code)
    return TeamOut(
        id=team.id,
        name=team.name,
        region_code=team.region_code,
        region_name=region.name if region else None,
        level=team.level,
        kind=team.kind,
        status=team.status,
        is_root=team.is_root,
        liaison_team_id=team.liaison_team_id,
        liaison_authorised=team.liaison_authorised,
        join_mode=team.join_mode,
        contact=contact_of(team),
        submitted_at=team.submitted_at,
    )
