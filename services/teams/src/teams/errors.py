"""Refusals of the teams service: stable codes, Chinese and English messages."""

from __future__ import annotations

from shared.errors import ErrorSpec

# -- regions -----------------------------------------------------------------------------------
REGION_NOT_FOUND = ErrorSpec("region_not_found", 404, "行政区划代码不存在", "No such administrative region")
REGION_INVALID = ErrorSpec("region_invalid", 422, "行政区划代码无效", "The administrative region code is not valid")

# -- registering (T1, T2) ----------------------------------------------------------------------
VOLUNTEER_NOT_VERIFIED = ErrorSpec(
    "volunteer_not_verified",
    403,
    "只有通过实名认证的志愿者才能进行此操作",
    "Only a volunteer whose real name is verified can do this",
)
TEAM_NAME_NOT_ALLOWED = ErrorSpec(
    "team_name_not_allowed",
    422,
    "不要使用公司、学校等单位名称直接作为志愿团体名称,请按“XXX志愿服务队”的形式填写(不超过 {max} 个字),如:{example}",
    'Do not use a company, school or other institution name as the team name; use the form "XXX志愿服务队" '
    "(at most {max} characters), e.g. {example}",
)
TEAM_NAME_FORM_REQUIRED = ErrorSpec(
    "team_name_form_required",
    422,
    "志愿团体名称请按“XXX志愿服务队”的形式填写(以志愿服务队、志愿者协会、义工联合会、志愿服务中心等结尾)",
    'The team name must follow the form "XXX志愿服务队" (ending 志愿服务队, 志愿者协会, 义工联合会, 志愿服务中心 '
    "and the like)",
)
TEAM_NAME_LENGTH = ErrorSpec(
    "team_name_length",
    422,
    "志愿团体名称过长,请控制在 {max} 个字以内(现为 {length} 个字)",
    "The team name is too long: at most {max} characters (it has {length})",
)
TEAM_NAME_TAKEN = ErrorSpec(
    "team_name_taken", 409, "该地区已有同名的志愿团体", "A team with this name already exists in this region"
)
USCC_REQUIRED = ErrorSpec(
    "uscc_required",
    422,
    "在民政部门登记成立的社会组织须填写统一社会信用代码和登记机关",
    "A social organisation registered with civil affairs must give its unified social credit code and "
    "registration authority",
)
USCC_INVALID = ErrorSpec(
    "uscc_invalid",
    422,
    "统一社会信用代码格式或校验位不正确",
    "The unified social credit code is malformed or its check character is wrong",
)
USCC_NOT_CIVIL_AFFAIRS = ErrorSpec(
    "uscc_not_civil_affairs",
    422,
    "该统一社会信用代码不是民政部门登记的社会组织代码,请选择“未登记的社会组织或其他组织”",
    "This code was not issued by civil affairs; choose 'unregistered organisation or other group'",
)
USCC_KIND_MISMATCH = ErrorSpec(
    "uscc_kind_mismatch",
    422,
    "统一社会信用代码表示的组织类别与所选类别不一致",
    "The organisation category in the unified social credit code differs from the chosen kind",
)
USCC_AUTHORITY_MISMATCH = ErrorSpec(
    "uscc_authority_mismatch",
    422,
    "统一社会信用代码第3至8位是登记管理机关的行政区划代码({issued_in}),与所填登记管理机关所在地区"
    "({authority_region})不一致:请填写颁发该代码的登记管理机关所在地区",
    "Characters 3-8 of the unified social credit code are the region of the registration authority that "
    "issued it ({issued_in}), not the one given ({authority_region}): give the region of the authority "
    "that issued the code",
)
USCC_TAKEN = ErrorSpec(
    "uscc_taken", 409, "该统一社会信用代码已注册过志愿团体", "A team with this unified social credit code exists"
)
USCC_NOT_ALLOWED = ErrorSpec(
    "uscc_not_allowed",
    422,
    "未登记的社会组织或其他组织无需填写统一社会信用代码和登记机关",
    "An unregistered organisation gives no unified social credit code or registration authority",
)
LIAISON_REQUIRED = ErrorSpec(
    "liaison_required",
    422,
    "请选择本地市上一级的联络团体",
    "Choose a liaison team one level up in your city",
)

# -- liaison (T3, T4) --------------------------------------------------------------------------
LIAISON_NOT_FOUND = ErrorSpec("liaison_not_found", 422, "所选联络团体不存在", "The chosen liaison team does not exist")
LIAISON_NOT_AUTHORISED = ErrorSpec(
    "liaison_not_authorised",
    422,
    "所选团体未经地区管理员授权开展下一级团体注册,不能作为联络团体",
    "The chosen team is not authorised by its regional admin to take sub-teams, so it cannot be a liaison",
)
LIAISON_CROSS_CITY = ErrorSpec(
    "liaison_cross_city",
    422,
    "不能跨地市选择联络团体,请选择本地市的联络团体",
    "The liaison team must be in your own city (prefecture); cross-city choices are not allowed",
)
LIAISON_CROSS_LEVEL = ErrorSpec(
    "liaison_cross_level",
    422,
    "不能跨级选择联络团体,请选择所在地区上一级的联络团体",
    "The liaison team must be exactly one level up from your region; cross-level choices are not allowed",
)
LIAISON_OUTSIDE_REGION = ErrorSpec(
    "liaison_outside_region",
    422,
    "所选联络团体不在本团体所在地区的上一级地区,请选择上级地区的联络团体",
    "The liaison team must sit in the region directly above yours, not in a neighbouring one",
)
LIAISON_NOT_AVAILABLE = ErrorSpec(
    "liaison_not_available",
    422,
    "省级志愿团体没有上一级联络团体,请联系地区管理员创建",
    "A province-level team has no liaison one level up; a regional admin creates it",
)
NOT_REGION_ADMIN = ErrorSpec(
    "not_region_admin",
    403,
    "只有该地区的地区管理员或全国系统管理员可以进行此操作",
    "Only a regional admin of this region or a national admin can do this",
)
TEAM_NOT_APPROVED = ErrorSpec("team_not_approved", 409, "该志愿团体尚未通过审核", "The team has not been approved yet")
TEAM_REJECTED = ErrorSpec(
    "team_rejected",
    409,
    "该志愿团体的注册申请未通过审核,不能再变更;可修改后重新注册",
    "The team's registration was rejected and can no longer change; correct it and register again",
)
TEAM_WITHDRAWN = ErrorSpec(
    "team_withdrawn",
    409,
    "该志愿团体的注册申请已由申请人撤回,不能再变更;可重新注册",
    "The team's registration was withdrawn by its applicant and can no longer change; register again",
)

# -- review (T5) -------------------------------------------------------------------------------
NOT_REVIEWER = ErrorSpec("not_reviewer", 403, "您不是该志愿团体的审核人", "You are not a reviewer of this team")
TEAM_ALREADY_REVIEWED = ErrorSpec(
    "team_already_reviewed", 409, "该志愿团体已审核过", "The team's registration was already decided"
)
REJECTION_REASON_REQUIRED = ErrorSpec(
    "rejection_reason_required", 422, "驳回时请填写原因", "Give a reason when rejecting"
)
REMINDER_TOO_EARLY = ErrorSpec(
    "reminder_too_early",
    409,
    "提交注册超过4天仍未审核时才可以提醒审核,可提醒时间:{available_at}(北京时间)",
    "You can remind the reviewer once the review has waited 4 days, from {available_at} (Beijing time)",
)
REMINDER_ALREADY_SENT_TODAY = ErrorSpec(
    "reminder_already_sent_today",
    429,
    "每天只能提醒审核一次,下次可提醒时间:{next_available_at}(北京时间)",
    "A reminder can be sent once a day; next possible at {next_available_at} (Beijing time)",
)
NOT_APPLICANT = ErrorSpec("not_applicant", 403, "只有申请人可以进行此操作", "Only the applicant can do this")

# -- membership (T6, T7, T8) ---------------------------------------------------------------------
TEAM_NOT_FOUND = ErrorSpec("team_not_found", 404, "志愿团体不存在", "No such team")
NOT_TEAM_ADMIN = ErrorSpec(
    "not_team_admin", 403, "只有该志愿团体的管理员可以进行此操作", "Only an admin of this team can do this"
)
TEAM_CLOSED_TO_MEMBERS = ErrorSpec(
    "team_closed_to_members",
    409,
    "该志愿团体拒绝任何人加入",
    "This team accepts no one (join mode 'reject anyone')",
)
ALREADY_MEMBER = ErrorSpec("already_member", 409, "您已是该志愿团体成员", "Already a member of this team")
#: what a team admin is told when inviting or adding someone who is a member already
VOLUNTEER_ALREADY_MEMBER = ErrorSpec(
    "volunteer_already_member", 409, "该志愿者已是本团体成员", "This volunteer is already a member of this team"
)
JOIN_REQUEST_PENDING = ErrorSpec(
    "join_request_pending", 409, "您的加入申请正在等待审核", "Your application to join is awaiting a decision"
)
JOIN_REQUEST_CLOSED = ErrorSpec(
    "join_request_closed",
    409,
    "该加入申请已关闭(申请人已通过其他方式加入该团体)",
    "This application is closed (the applicant joined the team another way)",
)
APPLICANT_ALREADY_MEMBER = ErrorSpec(
    "applicant_already_member",
    409,
    "该申请人已是本团体成员,无需再批准加入申请",
    "The applicant is already a member of this team; there is nothing to approve",
)
JOIN_REQUEST_NOT_FOUND = ErrorSpec("join_request_not_found", 404, "加入申请不存在", "No such application to join")
JOIN_REQUEST_DECIDED = ErrorSpec(
    "join_request_decided", 409, "该加入申请已处理", "This application to join was already decided"
)
INVITATION_NOT_FOUND = ErrorSpec("invitation_not_found", 404, "邀请不存在", "No such invitation")
INVITATION_PENDING = ErrorSpec(
    "invitation_pending", 409, "已邀请该志愿者,正在等待回应", "This volunteer was already invited and has not answered"
)
INVITATION_ANSWERED = ErrorSpec("invitation_answered", 409, "该邀请已处理", "This invitation was already answered")
INVITATION_CLOSED = ErrorSpec(
    "invitation_closed",
    409,
    "该邀请已失效(已被团体撤回,或您已通过其他方式加入该团体)",
    "This invitation is no longer open (the team withdrew it, or you joined the team another way)",
)
VOLUNTEER_MATCH_USED = ErrorSpec(
    "volunteer_match_used",
    409,
    "该证件号码与姓名的核验结果已用过一次(每次查找只能把志愿者加入一个团体),如需再次添加请重新查找该志愿者",
    "This ID number and name match was already used (one lookup brings a volunteer into one team): look the "
    "volunteer up again",
)
VOLUNTEER_MATCH_INVALID = ErrorSpec(
    "volunteer_match_invalid",
    422,
    "证件号码与姓名的核验结果无效或已过期(有效期10分钟,仅限查找人本人使用),请重新查找该志愿者",
    "The ID number and name match is invalid or expired (it lasts 10 minutes, for the admin who looked the "
    "volunteer up): look the volunteer up again",
)
VOLUNTEER_NOT_FOUND = ErrorSpec(
    "volunteer_not_found",
    404,
    "未找到该实名认证志愿者",
    "No verified volunteer with this id",
)
NOT_MEMBER = ErrorSpec("not_member", 404, "该志愿者不是本团体成员", "Not a member of this team")
LAST_ADMIN = ErrorSpec(
    "last_admin",
    409,
    "志愿团体至少需要一名管理员,请先任命其他管理员",
    "A team needs at least one admin; appoint another admin first",
)
INVITE_TARGET_REQUIRED = ErrorSpec(
    "invite_target_required",
    422,
    "请提供被邀请志愿者的账号ID或志愿者编号(二选一)",
    "Give either the invitee's account id or volunteer number",
)
TEAM_HAS_ADMIN = ErrorSpec(
    "team_has_admin",
    409,
    "该志愿团体已有管理员,请由团体管理员任命其他管理员",
    "The team already has an admin; its admins appoint further admins",
)
