"""The schedule of detector keys by wake time: due is non-destructive and ordered, apply moves and
drops keys, rebuild from stored state gives the same schedule as the incremental one."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.early.common import EarlyParams
from agents.early.schedule import Schedule

P = EarlyParams()


def test_due_is_ordered_by_time_then_key_and_leaves_keys_scheduled() -> None:
    s = Schedule()
    s.apply("t", [], {"b": 20, "a": 20, "c": 10, "d": 30, "e": None}, {})
    assert s.due("t", 5) == []
    assert s.due("t", 20) == ["c", "a", "b"]
    assert s.due("t", 20) == ["c", "a", "b"]  # non-destructive
    assert s.due("other", 100) == []
    assert s.scheduled("t") == {"a": 20, "b": 20, "c": 10, "d": 30}


def test_apply_unschedules_due_keys_then_schedules_wake_and_drops_deletes() -> None:
    s = Schedule()
    s.apply("t", [], {"a": 10, "b": 10, "c": 10, "d": 50}, {})
    due = s.due("t", 10)
    # a: visited, wakes later; b: visited, never again; c: visited and deleted; d: touched by a record
    s.apply("t", due, {"a": 40, "d": 15}, {"c": None, "d": {"x": 1}})
    assert s.scheduled("t") == {"a": 40, "d": 15}
    assert s.due("t", 39) == ["d"]
    s.apply("t", [], {"x": 15}, {"a": None})  # a deleted by a step that did not list it due
    assert s.scheduled("t") == {"d": 15, "x": 15}
    assert s.due("t", 1000) == ["d", "x"]


def _wake(key: str, value: Any, params: EarlyParams) -> int | None:
    return value["w"] if isinstance(value, dict) else None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.one_of(st.none(), st.integers(0, 200)), st.booleans()),
                max_size=80), st.integers(0, 200))
def test_incremental_schedule_equals_the_rebuild_from_state(ops: list[tuple[int, int | None, bool]], upto: int) -> None:
    """Random steps (a key written with a wake time, or deleted) on a table: the schedule kept by
    ``apply`` is the one ``rebuild`` finds in the stored values."""
    table: dict[str, Any] = {}
    s = Schedule()
    for k, w, delete in ops:
        key = f"k{k}"
        due = s.due("t", upto)
        updates: dict[str, Any] = {key: None} if delete else {key: {"w": w}}
        wake: dict[str, int | None] = {} if delete else {key: w}
        for d in due:  # every due key visited: it keeps its value, and says so
            if d != key:
                wake[d] = _wake(d, table[d], P)
        for kk, v in updates.items():
            if v is None:
                table.pop(kk, None)
            else:
                table[kk] = v
        s.apply("t", due, wake, updates)
        rebuilt = Schedule.rebuild({"t": table}, P, {"t": _wake})
        assert s.scheduled("t") == rebuilt.scheduled("t")
        assert s.due("t", upto) == rebuilt.due("t", upto)


def test_many_keys_one_time_each() -> None:
    rng = random.Random(3)
    s = Schedule()
    times = {f"k{i}": rng.randrange(10_000) for i in range(2_000)}
    s.apply("t", [], dict(times), {})
    assert s.due("t", 5_000) == [k for k, _ in sorted(((k, t) for k, t in times.items() if t <= 5_000),
                                                      key=lambda x: (x[1], x[0]))]
    s.apply("t", s.due("t", 5_000), {}, {})
    assert s.scheduled("t") == {k: t for k, t in times.items() if t > 5_000}
    assert len(s) == len(s.scheduled("t"))
