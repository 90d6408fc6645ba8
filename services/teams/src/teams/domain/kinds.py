"""T1: the kind of a team. A social organisation registered with civil affairs (foundation,
social group, private non-enterprise unit) gives its unified social credit code (GB 32100) and
its registration authority; an unregistered organisation or other group gives neither.

The authority reviews the registration (T5), so the applicant does not get to choose it: the
code's third to eighth characters are the region of the authority that issued it, and the
authority given must be that region. A code issued where the region code has since been
withdrawn (districts merged, renumbered) cannot be checked that closely; its authority must
then lie in the same province, the code's first two digits. An organisation the Ministry of Civil
Affairs registered (region part 100000) gives 100000, and the national admins review it."""

from __future__ import annotations

from enum import StrEnum

from stdnum.cn import uscc as uscc_number
from stdnum.exceptions import ValidationError

from shared import regions
from shared.errors import AppError
from teams.errors import (
    REGION_INVALID,
    USCC_AUTHORITY_MISMATCH,
    USCC_INVALID,
    USCC_KIND_MISMATCH,
    USCC_NOT_ALLOWED,
    USCC_NOT_CIVIL_AFFAIRS,
    USCC_REQUIRED,
)


class TeamKind(StrEnum):
    FOUNDATION = "foundation"  # 基金会
    SOCIAL_GROUP = "social_group"  # 社会团体
    PRIVATE_NON_ENTERPRISE = "private_non_enterprise"  # 民办非企业单位(社会服务机构)
    UNREGISTERED = "unregistered"  # 未登记的社会组织
    OTHER = "other"  # 其他组织

    @property
    def is_social_organisation(self) -> bool:
        return self in SOCIAL_ORGANISATIONS


SOCIAL_ORGANISATIONS = frozenset({TeamKind.FOUNDATION, TeamKind.SOCIAL_GROUP, TeamKind.PRIVATE_NON_ENTERPRISE})

#: GB 32100: the first character is the registering department (5 = civil affairs), the second
#: the category within it (1 social group, 2 private non-enterprise unit, 3 foundation, 9 other)
CIVIL_AFFAIRS = "5"
CATEGORY_OF = {
    TeamKind.SOCIAL_GROUP: "1",
    TeamKind.PRIVATE_NON_ENTERPRISE: "2",
    TeamKind.FOUNDATION: "3",
}


#: the region part of a code the Ministry of Civil Affairs issued (民政部), no region of GB/T 2260:
#: such an organisation names it as its authority, and the national admins review it
NATIONAL_AUTHORITY = "100000"


def check_registration(kind: TeamKind, uscc: str | None, authority_region: str | None) -> tuple[str | None, str | None]:
    """The normalised (code, authority region) for ``kind``, or a refusal."""
    if not kind.is_social_organisation:
        if uscc or authority_region:
            raise AppError(USCC_NOT_ALLOWED)
        return None, None
    if not uscc or not authority_region:
        raise AppError(USCC_REQUIRED)
    try:
        code = uscc_number.validate(uscc)
    except ValidationError as exc:
        raise AppError(USCC_INVALID, {"reason": type(exc).__name__}) from exc
    if code[0] != CIVIL_AFFAIRS:
        raise AppError(USCC_NOT_CIVIL_AFFAIRS, {"department_code": code[0]})
    if code[1] != "9" and code[1] != CATEGORY_OF[kind]:
        raise AppError(USCC_KIND_MISMATCH, {"category_code": code[1], "kind": kind.value})
    issued_in = code[2:8]
    if issued_in == NATIONAL_AUTHORITY and authority_region == NATIONAL_AUTHORITY:
        return code, authority_region  # registered with the Ministry of Civil Affairs: national admins review
    if not regions.is_valid(authority_region) or len(authority_region) != 6:
        raise AppError(REGION_INVALID, {"field": "registration_authority_region"})
    if issued_in != authority_region and (regions.is_valid(issued_in) or issued_in[:2] != authority_region[:2]):
        params = {"issued_in": issued_in, "authority_region": authority_region}
        raise AppError(USCC_AUTHORITY_MISMATCH, params, params=params)
    return code, authority_region
