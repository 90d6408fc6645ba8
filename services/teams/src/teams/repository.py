"""Every query of the teams service."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select, text, true, tuple_, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from shared import regions
from teams.models import (
    APPROVED,
    CLOSED,
    LIVE_STATUSES,
    PENDING,
    Invitation,
    JoinRequest,
    Membership,
    MergedVolunteer,
    RegionAdmin,
    Team,
    TeamHistory,
    Volunteer,
)

_LOCK_VOLUNTEER = text("SELECT pg_advisory_xact_lock(hashtext('teams-volunteer'), hashtext(:account))")


@dataclass(frozen=True)
class MergedMembership:
    """What a volunteer-record merge did to one team's membership of the merged record: it moved
    to the kept record, or, where both were members, the kept one took the stronger roles."""

    team_id: uuid.UUID
    kept_was_member: bool
    kept_was_admin: bool
    kept_was_lead: bool
    merged_was_admin: bool
    merged_was_lead: bool


class TeamsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- teams ---------------------------------------------------------------------------------
    async def team(self, team_id: uuid.UUID, *, for_update: bool = False, for_share: bool = False) -> Team | None:
        stmt = select(Team).where(Team.id == team_id)
        if for_update or for_share:
            stmt = stmt.with_for_update(read=not for_update)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def lock_teams(self, team_ids: Iterable[uuid.UUID]) -> list[Team]:
        """Lock several teams' rows, always in one order, so two such callers cannot deadlock."""
        ids = sorted(set(team_ids))
        if not ids:
            return []
        stmt = select(Team).where(Team.id.in_(ids)).order_by(Team.id).with_for_update()
        return list((await self.session.execute(stmt)).scalars().all())

    async def name_taken(self, region_code: str, name_key: str) -> bool:
        stmt = select(Team.id).where(
            Team.region_code == region_code, Team.name_key == name_key, Team.status.in_(LIVE_STATUSES)
        )
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def uscc_taken(self, uscc: str) -> bool:
        stmt = select(Team.id).where(Team.uscc == uscc, Team.status.in_(LIVE_STATUSES))
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def liaison_candidates(self, region_code: str) -> Sequence[Team]:
        stmt = (
            select(Team)
            .where(Team.region_code == region_code, Team.liaison_authorised, Team.status == APPROVED)
            .order_by(Team.name, Team.id)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def list_teams(
        self, *, region_prefix: str | None, after: tuple[str, uuid.UUID] | None, limit: int
    ) -> Sequence[Team]:
        stmt = select(Team).where(Team.status == APPROVED)
        if region_prefix:
            stmt = stmt.where(Team.region_code.startswith(region_prefix, autoescape=True))
            if region_prefix.isdigit():
                # the same codes (digits, at most 12) as a range the planner can estimate and read
                # through ix_teams_region_name: a small region's teams, then sorted, instead of
                # walking the whole directory in name order looking for them
                stmt = stmt.where(Team.region_code.between(region_prefix, region_prefix.ljust(12, "9")))
        if after is not None:
            stmt = stmt.where(tuple_(Team.name, Team.id) > tuple_(*after))
        return (await self.session.execute(stmt.order_by(Team.name, Team.id).limit(limit))).scalars().all()

    async def overdue_reviews(self, submitted_before: datetime, limit: int) -> Sequence[Team]:
        stmt = (
            select(Team)
            .where(Team.status == PENDING, Team.overdue_raised_at.is_(None), Team.submitted_at <= submitted_before)
            .order_by(Team.submitted_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def pending_reviews_page(
        self,
        reviewer: uuid.UUID,
        *,
        regions_prefix: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[Team]:
        """One page of the registrations ``reviewer`` may decide (``access.is_reviewer`` in SQL),
        oldest first, never their own: as an admin of the liaison team; for a liaison team with no
        admin besides the applicant, as an admin of the liaison's region; for a social
        organisation, as an admin of its registration authority's region. The reviewer
        administers the regions whose codes start with ``regions_prefix`` (``''``: all of them, a
        national admin), or none.

        Each way of being a reviewer is a page of its own read by an index, and the page is the
        oldest of their union: what a page reads grows with the page (and a regional admin's
        region), not with the country's queue."""

        def page(stmt: Select[Any]) -> Select[Any]:
            stmt = stmt.where(Team.status == PENDING, Team.applicant_account_id != reviewer)
            if after is not None:
                stmt = stmt.where(tuple_(Team.submitted_at, Team.id) > tuple_(*after))
            return stmt.order_by(Team.submitted_at, Team.id).limit(limit)

        # As a liaison team's admin: a page of each team they administer (an index range each),
        # not a walk of the whole country's queue looking for their teams' registrations.
        administered = (
            select(Membership.team_id).where(Membership.account_id == reviewer, Membership.is_admin).subquery()
        )
        of_team = page(
            select(Team.id).where(
                Team.liaison_team_id == administered.c.team_id, Team.registration_authority_region.is_(None)
            )
        ).lateral()
        branches = [select(of_team.c.id).select_from(administered).join(of_team, true())]
        if regions_prefix == "":
            branches.append(self._national_reviews(page))
        elif regions_prefix is not None:
            branches += self._regional_reviews(page, regions_prefix)
        ids = (union(*branches) if len(branches) > 1 else branches[0]).subquery()
        stmt = page(select(Team).join(ids, ids.c.id == Team.id))
        found: Sequence[Team] = (await self.session.execute(stmt)).scalars().all()
        return found

    @staticmethod
    def _national_reviews(page: Callable[[Select[Any]], Select[Any]]) -> Select[Any]:
        """A national admin decides nearly the whole queue: walked in its order, it yields a page
        at once (whether a liaison has another admin: a lookup per row, as a join or EXISTS over
        the set hashes the whole table)."""
        other_admin = (
            select(Membership.account_id)
            .where(
                Membership.team_id == Team.liaison_team_id,
                Membership.is_admin,
                Membership.account_id != Team.applicant_account_id,
            )
            .exists()
        )
        return page(
            select(Team.id).where(
                or_(
                    and_(Team.registration_authority_region.is_(None), Team.liaison_team_id.is_not(None), ~other_admin),
                    Team.registration_authority_region.is_not(None),
                )
            )
        )

    @staticmethod
    def _regional_reviews(page: Callable[[Select[Any]], Select[Any]], prefix: str) -> list[Select[Any]]:
        """A regional admin decides the registrations of their region's share of the queue: the
        country's queue walked in order would be read up to the region's (20,000 rows for a page
        of a small city). Instead: the social organisations registered in the region (an index
        range of authority regions, then sorted), and, for each team of the region (the possible
        liaisons), its sub-teams when it has no admin (a page by liaison), or the ones its only
        admin applied for (by applicant)."""

        def within(column: Any) -> Any:
            cond = column.startswith(prefix, autoescape=True)
            if prefix.isdigit():
                # the same codes (digits, at most 12) as a range an index can read (LIKE cannot
                # under the database's collation)
                cond = and_(cond, column.between(prefix, prefix.ljust(12, "9")))
            return cond

        of_authority = page(select(Team.id).where(within(Team.registration_authority_region)))

        liaison = aliased(Team)
        liaisons = select(liaison.id).where(within(liaison.region_code)).subquery()
        admin = aliased(Membership)
        headless = (
            select(liaisons.c.id)
            .where(~select(admin.account_id).where(admin.team_id == liaisons.c.id, admin.is_admin).exists())
            .subquery()
        )
        of_headless = page(
            select(Team.id).where(Team.liaison_team_id == headless.c.id, Team.registration_authority_region.is_(None))
        ).lateral()

        sole, other = aliased(Membership), aliased(Membership)
        sole_admins = (
            select(liaisons.c.id, sole.account_id)
            .join(sole, and_(sole.team_id == liaisons.c.id, sole.is_admin))
            .where(
                ~select(other.account_id)
                .where(other.team_id == liaisons.c.id, other.is_admin, other.account_id != sole.account_id)
                .exists()
            )
            .subquery()
        )
        of_sole_admin = page(
            select(Team.id).where(
                Team.liaison_team_id == sole_admins.c.id,
                Team.applicant_account_id == sole_admins.c.account_id,
                Team.registration_authority_region.is_(None),
            )
        ).lateral()
        return [
            of_authority,
            select(of_headless.c.id).select_from(headless).join(of_headless, true()),
            select(of_sole_admin.c.id).select_from(sole_admins).join(of_sole_admin, true()),
        ]

    # -- memberships ---------------------------------------------------------------------------
    async def membership(
        self, team_id: uuid.UUID, account_id: uuid.UUID, *, for_update: bool = False
    ) -> Membership | None:
        stmt = select(Membership).where(Membership.team_id == team_id, Membership.account_id == account_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def admin_ids(self, team_id: uuid.UUID) -> list[uuid.UUID]:
        stmt = (
            select(Membership.account_id)
            .where(Membership.team_id == team_id, Membership.is_admin)
            .order_by(Membership.account_id)
        )
        return list((await self.session.execute(stmt)).scalars().all())

    async def lock_admins(self, team_id: uuid.UUID) -> list[uuid.UUID]:
        """The team's admins, locked, so two removals cannot both leave it without one."""
        stmt = (
            select(Membership.account_id)
            .where(Membership.team_id == team_id, Membership.is_admin)
            .order_by(Membership.account_id)
            .with_for_update()
        )
        return list((await self.session.execute(stmt)).scalars().all())

    async def teams_of(self, account_id: uuid.UUID) -> list[uuid.UUID]:
        stmt = select(Membership.team_id).where(Membership.account_id == account_id)
        return list((await self.session.execute(stmt)).scalars().all())

    async def members_page(
        self, team_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[tuple[Membership, Volunteer | None]]:
        stmt = (
            select(Membership, Volunteer)
            .outerjoin(Volunteer, Volunteer.account_id == Membership.account_id)
            .where(Membership.team_id == team_id)
        )
        if after is not None:
            stmt = stmt.where(tuple_(Membership.joined_at, Membership.account_id) > tuple_(*after))
        stmt = stmt.order_by(Membership.joined_at, Membership.account_id).limit(limit)
        return [(m, v) for m, v in (await self.session.execute(stmt)).all()]

    async def my_memberships(self, account_id: uuid.UUID) -> Sequence[tuple[Membership, Team]]:
        stmt = (
            select(Membership, Team)
            .join(Team, Team.id == Membership.team_id)
            .where(Membership.account_id == account_id)
            .order_by(Membership.joined_at)
        )
        return [(m, t) for m, t in (await self.session.execute(stmt)).all()]

    # -- join requests and invitations --------------------------------------------------------
    async def join_request(self, request_id: uuid.UUID, *, for_update: bool = False) -> JoinRequest | None:
        stmt = select(JoinRequest).where(JoinRequest.id == request_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def pending_join_requests(
        self, team_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[tuple[JoinRequest, Volunteer | None]]:
        stmt = (
            select(JoinRequest, Volunteer)
            .outerjoin(Volunteer, Volunteer.account_id == JoinRequest.account_id)
            .where(JoinRequest.team_id == team_id, JoinRequest.status == PENDING)
        )
        if after is not None:
            stmt = stmt.where(tuple_(JoinRequest.created_at, JoinRequest.id) > tuple_(*after))
        stmt = stmt.order_by(JoinRequest.created_at, JoinRequest.id).limit(limit)
        return [(r, v) for r, v in (await self.session.execute(stmt)).all()]

    async def my_join_requests(self, account_id: uuid.UUID) -> Sequence[tuple[JoinRequest, Team]]:
        stmt = (
            select(JoinRequest, Team)
            .join(Team, Team.id == JoinRequest.team_id)
            .where(JoinRequest.account_id == account_id)
            .order_by(JoinRequest.created_at.desc())
            .limit(200)
        )
        return [(r, t) for r, t in (await self.session.execute(stmt)).all()]

    async def pending_join_request_for(self, team_id: uuid.UUID, account_id: uuid.UUID) -> JoinRequest | None:
        stmt = select(JoinRequest).where(
            JoinRequest.team_id == team_id, JoinRequest.account_id == account_id, JoinRequest.status == PENDING
        )
        return (await self.session.execute(stmt.with_for_update())).scalar_one_or_none()

    async def pending_invitation_for(self, team_id: uuid.UUID, account_id: uuid.UUID) -> Invitation | None:
        stmt = select(Invitation).where(
            Invitation.team_id == team_id, Invitation.account_id == account_id, Invitation.status == PENDING
        )
        return (await self.session.execute(stmt.with_for_update())).scalar_one_or_none()

    async def invitation(self, invitation_id: uuid.UUID, *, for_update: bool = False) -> Invitation | None:
        stmt = select(Invitation).where(Invitation.id == invitation_id)
        if for_update:
            # read again under the lock: the caller may have loaded it before locking its team
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def pending_invitations(
        self, team_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[tuple[Invitation, Volunteer | None]]:
        stmt = (
            select(Invitation, Volunteer)
            .outerjoin(Volunteer, Volunteer.account_id == Invitation.account_id)
            .where(Invitation.team_id == team_id, Invitation.status == PENDING)
        )
        if after is not None:
            stmt = stmt.where(tuple_(Invitation.created_at, Invitation.id) > tuple_(*after))
        stmt = stmt.order_by(Invitation.created_at, Invitation.id).limit(limit)
        return [(i, v) for i, v in (await self.session.execute(stmt)).all()]

    async def my_invitations(self, account_id: uuid.UUID) -> Sequence[tuple[Invitation, Team]]:
        stmt = (
            select(Invitation, Team)
            .join(Team, Team.id == Invitation.team_id)
            .where(Invitation.account_id == account_id, Invitation.status == PENDING)
            .order_by(Invitation.created_at.desc())
        )
        return [(i, t) for i, t in (await self.session.execute(stmt)).all()]

    # -- read models ---------------------------------------------------------------------------
    async def volunteer(self, account_id: uuid.UUID) -> Volunteer | None:
        return await self.session.get(Volunteer, account_id)

    async def volunteers(self, account_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Volunteer]:
        """These accounts' volunteer rows (those known), in one statement."""
        ids = list(set(account_ids))
        if not ids:
            return {}
        stmt = select(Volunteer).where(Volunteer.account_id.in_(ids))
        return {v.account_id: v for v in (await self.session.execute(stmt)).scalars()}

    async def volunteer_by_number(self, volunteer_number: str) -> Volunteer | None:
        stmt = select(Volunteer).where(Volunteer.volunteer_number == volunteer_number)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def nearest_region_admins(self, region_code: str, *, excluding: uuid.UUID | None = None) -> list[uuid.UUID]:
        """Regional admins of the region itself, else of the nearest region above that has any
        (other than ``excluding``, e.g. the applicant of the registration they are asked about)."""
        chain = [r.code for r in regions.ancestors(region_code)] or [region_code]
        stmt = select(RegionAdmin.account_id, RegionAdmin.region_code).where(RegionAdmin.region_code.in_(chain))
        rows = (await self.session.execute(stmt)).all()
        for code in chain:
            found = sorted(account_id for account_id, region in rows if region == code and account_id != excluding)
            if found:
                return found
        return []

    async def national_admin_ids(self, *, excluding: uuid.UUID | None = None) -> list[uuid.UUID]:
        stmt = select(RegionAdmin.account_id).where(RegionAdmin.is_national).order_by(RegionAdmin.account_id)
        return [a for a in (await self.session.execute(stmt)).scalars().all() if a != excluding]

    async def merge_account(self, kept: uuid.UUID, merged: uuid.UUID, now: datetime) -> list[MergedMembership]:
        """Move the merged record's memberships, requests and invitations to the kept one; where
        both were members of a team, the kept membership takes the roles of both. Returns what
        changed per team; the caller holds the locks of the merged record's teams and raises the
        events."""
        mine = select(Membership).with_for_update()
        kept_rows = {
            m.team_id: m for m in (await self.session.execute(mine.where(Membership.account_id == kept))).scalars()
        }
        old_rows = list((await self.session.execute(mine.where(Membership.account_id == merged))).scalars())
        changes: list[MergedMembership] = []
        for old in old_rows:
            current = kept_rows.get(old.team_id)
            changes.append(
                MergedMembership(
                    team_id=old.team_id,
                    kept_was_member=current is not None,
                    kept_was_admin=current is not None and current.is_admin,
                    kept_was_lead=current is not None and current.is_project_lead,
                    merged_was_admin=old.is_admin,
                    merged_was_lead=old.is_project_lead,
                )
            )
            if current is None:
                await self.session.execute(
                    update(Membership)
                    .where(Membership.team_id == old.team_id, Membership.account_id == merged)
                    .values(account_id=kept)
                )
                continue
            current.is_admin = current.is_admin or old.is_admin
            current.is_project_lead = current.is_project_lead or old.is_project_lead
            current.joined_at = min(current.joined_at, old.joined_at)
            await self.session.delete(old)
        await self.session.flush()
        # Pending requests/invitations of the merged record that would collide are dropped.
        for model in (JoinRequest, Invitation):
            clash = select(model.team_id).where(model.account_id == kept, model.status == PENDING)
            await self.session.execute(
                delete(model).where(model.account_id == merged, model.status == PENDING, model.team_id.in_(clash))
            )
            await self.session.execute(update(model).where(model.account_id == merged).values(account_id=kept))
        # A member has nothing open with its team: what the merged record had there lapses.
        member_of = select(Membership.team_id).where(Membership.account_id == kept)
        await self.session.execute(
            update(JoinRequest)
            .where(JoinRequest.account_id == kept, JoinRequest.status == PENDING, JoinRequest.team_id.in_(member_of))
            .values(status=CLOSED, decided_at=now)
        )
        await self.session.execute(
            update(Invitation)
            .where(Invitation.account_id == kept, Invitation.status == PENDING, Invitation.team_id.in_(member_of))
            .values(status=CLOSED, answered_at=now)
        )
        await self.session.execute(
            update(Team).where(Team.applicant_account_id == merged).values(applicant_account_id=kept)
        )
        await self.session.execute(delete(Volunteer).where(Volunteer.account_id == merged))
        await self.session.execute(
            pg_insert(MergedVolunteer)
            .values(account_id=merged, merged_into=kept, merged_at=now)
            .on_conflict_do_nothing(index_elements=[MergedVolunteer.account_id])
        )
        return changes

    async def lock_volunteer(self, account_id: uuid.UUID) -> None:
        """Taken by whatever writes an account's row of the volunteers read model (its verification,
        its merge): the two cannot pass each other unseen."""
        await self.session.execute(_LOCK_VOLUNTEER, {"account": str(account_id)})

    async def merged(self, account_id: uuid.UUID) -> bool:
        stmt = select(MergedVolunteer.account_id).where(MergedVolunteer.account_id == account_id)
        return (await self.session.execute(stmt)).first() is not None

    async def count_admins(self, team_id: uuid.UUID) -> int:
        stmt = select(func.count()).where(Membership.team_id == team_id, Membership.is_admin)
        return int((await self.session.execute(stmt)).scalar_one())

    async def history_page(
        self, team_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[TeamHistory]:
        stmt = select(TeamHistory).where(TeamHistory.team_id == team_id)
        if after is not None:
            stmt = stmt.where(tuple_(TeamHistory.occurred_at, TeamHistory.event_id) > tuple_(*after))
        stmt = stmt.order_by(TeamHistory.occurred_at, TeamHistory.event_id).limit(limit)
        return (await self.session.execute(stmt)).scalars().all()
