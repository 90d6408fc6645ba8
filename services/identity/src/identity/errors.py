"""Refusals of the identity service (stable codes; Chinese as SPEC.md quotes, English)."""

from shared.errors import ErrorSpec

# -- registration (V1–V4) -------------------------------------------------------------------
USERNAME_TAKEN = ErrorSpec("username_taken", 409, "该用户名已被使用", "This username is already taken")
#: ``create-admin`` only (the API's sign-up refuses such a name with validation_failed)
USERNAME_INVALID = ErrorSpec(
    "username_invalid",
    422,
    "用户名为3至64个字符,只能包含英文字母、数字、下划线、点和连字符",
    "A username has 3 to 64 characters: ASCII letters, digits, _ . and -",
)
ID_NUMBER_INVALID = ErrorSpec(
    "id_number_invalid", 422, "身份证号码不正确,请核对校验位和出生日期", "The resident ID number is not valid"
)
ID_NUMBER_AREA_INVALID = ErrorSpec(
    "id_number_area_invalid",
    422,
    "身份证号码前6位地址码不正确,请核对",
    "The first six digits of the resident ID number are not a known area code",
)
DOCUMENT_NUMBER_INVALID = ErrorSpec(
    "document_number_invalid", 422, "证件号码格式不正确", "The document number is not valid for its type"
)
BIRTH_DATE_REQUIRED = ErrorSpec(
    "birth_date_required", 422, "使用该证件注册需填写出生日期", "This document type needs the birth date"
)
BIRTH_DATE_MISMATCH = ErrorSpec(
    "birth_date_mismatch", 422, "出生日期与身份证号码不一致", "The birth date does not match the ID number"
)
#: a typed birth date (passport, permits; an import's birth date column): not a date, in the
#: future, or further back than anyone alive
BIRTH_DATE_INVALID = ErrorSpec(
    "birth_date_invalid",
    422,
    "出生日期不正确,请核对:应为有效日期(如 1990-01-01),不能晚于今天,也不能早于150年前",
    "The birth date is not valid: a real date (such as 1990-01-01), not in the future and not more than 150 years ago",
)
TOO_YOUNG = ErrorSpec(
    "too_young", 422, "未满{minimum_age}周岁不能注册为志愿者", "Volunteers must be at least {minimum_age} years old"
)
GUARDIAN_CONSENT_REQUIRED = ErrorSpec(
    "guardian_consent_required",
    422,
    "未满18周岁的志愿者注册需经监护人同意,请填写监护人信息",
    "Volunteers under 18 need a guardian's consent",
)
GUARDIAN_CONSENT_TIME_INVALID = ErrorSpec(
    "guardian_consent_time_invalid",
    422,
    "监护人同意时间不正确:须带时区,不能晚于当前时间,也不能早于出生日期",
    "The guardian's consent time must carry a time zone, must not be in the future and not before the birth date",
)
#: a mainland mobile, or any other in international form (identity.domain.documents.check_mobile)
MOBILE_INVALID = ErrorSpec(
    "mobile_invalid",
    422,
    "手机号码格式不正确:中国大陆手机号为11位数字,其他国家或地区的号码请以+和国家或地区代码开头(如+852)",
    "The mobile number is not valid: a mainland China mobile has 11 digits; any other starts with + and "
    "the country or region code (such as +852)",
)
EMAIL_INVALID = ErrorSpec(
    "email_invalid", 422, "电子邮箱格式不正确,一般格式为:用户名@域名", "The email address is not valid"
)
REGION_INVALID = ErrorSpec("region_invalid", 422, "所在地区代码不存在", "Unknown region code")
ID_NUMBER_ALREADY_REGISTERED = ErrorSpec(
    "id_number_already_registered",
    409,
    "使用该证件号码的志愿者已经注册过",
    "A volunteer with this ID number is registered",
)
ID_NUMBER_CONFLICT = ErrorSpec(
    "id_number_conflict", 409, "身份证件信息验证异常", "The ID document could not be verified"
)
IMPORTED_NAME_MISMATCH = ErrorSpec(
    "imported_name_mismatch",
    409,
    "使用该证件号码的志愿者数据已经被导入,请输入正确的姓名进行注册以激活数据!",
    "A record with this ID number was imported; enter the correct name to activate it",
)
IMPORTED_BIRTH_DATE_MISMATCH = ErrorSpec(
    "imported_birth_date_mismatch",
    409,
    "使用该证件号码的志愿者数据已经被导入,出生日期与导入数据不一致,请核对",
    "A record with this ID number was imported with another birth date; check the birth date",
)
#: sign-up's answers about an ID number (registered, held twice, an imported record's name or birth
#: date), too many from one client address (IDENTITY_SIGN_UP_IDENTITY_REFUSALS_PER_HOUR)
TOO_MANY_SIGN_UP_ATTEMPTS = ErrorSpec(
    "too_many_sign_up_attempts",
    429,
    "注册尝试过于频繁,请{retry_after}秒后再试",
    "Too many sign-up attempts; retry in {retry_after} s",
)
NAME_LOCKED_AFTER_VERIFICATION = ErrorSpec(
    "name_locked_after_verification",
    409,
    "已通过实名认证的志愿者不能修改姓名",
    "The name cannot change once the identity is verified",
)
NOT_A_VOLUNTEER = ErrorSpec(
    "not_a_volunteer", 409, "该账号没有志愿者身份信息", "This account has no volunteer identity"
)

# -- passwords and tokens (V10) -------------------------------------------------------------
PASSWORD_LENGTH = ErrorSpec("password_length", 422, "密码长度应为8至128个字符", "Passwords have 8 to 128 characters")
PASSWORD_TOO_COMMON = ErrorSpec(
    "password_too_common", 422, "密码过于常见,请换一个更难猜的密码", "This password is too common; choose another"
)
PASSWORD_CONTAINS_USERNAME = ErrorSpec(
    "password_contains_username", 422, "密码不能包含用户名", "The password must not contain the username"
)
INVALID_CREDENTIALS = ErrorSpec("invalid_credentials", 401, "用户名或密码错误", "Wrong username or password")
TOO_MANY_ATTEMPTS = ErrorSpec(
    "too_many_attempts", 429, "登录失败次数过多,请{retry_after}秒后再试", "Too many attempts; retry in {retry_after} s"
)
PASSWORD_CHANGE_REQUIRED = ErrorSpec(
    "password_change_required",
    403,
    "您正在使用临时密码,请先修改密码",
    "This is a temporary password; change it before logging in",
)
REFRESH_TOKEN_INVALID = ErrorSpec(
    "refresh_token_invalid", 401, "登录已失效,请重新登录", "The refresh token is not valid; log in again"
)
REFRESH_TOKEN_REUSED = ErrorSpec(
    "refresh_token_reused", 401, "登录凭证已被使用,请重新登录", "This refresh token was used before; log in again"
)
RESET_TOKEN_INVALID = ErrorSpec(
    "reset_token_invalid", 400, "重置密码链接无效或已过期", "The reset link is not valid or has expired"
)

# -- administration -------------------------------------------------------------------------
ACCOUNT_NOT_FOUND = ErrorSpec("account_not_found", 404, "账号不存在", "No such account")
ROLE_INVALID = ErrorSpec(
    "role_invalid", 422, "角色或管理地区不正确", "Unknown role, or a regional admin without region"
)
LAST_NATIONAL_ADMIN = ErrorSpec(
    "last_national_admin",
    409,
    "这是系统中最后一位全国管理员,请先为其他账号授予全国管理员角色",
    "This is the last national admin: grant the role to another account first",
)
CASE_NOT_FOUND = ErrorSpec("case_not_found", 404, "重复记录处理单不存在", "No such duplicate case")
CASE_ALREADY_RESOLVED = ErrorSpec("case_already_resolved", 409, "该重复记录已处理", "This case is already resolved")
RECORD_NOT_IN_CASE = ErrorSpec(
    "record_not_in_case", 422, "保留的记录不属于该处理单", "The record to keep is not part of this case"
)
MERGE_MUST_KEEP_REGISTERED = ErrorSpec(
    "merge_must_keep_registered",
    409,
    "必须保留已注册账号对应的记录",
    "The record that has a registered account must be the one kept",
)
#: the resolution names the records the admin saw; another record of the number arrived since (an
#: import, a sign-up) or one of them left: look at the case again
CASE_CHANGED = ErrorSpec(
    "case_changed",
    409,
    "该处理单的记录已发生变化,请重新查看后再处理",
    "The case's records changed since you looked at them: look at the case again, then resolve it",
)
PASSWORD_UNCHANGED = ErrorSpec(
    "password_unchanged", 422, "新密码不能与当前密码相同", "The new password must differ from the current one"
)

# -- manual verification (V6) -----------------------------------------------------------------
ID_CARD_UPLOAD_NOT_NEEDED = ErrorSpec(
    "id_card_upload_not_needed",
    409,
    "只有实名认证未通过的志愿者需要上传身份证件照片",
    "Only a volunteer whose verification failed uploads the ID card",
)
ID_CARD_IMAGE_TYPE = ErrorSpec(
    "id_card_image_type", 415, "身份证件照片只支持JPEG或PNG格式", "The ID-card image must be a JPEG or PNG"
)
ID_CARD_IMAGE_TOO_LARGE = ErrorSpec(
    "id_card_image_too_large",
    413,
    "身份证件照片不能超过{max_kib}KB",
    "The ID-card image must not exceed {max_kib} KiB",
)
ID_CARD_IMAGE_TOO_MANY_PIXELS = ErrorSpec(
    "id_card_image_too_many_pixels",
    413,
    "身份证件照片尺寸过大,请缩小到{max_pixels}像素、每边{max_side}像素以内",
    "The ID-card image is too big: at most {max_pixels} pixels and {max_side} pixels a side",
)
REVIEW_NOT_FOUND = ErrorSpec("review_not_found", 404, "审核记录不存在", "No such ID-card review")
REVIEW_ALREADY_DECIDED = ErrorSpec("review_already_decided", 409, "该审核已处理", "This review is already decided")
REVIEW_OUT_OF_REGION = ErrorSpec(
    "review_out_of_region",
    403,
    "只能审核本地区志愿者的实名认证",
    "You can only review volunteers of your region",
)
REVIEW_OWN_UPLOAD = ErrorSpec(
    "review_own_upload",
    403,
    "不能审核本人上传的身份证件照片,请由本地区其他管理员审核",
    "You cannot review your own ID-card upload; another admin of the region reviews it",
)
REVIEW_SUPERSEDED = ErrorSpec(
    "review_superseded",
    409,
    "志愿者已修改姓名或重新上传身份证件照片,该审核已撤回,无需处理",
    "The volunteer changed the name or uploaded the ID card again; this review was withdrawn",
)
REJECTION_REASON_REQUIRED = ErrorSpec(
    "rejection_reason_required", 422, "驳回时必须填写理由", "A rejection needs a reason"
)
DISCLOSURE_OUT_OF_REGION = ErrorSpec(
    "disclosure_out_of_region",
    403,
    "只能查看本地区志愿者的证件号码",
    "You can only read the ID numbers of volunteers of your region",
)

# -- invitations lookup and team admin resets (T7) ------------------------------------------
NOT_TEAM_ADMIN = ErrorSpec("not_team_admin", 403, "只有志愿团体管理员可以进行此操作", "Only a team admin can do this")
NOT_TEAM_MEMBER = ErrorSpec(
    "not_team_member", 404, "该志愿者不是本团体成员", "This volunteer is not a member of your team"
)
RESET_REQUIRES_NATIONAL_ADMIN = ErrorSpec(
    "reset_requires_national_admin",
    403,
    "该账号是管理员或项目负责人账号,团体管理员不能重置其密码,请联系全国系统管理员重置",
    "This account holds an admin or project lead role; a team admin cannot reset its password, the national admin can",
)
VOLUNTEER_NOT_FOUND = ErrorSpec(
    "volunteer_not_found",
    404,
    "未找到证件号码和姓名都相符的已注册志愿者",
    "No registered volunteer has both this ID number and this name",
)
TOO_MANY_LOOKUPS = ErrorSpec("too_many_lookups", 429, "查询过于频繁,请稍后再试", "Too many lookups; try again later")

# -- volunteer card (V9) --------------------------------------------------------------------
CARD_REQUIRES_VERIFICATION = ErrorSpec(
    "card_requires_verification",
    409,
    "通过实名认证后才能领取志愿服务证",
    "The volunteer card is issued once the identity is verified",
)
