"""T2: a team's name follows the form "XXX志愿服务队" or an equivalent team form; a bare company or
school name is refused with a message saying what to use instead (FAQ T2)."""

from __future__ import annotations

import re
import unicodedata

from shared.errors import AppError
from teams.errors import TEAM_NAME_FORM_REQUIRED, TEAM_NAME_LENGTH, TEAM_NAME_NOT_ALLOWED

#: endings that make a name a volunteer team's name (longest first so the stem is right)
TEAM_FORMS: tuple[str, ...] = tuple(
    sorted(
        {
            "志愿服务队",
            "志愿者服务队",
            "志愿服务总队",
            "志愿服务大队",
            "志愿服务支队",
            "志愿服务分队",
            "志愿服务小队",
            "志愿者队",
            "志愿者总队",
            "志愿者大队",
            "志愿者支队",
            "志愿者分队",
            "志愿者小队",
            "志愿队",
            "志愿者协会",
            "志愿服务协会",
            "志愿者服务协会",
            "志愿者联合会",
            "志愿服务联合会",
            "志愿服务促进会",
            "志愿服务中心",
            "志愿者服务中心",
            "志愿服务站",
            "志愿者服务站",
            "志愿者之家",
            "志愿服务团",
            "志愿者团",
            "志愿服务团队",
            "志愿者团队",
            "志愿服务基金会",
            "志愿者基金会",
        },
        key=len,
        reverse=True,
    )
)

#: endings of an institution's own name, which must not be used as the team's name as such
INSTITUTION_ENDINGS: tuple[str, ...] = (
    "有限责任公司",
    "股份有限公司",
    "有限公司",
    "公司",
    "集团",
    "企业",
    "工厂",
    "厂",
    "学校",
    "大学",
    "学院",
    "中学",
    "小学",
    "幼儿园",
    "医院",
    "卫生院",
    "银行",
    "商店",
    "超市",
    "酒店",
    "宾馆",
    "事务所",
    "研究所",
    "研究院",
    "委员会",
    "政府",
    "局",
    "办事处",
    "居委会",
    "村委会",
)

MIN_LENGTH, MAX_LENGTH = 4, 60
_SPACES = re.compile(r"\s+")
#: Unicode's default-ignorable code points (DerivedCoreProperties: zero-width spaces and joiners,
#: soft hyphen, direction marks and isolates, the combining grapheme joiner, Hangul fillers, Khmer
#: inherent vowels, variation selectors, tags...), which a font draws as nothing; the Mongolian free
#: variation selectors and vowel separator (U+180B-U+180F) are kept: they spell Mongolian words
_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]"
)
#: drawn as a blank without being a space: the blank Braille pattern
_BLANKS = {ord("\u2800"): " "}


def normalise(name: str) -> str:
    """Full-width letters and digits to half-width; characters drawn as nothing (default-ignorable:
    zero-width spaces and joiners, soft hyphens, direction marks, variation selectors, Hangul
    fillers) removed and blank-looking ones taken as spaces, so that a zero-width space before
    志愿服务队 leaves the bare form and a look-alike of a registered name is that name; surrounding
    and repeated spaces removed."""
    visible = _IGNORABLE.sub("", unicodedata.normalize("NFKC", name))
    return _SPACES.sub(" ", visible.translate(_BLANKS)).strip()


def _names_something(stem: str) -> bool:
    """The XXX of the form holds at least one letter, ideograph or digit, not only punctuation."""
    return any(unicodedata.category(c)[0] in "LN" for c in stem)


def check_team_name(raw: str) -> str:
    """The normalised name, or a refusal that names the form to use."""
    name = normalise(raw)
    if any(name.endswith(form) for form in TEAM_FORMS):
        stem = next(name[: -len(form)] for form in TEAM_FORMS if name.endswith(form))
        if not _names_something(stem) or len(name) < MIN_LENGTH:
            # the ending alone ("志愿服务队"): the XXX of the form is missing
            raise AppError(TEAM_NAME_FORM_REQUIRED, {"name": name, "forms": list(TEAM_FORMS)})
        if len(name) > MAX_LENGTH:
            # in the form, only too long: say so, not "use the form" it already follows
            params = {"max": MAX_LENGTH, "length": len(name)}
            raise AppError(TEAM_NAME_LENGTH, {"name": name, "max_length": MAX_LENGTH}, params=params)
        return name
    ending = next((e for e in INSTITUTION_ENDINGS if name.endswith(e)), None)
    if ending is not None:
        # the institution's name in the form, when that fits the length allowed (else the form itself)
        example = f"{name}志愿服务队" if len(name) + 5 <= MAX_LENGTH else "XXX志愿服务队"
        raise AppError(
            TEAM_NAME_NOT_ALLOWED,
            {
                "name": name,
                "ending": ending,
                "suggested_form": "XXX志愿服务队",
                "example": example,
                "max_length": MAX_LENGTH,
            },
            params={"example": example, "max": MAX_LENGTH},
        )
    raise AppError(
        TEAM_NAME_FORM_REQUIRED, {"name": name, "suggested_form": "XXX志愿服务队", "forms": list(TEAM_FORMS)}
    )
