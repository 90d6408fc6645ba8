"""Refusals of the projects service: stable codes, Chinese and English messages."""

from __future__ import annotations

from shared.errors import ErrorSpec

# -- who may do what ------------------------------------------------------------------------------
VOLUNTEER_NOT_VERIFIED = ErrorSpec(
    "volunteer_not_verified",
    403,
    "只有通过实名认证的志愿者才能报名志愿服务项目",
    "Only a volunteer whose real name is verified can apply",
)
NOT_TEAM_MANAGER = ErrorSpec(
    "not_team_manager",
    403,
    "只有本团体的管理员或项目负责人才能管理志愿服务项目",
    "Only the team's admins and project leads can manage its projects",
)
NOT_PROJECT_MANAGER = ErrorSpec(
    "not_project_manager",
    403,
    "只有该项目的负责人或所属团体的管理员才能进行此操作",
    "Only this project's lead or its team's admins can do this",
)
TEAM_NOT_APPROVED = ErrorSpec(
    "team_not_approved", 409, "该志愿团体尚未通过审核,不能发布项目", "The team is not approved and cannot run projects"
)
LEAD_NOT_IN_TEAM = ErrorSpec(
    "lead_not_in_team",
    422,
    "项目负责人必须是本团体的管理员或项目负责人",
    "The project lead must be an admin or project lead of the team",
)
NOT_TEAM_ADMIN = ErrorSpec(
    "not_team_admin",
    403,
    "只有项目所属团体的管理员才能更换项目负责人",
    "Only an admin of the project's team can change its lead",
)
PROJECT_NOT_FOUND = ErrorSpec("project_not_found", 404, "志愿服务项目不存在", "No such project")
POSITION_NOT_FOUND = ErrorSpec("position_not_found", 404, "岗位不存在", "No such position")
APPLICATION_NOT_FOUND = ErrorSpec("application_not_found", 404, "报名记录不存在", "No such application")
HOURS_RECORD_NOT_FOUND = ErrorSpec("hours_record_not_found", 404, "服务时间记录不存在", "No such service-hours record")

# -- dates (P1, P2) ---------------------------------------------------------------------------------
PROJECT_DATES_ORDER = ErrorSpec(
    "project_dates_order", 422, "项目结束日期不能早于开始日期", "The project cannot end before it starts"
)
RECRUITMENT_DATES_ORDER = ErrorSpec(
    "recruitment_dates_order", 422, "招募结束日期不能早于招募开始日期", "Recruitment cannot end before it starts"
)
RECRUITMENT_OUTSIDE_PROJECT = ErrorSpec(
    "recruitment_outside_project",
    422,
    "招募起止日期必须在项目起止日期之内(招募是项目的一个环节)",
    "The recruitment window must lie inside the project's dates (recruiting is part of the project)",
)
PROJECT_TOO_LONG = ErrorSpec(
    "project_too_long",
    422,
    "志愿服务项目周期最长为一年(不超过365天);常态性项目请使用“复制”功能重新发布",
    "A project lasts at most 365 days; continue long-running work by copying the project",
)
REGION_INVALID = ErrorSpec("region_invalid", 422, "行政区划代码无效", "The administrative region code is not valid")

# -- lifecycle (P3, P4) -------------------------------------------------------------------------------
PROJECT_NOT_DRAFT = ErrorSpec(
    "project_not_draft", 409, "只有草稿状态的项目可以发布或修改", "Only a draft project can be published or edited"
)
PUBLISHED_FIELDS_LOCKED = ErrorSpec(
    "published_fields_locked",
    409,
    "项目发布后只能修改联系方式、项目介绍和招募要求(项目日期通过延期修改):{fields}",
    "Once published, only the contact details, description and requirements change (dates by an extension): {fields}",
)
QUOTA_BELOW_ADMITTED = ErrorSpec(
    "quota_below_admitted",
    409,
    "岗位名额不能少于已录用人数({admitted}人)",
    "The quota cannot be below the number already admitted ({admitted})",
)
PROJECT_HAS_NO_POSITIONS = ErrorSpec(
    "project_has_no_positions", 422, "项目至少需要设置一个岗位", "A project needs at least one position"
)
PROJECT_ALREADY_ENDED = ErrorSpec(
    "project_already_ended",
    422,
    "项目结束日期已过,不能发布",
    "The project's end date has passed; it cannot be published",
)
PROJECT_CLOSED = ErrorSpec("project_closed", 409, "该项目已结项", "The project is closed")
PROJECT_NOT_CLOSED = ErrorSpec(
    "project_not_closed", 409, "只有已结项的项目可以延期", "Only a closed project can be extended"
)
EXTENSION_ALREADY_USED = ErrorSpec(
    "extension_already_used",
    409,
    "团体负责人只能在结项后30天内延期一次,本项目已延期过;如需再次延期请联系全国服务电话",
    "A team admin may extend a project only once within 30 days of closing; it was already extended. "
    "To extend it again, call the national service line",
)
EXTENSION_NEEDS_TEAM_ADMIN = ErrorSpec(
    "extension_needs_team_admin",
    403,
    "项目延期须由本团体的管理员办理(项目负责人不能延期)",
    "A project is extended by its team's admins (its lead cannot extend it)",
)
EXTENSION_NEEDS_NATIONAL_ADMIN = ErrorSpec(
    "extension_needs_national_admin",
    403,
    "项目自动结项已超过30天(未超过60天),只能由全国管理员延期,请拨打全国服务电话处理",
    "More than 30 (and at most 60) days after closing, only a national admin can extend the project: "
    "call the national service line",
)
EXTENSION_WINDOW_OVER = ErrorSpec(
    "extension_window_over",
    409,
    "项目自动结项已超过60天,不能延期;请使用“复制”功能重新发布项目",
    "More than 60 days after closing a project cannot be extended; copy it instead",
)
EXTENSION_DATE_INVALID = ErrorSpec(
    "extension_date_invalid",
    422,
    "延期后的结束日期必须晚于今天和原结束日期",
    "The new end date must be after today and after the old end date",
)

# -- applications (P5, P6, P8) ----------------------------------------------------------------------
PROJECT_NOT_RECRUITING = ErrorSpec(
    "project_not_recruiting", 409, "该项目当前不在招募期内", "The project is not recruiting at the moment"
)
ALREADY_APPLIED = ErrorSpec(
    "already_applied",
    409,
    "您已报名该岗位(报名状态:{stage}),不能重复报名",
    "You have already applied to this position (the application is {stage})",
)
POSITION_FULL = ErrorSpec("position_full", 409, "该岗位名额已满", "The position has no places left")
STAGE_TRANSITION_NOT_ALLOWED = ErrorSpec(
    "stage_transition_not_allowed",
    409,
    "报名当前为“{current}”,不能变更为“{target}”",
    "The application is at stage '{current}' and cannot move to '{target}'",
)
WITHDRAW_NOT_PENDING = ErrorSpec(
    "withdraw_not_pending",
    409,
    "只有待审核的报名可以删除;已录用的请使用“脱离项目”",
    "Only a pending application can be deleted; an admitted volunteer leaves instead",
)
LEAVE_NOT_ADMITTED = ErrorSpec(
    "leave_not_admitted", 409, "只有已录用的志愿者可以脱离项目", "Only an admitted volunteer can leave the project"
)
LEAVE_REFUSED_HOURS_RECORDED = ErrorSpec(
    "leave_refused_hours_recorded",
    409,
    "您在该项目已有服务时间记录,不能脱离项目",
    "Service hours are recorded for you on this project, so you can no longer leave it",
)
LEAVE_WHILE_SIGNED_IN = ErrorSpec(
    "leave_while_signed_in",
    409,
    "您已签到,正在服务中,不能退出项目:签退时将记录本次服务时间,有服务时间记录后不能再退出项目",
    "You are signed in and serving, so you cannot leave: signing out records this session's hours, "
    "and with hours recorded you can no longer leave the project",
)
RATING_NOT_ALLOWED = ErrorSpec(
    "rating_not_allowed", 409, "服务开始后才能进行评价", "Ratings are possible once the service has started"
)

# -- service hours (P7) -----------------------------------------------------------------------------
SIGN_IN_NOT_ADMITTED = ErrorSpec(
    "sign_in_not_admitted",
    403,
    "只有本项目已录用的志愿者才能签到签退",
    "Only volunteers admitted to this project can sign in and out",
)
HOURS_NOT_ADMITTED = ErrorSpec(
    "hours_not_admitted",
    409,
    "只能为已录用的志愿者记录服务时间",
    "Service hours can only be recorded for admitted volunteers",
)
HOURS_DATE_OUTSIDE_PROJECT = ErrorSpec(
    "hours_date_outside_project",
    422,
    "服务日期必须在项目起止日期之内,且不能晚于今天",
    "The service date must lie inside the project's dates and not in the future",
)
HOURS_DAILY_CAP_EXCEEDED = ErrorSpec(
    "hours_daily_cap_exceeded",
    422,
    "每名志愿者每天记录的服务时间不能超过{cap_hours}小时",
    "At most {cap_hours} hours a day can be recorded for a volunteer",
)
HOURS_DUPLICATE_ROWS = ErrorSpec(
    "hours_duplicate_rows",
    422,
    "表格中有完全相同的行(同一报名、同一日期、相同时长和备注):{rows}。请删除重复的行后再提交;"
    "若是同一天的几次服务,请在备注中分别注明(如上午、下午)",
    "The sheet repeats rows (same application, date, minutes and note): {rows}. Remove the copies and "
    "send it again; for several sessions on one day, tell them apart in the note (morning, afternoon)",
)
HOURS_CORRECTION_UNCHANGED = ErrorSpec(
    "hours_correction_unchanged",
    422,
    "更正后的服务时间与原记录相同({minutes}分钟),无需更正",
    "The corrected time equals the recorded one ({minutes} minutes); nothing to correct",
)
HOURS_BULK_TOO_LARGE = ErrorSpec(
    "hours_bulk_too_large", 413, "一次最多记录{limit}条服务时间", "At most {limit} records per request"
)
SIGN_CODE_INVALID = ErrorSpec(
    "sign_code_invalid", 422, "签到码无效,请重新扫描负责人出示的二维码", "The sign-in code is not valid; scan it again"
)
SIGN_CODE_EXPIRED = ErrorSpec(
    "sign_code_expired",
    422,
    "签到码已过期,请让负责人刷新二维码",
    "The sign-in code has expired; ask the lead to refresh it",
)
ALREADY_SIGNED_IN = ErrorSpec(
    "already_signed_in", 409, "您已签到,请先签退", "You are already signed in; sign out first"
)
SIGNED_IN_ELSEWHERE = ErrorSpec(
    "signed_in_elsewhere",
    409,
    "您已在另一个项目签到,请先在该项目签退,再在本项目签到;若已离开该项目而忘记签退,"
    "可确认结束该次签到(该次不计时长,由该项目负责人补录)后在本项目签到",
    "You are signed in on another project; sign out there before signing in here. If you left it "
    "without signing out, confirm to end that session (it records nothing; its lead records the time "
    "by hand) and sign in here",
)
NOT_SIGNED_IN = ErrorSpec("not_signed_in", 409, "您今天还没有签到", "You have not signed in today")
IDEMPOTENCY_KEY_REUSED = ErrorSpec(
    "idempotency_key_reused",
    422,
    "该 Idempotency-Key 已用于另一个请求,请为新的请求使用新的键",
    "This Idempotency-Key was used for another request; use a new key for a new request",
)
