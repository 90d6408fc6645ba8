"""Settings of the notifications service; environment variables start with ``NOTIFICATIONS_``."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

import idna
from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

#: how many SMTP timeouts one email's send may take (connect, commands, data): the sender starts
#: no send later than this many timeouts before its lease ends
SMTP_TIMEOUTS_PER_SEND = 3


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore")

    service_name: str = "notifications"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/notifications"
    #: a burst of events (a national recruitment drive's sign-ups) is queued in batches of up to
    #: 32 messages per transaction (see shared.messaging.consumer)
    consumer_lanes: int = 32
    consumer_batch_size: int = 32

    #: "smtp" sends through the SMTP server; "mailbox" keeps emails in the database with an
    #: HTTP view (standalone mode), so a newcomer sees what would have been sent.
    mail_transport: Literal["smtp", "mailbox"] = "smtp"
    mail_from_address: str = "noreply@volunteer.example.org"
    mail_from_name: str = "全国志愿服务信息系统"
    #: the sender's name for recipients who chose English (From header and footer)
    mail_from_name_en: str = "National Volunteer Service Information System"
    #: the site people open from an email (the frontends): links are this plus the paths of
    #: ``notifications.links``. Production refuses localhost (see ``_public_urls``)
    site_url: str = "http://localhost:3000"
    #: the national service line (全国服务电话: numbers and working hours, X2) named in the emails
    #: that send people to it, e.g. a project's extension between 30 and 60 days after closing
    national_service_line: str = ""
    #: shown in every email (FAQ O2): how to allow-list the sender so mail is not lost as spam
    mail_allowlist_advice: str = (
        "请将本系统邮箱地址加入邮件白名单:进入个人电子邮箱,点击“设置”-“反垃圾”,"
        "点击“设置邮件地址白名单”,添加本系统的发件地址。"
    )
    mail_allowlist_advice_en: str = (
        "Add our sender address to your mailbox's allow-list (Settings → Anti-spam → Allow-list) "
        "so these emails are not filtered as spam."
    )
    #: the mailbox providers people are advised to use when system mail does not arrive (FAQ O2),
    #: shown by ``GET /api/v1/mail-delivery-advice``
    mail_recommended_domains: list[str] = Field(
        default_factory=lambda: ["qq.com", "163.com", "126.com", "sina.com", "sohu.com", "sogou.com"]
    )
    mail_send_batch: int = 20
    #: how long a claimed batch is the claiming loop's (see notifications.sender); after a crash its
    #: unsent emails are due again when it ends. Must leave room for a few SMTP timeouts per email
    mail_send_lease_seconds: float = 120.0
    #: concurrent send loops, each with its own kept-open SMTP connection (and, while it sends, a
    #: database connection). A loop waits on the mail server's answers (four per email) and on its
    #: outcome's commit: at 300 events/s on the 2-core bench machine, 8 loops halved the p50 latency
    #: of 4 (235 ms → 117 ms); 32 was worse than 16
    mail_senders: int = 8
    #: attempts before a temporarily failing email is marked failed; with the default back-off
    #: (5 s doubling, capped at 30 min, jittered down to half) that rides out 1.5-2 hours of outage
    mail_max_attempts: int = 12
    mail_retry_base_seconds: float = 5.0
    mail_retry_max_seconds: float = 1800.0
    mail_poll_interval: float = 1.0
    #: how long an email may wait for its recipient's address (the account's ``account.registered``,
    #: normally seconds behind): past this, the periodic sweep marks it failed with the reason
    #: ``recipient_unknown`` (see notifications.awaiting), where operators see and replay it, rather
    #: than letting it wait forever unseen when the event was dead-lettered or lost. A day leaves
    #: room to redrive a dead-letter queue; an alert on the oldest wait fires long before
    awaiting_recipient_max_hours: float = Field(default=24.0, gt=0)
    #: period of that sweep, which also measures the awaiting gauges (every replica runs it)
    awaiting_recipient_sweep_seconds: float = Field(default=60.0, gt=0)

    #: per-recipient limits against mailbox flooding: at most N emails of a template per
    #: recipient per window; the excess is kept as ``suppressed`` with the reason. Only for emails
    #: a user can trigger at will (the remind-review button, password reset requests, a team
    #: admin's temporary password for a member or bringing someone into a team, and a sign-up with
    #: someone else's address: its welcome, and the failed check a made-up ID number gets; a real
    #: one's verification always reaches its owner): the system's own
    #: (review_escalation, raised once per team by the teams service's sweep) are never limited,
    #: or a region with many overdue teams would lose escalations for good
    mail_rate_limits: dict[str, int] = Field(
        default_factory=lambda: {
            "review_reminder": 3,
            "password_reset": 5,
            "temporary_password": 5,
            "team_member_added": 10,
            "welcome": 5,
            "verification_failed": 5,
            "verification_manual_review": 5,
        }
    )
    mail_rate_window_seconds: int = 3600

    #: emails in a final state (sent, failed, suppressed) are deleted, with their replay history,
    #: once their last change is older than this many days (``notifications.retention``, hourly on
    #: every replica); 0 keeps them forever. Emails pending or awaiting their recipient are never
    #: deleted. Refused below :meth:`minimum_email_retention_days`: the email's unique key must
    #: outlive the inbox marks (a redelivered event is recognised by its mark for
    #: ``outbox_retention_days``, then only by its email) and the rate limits' window must still
    #: find the emails it counts
    email_retention_days: int = Field(default=365, ge=0)

    def sender_name(self, language: str) -> str:
        """The sender's name shown to a recipient of this language."""
        return self.mail_from_name_en if language == "en" else self.mail_from_name

    def minimum_email_retention_days(self) -> int:
        """The fewest days ``email_retention_days`` may keep emails: more than the inbox retention
        and more than the rate limits' window."""
        return max(self.outbox_retention_days, self.mail_rate_window_seconds // 86400) + 1

    def _public_urls(self) -> dict[str, str]:
        return {"site_url": self.site_url}

    def _secret_values(self) -> dict[str, str | None]:
        """Notifications signs and derives nothing: no code of the service reads ``secret_key``, so
        production does not ask for ``NOTIFICATIONS_SECRET_KEY``."""
        values = super()._secret_values()
        del values["secret_key"]
        return values

    @model_validator(mode="after")
    def _mail_leaves_in_production(self) -> NotificationsSettings:
        """The local mailbox is standalone mode's: in production nobody would get an email."""
        if self.environment == "production" and self.mail_transport != "smtp":
            raise ValueError("mail_transport must be smtp in production (the mailbox is for standalone mode)")
        return self

    @model_validator(mode="after")
    def _site_url_is_a_web_address(self) -> NotificationsSettings:
        parts = urlsplit(self.site_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"site_url must be an http(s) address without query or fragment: {self.site_url!r}")
        return self

    @model_validator(mode="after")
    def _sender_is_an_address(self) -> NotificationsSettings:
        """The sender goes into every email's From and Message-ID: one without a domain, with a
        space or a line break (a ``Bcc:`` written into every email), or whose domain has no ASCII
        form stops the service at start-up instead of failing every email."""
        address = self.mail_from_address
        local, at, domain = address.rpartition("@")
        if not at or not local or "." not in domain.strip(".") or not address.isprintable() or " " in address:
            raise ValueError(f"mail_from_address must be an email address: {address!r}")
        try:
            idna.encode(domain, uts46=True)
        except idna.IDNAError as exc:
            raise ValueError(f"mail_from_address's domain has no ASCII form: {domain!r}") from exc
        return self

    @model_validator(mode="after")
    def _lease_outlasts_sends(self) -> NotificationsSettings:
        if self.mail_send_lease_seconds <= SMTP_TIMEOUTS_PER_SEND * self.smtp_timeout:
            raise ValueError(f"mail_send_lease_seconds must be more than {SMTP_TIMEOUTS_PER_SEND} times smtp_timeout")
        return self

    @model_validator(mode="after")
    def _retention_outlasts_redeliveries_and_rate_windows(self) -> NotificationsSettings:
        minimum = self.minimum_email_retention_days()
        if self.email_retention_days and self.email_retention_days < minimum:
            raise ValueError(
                f"email_retention_days must be 0 (keep forever) or at least {minimum}: more than "
                f"outbox_retention_days ({self.outbox_retention_days}; a redelivered event is recognised "
                "by its inbox mark that long, then only by its email's unique key) and more than "
                f"mail_rate_window_seconds ({self.mail_rate_window_seconds} s, the emails a rate limit counts)"
            )
        return self
