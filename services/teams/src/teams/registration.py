"""Use cases of registering and reviewing teams (T1–T5) and of root liaison teams.

Each function works inside a unit of work the caller opened; none commits. Every team that
raises events is tracked by the unit of work: the session holds clean objects only weakly, and
an event must not vanish with an object the caller no longer references.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from shared import regions
from shared.auth import ROLE_REGIONAL_ADMIN, Principal, region_prefix
from shared.clock import CHINA_TZ, Clock
from shared.contracts.teams import (
    TeamAdminAppointed,
    TeamApproved,
    TeamLiaisonAuthorised,
    TeamLiaisonWithdrawn,
    TeamMemberJoined,
    TeamRegistered,
    TeamRejected,
    TeamReviewOverdue,
    TeamReviewReminderRequested,
)
from shared.db import UnitOfWork
from shared.errors import AppError
from teams.access import (
    is_reviewer,
    liaison_reviewer_ids,
    load_team,
    load_visible_team,
    require_region_admin,
    require_verified,
)
from teams.api.schemas import ContactOut, ReviewDecision, ReviewerOut, RootTeamCreate, TeamContact, TeamRegistration
from teams.config import AuthorityContact, TeamsSettings
from teams.domain import review
from teams.domain.kinds import NATIONAL_AUTHORITY, TeamKind, check_registration
from teams.domain.liaison import LiaisonCandidate, liaison_refusal
from teams.domain.naming import check_team_name, name_key
from teams.errors import (
    LIAISON_NOT_AVAILABLE,
    LIAISON_NOT_FOUND,
    LIAISON_REQUIRED,
    NOT_APPLICANT,
    NOT_REVIEWER,
    REGION_INVALID,
    REJECTION_REASON_REQUIRED,
    REMINDER_ALREADY_SENT_TODAY,
    REMINDER_TOO_EARLY,
    TEAM_ALREADY_REVIEWED,
    TEAM_NAME_TAKEN,
    TEAM_NOT_APPROVED,
    TEAM_NOT_FOUND,
    TEAM_WITHDRAWN,
    USCC_TAKEN,
    VOLUNTEER_NOT_FOUND,
)
from teams.models import APPROVED, PENDING, REJECTED, WITHDRAWN, Membership, Team
from teams.repository import TeamsRepository


def _local(moment: datetime) -> str:
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def set_contact(team: Team, contact: TeamContact) -> None:
    team.contact_person = contact.person
    team.contact_phone = contact.phone
    team.contact_email = str(contact.email)
    team.contact_address = contact.address


def contact_of(team: Team) -> ContactOut:
    return ContactOut(
        person=team.contact_person, phone=team.contact_phone, email=team.contact_email, address=team.contact_address
    )


async def _check_unique(repo: TeamsRepository, region_code: str, name: str, uscc: str | None) -> None:
    if await repo.name_taken(region_code, name_key(name)):
        raise AppError(TEAM_NAME_TAKEN, {"region_code": region_code})
    if uscc is not None and await repo.uscc_taken(uscc):
        raise AppError(USCC_TAKEN)


async def _flush_new_team(uow: UnitOfWork) -> None:
    """Two registrations racing for one name: the partial unique index decides."""
    try:
        await uow.flush()
    except IntegrityError as exc:
        if "uq_teams_uscc" in str(exc.orig):
            raise AppError(USCC_TAKEN) from None
        raise AppError(TEAM_NAME_TAKEN) from None


def _region(code: str) -> regions.Region:
    region = regions.get(code)
    if region is None:
        raise AppError(REGION_INVALID, {"field": "region_code"})
    return region


async def reviewer_ids(repo: TeamsRepository, team: Team) -> list[uuid.UUID]:
    """Who reviews ``team`` (T5), never its applicant: the regional admins acting for the
    registration authority of a social organisation; else the liaison team's admins or, when the
    liaison has none besides the applicant, the admins of the liaison's region in its place. Where
    no regional admin is known up the chain, the national admins: a registration always has one."""
    applicant = team.applicant_account_id
    if team.registration_authority_region is not None:
        region = team.registration_authority_region
    elif team.liaison_team_id is not None:
        liaison_admins = await liaison_reviewer_ids(repo, team)
        if liaison_admins:
            return liaison_admins
        liaison = await repo.team(team.liaison_team_id)
        if liaison is None:
            return []
        region = liaison.region_code
    else:
        return []
    return await repo.nearest_region_admins(region, excluding=applicant) or await repo.national_admin_ids(
        excluding=applicant
    )


async def reviews_waiting_for(
    uow: UnitOfWork, principal: Principal, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> Sequence[Team]:
    """A page of the registrations ``principal`` may decide now (those ``is_reviewer`` allows),
    oldest first (never their own), after the ``(submitted_at, id)`` of the previous page."""
    # the regions ``principal.administers_region`` covers: all (''), those under a prefix, or none
    regions_prefix: str | None = None
    if principal.is_national_admin:
        regions_prefix = ""
    elif ROLE_REGIONAL_ADMIN in principal.roles and principal.region is not None:
        regions_prefix = region_prefix(principal.region)
    return await TeamsRepository(uow.session).pending_reviews_page(
        principal.account_id,
        regions_prefix=regions_prefix,
        after=after,
        limit=limit,
    )


# -- registering (T1–T4) -------------------------------------------------------------------------
async def register_team(uow: UnitOfWork, clock: Clock, principal: Principal, data: TeamRegistration) -> Team:
    repo = TeamsRepository(uow.session)
    await require_verified(repo, principal)
    name = check_team_name(data.name)
    region = _region(data.region_code)
    kind = TeamKind(data.kind)
    uscc, authority = check_registration(kind, data.uscc, data.registration_authority_region)
    liaison: Team | None = None
    if data.liaison_team_id is not None:
        # shared: a withdrawal of its authorisation waits for this registration, or this one
        # reads the withdrawal once committed; registrations under one liaison do not wait on each other
        liaison = await repo.team(data.liaison_team_id, for_share=True)
        if liaison is None:
            raise AppError(LIAISON_NOT_FOUND)
        refusal = liaison_refusal(
            region.code,
            LiaisonCandidate(liaison.region_code, liaison.status == APPROVED, liaison.liaison_authorised),
        )
        if refusal is not None:
            raise AppError(refusal, {"region_code": region.code, "liaison_region_code": liaison.region_code})
    elif not kind.is_social_organisation:
        parent = regions.parent_of(region.code)
        if parent is None:
            raise AppError(LIAISON_NOT_AVAILABLE)
        raise AppError(LIAISON_REQUIRED, {"liaison_region_code": parent.code})
    await _check_unique(repo, region.code, name, uscc)
    now = clock.now()
    team = Team(
        id=uuid.uuid4(),
        name=name,
        name_key=name_key(name),
        region_code=region.code,
        level=region.level,
        kind=kind.value,
        uscc=uscc,
        registration_authority_region=authority,
        liaison_team_id=liaison.id if liaison else None,
        status=PENDING,
        is_root=False,
        liaison_authorised=False,
        applicant_account_id=principal.account_id,
        submitted_at=now,
    )
    set_contact(team, data.contact)
    uow.session.add(team)
    await _flush_new_team(uow)
    # The applicant administers the team from the start (to follow its review); the facts other
    # services act on (member, admin) are raised when it is approved.
    uow.session.add(Membership(team_id=team.id, account_id=principal.account_id, is_admin=True, joined_at=now))
    team.raise_event(
        TeamRegistered(
            team_id=team.id,
            name=team.name,
            region_code=team.region_code,
            kind=team.kind,
            applicant_account_id=principal.account_id,
            liaison_team_id=team.liaison_team_id,
            registration_authority_region=authority,
            reviewer_account_ids=await reviewer_ids(repo, team),
        )
    )
    return team


async def create_root_team(uow: UnitOfWork, clock: Clock, principal: Principal, data: RootTeamCreate) -> Team:
    """A root liaison team (a federation of its region) created directly by an admin, approved."""
    repo = TeamsRepository(uow.session)
    region = _region(data.region_code)
    require_region_admin(principal, region.code)
    name = check_team_name(data.name)
    kind = TeamKind(data.kind)
    uscc, authority = check_registration(kind, data.uscc, data.registration_authority_region)
    if data.admin_account_id is not None and await repo.volunteer(data.admin_account_id) is None:
        raise AppError(VOLUNTEER_NOT_FOUND)
    await _check_unique(repo, region.code, name, uscc)
    now = clock.now()
    team = Team(
        id=uuid.uuid4(),
        name=name,
        name_key=name_key(name),
        region_code=region.code,
        level=region.level,
        kind=kind.value,
        uscc=uscc,
        registration_authority_region=authority,
        status=APPROVED,
        is_root=True,
        liaison_authorised=data.liaison_authorised,
        applicant_account_id=principal.account_id,
        submitted_at=now,
        decided_at=now,
        decided_by=principal.account_id,
    )
    set_contact(team, data.contact)
    uow.session.add(team)
    await _flush_new_team(uow)
    # Other services learn of a root team as of any approved one (projects keeps approved teams).
    team.raise_event(
        TeamApproved(
            team_id=team.id,
            name=team.name,
            region_code=team.region_code,
            applicant_account_id=data.admin_account_id or principal.account_id,
            reviewed_by_account_id=principal.account_id,
            reason="由管理员直接创建的联络团体",
            root_team=True,
        )
    )
    if data.liaison_authorised:
        team.raise_event(
            TeamLiaisonAuthorised(team_id=team.id, region_code=team.region_code, by_account_id=principal.account_id)
        )
    if data.admin_account_id is not None:
        uow.session.add(Membership(team_id=team.id, account_id=data.admin_account_id, is_admin=True, joined_at=now))
        team.raise_event(TeamMemberJoined(team_id=team.id, account_id=data.admin_account_id))
        team.raise_event(TeamAdminAppointed(team_id=team.id, account_id=data.admin_account_id))
    return team


async def set_liaison_authorisation(
    uow: UnitOfWork, principal: Principal, team_id: uuid.UUID, authorised: bool
) -> Team:
    repo = TeamsRepository(uow.session)
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    require_region_admin(principal, team.region_code)
    if team.status != APPROVED:
        raise AppError(TEAM_NOT_APPROVED)
    if team.liaison_authorised == authorised:
        return team  # asked twice: nothing changes, nothing is raised
    team.liaison_authorised = authorised
    event_type = TeamLiaisonAuthorised if authorised else TeamLiaisonWithdrawn
    team.raise_event(event_type(team_id=team.id, region_code=team.region_code, by_account_id=principal.account_id))
    return team


async def liaison_choices(uow: UnitOfWork, region_code: str) -> tuple[str | None, list[Team]]:
    """T4: only teams that are valid liaisons for a new team in ``region_code``."""
    region = _region(region_code)
    parent = regions.parent_of(region.code)
    if parent is None:
        return None, []
    candidates = await TeamsRepository(uow.session).liaison_candidates(parent.code)
    valid = [
        t
        for t in candidates
        if liaison_refusal(region.code, LiaisonCandidate(t.region_code, t.status == APPROVED, t.liaison_authorised))
        is None
    ]
    return parent.code, valid


# -- review (T5) ---------------------------------------------------------------------------------
async def decide(
    uow: UnitOfWork, clock: Clock, principal: Principal, team_id: uuid.UUID, decision: ReviewDecision
) -> Team:
    repo = TeamsRepository(uow.session)
    team = await load_visible_team(repo, team_id, principal, for_update=True)
    if not await is_reviewer(repo, principal, team):
        raise AppError(NOT_REVIEWER)
    _require_pending(team)
    reason = (decision.reason or "").strip() or None
    team.decided_at = clock.now()
    team.decided_by = principal.account_id
    team.decision_reason = reason
    if decision.outcome == "rejected":
        if reason is None:
            raise AppError(REJECTION_REASON_REQUIRED)
        team.status = REJECTED
        team.raise_event(
            TeamRejected(
                team_id=team.id,
                name=team.name,
                applicant_account_id=team.applicant_account_id,
                reviewed_by_account_id=principal.account_id,
                reason=reason,
            )
        )
        return team
    team.status = APPROVED
    team.raise_event(
        TeamApproved(
            team_id=team.id,
            name=team.name,
            region_code=team.region_code,
            applicant_account_id=team.applicant_account_id,
            reviewed_by_account_id=principal.account_id,
            reason=reason,
        )
    )
    for admin_id in await repo.admin_ids(team.id):
        team.raise_event(TeamMemberJoined(team_id=team.id, account_id=admin_id))
        team.raise_event(TeamAdminAppointed(team_id=team.id, account_id=admin_id))
    return team


def _require_pending(team: Team) -> None:
    if team.status == WITHDRAWN:
        raise AppError(TEAM_WITHDRAWN)
    if team.status != PENDING:
        raise AppError(TEAM_ALREADY_REVIEWED, {"status": team.status})


async def withdraw_registration(uow: UnitOfWork, clock: Clock, principal: Principal, team_id: uuid.UUID) -> Team:
    """The applicant withdraws a registration still under review (its liaison lost its right to
    take sub-teams, or they want another): it leaves every review list, the overdue sweep and the
    reminders, and frees its name and credit code for a registration under another liaison; the row
    stays, ``withdrawn``, a record of what was asked. Asked again, nothing changes. Once decided, the
    decision stands (``team_already_reviewed``). No event: the other services never hear of a
    registration before it is decided (``team.registered`` is teams' own)."""
    repo = TeamsRepository(uow.session)
    team = await _applicant_team(repo, principal, team_id, lock=True)  # decide() waits, or is waited for
    if team.status == WITHDRAWN:
        return team
    if team.status != PENDING:
        raise AppError(TEAM_ALREADY_REVIEWED, {"status": team.status})
    team.status = WITHDRAWN
    team.decided_at = clock.now()  # when its review ended; decided_by stays empty: no reviewer decided
    return team


async def _applicant_team(repo: TeamsRepository, principal: Principal, team_id: uuid.UUID, lock: bool) -> Team:
    team = await load_visible_team(repo, team_id, principal, for_update=lock)  # hidden from strangers
    if team.applicant_account_id != principal.account_id:
        raise AppError(NOT_APPLICANT)
    return team


async def remind(uow: UnitOfWork, clock: Clock, principal: Principal, team_id: uuid.UUID) -> Team:
    """提醒审核: from 4 days without a decision, at most once a day."""
    repo = TeamsRepository(uow.session)
    team = await _applicant_team(repo, principal, team_id, lock=True)
    _require_pending(team)
    now = clock.now()
    verdict = review.reminder_decision(team.submitted_at, team.last_reminder_at, now)
    if not verdict.allowed:
        assert verdict.not_before is not None
        when = verdict.not_before.isoformat()
        if verdict.too_early:
            raise AppError(
                REMINDER_TOO_EARLY, {"available_at": when}, params={"available_at": _local(verdict.not_before)}
            )
        raise AppError(
            REMINDER_ALREADY_SENT_TODAY,
            {"next_available_at": when},
            params={"next_available_at": _local(verdict.not_before)},
        )
    team.last_reminder_at = now
    team.raise_event(
        TeamReviewReminderRequested(
            team_id=team.id,
            name=team.name,
            applicant_account_id=team.applicant_account_id,
            reviewer_account_ids=await reviewer_ids(repo, team),
            requested_at=now,
            days_waiting=review.days_waiting(team.submitted_at, now),
        )
    )
    return team


@dataclass(frozen=True)
class ReviewView:
    team: Team
    now: datetime
    reviewer: ReviewerOut


async def review_status(
    uow: UnitOfWork,
    clock: Clock,
    settings: TeamsSettings,
    principal: Principal,
    team_id: uuid.UUID,
    lang: str = "zh",
) -> ReviewView:
    """What the applicant sees of a review, and the reviewers and the admins of the team's region
    with it (the escalation of day 7 goes to those admins); reviewer contact from day 7."""
    repo = TeamsRepository(uow.session)
    team = await load_team(repo, team_id)
    if (
        team.applicant_account_id != principal.account_id
        and not principal.administers_region(team.region_code)
        and not await is_reviewer(repo, principal, team)
    ):
        if team.status != APPROVED:
            raise AppError(TEAM_NOT_FOUND)
        raise AppError(NOT_APPLICANT)
    now = clock.now()
    show_contact = team.status == PENDING and review.is_overdue(team.submitted_at, now)
    reviewer: ReviewerOut
    if team.registration_authority_region is not None:
        authority_region = regions.get(team.registration_authority_region)
        place = authority_region.name if authority_region else team.registration_authority_region
        if team.registration_authority_region == NATIONAL_AUTHORITY:
            name = "Ministry of Civil Affairs" if lang == "en" else "民政部"
        else:
            name = f"Civil affairs bureau of {place}" if lang == "en" else f"{place}民政部门"
        reviewer = ReviewerOut(kind="registration_authority", name=name)
        found = _authority_contact(settings, team.registration_authority_region)
        if found is not None:
            reviewer.name = found.name
            if show_contact:
                reviewer.contact = ContactOut(
                    person=found.person, phone=found.phone, email=found.email, address=found.address
                )
                reviewer.working_hours = found.working_hours or None
    else:
        liaison = await repo.team(team.liaison_team_id) if team.liaison_team_id else None
        if liaison is not None and not await liaison_reviewer_ids(repo, team):
            reviewer = _region_admins_reviewer(settings, liaison.region_code, show_contact, lang)
        else:
            reviewer = ReviewerOut(kind="liaison_team", name=liaison.name if liaison else "")
            if show_contact and liaison is not None:
                reviewer.contact = contact_of(liaison)
    return ReviewView(team=team, now=now, reviewer=reviewer)


def _region_admins_reviewer(
    settings: TeamsSettings, region_code: str, show_contact: bool, lang: str = "zh"
) -> ReviewerOut:
    """The admins of the liaison's region, reviewing in place of a liaison team with no other
    admin; their office's contact is the region's configured authority contact. (Region names
    are Chinese in either language: GB/T 2260 names them so.)"""
    region = regions.get(region_code)
    place = region.name if region else region_code
    reviewer = ReviewerOut(
        kind="region_admins", name=f"Region admins of {place}" if lang == "en" else f"{place}地区管理员"
    )
    found = _authority_contact(settings, region_code)
    if found is not None and show_contact:
        reviewer.contact = ContactOut(person=found.person, phone=found.phone, email=found.email, address=found.address)
        reviewer.working_hours = found.working_hours or None
    return reviewer


def _authority_contact(settings: TeamsSettings, region_code: str) -> AuthorityContact | None:
    for region in regions.ancestors(region_code):
        if region.code in settings.authority_contacts:
            return settings.authority_contacts[region.code]
    return None


async def sweep_overdue_reviews(uow: UnitOfWork, clock: Clock, batch: int = 100) -> int:
    """Raise ``team.review_overdue`` once per team 7 days without a decision; returns how many."""
    repo = TeamsRepository(uow.session)
    now = clock.now()
    overdue = await repo.overdue_reviews(now - review.OVERDUE_AFTER, batch)
    for team in overdue:
        reviewers = await reviewer_ids(repo, team)
        liaison = await repo.team(team.liaison_team_id) if team.liaison_team_id is not None else None
        # the region's admins, and the liaison team's own (T5: "the reviewer and its regional
        # admin"), who authorised it to take sub-teams (T4); each the nearest that has any
        nearest = set(await repo.nearest_region_admins(team.region_code, excluding=team.applicant_account_id))
        if liaison is not None:
            nearest |= set(await repo.nearest_region_admins(liaison.region_code, excluding=team.applicant_account_id))
        admins = sorted(a for a in nearest if a not in reviewers)
        team.overdue_raised_at = now
        team.raise_event(
            TeamReviewOverdue(
                team_id=team.id,
                name=team.name,
                region_code=team.region_code,
                applicant_account_id=team.applicant_account_id,
                reviewer_account_ids=reviewers,
                region_admin_account_ids=admins,
                submitted_at=team.submitted_at,
                liaison_team_id=team.liaison_team_id,
                liaison_team_name=liaison.name if liaison is not None else None,
                registration_authority_region=team.registration_authority_region,
            )
        )
    return len(overdue)
