"""T5: the review clock. From 4 days without a decision the applicant may send a reminder, at
most once a day; from 7 days the applicant sees the reviewer's full contact details and the
reviewers and the region's admins get one escalation (FAQ T5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

REMINDER_AFTER = timedelta(days=4)
REMINDER_INTERVAL = timedelta(days=1)
OVERDUE_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class ReminderDecision:
    allowed: bool
    #: when the next reminder becomes possible (None when allowed now)
    not_before: datetime | None
    too_early: bool = False


def reminder_decision(submitted_at: datetime, last_reminder_at: datetime | None, now: datetime) -> ReminderDecision:
    first_possible = submitted_at + REMINDER_AFTER
    if now < first_possible:
        return ReminderDecision(False, first_possible, too_early=True)
    if last_reminder_at is not None and now < last_reminder_at + REMINDER_INTERVAL:
        return ReminderDecision(False, last_reminder_at + REMINDER_INTERVAL)
    return ReminderDecision(True, None)


def next_reminder_at(submitted_at: datetime, last_reminder_at: datetime | None) -> datetime:
    first_possible = submitted_at + REMINDER_AFTER
    if last_reminder_at is None:
        return first_possible
    return max(first_possible, last_reminder_at + REMINDER_INTERVAL)


def is_overdue(submitted_at: datetime, now: datetime) -> bool:
    return now >= submitted_at + OVERDUE_AFTER


def days_waiting(submitted_at: datetime, now: datetime) -> int:
    return (now - submitted_at).days
