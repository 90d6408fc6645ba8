"""Response shapes built from the models."""

from __future__ import annotations

import uuid

from shared import regions
from teams.api.schemas import ApplicantOut, TeamOut
from teams.models import PENDING, Team, Volunteer
from teams.registration import contact_of


def team_out(team: Team, applicants: dict[uuid.UUID, Volunteer] | None = None) -> TeamOut:
    """The team as the API shows it; ``applicants``: the volunteers who applied, by account, for a
    view of registrations under review (shown only while the team is pending)."""
    region = regions.get(team.region_code)
    applicant = (applicants or {}).get(team.applicant_account_id) if team.status == PENDING else None
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
        uscc=team.uscc,
        registration_authority_region=team.registration_authority_region,
        applicant=ApplicantOut(
            account_id=applicant.account_id,
            masked_name=applicant.masked_name,
            volunteer_number=applicant.volunteer_number,
        )
        if applicant is not None
        else None,
    )
