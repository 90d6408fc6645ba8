"""National unified volunteer numbers (V5).

Format: ``VS`` + ten digits + one Luhn check digit, e.g. ``VS00000000018``. The ten digits are
a database sequence (assigned once, in the order verifications succeed), so the number
encodes nothing about the person: not the birth date, region, sex or ID number. The check
digit catches a mistyped number before any lookup.
"""

from __future__ import annotations

import re

from stdnum import luhn

PREFIX = "VS"
DIGITS = 10
_PATTERN = re.compile(rf"^{PREFIX}(\d{{{DIGITS}}})(\d)$")


def render(sequence_value: int) -> str:
    if not 0 < sequence_value < 10**DIGITS:
        raise ValueError("volunteer number sequence out of range")
    body = f"{sequence_value:0{DIGITS}d}"
    return PREFIX + body + luhn.calc_check_digit(body)


def is_valid(number: str) -> bool:
    match = _PATTERN.match(number)
    return match is not None and luhn.is_valid(match.group(1) + match.group(2))
