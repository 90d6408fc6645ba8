"""Identity documents (V1): types, number checks, birth date and age, masking."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from enum import StrEnum

from stdnum import exceptions as stdnum_errors
from stdnum.cn import ric

from identity import errors
from shared import regions
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
MOBILE = re.compile(r"^1[3-9][0-9]{9}$", re.ASCII)


def _ascii(text: str) -> str:
    """NFKC folds full-width digits and letters (１１０…, Ｅ…) to ASCII: one person, one number."""
    return unicodedata.normalize("NFKC", text)


def normalise_number(document_type: DocumentType, number: str) -> str:
    return re.sub(r"[\s-]", "", _ascii(number)).upper()


def check_document(document_type: DocumentType, number: str, birth_date: date | None) -> tuple[str, date]:
    """The normalised number and the birth date, or a refusal.

    A resident ID number carries the birth date (GB 11643); other documents need it given.
    """
    number = normalise_number(document_type, number)
    if document_type is DocumentType.RESIDENT_ID:
        try:
            ric.validate(number)
        except stdnum_errors.InvalidChecksum as exc:
            raise AppError(errors.ID_NUMBER_INVALID, {"reason": "check_digit"}) from exc
        except stdnum_errors.InvalidComponent as exc:
            raise AppError(errors.ID_NUMBER_INVALID, {"reason": "birth_date"}) from exc
        except stdnum_errors.ValidationError as exc:
            raise AppError(errors.ID_NUMBER_INVALID, {"reason": "format"}) from exc
        except KeyError as exc:
            # stdnum's area table lookup fails for area codes without counties (e.g. 110199)
            raise AppError(errors.ID_NUMBER_INVALID, {"reason": "area"}) from exc
        born = ric.get_birth_date(number)
        if birth_date is not None and birth_date != born:
            raise AppError(errors.BIRTH_DATE_MISMATCH)
        return number, born
    if not _PATTERNS[document_type].match(number):
        raise AppError(errors.DOCUMENT_NUMBER_INVALID, {"document_type": document_type.value})
    if birth_date is None:
        raise AppError(errors.BIRTH_DATE_REQUIRED)
    return number, birth_date


def age_on(birth_date: date, today: date) -> int:
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


#: older than anyone alive: a birth date further back is a typing error (a passport's year 0001)
MAXIMUM_AGE = 150


def check_birth_date(birth_date: date, today: date) -> None:
    """A birth date someone alive has: not in the future, not more than MAXIMUM_AGE years back."""
    if birth_date > today or age_on(birth_date, today) > MAXIMUM_AGE:
        raise AppError(errors.ID_NUMBER_INVALID, {"reason": "birth_date"})


def check_age(birth_date: date, today: date, *, minimum_age: int) -> int:
    check_birth_date(birth_date, today)
    age = age_on(birth_date, today)
    if age < minimum_age:
        raise AppError(errors.TOO_YOUNG, {"minimum_age": minimum_age}, params={"minimum_age": minimum_age})
    return age


def check_mobile(mobile: str) -> str:
    mobile = re.sub(r"[\s-]", "", _ascii(mobile))
    if mobile.startswith("+86"):
        mobile = mobile[3:]
    if not MOBILE.match(mobile):
        raise AppError(errors.MOBILE_INVALID)
    return mobile


def check_region(code: str) -> str:
    if not regions.is_valid(code):
        raise AppError(errors.REGION_INVALID)
    return code


def blind_index_input(document_type: DocumentType, number: str) -> str:
    """What the blind index hashes: the type keeps a passport from colliding with a permit."""
    return f"{document_type.value}:{number}"


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


def same_name(a: str, b: str) -> bool:
    return re.sub(r"\s+", "", _ascii(a)) == re.sub(r"\s+", "", _ascii(b))
