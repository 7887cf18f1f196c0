"""The worker's garbage-collection tuning (pipeline.worker.tune_gc)."""

from __future__ import annotations

import gc
import weakref

from pipeline.worker import tune_gc


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (10_000, 20, 10)
        assert gc.isenabled()

        class Node:
            pass

        cycle = Node()
        cycle.self = cycle  # type: ignore[attr-defined]  # unreachable once deleted: only the collector frees it
        alive = weakref.ref(cycle)
        del cycle
        # enough allocations for 20+ young collections: even if one ran between the cycle's creation
        # and its deletion (promoting it), the middle generation has been collected since
        keep: list[list[object]] = [[] for _ in range(250_000)]
        assert alive() is None, "cyclic garbage was not collected automatically"
        del keep
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
