"""Support contacts (SPEC X2, FAQ "系统客服电话"): who people call, and for what, as the deployment
configures them (``TEAMS_SUPPORT_CONTACTS``), never as code.

Three kinds of line, each answering its own questions:

* ``national``: the national service line (全国系统客服电话), for volunteers and teams who lost
  their username or password and cannot reset it, an ID number held by two or more records, and a
  project's extension 30 to 60 days after it closed;
* ``data_import``: the data-import contact (数据导入联系人), for loading records from earlier systems;
* ``provincial``: one per province (省级志愿服务网联络人), for the administrations' questions only, not
  volunteers' personal ones.

The settings give numbers, addresses and working hours; what each kind answers is the system's own
wording (:data:`SCOPES`), in Chinese and English.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from shared import regions
from shared.browsers import BROWSER_ADVICE, RECOMMENDED_BROWSERS

Kind = Literal["national", "data_import", "provincial"]

#: what each kind of line answers, by language
SCOPES: dict[Kind, dict[str, str]] = {
    "national": {
        "zh": "志愿者、志愿团体找回用户名和密码(无法自行找回时),证件号码重复记录的清理,项目自动结项30至60天内的延期",
        "en": (
            "Usernames and passwords of volunteers and teams that cannot be recovered online, ID numbers held by "
            "more than one record, and extending a project 30 to 60 days after it closed"
        ),
    },
    "data_import": {
        "zh": "从以往系统批量导入志愿者数据",
        "en": "Bulk loading of volunteer records from earlier systems",
    },
    "provincial": {
        "zh": "仅解答管理部门相关问题,不回答志愿者个人问题",
        "en": "Questions from administrations only, not volunteers' personal questions",
    },
}

Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9+\-() ]{3,30}$")]
Hours = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]


class SupportLine(BaseModel):
    """One contact: phone numbers, email addresses, and when it answers (overriding the default)."""

    model_config = ConfigDict(extra="forbid")

    phones: list[Phone] = Field(default_factory=list, max_length=20)
    emails: list[EmailStr] = Field(default_factory=list, max_length=20)
    working_hours: Hours = ""
    working_hours_en: Hours = ""

    @property
    def configured(self) -> bool:
        return bool(self.phones or self.emails)


class SupportContacts(BaseModel):
    """``TEAMS_SUPPORT_CONTACTS`` (JSON). A line with neither a phone nor an email is not shown."""

    model_config = ConfigDict(extra="forbid")

    national: SupportLine = Field(default_factory=SupportLine)
    data_import: SupportLine = Field(default_factory=SupportLine)
    #: by province code (``110000``): the province's contact for administrations
    provincial: dict[str, SupportLine] = Field(default_factory=dict)
    #: when the lines answer, unless a line says otherwise (the FAQ: 工作日 8:30-17:30)
    working_hours: Hours = ""
    working_hours_en: Hours = ""

    @field_validator("provincial")
    @classmethod
    def _provinces_only(cls, lines: dict[str, SupportLine]) -> dict[str, SupportLine]:
        for code in lines:
            region = regions.get(code) if code.isdigit() and len(code) == 6 else None
            if region is None or region.level != "province":
                raise ValueError(f"provincial: {code!r} is not the code of a province (GB/T 2260, e.g. 110000)")
        return lines


class SupportLineOut(BaseModel):
    kind: Kind
    #: what this line answers, in the language asked for
    scope: str
    phones: list[str]
    emails: list[str]
    working_hours: str | None
    #: a provincial line's province
    region_code: str | None = None
    region_name: str | None = None


class BrowserAdviceOut(BaseModel):
    """The browsers the system recommends (FAQ O3), for a frontend's login or help page."""

    recommended: list[str]
    #: the recommendation as a sentence, in the language asked for
    advice: str


class SupportContactsOut(BaseModel):
    lines: list[SupportLineOut]
    browsers: BrowserAdviceOut


def support_lines(contacts: SupportContacts, lang: str, region_code: str | None = None) -> SupportContactsOut:
    """The configured lines in the order people should try them: national, data import, then the
    provinces (only the province of ``region_code`` when one is given, a region of any level)."""
    wanted: list[tuple[Kind, SupportLine, regions.Region | None]] = [
        ("national", contacts.national, None),
        ("data_import", contacts.data_import, None),
    ]
    province = regions.province_of(region_code) if region_code is not None else None
    for code in sorted(contacts.provincial):
        if region_code is None or code == province:
            wanted.append(("provincial", contacts.provincial[code], regions.get(code)))
    return SupportContactsOut(
        lines=[
            SupportLineOut(
                kind=kind,
                scope=SCOPES[kind][lang],
                phones=list(line.phones),
                emails=[str(e) for e in line.emails],
                working_hours=_hours(line, contacts, lang),
                region_code=region.code if region else None,
                region_name=region.name if region else None,
            )
            for kind, line, region in wanted
            if line.configured
        ],
        browsers=BrowserAdviceOut(recommended=list(RECOMMENDED_BROWSERS), advice=BROWSER_ADVICE[lang]),
    )


def _hours(line: SupportLine, contacts: SupportContacts, lang: str) -> str | None:
    zh = line.working_hours or contacts.working_hours
    if lang == "en":
        # a line with hours of its own shows its own, even when only in Chinese
        en = line.working_hours_en or ("" if line.working_hours else contacts.working_hours_en)
        return en or zh or None
    return zh or None
