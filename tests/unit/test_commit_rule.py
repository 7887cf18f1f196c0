"""The consumer commits only offsets whose messages were acknowledged (pipeline.faust_config)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.faust_config import configure_transport, faust_options, next_commit
from pipeline.settings import Settings


def test_the_commit_moves_only_over_a_run_that_starts_at_the_committed_offset() -> None:
    assert next_commit([10, 11, 12], 10) == 13
    assert next_commit([10, 11, 13, 14], 10) == 12  # stops at the first hole
    assert next_commit([11, 12], 10) is None  # offset 10 was never acked: Faust would commit 13 here
    assert next_commit([1, 2], 0) is None  # ... and here, where its check is skipped for offset 0
    assert next_commit([0, 1], 0) == 2
    assert next_commit([], 5) is None


@given(st.integers(0, 50), st.sets(st.integers(0, 80)))
def test_no_unacked_offset_is_ever_committed(committed: int, acked: set[int]) -> None:
    end = next_commit(sorted(o for o in acked if o >= committed), committed)
    if end is not None:
        assert set(range(committed, end)) <= acked and end > committed


def test_the_worker_app_uses_the_strict_consumer(tmp_path: Path) -> None:
    import faust

    settings = Settings(broker_url="kafka://127.0.0.1:9", data_dir=tmp_path)
    app = faust.App("commit-rule-test", **faust_options(settings, ["127.0.0.1:9"]))
    configure_transport(app)
    consumer_class: Any = app.transport.Consumer
    assert consumer_class.__name__ == "StrictConsumer"
    # a consumer that read 11 and 12 but never got 10 acked commits nothing for that partition
    c = consumer_class.__new__(consumer_class)
    c._acked, c._acked_index, c._committed_offset = {"tp": [12, 11]}, {"tp": {11, 12}}, {"tp": 10}
    assert c._new_offset("tp") is None
    c._acked["tp"].append(10)
    c._acked_index["tp"].add(10)
    assert c._new_offset("tp") == 13 and c._acked["tp"] == [] and c._acked_index["tp"] == set()
    c._gap = {}
    asyncio.run(c._add_gap(type("TP", (), {"topic": "t", "partition": 0})(), 3, 7))
    assert c._gap == {}  # offsets read past are logged, never taken as processed
