"""Faust's internals in one room (agents/faust_internals.py): the consumer commits only offsets whose
messages were acknowledged, the bookkeeping helpers, the version pin, and no other module reaching in."""

from __future__ import annotations

import asyncio
import re
import tomllib
import weakref
from importlib import metadata
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agents.faust_internals import (
    FAUST_PIN,
    committed_offsets,
    configure_transport,
    in_flight_partitions,
    next_commit,
    release_unacked,
)
from pipeline.faust_config import faust_options
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


class _Message:
    def __init__(self, topic: str, partition: int, *, acked: bool = False) -> None:
        self.tp = type("TP", (), {"topic": topic, "partition": partition})()
        self.acked = acked


def test_a_released_message_leaves_the_unacked_set_without_an_ack() -> None:
    kept, released = _Message("a", 0), _Message("a", 1)
    unacked: Any = weakref.WeakSet([kept, released])
    app: Any = type("App", (), {"consumer": type("C", (), {"unacked": unacked})()})()
    release_unacked(app, [released])
    assert set(unacked) == {kept} and not released.acked


def test_in_flight_partitions_and_committed_offsets_read_the_consumer() -> None:
    msgs = [_Message("a", 0), _Message("a", 0, acked=True), _Message("b", 2)]
    consumer: Any = type("C", (), {})()
    assert in_flight_partitions(consumer) == set() and committed_offsets(consumer) == {}
    consumer._unacked_messages = weakref.WeakSet(msgs)
    consumer._committed_offset = {"tp": 7}
    assert in_flight_partitions(consumer) == {("a", 0), ("b", 2)}
    assert committed_offsets(consumer) == {"tp": 7}


def test_the_pin_is_pyprojects_and_the_installed_faust_is_within_it() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert FAUST_PIN in pyproject["project"]["dependencies"]
    low, high = re.fullmatch(r"faust-streaming>=([\d.]+),<([\d.]+)", FAUST_PIN).groups()  # type: ignore[union-attr]
    installed = tuple(int(p) for p in metadata.version("faust-streaming").split(".")[:3])
    assert tuple(int(p) for p in low.split(".")) <= installed < tuple(int(p) for p in high.split("."))


PRIVATE_FAUST = re.compile(
    r"[.\"']_(unacked_messages|committed_offset|ensure_producer|new_offset|add_gap|acked|acked_index|settings_extra)\b"
    r"|consumer\.unacked\b|transport\.(Consumer|Producer)\b"
)


def test_no_other_module_reaches_into_faust() -> None:
    root = Path(__file__).parents[2]
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("agents", "pipeline", "sinks", "schemas")
        for path in sorted((root / folder).rglob("*.py"))
        if path.name != "faust_internals.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_FAUST.search(line)
    ]
    assert offenders == []
