"""Failpoints: named places where a process can be made to die on purpose, for crash tests.

``VS_FAILPOINTS=relay_after_publish,consumer_after_commit`` makes the process exit at once
(``os._exit``, no cleanup, like SIGKILL) the first time it passes one of those points. With the
variable unset (always, in a deployment) a failpoint costs one set lookup.

Points: ``relay_before_publish`` (events committed, claimed, not yet published),
``relay_after_publish`` (published, not yet marked published), ``consumer_after_commit``
(handler's transaction committed, message not yet acked).
"""

from __future__ import annotations

import os
import sys

EXIT_CODE = 86
_ACTIVE = frozenset(p.strip() for p in os.environ.get("VS_FAILPOINTS", "").split(",") if p.strip())


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        sys.stderr.write(f"failpoint {name}: exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
