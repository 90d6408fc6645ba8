"""Identity documents (V1): types, number checks, birth date and age, masking."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache

from stdnum import numdb
from stdnum.cn import ric

from identity import errors
from shared import regions
from shared.clock import CHINA_TZ
from shared.errors import AppError


class DocumentType(StrEnum):
    RESIDENT_ID = "resident_id"  # 居民身份证
    PASSPORT = "passport"  # 护照
    HK_MACAO_PERMIT = "hk_macao_permit"  # 港澳居民来往内地通行证
    TAIWAN_PERMIT = "taiwan_permit"  # 台湾居民来往大陆通行证


_PATTERNS: dict[DocumentType, re.Pattern[str]] = {
    DocumentType.PASSPORT: re.compile(r"^[A-Z0-9]{5,17}$"),
    DocumentType.HK_MACAO_PERMIT: re.compile(r"^[HM][0-9]{8}([0-9]{2})?$"),
    DocumentType.TAIWAN_PERMIT: re.compile(r"^[0-9]{8}([0-9]{2})?$"),
}
#: a mainland mobile, stored as these 11 digits (also when typed with +86)
MOBILE = re.compile(r"^1[3-9][0-9]{9}$", re.ASCII)
#: any other country's (or Hong Kong's, Macao's, Taiwan's) number in international form (E.164):
#: + then the country code and number, at most 15 digits (and at least 7, the shortest in use)
INTERNATIONAL_MOBILE = re.compile(r"^\+[1-9][0-9]{6,14}$", re.ASCII)


def _ascii(text: str) -> str:
    """NFKC folds full-width digits and letters (１１０…, Ｅ…) to ASCII: one person, one number."""
    return unicodedata.normalize("NFKC", text)


def normalise_number(document_type: DocumentType, number: str) -> str:
    return re.sub(r"[\s-]", "", _ascii(number)).upper()


def document_key(document_type: DocumentType, number: str) -> str:
    """The part of a normalised number that names the holder: what duplicate checks and claims
    compare (through :func:`blind_index_input`).

    A Home Return Permit (港澳居民来往内地通行证) is H or M and the holder's 8 permanent digits; the
    old booklet added a 2-digit issue count (换证次数), which the card dropped: ``H1234567801``,
    ``H1234567802`` and ``H12345678`` are one person. Every other number is its own key."""
    if document_type is DocumentType.HK_MACAO_PERMIT and len(number) == 11:
        return number[:9]
    return number


def check_document(
    document_type: DocumentType, number: str, birth_date: date | None, today: date | None = None
) -> tuple[str, date]:
    """The normalised number (as the person typed it: the sealed and masked form) and the birth
    date, or a refusal.

    A resident ID number carries the birth date (GB 11643); other documents need it given, and a
    given date must be one someone alive has (:func:`check_birth_date`) on ``today`` (China's
    calendar day; the real one when not given).
    """
    today = today or datetime.now(CHINA_TZ).date()
    number = normalise_number(document_type, number)
    if document_type is DocumentType.RESIDENT_ID:
        born = check_resident_id(number, today)
        if birth_date is not None and birth_date != born:
            raise AppError(errors.BIRTH_DATE_MISMATCH)
        return number, born
    if not _PATTERNS[document_type].match(number):
        raise AppError(errors.DOCUMENT_NUMBER_INVALID, {"document_type": document_type.value})
    if birth_date is None:
        raise AppError(errors.BIRTH_DATE_REQUIRED)
    check_birth_date(birth_date, today)
    return number, birth_date


@lru_cache(maxsize=8192)
def area_code_known(code: str) -> bool:
    """A six-digit address code that GB/T 2260 lists or once listed (a county, a city's 市辖区, a
    province), whatever the year: GB 11643's address code is where the number was issued, which
    may be long after the holder was born (an area created or renamed since, a move), and a
    withdrawn code stays on the numbers issued under it. python-stdnum's table has them all, each
    with the years it was in use, which are deliberately not compared with the birth year."""
    if len(code) != 6 or not (code.isascii() and code.isdigit()):
        return False
    found = numdb.get("cn/loc").info(code)
    return any("county" in props for _, props in found)


def check_resident_id(number: str, today: date) -> date:
    """A normalised 18-character resident ID number (GB 11643) as issued: digits, the check
    character, a real birth date (not after ``today``, not older than anyone alive) and a known
    address code (:func:`area_code_known`). Returns the birth date. Refusals say which part is
    wrong in ``detail.reason``: ``format`` (a 15-digit first-generation number among them),
    ``check_digit``, ``birth_date``; an unknown address code has a code of its own."""
    if len(number) != 18 or not (number[:17].isascii() and number[:17].isdigit()):
        raise AppError(errors.ID_NUMBER_INVALID, {"reason": "format"})
    if number[-1] != ric.calc_check_digit(number):
        raise AppError(errors.ID_NUMBER_INVALID, {"reason": "check_digit"})
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise AppError(errors.ID_NUMBER_INVALID, {"reason": "birth_date"}) from None
    if not birth_date_plausible(born, today):
        raise AppError(errors.ID_NUMBER_INVALID, {"reason": "birth_date"})
    if not area_code_known(number[:6]):
        raise AppError(errors.ID_NUMBER_AREA_INVALID, {"reason": "area"})
    return born


def age_on(birth_date: date, today: date) -> int:
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


#: older than anyone alive: a birth date further back is a typing error (a passport's year 0001)
MAXIMUM_AGE = 150


def birth_date_plausible(birth_date: date, today: date) -> bool:
    """A birth date someone alive has: not in the future, not more than MAXIMUM_AGE years back."""
    return birth_date <= today and age_on(birth_date, today) <= MAXIMUM_AGE


def check_birth_date(birth_date: date, today: date) -> None:
    """A typed birth date (a passport's, a permit's) someone alive has; a resident ID number's
    own is checked with the number (:func:`check_resident_id`)."""
    if not birth_date_plausible(birth_date, today):
        raise AppError(errors.BIRTH_DATE_INVALID, {"field": "birth_date"})


def check_age(birth_date: date, today: date, *, minimum_age: int) -> int:
    check_birth_date(birth_date, today)
    age = age_on(birth_date, today)
    if age < minimum_age:
        raise AppError(errors.TOO_YOUNG, {"minimum_age": minimum_age}, params={"minimum_age": minimum_age})
    return age


def check_mobile(mobile: str) -> str:
    """A mobile number as stored (V1, V8): a mainland one as its 11 digits (``13812345678``, also
    typed ``+86 138-1234-5678``); any other in international form, ``+`` and the country code
    (``+852 9123 4567``: Hong Kong, Macao and Taiwan permit holders, passport holders, and anyone
    living abroad, whatever their document), as ``+85291234567``. Spaces and hyphens are dropped;
    a number without ``+`` that is not a mainland mobile, or a +86 number that is not a mobile, is
    refused."""
    mobile = re.sub(r"[\s-]", "", _ascii(mobile))
    if mobile.startswith("+86"):
        mobile = mobile[3:]
    elif INTERNATIONAL_MOBILE.match(mobile):
        return mobile
    if not MOBILE.match(mobile):
        raise AppError(errors.MOBILE_INVALID)
    return mobile


def check_region(code: str) -> str:
    if not regions.is_valid(code):
        raise AppError(errors.REGION_INVALID)
    return code


def blind_index_input(document_type: DocumentType, number: str) -> str:
    """What the blind index hashes: the type keeps a passport from colliding with a permit, and
    the number's :func:`document_key` makes the forms of one permit one index (a number that is
    its own key, a new card's ``H12345678`` among them, is indexed as it always was)."""
    return f"{document_type.value}:{document_key(document_type, number)}"


def mask_number(document_type: DocumentType, number: str) -> str:
    """``110105********002X`` for resident IDs; first two and last two characters otherwise."""
    if document_type is DocumentType.RESIDENT_ID and len(number) == 18:
        return number[:6] + "*" * 8 + number[-4:]
    if len(number) <= 4:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 4) + number[-2:]


def mask_name(name: str) -> str:
    """``张*``, ``欧***``: the family name's first character only."""
    name = name.strip()
    if len(name) <= 1:
        return name
    return name[0] + "*" * (len(name) - 1)


#: the dots people type between the parts of a name (阿依古丽·买买提, 爱新觉罗·溥仪): the middle dot
#: U+00B7 that the ID card prints, and what input methods and fonts give in its place. Compared
#: after NFKC, which already makes ．(U+FF0E) and ․ (U+2024) a full stop, ･ (U+FF65) a katakana
#: middle dot and the Greek ano teleia (U+0387) a middle dot.
NAME_SEPARATORS = re.compile(
    "["
    "\u00b7"  # · middle dot
    "\u2022"  # • bullet
    "\u30fb"  # ・ katakana middle dot
    "\u2027"  # ‧ hyphenation point
    "."  # full stop (and full-width ．)
    "\u2219"  # ∙ bullet operator
    "\u22c5"  # ⋅ dot operator
    "\u2e31"  # ⸱ word separator middle dot
    "\u2e33"  # ⸳ raised dot
    "\ua78f"  # ꞏ sinological dot
    "\u25cf"  # ● black circle
    "\u2981"  # ⦁ z notation spot
    "]"
)


def _name_key(name: str) -> str:
    return NAME_SEPARATORS.sub("\u00b7", re.sub(r"\s+", "", _ascii(name))).casefold()


def same_name(a: str, b: str) -> bool:
    """One person's name however typed: full-width or not (NFKC), with or without spaces, with any
    of :data:`NAME_SEPARATORS` between its parts, and in any case (casefolded: a legacy system's
    ``ADA LOVELACE`` is the passport holder's ``Ada Lovelace``; Chinese names have no case)."""
    return _name_key(a) == _name_key(b)
