"""T2: a team's name follows the form "XXX志愿服务队" or an equivalent team form; a bare company or
school name is refused with a message saying what to use instead (FAQ T2)."""

from __future__ import annotations

import re
import unicodedata

from shared.errors import AppError
from teams.errors import TEAM_NAME_FORM_REQUIRED, TEAM_NAME_LENGTH, TEAM_NAME_NOT_ALLOWED

#: The rule of T2's "equivalent team form": the name ends with a volunteer word (志愿, 志愿者, 义工),
#: optionally 服务 and/or 工作, then a word for a kind of team, with the XXX before it. A rule rather
#: than a list of endings, so 志愿者服务总队, 义工联合会, 志愿者联盟 and 志愿服务工作站 all pass as
#: 志愿服务队 does. Civil rescue teams (蓝天救援队 and the like) are an established volunteer form
#: without the word 志愿: 救援 then a 队-word is one too, unless what precedes it names a state unit
#: (``_state_rescue``: 消防救援大队 is the state fire and rescue service, 公安局救援队 a bureau's). Names in traditional
#: characters are read through ``_SIMPLIFIED`` (the characters of the rule only), so 志願服務隊 and
#: 義工聯合會 pass.
VOLUNTEER_WORDS: tuple[str, ...] = ("志愿者", "志愿", "义工")
#: the kinds of team: every 队 (总队, 大队, 中队, 支队, 分队, 小队), 团 and 团队, every 会 (协会,
#: 联合会, 促进会, 联谊会, 基金会, 总会, 分会), 中心, 站 (服务站, 工作站 with the words above), 社,
#: 联盟, 俱乐部, 之家, 小组
TEAM_TYPES: tuple[str, ...] = (
    "队",
    "总队",
    "大队",
    "中队",
    "支队",
    "分队",
    "小队",
    "团",
    "总团",
    "团队",
    "会",
    "总会",
    "分会",
    "协会",
    "联合会",
    "促进会",
    "联谊会",
    "基金会",
    "中心",
    "站",
    "社",
    "联盟",
    "俱乐部",
    "之家",
    "小组",
)
_RESCUE_TYPES = tuple(t for t in TEAM_TYPES if t.endswith("队") and t != "团队")


def _either(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_TEAM_FORM = re.compile(
    f"(?:(?:{_either(VOLUNTEER_WORDS)})(?:服务)?(?:工作)?(?:{_either(TEAM_TYPES)})"
    f"|(?P<rescue>救援(?:{_either(_RESCUE_TYPES)})))$"
)
#: traditional characters of the words above, read as their simplified ones (for the rule only:
#: the name is kept as written)
_SIMPLIFIED = str.maketrans("願義務隊總團會協聯進誼組樂", "愿义务队总团会协联进谊组乐")
#: examples of the forms, for the refusal's detail (the rule above decides, not this list)
TEAM_FORMS: tuple[str, ...] = (
    "志愿服务队",
    "志愿者服务总队",
    "志愿者协会",
    "志愿服务联合会",
    "志愿服务中心",
    "志愿服务站",
    "志愿者联盟",
    "义工联合会",
    "义工社",
    "救援队",
)


def team_form_stem(name: str) -> str | None:
    """The XXX of a name in a team form (what stands before its volunteer or rescue word), or
    None when the name is in no team form."""
    found = _TEAM_FORM.search(name.translate(_SIMPLIFIED))
    if found is None:
        return None
    stem = name[: found.start()]
    return None if found.group("rescue") and _state_rescue(stem) else stem


def _state_rescue(stem: str) -> bool:
    """A rescue team's XXX that names a state unit, not a civil team: the fire and rescue service
    (消防), an institution (…局, …政府, …医院: ``INSTITUTION_ENDINGS``), the state's own (国家…);
    read without spaces, so 消防 救援支队 is the fire service's too."""
    compact = "".join(stem.split())
    return compact.endswith(("消防", *INSTITUTION_ENDINGS)) or compact.startswith("国家")


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
    stem = team_form_stem(name)
    if stem is not None:
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


def name_key(name: str) -> str:
    """What two names of one region must not share (T2, unique per region): the normalised name
    with every space removed, full-width letters and digits half-width (NFKC) and case folded, so
    "西湖 阳光F3志愿服务队" and "西湖阳光f3志愿服务队" are the name "西湖阳光F3志愿服务队". Kept in
    ``teams.name_key``, where the unique index is (migration 0011 holds a copy of this function)."""
    folded = unicodedata.normalize("NFKC", normalise(name).casefold())
    return "".join(folded.split())
