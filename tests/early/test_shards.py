"""The sharded table layout: the detectors see the same state, and get the same alerts, whether
their tables are stored by key or in shards (the layout the early-warning agent writes)."""

from __future__ import annotations

import random
from typing import Any

from agents.early.common import EarlyParams
from agents.early.engine import (
    SHARDED,
    ShardedView,
    apply_all,
    empty_tables,
    fold_into_shards,
    shard_of,
    step,
)
from tests.early.records import HOUR, T0, rec

P = EarlyParams()


def test_view_reads_keys_across_shards() -> None:
    shards: dict[str, dict[str, Any]] = {shard_of(k, 4): {} for k in "abcdef"}
    for k in "abcdef":
        shards[shard_of(k, 4)][k] = {"v": k}
    view = ShardedView(shards, 4)
    assert sorted(view) == list("abcdef") and len(view) == 6
    assert view["c"] == {"v": "c"} and view.get("zz") is None and "zz" not in view


def test_fold_writes_each_shard_once_and_never_in_place() -> None:
    before = {"a": 1, "b": 2}
    shards: dict[str, Any] = {shard_of("a", 1): before}
    writes = fold_into_shards(shards, {"a": None, "c": 3, "d": 4}, 1)
    assert writes == {"0": {"b": 2, "c": 3, "d": 4}}
    assert before == {"a": 1, "b": 2}  # the stored value is not changed under the table
    assert fold_into_shards({"0": {"a": 1}}, {"a": None}, 1) == {"0": None}  # a shard left empty goes
    assert fold_into_shards({}, {"a": None}, 1) == {}  # deleting what is not there writes nothing


def _traffic(n: int, seed: int) -> list[list[Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        bad = rng.random() < 0.08
        out.append(rec(
            f"r{i}", T0 + i * 40, verdict="positive" if bad else "compliant", vendor_id=f"v{rng.randrange(12)}",
            supplier_id=f"s{rng.randrange(5)}", site_id=f"m{rng.randrange(6)}", device_id=f"d{rng.randrange(9)}",
            district=rng.choice(("Tianhe", "Conghua")), commodity=rng.choice(("cowpea", "spinach")),
        ))
    return [out[i:i + 50] for i in range(0, n, 50)]


def _order(a: Any) -> tuple[str, str, str]:
    return a.kind, a.alert_id, a.status  # keys are visited in another order; one key's alerts keep theirs


def test_sharded_storage_gives_the_same_alerts_and_state() -> None:
    batches = [*_traffic(1500, seed=4), [rec("tick", T0 + 80 * HOUR)]]
    plain = empty_tables()
    stored = empty_tables()
    alerts_plain, alerts_sharded = [], []
    for b in batches:
        o = step(plain, b, P)
        apply_all(plain, o.updates)
        alerts_plain += sorted(o.alerts, key=_order)
        views = {name: ShardedView(t, 3) if name in SHARDED else t for name, t in stored.items()}
        s = step(views, b, P)
        alerts_sharded += sorted(s.alerts, key=_order)
        writes = {name: fold_into_shards(stored[name], ups, 3) if name in SHARDED else ups
                  for name, ups in s.updates.items()}
        assert all(len(writes[name]) <= 3 for name in SHARDED)
        apply_all(stored, writes)
    assert {a.kind for a in alerts_plain} >= {"repeat_offender", "supplier_cluster"}
    assert [a.model_dump() for a in alerts_sharded] == [a.model_dump() for a in alerts_plain]
    for name in SHARDED:
        assert dict(ShardedView(stored[name], 3)) == plain[name]


def test_a_step_never_changes_the_stored_state_in_place() -> None:
    """The detectors return new values; what the tables hold stays as it was until written."""
    import copy

    tables = empty_tables()
    for b in [*_traffic(1200, seed=7), [rec("tick", T0 + 80 * HOUR)]]:
        before = copy.deepcopy(tables)
        out = step(tables, b, P)
        assert tables == before
        apply_all(tables, out.updates)
