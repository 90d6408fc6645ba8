"""X1: every refusal has a stable code, a Chinese message and an English one. Checked over every
``ErrorSpec`` the code defines (module-level, in the shared library and each service), so a new one
cannot slip in with a message missing, a placeholder only one language fills, or a code another
refusal of the same service already uses."""

from __future__ import annotations

import importlib
import pkgutil
import re
import string
from collections.abc import Iterator

import pytest

from shared.errors import ErrorSpec

SERVICES = ("identity", "teams", "projects", "notifications")
CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH = re.compile(r"\b[A-Za-z]{3,}\b")


def specs_of(package: str) -> Iterator[tuple[str, ErrorSpec]]:
    """(module, spec) for every ErrorSpec defined at module level in the package."""
    root = importlib.import_module(package)
    names = [package] + [
        m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.") if not m.name.endswith("__main__")
    ]
    for name in names:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, ErrorSpec):
                yield name, value


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


@pytest.mark.parametrize("service", SERVICES)
def test_every_refusal_of_a_service_has_one_code_a_chinese_and_an_english_message(service: str) -> None:
    by_code: dict[str, ErrorSpec] = {}
    problems: list[str] = []
    specs = {spec: module for module, spec in [*specs_of("shared"), *specs_of(service)]}
    assert len(specs) > 20  # the walk found the catalogue, not an empty module
    for spec, module in specs.items():
        where = f"{module}: {spec.code}"
        if not CODE.fullmatch(spec.code):
            problems.append(f"{where}: code is not snake_case")
        if not 400 <= spec.status <= 599:
            problems.append(f"{where}: status {spec.status} is not an error")
        if not CJK.search(spec.zh):
            problems.append(f"{where}: the Chinese message has no Chinese")
        # (an English message may quote Chinese, the forms of a team's name for one)
        if not ENGLISH.search(spec.en) or spec.en == spec.zh:
            problems.append(f"{where}: the English message is missing or not English")
        if placeholders(spec.zh) != placeholders(spec.en):
            problems.append(f"{where}: placeholders differ, zh {placeholders(spec.zh)} en {placeholders(spec.en)}")
        earlier = by_code.setdefault(spec.code, spec)
        if earlier != spec:
            problems.append(f"{where}: the code is also used for another refusal ({earlier.status}, {earlier.zh})")
    assert problems == []


#: ways out a Chinese message gives, and what its English one must say for the same
WAYS_OUT = {
    "全国服务电话": "national service line",
    "命令行工具": "command-line tool",
    "分批": "split",
}


@pytest.mark.parametrize("service", SERVICES)
def test_the_english_message_gives_the_way_out_the_chinese_one_gives(service: str) -> None:
    problems = [
        f"{module}: {spec.code}: the Chinese says {zh}, the English not {en!r}"
        for module, spec in [*specs_of("shared"), *specs_of(service)]
        for zh, en in WAYS_OUT.items()
        if zh in spec.zh and en not in spec.en.lower()
    ]
    assert problems == []
