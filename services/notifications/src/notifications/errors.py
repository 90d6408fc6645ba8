"""Refusals of the notifications service."""

from __future__ import annotations

from shared.errors import ErrorSpec

EMAIL_NOT_FOUND = ErrorSpec("email_not_found", 404, "邮件不存在", "No such email")
MAILBOX_LOCAL_ONLY = ErrorSpec(
    "mailbox_local_only",
    403,
    "本地邮箱只能在运行本系统的计算机上查看(其中有密码重置链接等)",
    "The local mailbox can be read only on the machine running the system (it holds password reset links)",
)
EMAIL_LINK_NOT_KEPT = ErrorSpec(
    "email_link_not_kept",
    409,
    "该邮件含一次性链接(如密码重置),链接不予保存,不能重新发送;请让用户重新申请",
    "This email held a one-use link (a password reset), which is not kept: it cannot be replayed; "
    "the person asks for a new one",
)
EMAIL_NOT_REPLAYABLE = ErrorSpec(
    "email_not_replayable",
    409,
    "只有发送失败或被限流拦截的邮件可以重新发送",
    "Only failed or suppressed emails can be replayed",
)
EMAIL_NOT_RENDERED = ErrorSpec(
    "email_not_rendered",
    409,
    "该邮件未能用排队时保存的变量生成内容(通常是系统升级前排队的邮件),没有可发送的内容,不能重新发送",
    "This email could not be rendered from the variables it was queued with (usually queued before an "
    "upgrade): it has nothing to send and cannot be replayed",
)
REPLAY_FILTER_REQUIRED = ErrorSpec(
    "replay_filter_required",
    422,
    "请至少指定一个筛选条件(模板、失败原因、创建时间范围、事件或账号),或以 all_failed 明确确认重新发送全部失败邮件",
    "Give at least one filter (template, failure reason, creation time range, event or account), "
    "or confirm replaying every failed email with all_failed",
)
REPLAY_TIME_RANGE_INVALID = ErrorSpec(
    "replay_time_range_invalid",
    422,
    "创建时间范围的起点必须早于终点",
    "created_from must be earlier than created_before",
)
REPLAY_TEMPLATE_UNKNOWN = ErrorSpec(
    "replay_template_unknown",
    422,
    "没有这个邮件模板:{template}",
    "No such email template: {template}",
)
