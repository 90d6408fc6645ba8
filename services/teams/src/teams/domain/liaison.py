"""T3, T4: which team may be a new team's liaison (联络团体).

It must be authorised by its region's admin to take sub-teams (and approved itself), sit in the
new team's own city (prefecture; a municipality counts as one), and exactly one level up: its
region is the parent of the new team's region. The refusals say which rule failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import regions
from shared.errors import ErrorSpec
from teams.errors import LIAISON_CROSS_CITY, LIAISON_CROSS_LEVEL, LIAISON_NOT_AUTHORISED, LIAISON_OUTSIDE_REGION


@dataclass(frozen=True)
class LiaisonCandidate:
    region_code: str
    approved: bool
    authorised: bool


def liaison_refusal(new_region: str, liaison: LiaisonCandidate) -> ErrorSpec | None:
    """None when ``liaison`` may take a new team in ``new_region``; else the rule that fails."""
    if not (liaison.approved and liaison.authorised):
        return LIAISON_NOT_AUTHORISED
    liaison_city = regions.city_of(liaison.region_code)
    # A province (not a municipality) is above every city: only the level rule applies to it.
    if liaison_city is not None and liaison_city != regions.city_of(new_region):
        return LIAISON_CROSS_CITY
    parent = regions.parent_of(new_region)
    if parent is None or parent.code != liaison.region_code:
        liaison_region = regions.get(liaison.region_code)
        if parent is not None and liaison_region is not None and liaison_region.rank == parent.rank:
            # the right level, but a neighbouring county (or district) of the same city
            return LIAISON_OUTSIDE_REGION
        return LIAISON_CROSS_LEVEL
    return None


def liaison_region_for(new_region: str) -> str | None:
    """The one region a valid liaison for ``new_region`` sits in (its parent), if any."""
    parent = regions.parent_of(new_region)
    return parent.code if parent is not None else None
