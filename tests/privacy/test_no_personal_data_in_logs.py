"""After the whole suite: no ID number, mobile number or email address was ever logged.

The scan reads the raw log records captured by the root conftest before the log formatter's
masking, so it fails if any code path logs personal data, masked on output or not.
"""

from __future__ import annotations

import re

import pytest
from stdnum.cn import ric

from shared.logging import mask_personal_data
from shared.testing import RAW_LOGS

ID_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
MOBILE = re.compile(
    r"(?<![0-9A-Za-z])(?:\+?86)?1[3-9]\d{9}(?![0-9A-Za-z])|(?<![0-9A-Za-z])\+[1-9]\d{6,14}(?![0-9A-Za-z])"
)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}", re.IGNORECASE)
#: addresses of the system itself (the sender), not of people
SYSTEM_ADDRESSES = re.compile(r"^(noreply|no-reply|postmaster)@", re.IGNORECASE)


def find_personal_data(lines: list[str]) -> list[str]:
    hits: list[str] = []
    for line in lines:
        ids = [m for m in ID_CANDIDATE.findall(line) if ric.is_valid(m)]
        mobiles = MOBILE.findall(line)
        emails = [e for e in EMAIL.findall(line) if not SYSTEM_ADDRESSES.match(e)]
        if ids or mobiles or emails:
            hits.append(mask_personal_data(line)[:300])
    return hits


def test_scanner_finds_what_it_must() -> None:
    # The scanner itself can fail: a valid ID number, a mobile and an email are all caught.
    lines = [
        '{"event": "x", "id": "11010519491231002X"}',
        "call 13812345678",
        "to zhang@example.org",
        '"GET /api/v1/emails?recipient=zhang%40example.org HTTP/1.1" 200',
    ]
    assert len(find_personal_data(lines)) == 4
    assert find_personal_data(['{"event": "ok", "request_id": "0f3a9c"}', "noreply@volunteer.example.org"]) == []


@pytest.mark.runs_last
def test_no_personal_data_in_captured_logs() -> None:
    hits = find_personal_data(RAW_LOGS.lines)
    print(f"log records scanned: {len(RAW_LOGS.lines)}, with personal data: {len(hits)}")
    assert RAW_LOGS.lines, "nothing was captured: the scan would prove nothing"
    assert hits == [], "personal data logged:\n" + "\n".join(hits[:20])
