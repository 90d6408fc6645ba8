"""What legacy systems knew of a volunteer (issue 3, V3, V4): the legacy volunteer numbers and
service hours of a record and of every record merged into it.

The importer keeps them in the record's ``history.legacy``; a claim keeps the record's history
(V4), and a resolved duplicate case appends each merged record's history to the kept one's
``history.merged`` (V3), where a record merged earlier carries its own ``merged`` in turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

#: how deep ``history.merged`` is followed (a merge of a merge of ...): far beyond any real chain,
#: a bound on what a hand-edited history could make the service walk
_MAX_DEPTH = 32


@dataclass(frozen=True)
class Legacy:
    #: the legacy systems' volunteer numbers, in history order, each once
    volunteer_numbers: tuple[str, ...]
    #: the sum of the legacy service hours; None when no record carried any
    service_hours: Decimal | None

    @property
    def empty(self) -> bool:
        return not self.volunteer_numbers and self.service_hours is None


def legacy_of(history: Mapping[str, Any] | None) -> Legacy:
    """The record's legacy numbers and hours, with those of the records merged into it."""
    numbers: list[str] = []
    hours: list[Decimal] = []
    _collect(history, numbers, hours, 0)
    return Legacy(tuple(dict.fromkeys(numbers)), sum(hours, Decimal(0)) if hours else None)


def _collect(history: Any, numbers: list[str], hours: list[Decimal], depth: int) -> None:
    if not isinstance(history, Mapping) or depth > _MAX_DEPTH:
        return
    legacy = history.get("legacy")
    if isinstance(legacy, Mapping):
        number = legacy.get("volunteer_number")
        if isinstance(number, str) and number:
            numbers.append(number)
        value = legacy.get("service_hours")
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                figure = Decimal(str(value))  # str: 12.5 read back from JSON stays 12.5
            except InvalidOperation:
                figure = Decimal("NaN")
            if figure.is_finite():
                hours.append(figure)
    merged = history.get("merged")
    if isinstance(merged, list):
        for entry in merged:
            _collect(entry, numbers, hours, depth + 1)
