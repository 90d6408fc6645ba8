"""Refusals of the notifications service."""

from __future__ import annotations

from shared.errors import ErrorSpec

EMAIL_NOT_FOUND = ErrorSpec("email_not_found", 404, "邮件不存在", "No such email")
EMAIL_NOT_REPLAYABLE = ErrorSpec(
    "email_not_replayable",
    409,
    "只有发送失败或被限流拦截的邮件可以重新发送",
    "Only failed or suppressed emails can be replayed",
)
