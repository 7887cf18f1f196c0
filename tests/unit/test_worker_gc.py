"""The worker's garbage-collection tuning (pipeline.worker.tune_gc)."""

from __future__ import annotations

import gc

from pipeline.worker import tune_gc


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (10_000, 20, 10)
        garbage: list[object] = []
        garbage.append(garbage)  # a cycle: still collected
        del garbage
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
