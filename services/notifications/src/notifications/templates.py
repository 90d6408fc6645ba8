"""Jinja2 rendering of every message: subject, plain text and HTML, in Chinese or English."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from notifications.config import NotificationsSettings
from shared.clock import CHINA_TZ

TEMPLATE_DIR = Path(__file__).parent / "templates"
#: the names emails are queued under (``Email.template``): every message has a Chinese subject
TEMPLATE_NAMES = frozenset(path.name.split(".")[0] for path in TEMPLATE_DIR.glob("*.zh.subject.j2"))


def local_time(moment: datetime) -> str:
    """Times in emails are China time, minutes precision."""
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def local_date(moment: datetime | date) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(CHINA_TZ).date().isoformat()
    return moment.isoformat()


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Templates:
    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings
        self._text = Environment(
            loader=FileSystemLoader(TEMPLATE_DIR),
            undefined=StrictUndefined,
            autoescape=False,  # noqa: S701 - plain text
            keep_trailing_newline=True,
            auto_reload=False,  # the templates ship with the code: no stat of their file per render
        )
        self._html = Environment(
            loader=FileSystemLoader(TEMPLATE_DIR),
            undefined=StrictUndefined,
            autoescape=select_autoescape(["html", "j2"]),
            auto_reload=False,
        )

    def render(self, template: str, language: str, context: dict[str, Any]) -> Rendered:
        lang = "en" if language == "en" else "zh"
        site_url = self.settings.site_url.rstrip("/")
        ctx = {
            **context,
            "language": lang,
            "site_url": site_url,
            "sender_name": self.settings.sender_name(lang),
            "sender_address": self.settings.mail_from_address,
            "allowlist_advice": (
                self.settings.mail_allowlist_advice_en if lang == "en" else self.settings.mail_allowlist_advice
            ),
        }
        if "path" in context:
            ctx["link"] = f"{site_url}{context['path']}"
        subject = self._text.get_template(f"{template}.{lang}.subject.j2").render(ctx).strip()
        ctx["subject"] = subject
        text = self._text.get_template(f"{template}.{lang}.txt.j2").render(ctx)
        html = self._html.get_template(f"{template}.{lang}.html.j2").render(ctx)
        return Rendered(subject=subject, text=text, html=html)

    def page(self, template: str, context: dict[str, Any]) -> str:
        """An HTML page of the service itself (the standalone mailbox's view of one email)."""
        return self._html.get_template(template).render(context)
