"""Failpoints: named places where a process can be made to die on purpose, for crash tests.

``VS_FAILPOINTS=relay_after_publish,consumer_after_commit`` makes the process exit at once
(``os._exit``, no cleanup, like SIGKILL) the first time it passes one of those points;
``sender_after_send@3`` the third time. With the variable unset (always, in a deployment) a
failpoint costs one dict lookup.

Points: ``relay_before_publish`` (events committed, claimed, not yet published),
``relay_after_publish`` (published, not yet marked published), ``consumer_after_commit``
(handler's transaction committed, message not yet acked).
"""

from __future__ import annotations

import os
import sys

EXIT_CODE = 86


def _parse(spec: str) -> dict[str, int]:
    """``name`` (die the first time) or ``name@n`` (die the n-th time) per comma-separated item."""
    points: dict[str, int] = {}
    for item in spec.split(","):
        name, _, nth = item.strip().partition("@")
        if name:
            points[name] = int(nth) if nth else 1
    return points


_ACTIVE = _parse(os.environ.get("VS_FAILPOINTS", ""))
_PASSED: dict[str, int] = {}


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        _PASSED[name] = passed = _PASSED.get(name, 0) + 1
        if passed < _ACTIVE[name]:
            return
        sys.stderr.write(f"failpoint {name}: exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
