"""The process's heap is settled once after start-up: start-up objects frozen out of the collector's
sight, the youngest generation collected less often (see ``shared.service.settle_heap``)."""

from __future__ import annotations

import gc

import pytest

from shared import service


def test_settle_heap_freezes_what_start_up_left_and_collects_the_young_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "_heap_settled", False)
    before = gc.get_threshold()
    gc.set_threshold(700, before[1], before[2])
    start_up_object: list[object] = []
    start_up_object.append(start_up_object)  # a cycle: tracked by the collector
    try:
        service.settle_heap()
        assert gc.get_threshold() == (service.YOUNG_COLLECTION_THRESHOLD, before[1], before[2])
        assert not any(o is start_up_object for o in gc.get_objects())  # frozen: no collection walks it
        assert gc.get_freeze_count() > 0

        gc.set_threshold(700, before[1], before[2])
        service.settle_heap()  # once per process: a second app or worker changes nothing
        assert gc.get_threshold() == (700, before[1], before[2])
    finally:
        gc.set_threshold(*before)
