"""schemathesis against each service's own OpenAPI document, over real HTTP, with all its checks,
authenticated as real users of each role: 0 server errors, 0 responses that break the schema.

Examples per operation and role: ``VS_FUZZ_EXAMPLES`` (default 4 in ``make test``; raise it for a
deeper run, e.g. ``VS_FUZZ_EXAMPLES=100 pytest tests/abuse/test_schemathesis.py -s``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from .stack import SERVICES, OpenStack, Stack

EXAMPLES = int(os.environ.get("VS_FUZZ_EXAMPLES", "4"))
ROLES = ("volunteer", "regional_admin", "national_admin")

pytestmark = pytest.mark.slow


@schemathesis.check
def schema_valid_data_passes_schema_validation(ctx: Any, response: Any, case: Any) -> bool | None:
    """Stands in for schemathesis' ``positive_data_acceptance``, which wants every schema-valid
    request accepted: JSON Schema cannot say an ID number's check digit or a region code's
    existence, so a domain refusal (4xx with the rule's own code) is right. What must never happen
    is the framework's own validation (``validation_failed``) refusing data the schema allows:
    that would mean the published schema lies."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if body.get("code") != "validation_failed":
        return None
    # A custom validator's refusal (value_error) is a rule beyond the schema, like a domain code;
    # a type, length, pattern or missing-field refusal of schema-valid data is the schema lying.
    lies = [item for item in body.get("detail") or [] if item.get("type") not in {"value_error", "assertion_error"}]
    if lies:
        raise AssertionError(f"schema-valid request refused by schema validation: {lies[:3]}")
    return None


def fuzz_service(stack: Stack, service: str, role: str) -> tuple[int, list[str]]:
    """Every operation of one service with one role's token; returns (calls, failures)."""
    schema = schemathesis.openapi.from_dict(stack.apps[service].openapi())
    base_url = stack.url(service)
    headers = stack.users[role].headers
    calls = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(
                base_url=base_url,
                headers=headers,
                timeout=30,
                excluded_checks=[positive_data_acceptance],
                additional_checks=[schema_valid_data_passes_schema_validation],
            )

        try:
            run()
        except Unsatisfiable:
            continue
        # schemathesis reports its findings as a FailureGroup, a BaseExceptionGroup: caught by name,
        # or the first failing operation ends the whole run and the rest go unchecked
        except (Exception, FailureGroup) as exc:
            failures.append(f"{service} {operation.label} as {role}: {str(exc)[:1500]}")
    return calls, failures


async def test_every_service_conforms_to_its_schema_for_every_role(open_stack: OpenStack) -> None:
    async with open_stack() as stack:
        total_calls = 0
        failures: list[str] = []
        for service in SERVICES:
            for role in ROLES:
                calls, found = await asyncio.to_thread(fuzz_service, stack, service, role)
                total_calls += calls
                failures.extend(found)
                print(f"\nschemathesis {service} as {role}: calls={calls} failures={len(found)}")
    print(f"\nschemathesis total: calls={total_calls} failures={len(failures)}")
    assert not failures, "\n\n".join(failures[:15])
    assert total_calls > 0
