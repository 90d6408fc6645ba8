"""Handlers of other services' events: keep the recipients read model, queue the emails.

Each handler runs in the inbox's transaction, so a redelivered event is a no-op; the email's
unique (event, recipient, template) key is the second guard. An email to an account the read
model does not know yet waits as ``awaiting_recipient`` (see ``outbox``) rather than failing
the handler: the broker's retries would run out long before a late sign-up event arrives.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from notifications.models import Recipient
from notifications.outbox import (
    Addressed,
    queue_emails,
    queue_for_account,
    queue_for_accounts,
    readdress_pending,
    resolve_awaiting_many,
    store_recipients,
)
from shared.clock import CHINA_TZ
from shared.contracts.identity import (
    AccountContactChanged,
    AccountRegistered,
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
from shared.contracts.teams import TeamApproved, TeamRejected, TeamReviewOverdue, TeamReviewReminderRequested
from shared.db import UnitOfWork
from shared.messaging.consumer import Handlers
from shared.messaging.envelope import Envelope

if TYPE_CHECKING:
    from notifications.bootstrap import NotificationsRuntime

handlers = Handlers("notifications")


def local_time(moment: datetime) -> str:
    """Times in emails are China time, minutes precision."""
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def local_date(moment: datetime | date) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(CHINA_TZ).date().isoformat()
    return moment.isoformat()


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


@handlers("welcome_email", batch=True)
async def send_welcome(
    items: list[tuple[AccountRegistered, Envelope]], uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    await queue_emails(
        uow,
        runtime.templates,
        [
            Addressed(
                envelope,
                template="welcome",
                to_address=event.email,
                to_name=event.display_name,
                language=event.language,
                context={"username": event.username},
            )
            for event, envelope in items
        ],
    )


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
        context: dict[str, object] = {"volunteer_number": event.volunteer_number, "manual": event.manual}
    elif event.status == "failed":
        template = "verification_failed"
        context = {"reason": event.reason, "manual": event.manual}
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
        context={"by_team": event.by_team_id is not None, "set_at": local_time(envelope.occurred_at)},
    )


@handlers("team_review_email")
async def send_team_review_outcome(
    event: TeamApproved | TeamRejected, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    template = "team_approved" if isinstance(event, TeamApproved) else "team_rejected"
    await queue_for_account(
        uow,
        runtime.templates,
        envelope,
        template=template,
        account_id=event.applicant_account_id,
        context={"team_name": event.name, "reason": event.reason},
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
        context={"team_name": event.name, "days_waiting": event.days_waiting},
    )


@handlers("review_escalation_email")
async def send_review_escalation(
    event: TeamReviewOverdue, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    await queue_for_accounts(
        uow,
        runtime.templates,
        envelope,
        template="review_escalation",
        account_ids=[*event.reviewer_account_ids, *event.region_admin_account_ids],
        context={"team_name": event.name, "submitted_on": local_date(event.submitted_at)},
    )


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
    else:
        template = "application_rejected"
        context["reason"] = event.reason
    await queue_for_account(
        uow, runtime.templates, envelope, template=template, account_id=event.account_id, context=context
    )


@handlers("leave_email")
async def send_leave_notice(
    event: ApplicationLeft, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    volunteer = await uow.session.get(Recipient, event.account_id)
    await queue_for_accounts(
        uow,
        runtime.templates,
        envelope,
        template="application_left",
        account_ids=event.lead_account_ids,
        context={
            "project_title": event.project_title,
            "position_name": event.position_name,
            "volunteer_name": volunteer.display_name if volunteer else None,
            "left_at": local_time(envelope.occurred_at),
        },
    )


@handlers("project_email")
async def send_project_notice(
    event: ProjectClosed | ProjectExtended, envelope: Envelope, uow: UnitOfWork, runtime: NotificationsRuntime
) -> None:
    if isinstance(event, ProjectClosed):
        template = "project_closed"
        context: dict[str, object] = {
            "project_title": event.title,
            "closed_on": local_date(event.closed_at),
            "automatic": event.automatic,
        }
    else:
        template = "project_extended"
        context = {"project_title": event.title, "new_end_date": local_date(event.new_end_date)}
    await queue_for_accounts(
        uow, runtime.templates, envelope, template=template, account_ids=event.lead_account_ids, context=context
    )
