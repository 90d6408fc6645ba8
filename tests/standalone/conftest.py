from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standalone.system import Standalone, standalone_system


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    with standalone_system(tmp_path) as system:
        yield system
