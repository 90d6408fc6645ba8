"""The one place the teams service is wired."""

from __future__ import annotations

from pathlib import Path

from shared import regions
from shared.aio import every
from shared.auth import VOLUNTEER_MATCH_USE, TokenVerifier, volunteer_match_audience
from shared.clock import Clock
from shared.logging import get_logger
from shared.messaging.broker import Broker
from shared.platform_roles import platform_roles_lookup
from shared.runtime import Runtime
from teams.config import TeamsSettings
from teams.consumers import handlers
from teams.models import REGION_ADMINS, messaging

SERVICE_ROOT = Path(__file__).resolve().parents[2]
log = get_logger("teams.bootstrap")


class TeamsRuntime(Runtime):
    settings: TeamsSettings
    #: checks identity's volunteer-match tokens (a team admin found a volunteer by ID number and name)
    volunteer_matches: TokenVerifier

    async def sweep_overdue_reviews(self) -> int:
        """One pass of the T5 escalation sweep; returns how many teams were escalated."""
        from teams.registration import sweep_overdue_reviews

        total = 0
        while True:
            async with self.uow() as uow:
                found = await sweep_overdue_reviews(uow, self.clock)
            total += found
            if found == 0:
                return total


def warn_of_missing_contacts(settings: TeamsSettings) -> None:
    """Contacts people are promised but the deployment did not give: said at start-up, not found
    out by an applicant on day 7 (T5) or someone locked out looking for a number to call (X2)."""
    if not settings.authority_contacts:
        log.warning(
            "authority_contacts_missing",
            setting="TEAMS_AUTHORITY_CONTACTS",
            effect="applicants reviewed by a registration authority see no contact from day 7",
        )
    lines = settings.support_contacts
    if not any(line.configured for line in (lines.national, lines.data_import, *lines.provincial.values())):
        log.warning(
            "support_contacts_missing", setting="TEAMS_SUPPORT_CONTACTS", effect="GET /api/v1/support-contacts is empty"
        )


def build_runtime(
    settings: TeamsSettings,
    *,
    broker: Broker | None = None,
    clock: Clock | None = None,
    verifier: TokenVerifier | None = None,
) -> TeamsRuntime:
    # Township level (nine-digit codes) from the packaged MCA list, for browsing and team regions.
    regions.load_townships()
    runtime = TeamsRuntime(settings, messaging, handlers=handlers, broker=broker, clock=clock, verifier=verifier)
    # a withdrawn platform role stops working at once, not when the token expires
    runtime.principal_roles = platform_roles_lookup(runtime.engine, REGION_ADMINS)
    runtime.volunteer_matches = runtime.verifier.for_audience(
        volunteer_match_audience(settings.jwt_audience), VOLUNTEER_MATCH_USE
    )
    warn_of_missing_contacts(settings)

    async def review_pass() -> None:
        escalated = await runtime.sweep_overdue_reviews()
        if escalated:
            log.info("reviews_escalated", count=escalated)

    async def review_sweep() -> None:
        await every(settings.review_sweep_interval_seconds, review_pass, failed="review_sweep_failed", log=log)

    runtime.background.append(review_sweep)
    return runtime
