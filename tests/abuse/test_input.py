"""Hostile input on every operation of every service: clear 4xx with a stable code, never a 500,
and nothing half-written.

The operations come from each service's OpenAPI document, so an endpoint added later is covered
without touching this file. Requests carry a national admin's token so that authentication is
not what refuses them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from shared.testing import resident_id, sign_up_body

from .stack import SERVICES, OpenStack, Stack

pytestmark = pytest.mark.slow


@pytest.fixture
async def stack(open_stack: OpenStack) -> AsyncIterator[Stack]:
    async with open_stack() as stack:
        yield stack


def body_operations(stack: Stack) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(service, method, concrete path, operation) for every operation that takes a request body."""
    for service in SERVICES:
        for path, item in stack.apps[service].openapi().get("paths", {}).items():
            for method, op in item.items():
                if method in {"post", "put", "patch"} and "requestBody" in op:
                    yield service, method.upper(), re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path), op


def code_of(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    body = response.json()
    return body.get("code") if isinstance(body, dict) else None


async def test_malformed_oversized_and_mistyped_bodies_get_a_coded_4xx_everywhere(stack: Stack) -> None:
    admin = stack.users["national_admin"].headers
    huge = b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    attacks: dict[str, tuple[bytes, str]] = {
        "malformed_json": (b'{"username": "a", ', "application/json"),
        "json_not_an_object": (b"[1, 2, 3]", "application/json"),
        "wrong_content_type": (b"username=a&password=b", "text/plain"),
        "oversized": (huge, "application/json"),
        "invalid_utf8": (b'{"name": "\xff\xfe"}', "application/json"),
        "deeply_nested": (b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json"),
    }
    tried = 0
    failures: list[str] = []
    async with httpx.AsyncClient(timeout=60) as client:
        for service, method, path, _ in body_operations(stack):
            for attack, (content, content_type) in attacks.items():
                response = await client.request(
                    method,
                    stack.url(service, path),
                    content=content,
                    headers={**admin, "Content-Type": content_type, "Accept-Language": "zh"},
                )
                tried += 1
                code = code_of(response)
                if not (400 <= response.status_code < 500 and code):
                    failures.append(f"{service} {method} {path} [{attack}] → {response.status_code} {code}")
    print(f"\nhostile bodies tried={tried} refused_with_code={tried - len(failures)} failures={len(failures)}")
    assert tried > 0
    assert not failures, "\n".join(failures[:40])


NAMES = {
    "full_width_latin": "ＺＨＡＮＧ　Ｓａｎ",
    "combining_marks": "张\u0301三\u0308",
    "emoji": "张三😀",
    "zero_width": "张\u200b三",
    "rtl_override": "\u202e三张",
    "nul": "张\x00三",
    "only_spaces": "   ",
    "very_long": "张" * 5000,
    "lone_surrogate_escape": "\\ud800",
}


async def test_unicode_edge_cases_in_names_never_break_sign_up(stack: Stack) -> None:
    """Each hostile name is either accepted cleanly (201) or refused with a code; a refused
    sign-up leaves nothing behind (the same ID number then signs up fine)."""
    outcomes: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=stack.urls["identity"], timeout=60) as client:
        for label, name in NAMES.items():
            body = sign_up_body(real_name=name)
            response = await client.post("/api/v1/accounts", json=body)
            outcomes[label] = response.status_code
            assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
            if response.status_code != 201:
                assert response.status_code >= 400, f"{label}: {response.text[:300]}"
                assert code_of(response), f"{label}: {response.text[:300]}"
                retry = await client.post("/api/v1/accounts", json={**body, "real_name": "张三"})
                assert retry.status_code == 201, (
                    f"{label} left something behind: first {response.status_code} {response.text[:200]};"
                    f" retry {retry.status_code} {retry.text[:200]}"
                )
    print(f"\nunicode names: {outcomes}")


async def test_invalid_id_numbers_are_refused_with_a_code(stack: Stack) -> None:
    valid = resident_id()
    wrong_check = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    cases = {
        "wrong_check_digit": wrong_check,
        "impossible_birth_date": "110105199002301234",
        "letters": "11010519900101ABCD",
        "too_short": "1101051990",
    }
    async with httpx.AsyncClient(base_url=stack.urls["identity"], timeout=60) as client:
        for label, number in cases.items():
            response = await client.post("/api/v1/accounts", json=sign_up_body(id_number=number))
            assert 400 <= response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
            assert code_of(response), label


async def test_full_width_digits_cannot_register_an_id_number_twice(stack: Stack) -> None:
    """Full-width digits are either refused or normalised to the same identity: they must never
    let one ID number register a second account."""
    number = resident_id()
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in number)
    async with httpx.AsyncClient(base_url=stack.urls["identity"], timeout=60) as client:
        first = await client.post("/api/v1/accounts", json=sign_up_body(id_number=full_width))
        assert first.status_code in (201, 422), first.text[:300]
        second = await client.post("/api/v1/accounts", json=sign_up_body(id_number=number))
        if first.status_code == 201:
            assert second.status_code == 409, second.text[:300]
        else:
            assert code_of(first)
            assert second.status_code == 201, second.text[:300]
