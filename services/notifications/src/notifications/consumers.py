"""Handlers of other services' events: keep the recipients and platform roles read models, queue the emails.

Each handler runs in the inbox's transaction, so a redelivered event is a no-op; the email's
unique (event, recipient, template) key is the second guard. An email to an account the read
model does not know yet waits as ``awaiting_recipient`` (see ``outbox``) rather than failing
the handler: the broker's retries would run out long before a late sign-up event arrives.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from notifications import links
from notifications.models import Recipient, platform_roles
from notifications.outbox import (
    Addressed,
    newer_recipients,
    queue_emails,
    queue_for_account,
    queue_for_accounts,
    queue_for_each,
    readdress_pending,
    resolve_awaiting_many,
    store_recipients,
)
from notifications.templates import local_date, local_time
from shared import regions
from shared.clock import CHINA_TZ
from shared.contracts.identity import (
    AccountContactChanged,
    AccountRegistered,
    AccountRolesChanged,
    PasswordResetRequested,
    TemporaryPasswordSet,
    VolunteerVerificationChanged,
    VolunteerVerified,
)
from shared.contracts.projects import (
    ApplicationAdmitted,
    ApplicationLeft,
    ApplicationRejected,
    ProjectClosed,
    ProjectExtended,
)
from shared.contracts.teams import (
    TeamApproved,
    TeamMemberJoined,
    TeamRejected,
    TeamReviewOverdue,
    TeamReviewReminderRequested,
)
from shared.db import UnitOfWork
from shared.messaging.consumer import Handlers
from shared.messaging.envelope import Envelope
from shared.platform_roles import keep_platform_roles

if TYPE_CHECKING:
    from notifications.bootstrap import NotificationsRuntime

handlers = Handlers("notifications")

#: P4 / FAQ T9: a closed project's team admins may extend it once within 30 days of closing; up to
#: 60 days the national admin can (asked through the national service line); after that nobody
#: P4's windows: whole China days after the closing day (its own day 0)
TEAM_ADMIN_EXTENSION_DAYS = 30
NATIONAL_ADMIN_EXTENSION_DAYS = 60

#: the registration authority region of an organisation the Ministry of Civil Affairs (民政部)
#: registered: no region of GB/T 2260 (teams' ``NATIONAL_AUTHORITY``)
NATIONAL_AUTHORITY = "100000"


@handlers("recipients", batch=True)
async def keep_recipients(
    items: list[tuple[AccountRegistered | AccountContactChanged, Envelope]],
    uow: UnitOfWork,
    runtime: NotificationsRuntime,
) -> None:
    recipients = {
        event.account_id: (
            Recipient(
                account_id=event.account_id,
                email=event.email,
                display_name=event.display_name,
                language=event.language,
            ),
            envelope.occurred_at,
        )
        for event, envelope in items
    }
    if len(recipients) < len(items):
        # one account twice in a batch cannot come from the lanes (one aggregate, one message at a
        # time); if it ever does, refuse the batch so each message runs on its own, in order
        raise RuntimeError("one account twice in a batch")
    stored = await store_recipients(uow, list(recipients.values()))
    # a stale event (the read model already holds something newer) releases nothing
    await resolve_awaiting_many(uow, runtime.templates, [r for r, _ in recipients.values() if r.account_id in stored])
    # a corrected address also holds for what is still waiting to be sent (a new account has
    # nothing pending yet: its emails waited for it and were just addressed)
    await readdress_pending(
        uow,
        [e.account_id for e, _ in items if isinstance(e, AccountContactChanged) and e.account_id in stored],
    )


@handlers("platform_roles")
async def keep_roles(
    event: AccountRolesChanged, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    await keep_platform_roles(uow.session, platform_roles, event, envelope.occurred_at)


@handlers("welcome_email", batch=True)
async def send_welcome(
    items: list[tuple[AccountRegistered, Envelope]], uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    # the bootstrapped national admin is staff, not a volunteer to greet
    greeted = [(event, envelope) for event, envelope in items if not event.staff]
    # The recipients queue may have run ahead: the sign-up and a later contact change both stored
    # before this welcome existed to be re-addressed. Then the welcome goes where the read model
    # says, not to the address the owner already replaced.
    newer = await newer_recipients(uow, {event.account_id: envelope.occurred_at for event, envelope in greeted})
    emails = []
    for event, envelope in greeted:
        address, name, language = newer.get(event.account_id, (event.email, event.display_name, event.language))
        emails.append(
            Addressed(
                envelope,
                template="welcome",
                to_address=address,
                to_name=name,
                language=language,
                context={"username": event.username, "path": links.LOGIN},
                account_id=event.account_id,
            )
        )
    await queue_emails(uow, runtime.templates, emails)


@handlers("verification_email")
async def send_verification_outcome(
    event: VolunteerVerified | VolunteerVerificationChanged,
    envelope: Envelope,
    uow: UnitOfWork,
    runtime: NotificationsRuntime,
) -> None:
    # One source per outcome: success comes from volunteer.verified (it carries the number),
    # failure from volunteer.verification_changed; its "verified" status is not mailed again.
    if isinstance(event, VolunteerVerified):
        template = "verification_verified"
        context: dict[str, object] = {
            "volunteer_number": event.volunteer_number,
            "manual": event.manual,
            "path": links.CARD,
        }
    elif event.status == "failed":
        template = "verification_failed"
        # the way on (FAQ V5/V6): the ID-card upload, or a corrected name, on the identity page
        context = {"reason": event.reason, "manual": event.manual, "path": links.IDENTITY}
    elif event.status == "manual_review" and not event.manual:
        # the provider could not decide: a regional admin does, from the ID card the volunteer
        # uploads (an upload itself also moves the status to manual review: nothing to tell then)
        template = "verification_manual_review"
        context = {"reason": event.reason, "path": links.IDENTITY}
    else:
        return
    await queue_for_account(
        uow, runtime.templates, envelope, template=template, account_id=event.account_id, context=context
    )


@handlers("password_reset_email")
async def send_password_reset(
    event: PasswordResetRequested, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    await queue_for_account(
        uow,
        runtime.templates,
        envelope,
        template="password_reset",
        account_id=event.account_id,
        context={"reset_url": event.reset_url, "expires_at": local_time(event.expires_at)},
    )


@handlers("temporary_password_email")
async def send_temporary_password_notice(
    event: TemporaryPasswordSet, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    await queue_for_account(
        uow,
        runtime.templates,
        envelope,
        template="temporary_password",
        account_id=event.account_id,
        context={
            "by_team": event.by_team_id is not None,
            "set_at": local_time(envelope.occurred_at),
            "path": links.LOGIN,
        },
        # a team admin's resets are limited (at will, one member after another); the national
        # admin's, V10's way back for someone who lost everything, never is
        limited=event.by_team_id is not None,
    )


@handlers("team_member_added_email")
async def send_member_added_notice(
    event: TeamMemberJoined, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    """FAQ V1: a team admin who found the volunteer by ID number and name brought them in without
    their answer. They are told, and how to leave if they did not ask for it; whoever joined by
    their own application or answer is not."""
    if event.added_by_account_id is None:
        return
    await queue_for_account(
        uow,
        runtime.templates,
        envelope,
        template="team_member_added",
        account_id=event.account_id,
        context={
            "team_name": event.team_name or "",
            "added_at": local_time(envelope.occurred_at),
            # the number to call if they did not ask for it
            "service_line": runtime.settings.national_service_line,
            "path": links.team(event.team_id),
        },
    )


@handlers("team_review_email")
async def send_team_review_outcome(
    event: TeamApproved | TeamRejected, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    if isinstance(event, TeamApproved) and event.root_team:
        return  # an admin created it directly: nobody applied, nobody is told an application passed
    if isinstance(event, TeamApproved):
        template, path = "team_approved", links.team(event.team_id)
    else:
        # teams refuses any change to a rejected team ("correct it and register again"): its page
        # offers nothing to do, a new registration does
        template, path = "team_rejected", links.TEAM_REGISTRATION
    await queue_for_account(
        uow,
        runtime.templates,
        envelope,
        template=template,
        account_id=event.applicant_account_id,
        context={"team_name": event.name, "reason": event.reason, "path": path},
    )


@handlers("review_reminder_email")
async def send_review_reminder(
    event: TeamReviewReminderRequested, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    await queue_for_accounts(
        uow,
        runtime.templates,
        envelope,
        template="review_reminder",
        account_ids=event.reviewer_account_ids,
        context={"team_name": event.name, "days_waiting": event.days_waiting, "path": links.REVIEWS},
        # limited per team: a liaison reviewing many teams hears of each of them
        rate_scope=str(event.team_id),
    )


@handlers("review_escalation_email")
async def send_review_escalation(
    event: TeamReviewOverdue, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    """Reviewers are asked to decide (only they can); the region's admins to follow up with them.
    One email per account: a reviewer who is also a region admin gets the reviewer's."""
    common: dict[str, Any] = {
        "team_name": event.name,
        "submitted_on": local_date(event.submitted_at),
        "liaison_team_name": event.liaison_team_name,
        "authority_region_name": _region_name(event.registration_authority_region),
        # registered with the Ministry of Civil Affairs itself: the email names the ministry
        "national_authority": event.registration_authority_region == NATIONAL_AUTHORITY,
    }
    contexts = {
        account_id: {**common, "reviewer": False, "path": links.team(event.team_id)}
        for account_id in event.region_admin_account_ids
    }
    contexts.update(
        {account_id: {**common, "reviewer": True, "path": links.REVIEWS} for account_id in event.reviewer_account_ids}
    )
    await queue_for_each(uow, runtime.templates, envelope, template="review_escalation", contexts=contexts)


def _region_name(code: str | None) -> str | None:
    if code is None or code == NATIONAL_AUTHORITY:
        return None  # the ministry is no region's civil affairs department
    region = regions.get(code)
    return region.name if region is not None else code


@handlers("application_email")
async def send_application_outcome(
    event: ApplicationAdmitted | ApplicationRejected,
    envelope: Envelope,
    uow: UnitOfWork,
    runtime: NotificationsRuntime,
) -> None:
    context: dict[str, object] = {"project_title": event.project_title, "position_name": event.position_name}
    if isinstance(event, ApplicationAdmitted):
        template = "application_admitted"
        context["path"] = links.project(event.project_id)
    else:
        template = "application_rejected"
        context["reason"] = event.reason
        context["path"] = links.PROJECTS
    await queue_for_account(
        uow, runtime.templates, envelope, template=template, account_id=event.account_id, context=context
    )


@handlers("leave_email")
async def send_leave_notice(
    event: ApplicationLeft, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    # The lead sees the volunteer as projects shows them to leads (masked name and number), never
    # the display name of the recipients read model, which is often the full real name.
    await queue_for_accounts(
        uow,
        runtime.templates,
        envelope,
        template="application_left",
        account_ids=event.lead_account_ids,
        context={
            "project_title": event.project_title,
            "position_name": event.position_name,
            "masked_name": event.masked_name,
            "volunteer_number": event.volunteer_number,
            "left_at": local_time(envelope.occurred_at),
            "automatic_admission": event.admission_mode == "auto",
            "next_admitted": event.next_admitted,
            "path": links.project(event.project_id),
        },
    )


@handlers("project_email")
async def send_project_notice(
    event: ProjectClosed | ProjectExtended, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    path = links.project(event.project_id)
    if isinstance(event, ProjectExtended):
        context: dict[str, Any] = {
            "project_title": event.title,
            "new_end_date": local_date(event.new_end_date),
            "by_national_admin": event.by_national_admin,
            "path": path,
        }
        # the leads, and the team's admins, told of the closing, but the one who extended it; an
        # account both lead and admin gets the lead's
        contexts = {account_id: {**context, "team_admin": True} for account_id in event.team_admin_account_ids}
        contexts.update({account_id: {**context, "team_admin": False} for account_id in event.lead_account_ids})
        await queue_for_each(uow, runtime.templates, envelope, template="project_extended", contexts=contexts)
        return
    await queue_for_each(
        uow, runtime.templates, envelope, template="project_closed", contexts=closing_contexts(event, runtime, path)
    )


def closing_contexts(event: ProjectClosed, runtime: NotificationsRuntime, path: str) -> dict[uuid.UUID, dict[str, Any]]:
    """The closing notice goes to the project's leads and the team's admins (who may extend it):
    the dates of each extension window, the team admins' only while their one extension is unused.
    An account both lead and admin gets the admin's."""
    # the closing day (an event from before projects said it: the day of closed_at)
    closed_on = event.closed_on or event.closed_at.astimezone(CHINA_TZ).date()

    def until(days: int) -> str:  # the window's last day, whole: "before" the next day's 00:00
        return local_time(datetime.combine(closed_on + timedelta(days=days + 1), time(), CHINA_TZ))

    common: dict[str, Any] = {
        "project_title": event.title,
        "closed_on": closed_on.isoformat(),
        "automatic": event.automatic,
        # None: an event from before the producer said (the email then says "if not used yet")
        "team_admin_extension_used": event.team_admin_extension_used,
        "team_admin_until": until(TEAM_ADMIN_EXTENSION_DAYS),
        "national_admin_until": until(NATIONAL_ADMIN_EXTENSION_DAYS),
        "service_line": runtime.settings.national_service_line,
        "path": path,
    }
    contexts = {account_id: {**common, "team_admin": False} for account_id in event.lead_account_ids}
    contexts.update({account_id: {**common, "team_admin": True} for account_id in event.team_admin_account_ids})
    return contexts
