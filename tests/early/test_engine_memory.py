"""The engine's memory (schedule of detector keys, seen index): a step with a memory kept up to date
by ``EngineMemory.apply`` gives exactly what a step with the memory built from the tables gives
(``memory=None``, as at recovery); the kept memory equals the one rebuilt from the stored state; the
engine reads its own tables by key only; seen expires by whole hours."""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, cast

import pytest

from agents.early import engine, surge
from agents.early.common import DAY, HOUR, JSON, EarlyParams, Step, Stored, due_by_scan, hour_start
from agents.early.engine import EngineMemory, SeenIndex, apply_all, empty_tables, step
from agents.early.schedule import Schedule
from agents.screened import Screened
from schemas.result import result_key
from tests.early.records import T0, NoScan, lab, rec

P = EarlyParams()


def _traffic(days: int, per_day: int, seed: int) -> list[list[Screened]]:
    """Random multi-day traffic in batches of varying size, with resends, late records, positives,
    lab confirmations of some positives, and a few vendors and suppliers that repeat."""
    rng = random.Random(seed)
    out: list[Screened] = []
    sent: list[Screened] = []
    for i in range(days * per_day):
        t = T0 + int(i * DAY / per_day) + rng.randrange(-1800, 1800)
        if sent and rng.random() < 0.04:
            out.append(rng.choice(sent))  # a resend
            continue
        bad = rng.random() < 0.07
        r = rec(
            f"r{i}", t, verdict="positive" if bad else "compliant", vendor_id=f"v{rng.randrange(15)}",
            supplier_id=f"s{rng.randrange(6)}", site_id=f"m{rng.randrange(6)}", device_id=f"d{rng.randrange(8)}",
            district=rng.choice(("Tianhe", "Conghua")), commodity=rng.choice(("cowpea", "spinach")),
        )
        if bad and rng.random() < 0.5:
            out.append(lab(f"l{i}", t, confirms=r.result_id, tested_at=t + rng.randrange(HOUR, 60 * HOUR),
                           verdict=rng.choice(("compliant", "non_compliant")), vendor_id=r.vendor_id,
                           supplier_id=r.supplier_id))
        out.append(r)
        sent.append(r)
    batches: list[list[Screened]] = []
    i = 0
    while i < len(out):
        n = rng.choice((1, 5, 20, 60, 150))
        batches.append(out[i:i + n])
        i += n
    return batches


def _fake_wake(key: str, value: JSON, params: EarlyParams) -> int | None:
    return int(value[1])


def _fake_step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    """A detector that keeps the contract: per vendor [results, wake]; a vendor with no result for 6 h
    of watermark expires (deleted at its wake)."""
    if due is None:
        due = due_by_scan(state, watermark, params, _fake_wake)
    out = Step()
    touched: dict[str, list[Screened]] = {}
    for r in records:
        touched.setdefault(r.vendor_id or "", []).append(r)
    for v, rs in touched.items():
        cur = state.get(v)
        w = max([*(r.sampled_at + 6 * HOUR for r in rs), *([cur[1]] if cur else [])])
        out.updates[v] = [(cur[0] if cur else 0) + len(rs), w]
        out.wake[v] = w
    for k in due:
        if k in touched:
            continue
        assert state[k][1] <= watermark
        out.updates[k] = None
        out.wake[k] = None
    return out


@pytest.fixture(params=["real", "contract"])
def detectors(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The real detectors, or with ``gap`` replaced by a detector that keeps the schedule contract
    (the engine must then hand it every key due, and nothing may scan its table)."""
    if request.param == "contract":
        fake = SimpleNamespace(step=_fake_step, wake_of=_fake_wake)
        monkeypatch.setitem(engine.DETECTORS, "gap", fake)
    return str(request.param)


def _shim(table: str) -> bool:
    """A detector not yet rebuilt for the schedule (its ``wake_of`` says so): it still scans its
    state. Every other table, the engine's own and a rebuilt detector's, is read by key only."""
    mod = engine.DETECTORS.get(table)
    return mod is not None and "shim" in (mod.wake_of.__doc__ or "")


def _assert_memory_is_the_rebuild(mem: EngineMemory, tables: dict[str, dict[str, Any]]) -> None:
    again = EngineMemory.build(tables, P)
    for name in engine.DETECTORS:
        assert mem.schedule.scheduled(name) == again.schedule.scheduled(name), name
    assert mem.seen.keys == again.seen.keys
    assert mem.seen.bare == again.seen.bare
    assert {h: sorted(c) for h, c in mem.seen.chunks.items()} == {h: sorted(c) for h, c in again.seen.chunks.items()}
    # the surge chunks' counts: a key given an entry is forgotten, deleted hours are gone
    kept, built = (cast(surge.Counts, m.detectors["surge"]) for m in (mem, again))
    assert {h: c for h, c in kept.hours.items() if c} == {h: c for h, c in built.hours.items() if c}
    assert kept.refs == built.refs
    assert {h: sorted(c) for h, c in kept.chunks.items()} == {h: sorted(c) for h, c in built.chunks.items()}
    assert kept.held == built.held == sum(len(c) for c in built.chunks.values())


def test_kept_memory_gives_what_a_rebuilt_memory_gives(detectors: str) -> None:
    batches = _traffic(days=12, per_day=150, seed=11)
    rebuilt = empty_tables()
    kept = empty_tables()
    mem = EngineMemory.build(kept, P)
    kinds: set[str] = set()
    expired = 0
    for b in batches:
        a = step(rebuilt, b, P)  # memory built from the tables, as at every recovery
        apply_all(rebuilt, a.updates)
        view = {name: t if _shim(name) else NoScan(t) for name, t in kept.items()}
        k = step(view, b, P, mem)
        apply_all(kept, k.updates)
        mem.apply(k)
        assert [x.model_dump() for x in k.alerts] == [x.model_dump() for x in a.alerts]
        assert k.updates == a.updates
        assert (k.fresh, k.duplicates, k.redlist) == (a.fresh, a.duplicates, a.redlist)
        assert kept == rebuilt
        kinds |= {x.kind for x in k.alerts}
        expired += sum(1 for v in k.updates["seen"].values() if v is None)
        if detectors == "contract":
            # every due key was handed over (a key a record touched may wake in the past: a late record)
            touched = {r.vendor_id for r in b}
            assert all(v[1] > k.watermark or key in touched for key, v in kept["gap"].items())
    _assert_memory_is_the_rebuild(mem, kept)
    assert {"repeat_offender", "supplier_cluster", "unconfirmed_positive"} <= kinds
    assert expired > 0  # the traffic outlived the de-duplication horizon
    if detectors == "contract":
        assert kept["gap"]  # some vendors are still held, the rest expired by the schedule
        assert len(kept["gap"]) < 15


def _drive(batches: list[list[Screened]], params: EarlyParams = P,
           after_each: Callable[[EngineMemory, dict[str, dict[str, Any]]], None] | None = None,
           ) -> dict[str, dict[str, Any]]:
    """The engine over ``batches`` with a kept memory, as the agent runs it; the final tables."""
    tables = empty_tables()
    mem = EngineMemory.build(tables, params)
    for b in batches:
        out = step(tables, b, params, mem)
        apply_all(tables, out.updates)
        mem.apply(out)
        if after_each is not None:
            after_each(mem, tables)
    return tables


def test_memory_matches_the_rebuild_after_every_step() -> None:
    _drive(_traffic(days=3, per_day=120, seed=5), after_each=_assert_memory_is_the_rebuild)


def test_seen_is_written_by_delta_and_expires_by_whole_hours() -> None:
    tables = empty_tables()
    mem = EngineMemory.build(tables, P)

    def run(records: list[Screened]) -> engine.EngineStep:
        out = step(tables, records, P, mem)
        apply_all(tables, out.updates)
        mem.apply(out)
        return out

    first = run([rec("a", T0, device_id="d1"), rec("b", T0 + 60, device_id="d1")])
    (chunk,) = first.updates["seen"]
    assert chunk.startswith(f"{hour_start(T0)}:d")
    assert sorted(tables["seen"][chunk]) == sorted(result_key("d1", x) for x in "ab")
    second = run([rec("a", T0, device_id="d1"), rec("c", T0 + 120, device_id="d1")])
    assert (second.fresh, second.duplicates) == (1, 1)
    (chunk2,) = second.updates["seen"]
    assert chunk2 != chunk and tables["seen"][chunk2] == [result_key("d1", "c")]  # only what the step added
    assert tables["seen"][chunk] == first.updates["seen"][chunk]  # never rewritten
    # nine days on: the first hour's chunks are deleted together, the index forgets the hour
    later = run([rec("z", T0 + 9 * DAY, device_id="d1")])
    assert later.updates["seen"][chunk] is None and later.updates["seen"][chunk2] is None
    assert hour_start(T0) not in mem.seen.chunks and hour_start(T0) not in mem.seen.keys
    # a resend now is older than the horizon: late (only the idempotent detectors see it)
    resend = run([rec("a", T0, device_id="d1")])
    assert (resend.fresh, resend.duplicates) == (0, 0)


def test_a_chunk_never_overwrites_a_stored_key() -> None:
    """Seen keys written by the previous version (``<hour>:d<shard>``) share the form of the chunks:
    a chunk number that is taken is skipped."""
    tables = empty_tables()
    h = hour_start(T0)
    tables["seen"][f"{h}:d1"] = [result_key("d9", "old")]
    tables["meta"]["wm"] = {"max": T0, "pruned": h}
    out = step(tables, [rec("new", T0, device_id="d9"), rec("old", T0, device_id="d9")], P)
    assert (out.fresh, out.duplicates) == (1, 1)
    assert f"{h}:d1" not in out.updates["seen"]
    assert list(out.updates["seen"].values()) == [[result_key("d9", "new")]]


def test_seen_index_reads_every_stored_form() -> None:
    h = hour_start(T0)
    idx = SeenIndex.rebuild({f"{h}:d3": ["5:dev:a"], f"{h}:d17": ["5:dev:b"], f"{h}:4": ["c"]})
    assert idx.seen(h, "5:dev:a", "a") and idx.seen(h, "5:dev:b", "b")
    assert idx.seen(h, "5:other:c", "c")  # a bare id (before the device key) is seen from any device
    assert not idx.seen(h, "5:dev:d", "d") and not idx.seen(h + HOUR, "5:dev:a", "a")
    assert sorted(idx.chunks[h]) == sorted([f"{h}:d3", f"{h}:d17", f"{h}:4"])


def test_schedule_rebuild_uses_each_detectors_wake_of() -> None:
    tables = empty_tables()
    for b in _traffic(days=1, per_day=80, seed=2):
        apply_all(tables, step(tables, b, P).updates)
    s = Schedule.rebuild(tables, P)
    for name, mod in engine.DETECTORS.items():
        want = {k: t for k, v in tables[name].items() if (t := mod.wake_of(k, v, P)) is not None}
        assert s.scheduled(name) == want


def test_a_step_never_changes_the_stored_state_in_place() -> None:
    """The detectors return new values; what the tables hold stays as it was until written (moved
    here from the shard layout's tests)."""
    import copy

    tables = empty_tables()
    mem = EngineMemory.build(tables, P)
    for b in [*_traffic(days=3, per_day=400, seed=7), [rec("tick", T0 + 80 * HOUR)]]:
        before = copy.deepcopy(tables)
        out = step(tables, b, P, mem)
        assert tables == before
        apply_all(tables, out.updates)
        mem.apply(out)


def test_from_v1_leaves_todays_values_unchanged() -> None:
    """An upgrade cut short runs again over keys it already converted (and over tables that were
    never sharded): every detector's ``from_v1`` must give a value in today's form back as it is."""
    tables = _drive(_traffic(days=4, per_day=400, seed=5))
    checked = 0
    for name in ("surge", "device", "cluster", "offender", "unconfirmed", "gap"):
        convert = getattr(importlib.import_module(f"agents.early.{name}"), "from_v1", None)
        assert convert is not None, name
        for k, v in tables[name].items():
            assert convert(k, v) == v, (name, k)
            checked += 1
    assert checked > 50


def test_tables_of_encoded_values_give_what_tables_of_json_values_give() -> None:
    """The agent's tables hold each value as its changelog bytes (``stored``), read through
    ``Stored``: the same traffic gives the same alerts, writes and (decoded) tables as tables of
    JSON values, with a kept memory and with one rebuilt from the bytes (as at recovery)."""
    plain, enc = empty_tables(), empty_tables()
    mem_p, mem_e = EngineMemory.build(plain, P), EngineMemory.build(enc, P)
    for b in _traffic(days=3, per_day=200, seed=11):
        out_p = step(plain, b, P, mem_p)
        out_e = step(enc, b, P, mem_e)
        assert [a.to_json() for a in out_e.alerts] == [a.to_json() for a in out_p.alerts]
        assert out_e.updates == out_p.updates
        apply_all(plain, out_p.updates)
        engine.apply_stored(enc, out_e.updates)
        mem_p.apply(out_p)
        mem_e.apply(out_e)
    assert all(type(v) is bytes for t in enc.values() for v in t.values())
    assert {t: dict(Stored(m)) for t, m in enc.items()} == plain
    _assert_memory_is_the_rebuild(mem_e, {t: dict(Stored(m)) for t, m in enc.items()})
    assert EngineMemory.build(enc, P).schedule.scheduled("surge") == mem_e.schedule.scheduled("surge")


def test_a_stored_value_is_its_own_size_and_each_read_a_fresh_copy() -> None:
    """orjson's result keeps its whole write buffer (about 4 KiB) whatever the JSON's length; a table
    holding those took 800 MB for 200,000 small values. ``stored`` holds a bytes object of its own
    size. A read decodes a new value each time, so a detector may change what it read."""
    import tracemalloc

    import orjson

    value = {"b": 20400, "d": {"D1": [3600, 0, [3, 1, 1, -1, 2]]}, "j": [3, 1, 0], "h": [489600, 1]}
    raw = engine.stored(value)
    assert raw == orjson.dumps(value)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [engine.stored(value) for _ in range(1000)]
        per_value = (tracemalloc.get_traced_memory()[0] - before) / len(held)
    finally:
        tracemalloc.stop()
    assert per_value < len(raw) + 200  # (orjson's own result: about 4,100 bytes each)
    table = Stored({"s1": raw, "plain": [1, 2]})
    first = table["s1"]
    first["d"]["D1"][0] = 0
    assert table.get("s1") == value and table.get("s1") is not table.get("s1")
    assert table.get("plain") == [1, 2] and table.get("nothing") is None and "s1" in table and len(table) == 2
