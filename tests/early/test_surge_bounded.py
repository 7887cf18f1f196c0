# ruff: noqa: PERF401  (readable loops that build test traffic)
"""The rate-surge detector of issue 21 (visits only the keys touched or due, compact bounded state)
gives the alerts of the previous one (``tests/early/_surge_v1.py``, which evaluated every key at
every step boundary), on random multi-day traffic with surges, quiet hours and late results."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from agents.early import surge
from agents.early.common import HOUR, JSON, EarlyParams, Step, apply
from agents.screened import Screened
from schemas.alert import Alert
from tests.early import _surge_v1 as v1
from tests.early.records import T0, NoScan, lab, rec

P = EarlyParams()
DAYS = 4


KEYS = [(d, c, "enzyme_inhibition") for d in ("Tianhe", "Haizhu", "Conghua") for c in ("cowpea", "spinach")]
KEYS.append(("Tianhe", "cowpea", "lc_msms"))


def _traffic(seed: int, days: int = DAYS, always_back_within_h: int = 20, late_s: int = 3000) -> list[list[Screened]]:
    """Batches of 30 minutes of arrival time: per key a random hourly rate, quiet spells (never a
    whole day: a key that goes quiet for a window loses its CUSUM, which the old detector kept),
    surges of a few hours, some results late by up to ``late_s``, some not judged. Every key has a
    result in the first batch (so both detectors count the same keys for the Bonferroni correction).
    Results later than the grace (``late_s`` > 3600) can reach an hour after it closed: see
    ``test_a_late_result_for_an_hour_that_closed_empty_counts_in_the_cusum``."""
    rng = random.Random(seed)
    out: list[tuple[int, Screened]] = []
    n = 0
    for district, commodity, method in KEYS:
        is_lab = method != "enzyme_inhibition"
        make = lab if is_lab else rec
        base = P.baseline_lab if is_lab else P.baseline_quick
        rate = rng.uniform(3, 25)
        surge_at = rng.randrange(days * 24) if rng.random() < 0.7 else -100
        surge_len = rng.randint(3, 10)
        surge_p = rng.uniform(0.04, 0.2)
        quiet_until = -1
        kw: dict[str, Any] = {"district": district, "commodity": commodity, "method": method}
        out.append((T0, make(f"first-{n}", T0, **kw)))
        n += 1
        for h in range(days * 24):
            if h > quiet_until and rng.random() < 0.04:
                quiet_until = h + rng.randint(2, always_back_within_h)
            if h <= quiet_until:
                continue
            p = surge_p if surge_at <= h < surge_at + surge_len else base
            for _ in range(int(rng.expovariate(1 / rate))):
                t = T0 + h * HOUR + rng.randrange(HOUR)
                verdict = "positive" if rng.random() < p else ("inconclusive" if rng.random() < 0.02 else "compliant")
                if is_lab and verdict == "positive":
                    verdict = "exceeds"
                delay = rng.randrange(600) if rng.random() < 0.9 else rng.randrange(late_s)
                out.append((t + delay, make(f"r{n}", t, verdict=verdict, **kw)))
                n += 1
    end = T0 + (days + 2) * 24 * HOUR
    for t in range(T0 + days * 24 * HOUR, end, 1800):  # the clock goes on: results no test counts
        out.append((t, rec(f"tick{t}", t, verdict="inconclusive")))
    out.sort(key=lambda x: x[0])
    batches: list[list[Screened]] = []
    i = 0
    t = T0 + 1800
    while t <= end:
        batch = []
        while i < len(out) and out[i][0] < t:
            batch.append(out[i][1])
            i += 1
        batches.append(batch)
        t += 1800
    return batches


def _dump(alerts: list[Alert]) -> list[dict[str, Any]]:
    return sorted((a.model_dump() for a in alerts), key=lambda a: (a["alert_id"], a["status"]))


def _laddered(alerts: list[Alert], emitted: dict[str, int]) -> list[Alert]:
    """The old detector's alerts as this version emits them: a firing update only when the positives
    step (``surge.material``) changed since the last one emitted, every resolution."""
    out = []
    for a in alerts:
        if a.status == "resolved":
            emitted.pop(a.alert_id, None)
            out.append(a)
            continue
        step = surge.material(int(a.details["observed"]))  # type: ignore[arg-type]
        if emitted.get(a.alert_id) != step:
            emitted[a.alert_id] = step
            out.append(a)
    return out


def _check_wakes(s: Step, state: Mapping[str, JSON], params: EarlyParams) -> None:
    for k, v in s.updates.items():
        assert k in s.wake
        assert s.wake[k] == (None if v is None else surge.wake_of(k, v, params))
    for k, v in state.items():
        # a stored key is always visited again; an hour chunk never (deleted whole with its hour)
        assert (surge.wake_of(k, v, params) is None) == surge.is_chunk(k)


def _scheduled(new: Mapping[str, JSON], counts: surge.Counts, wakes: Mapping[str, int], batch: list[Screened],
               wm: int, params: EarlyParams = P) -> Step:
    """A step as the engine runs it: the due keys from the wakes, the chunks' counts kept (taken
    in after the step)."""
    s = surge.step(NoScan(new), batch, wm, params, due=[k for k, t in wakes.items() if t <= wm], memory=counts)
    counts.apply(s.updates)
    return s


def _run_both(batches: list[list[Screened]], params: EarlyParams) -> tuple[int, int]:
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    counts = surge.Counts()  # the chunks' counts, kept as the engine keeps them
    scanned: dict[str, Any] = {}
    wakes: dict[str, int] = {}
    emitted: dict[str, int] = {}
    max_t = 0
    fired = resolved = 0
    for batch in batches:
        max_t = max([max_t, *(r.sampled_at for r in batch)])
        wm = max_t - params.grace_s
        o = v1.step(old, batch, wm, params)
        old = apply(old, o.updates)
        due = [k for k, t in wakes.items() if t <= wm]
        s = surge.step(NoScan(new), batch, wm, params, due=due, memory=counts)
        _check_wakes(s, new, params)
        assert set(due) <= set(s.wake)  # every key visited says when it is next due
        new = apply(new, s.updates)
        counts.apply(s.updates)
        for k, t in s.wake.items():
            if t is None:
                wakes.pop(k, None)
            else:
                wakes[k] = t
        assert set(wakes) == {k for k in new if not surge.is_chunk(k)}
        d = surge.step(scanned, batch, wm, params)  # due=None: found by scanning the state
        scanned = apply(scanned, d.updates)
        expected = _dump(_laddered(o.alerts, emitted))
        assert _dump(s.alerts) == expected
        assert _dump(d.alerts) == expected
        fired += sum(a.status == "firing" for a in s.alerts)
        resolved += sum(a.status == "resolved" for a in s.alerts)
    assert new == scanned
    return fired, resolved


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_wake_driven_visits_give_the_alerts_of_evaluating_every_key_every_step(seed: int) -> None:
    fired, resolved = _run_both(_traffic(seed), P)
    assert fired and resolved  # the traffic has surges that fire and resolve


@pytest.mark.parametrize("seed", [6, 7])
def test_same_alerts_with_a_short_window_and_a_two_hour_step(seed: int) -> None:
    params = EarlyParams(surge_window_h=6, surge_step_h=2, surge_min_n=10)
    _run_both(_traffic(seed, days=3, always_back_within_h=4), params)


def test_a_key_quiet_for_a_whole_window_resolves_as_before_and_is_deleted() -> None:
    """Surge, then no results: the alert resolves at the boundary where the surge's hours leave the
    window, as the old detector resolved it, with no record touching the key; then the key is gone
    (the old detector kept its CUSUM forever)."""
    records = [rec(f"x{i}", T0 + (i % 24) * HOUR + i, verdict="positive" if i % 40 == 0 else "compliant")
               for i in range(24 * 20)]
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    counts = surge.Counts()
    wakes: dict[str, int] = {}
    old_alerts: list[Alert] = []
    new_alerts: list[Alert] = []
    for h in range(1, 80):
        wm = T0 + h * HOUR
        batch = [r for r in records if wm - HOUR <= r.sampled_at < wm]
        o = v1.step(old, batch, wm, P)
        old = apply(old, o.updates)
        old_alerts += o.alerts
        s = _scheduled(new, counts, wakes, batch, wm)
        new = apply(new, s.updates)
        wakes = {k: t for k, t in {**wakes, **s.wake}.items() if t is not None}
        new_alerts += s.alerts
    assert [(a.alert_id, a.status) for a in new_alerts] == [(a.alert_id, a.status) for a in old_alerts]
    assert [a.status for a in new_alerts][-1] == "resolved"
    assert new == {} and wakes == {}
    assert old  # the old one kept the key (its CUSUM) after every bucket left the window


def test_state_is_bounded_and_compact() -> None:
    batches = _traffic(11, days=5)
    state: dict[str, Any] = {}
    max_t = 0
    biggest = 0
    for batch in batches:
        max_t = max([max_t, *(r.sampled_at for r in batch)])
        s = surge.step(state, batch, max_t - P.grace_s, P)
        state = apply(state, s.updates)
        for k, v in s.updates.items():
            if v is None:
                continue
            biggest = max(biggest, len(orjson.dumps(v)))
            if surge.is_chunk(k):  # an hour's counts of the keys without an entry
                assert all(type(n) is int and "|" in key for key, n in v.items())
                continue
            v = surge.unpack(v)  # the stored list read as a dict
            assert len(v["h"]) <= P.surge_window_h + 4  # the window and the hours still open
            assert all(len(b) - 2 <= surge.MAX_IDS_PER_HOUR for b in v["h"].values())
    assert 0 < biggest < 2000


def test_ids_per_hour_are_capped() -> None:
    records = [rec(f"p{i}", T0 + i, verdict="positive") for i in range(120)]
    s = surge.step({}, records, T0 + 2 * HOUR, P)
    ((_, v),) = s.updates.items()
    (bucket,) = surge.unpack(v)["h"].values()
    assert bucket[:2] == [120, 120] and len(bucket) == 2 + surge.MAX_IDS_PER_HOUR
    (alert,) = s.alerts
    assert alert.details["observed"] == 120 and len(alert.evidence) == surge.MAX_IDS_PER_HOUR


def test_a_growing_surge_is_updated_on_each_positive_up_to_9_then_on_the_ladder() -> None:
    state: dict[str, Any] = {}
    base = [rec(f"c{i}", T0 + i, verdict="compliant") for i in range(100)]
    steps = []
    for k in range(1, 60):
        s = surge.step(state, [*(base if k == 1 else []), rec(f"p{k}", T0 + 200 + k, verdict="positive")],
                       T0 + 2 * HOUR, P)
        state = apply(state, s.updates)
        steps += [int(a.details["observed"]) for a in s.alerts]  # type: ignore[arg-type]
    assert steps == [3, 4, 5, 6, 7, 8, 9, 10, 20, 50]


def test_from_v1_converts_stored_state_and_the_run_continues_with_the_same_alerts() -> None:
    batches = _traffic(21, days=3)
    old: dict[str, Any] = {}
    max_t = 0
    half = len(batches) // 2
    for batch in batches[:half]:
        max_t = max([max_t, *(r.sampled_at for r in batch)])
        old = apply(old, v1.step(old, batch, max_t - P.grace_s, P).updates)
    converted = {k: surge.from_v1(k, v) for k, v in old.items()}
    new = {k: v for k, v in converted.items() if v is not None}
    assert len(orjson.dumps(new)) < len(orjson.dumps(old))
    wakes = {k: t for k, v in new.items() if (t := surge.wake_of(k, v, P)) is not None}
    counts = surge.Counts.build(new)  # as at recovery
    emitted = {v["a"]["id"]: surge.material(int(v["a"]["fp"])) for v in old.values() if v["a"]}
    for batch in batches[half:]:
        max_t = max([max_t, *(r.sampled_at for r in batch)])
        wm = max_t - P.grace_s
        o = v1.step(old, batch, wm, P)
        old = apply(old, o.updates)
        s = _scheduled(new, counts, wakes, batch, wm)
        new = apply(new, s.updates)
        wakes = {k: t for k, t in {**wakes, **s.wake}.items() if t is not None}
        assert _dump(s.alerts) == _dump(_laddered(o.alerts, emitted))


def test_from_v1_drops_a_key_holding_only_a_cusum_and_reads_an_alert_record() -> None:
    assert surge.from_v1("a|b|c", {"h": {}, "S": 1.5, "cu": T0, "ev": T0 + HOUR, "a": None}) is None
    old = {"h": {str(T0): [40, 4, ["p1", "p2", "p3", "p4"]]}, "S": 2.0, "cu": T0, "ev": T0 + HOUR,
           "a": {"id": "x", "fp": "14", "start": T0 - 23 * HOUR}}
    assert surge.unpack(surge.from_v1("a|b|c", old)) == {
        "h": {str(T0 // HOUR): [40, 4, "p1", "p2", "p3", "p4"]}, "e": T0 + HOUR, "s": 2.0,
        "a": [T0 - 23 * HOUR, 10]}
    assert surge.from_v1("a|b|c", None) is None


def test_a_late_result_for_an_hour_that_closed_empty_counts_in_the_cusum() -> None:
    """The one difference from evaluating every key at every boundary: the CUSUM takes an hour in at
    the key's first evaluation after the hour closed. A result later than the grace for an hour the
    key had no results in when it closed, arriving before the key was evaluated again, counts in the
    CUSUM (the old detector had moved its cursor past the empty hour at the next step and dropped it);
    one for an hour the key's CUSUM already took in does not, as before. A key with no positive has
    no entry and is never evaluated (its CUSUM is 0): its first positive's entry takes in every
    closed hour of its window, a late positive included."""
    first = [rec(f"a{i}", T0 + i) for i in range(30)]
    tick = rec("tick", T0 + 4 * HOUR, district="Haizhu", commodity="spinach")
    other = surge.key_of(tick)  # "Haizhu|spinach|enzyme_inhibition", the method by its code
    late = rec("late", T0 + HOUR + 60, verdict="positive")
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for batch, wm in ((first, T0 + HOUR + 10), ([tick], T0 + 3 * HOUR), ([late], T0 + 3 * HOUR + 10)):
        old = apply(old, v1.step(old, batch, wm, P).updates)
        new = apply(new, surge.step(new, batch, wm, P).updates)  # due=None: the key is not due at T0 + 3 h
    key, old_key = surge.key_of(late), v1.key_of(late)
    assert surge.Counts.build(new).of(other, 0)  # counted in its hour's chunk
    assert old[old_key]["S"] == 0.0 and surge.unpack(new[key])["s"] > 0.0

    # a key with an entry, evaluated since the hour closed: the late result counts in its window but
    # stays out of its CUSUM, as before
    def run(with_late: bool) -> dict[str, Any]:
        st: dict[str, Any] = {}
        steps = [(first, T0 + HOUR + 10), ([tick, rec("b", T0 + 2 * HOUR, verdict="positive")], T0 + 3 * HOUR)]
        if with_late:
            steps.append(([late], T0 + 3 * HOUR + 10))
        for batch, wm in steps:
            st = apply(st, surge.step(st, batch, wm, P).updates)
        return surge.unpack(st[key])

    with_late, without = run(True), run(False)
    assert with_late["s"] == without["s"] > 0.0
    assert with_late["h"][str((T0 + HOUR) // HOUR)][:2] == [1, 1] and str((T0 + HOUR) // HOUR) not in without["h"]

    # a key touched since the hour closed by compliant results only has no entry and was never
    # evaluated (the previous version evaluated it then and kept the late result out): its first
    # positive's entry takes every closed hour in, the late one included
    new3: dict[str, Any] = {}
    for batch, wm in ((first, T0 + HOUR + 10), ([tick, rec("b", T0 + 2 * HOUR)], T0 + 3 * HOUR),
                      ([late], T0 + 3 * HOUR + 10)):
        new3 = apply(new3, surge.step(new3, batch, wm, P).updates)
    assert surge.unpack(new3[key])["s"] > 0.0


def test_a_key_not_visited_for_a_window_still_takes_every_closed_hour_into_its_cusum() -> None:
    """Two positives (too few to fire): the key is visited next when its last bucket leaves the
    window; results touching it a day later find both hours in its CUSUM, as hourly evaluation did."""
    h1 = T0 + 10 * HOUR
    first = [rec("p1", h1 + 60, verdict="positive"), rec("p2", h1 + HOUR + 60, verdict="positive")]
    ticks = [rec(f"t{i}", h1 + i * HOUR, district="Haizhu") for i in range(2, 25)]
    later = rec("c", h1 + 25 * HOUR + 60)
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    counts = surge.Counts()
    wakes: dict[str, int] = {}
    steps = [(first, h1 + 10 * 60), *(([t], t.sampled_at) for t in ticks), ([later], h1 + 25 * HOUR + 120)]
    for batch, wm in steps:
        old = apply(old, v1.step(old, batch, wm, P).updates)
        s = _scheduled(new, counts, wakes, batch, wm)
        new = apply(new, s.updates)
        wakes = {k: t for k, t in {**wakes, **s.wake}.items() if t is not None}
    key, old_key = surge.key_of(later), v1.key_of(later)
    assert surge.unpack(new[key])["s"] == pytest.approx(old[old_key]["S"]) and old[old_key]["S"] > 0


def _long(key: str) -> str:
    """The key as versions before the method codes wrote it (an hour chunk as it is: chunks came later)."""
    if surge.is_chunk(key):
        return key
    district, commodity, method = surge.split_key(key)
    return f"{district}|{commodity}|{method}"


def _coded(key: str) -> str:
    if surge.is_chunk(key):
        return key
    district, commodity, method = surge.split_key(key)
    return f"{district}|{commodity}|{surge.METHOD_CODES.get(method, method)}"


def test_a_key_stored_under_the_method_name_is_taken_over_by_its_coded_key() -> None:
    """State stored under ``district|commodity|method`` (written before methods were coded in keys,
    kept by the upgrade) is moved to the coded key when records touch it, deleted under the old
    one, and gives the alerts and state it gives under the coded key; untouched, it is visited,
    evaluated and expires under its old key."""
    batches = _traffic(31, days=2)
    half = len(batches) // 2
    coded: dict[str, Any] = {}
    max_t = 0
    for batch in batches[:half]:
        max_t = max([max_t, *(r.sampled_at for r in batch)])
        s = surge.step(coded, batch, max_t - P.grace_s, P)
        coded = apply(coded, s.updates)
    named = {_long(k): v for k, v in coded.items()}
    assert {k for k in named if not surge.is_chunk(k)}.isdisjoint(coded)
    wakes = {k: t for k, v in named.items() if (t := surge.wake_of(k, v, P)) is not None}
    counts = surge.Counts.build(named)
    moved = 0
    for batch in batches[half:]:
        max_t = max([max_t, *(r.sampled_at for r in batch)])
        wm = max_t - P.grace_s
        a = surge.step(coded, batch, wm, P)
        b = _scheduled(named, counts, wakes, batch, wm)
        assert _dump(b.alerts) == _dump(a.alerts)
        moved += sum(1 for k, v in b.updates.items() if v is None and k in named and _coded(k) in b.updates)
        coded = apply(coded, a.updates)
        named = apply(named, b.updates)
        wakes = {k: t for k, t in {**wakes, **b.wake}.items() if t is not None}
        assert {_coded(k): v for k, v in named.items()} == coded  # one key each, same state
        assert set(wakes) == {k for k in named if not surge.is_chunk(k)}
    assert moved  # keys were taken over


def test_a_key_with_one_result_is_written_in_a_few_bytes() -> None:
    """A compliant result is counted in its hour's chunk (no key of its own); a positive gives its
    key an entry."""
    s = surge.step({}, [rec("r1", T0 + 60)], T0 + 30 * 60, P)
    ((key, value),) = s.updates.items()
    assert key == f"{T0 // HOUR}:1"  # the hour, the chunk's number
    assert value == {"Tianhe|cowpea|0": 1}  # enzyme_inhibition by its code
    assert surge.from_v1(key, value) is value and surge.wake_of(key, value, P) is None
    s = surge.step({}, [rec("r2", T0 + 60, verdict="positive")], T0 + 30 * 60, P)
    ((key, value),) = s.updates.items()
    assert key == "Tianhe|cowpea|0"
    assert value == [T0 // HOUR, 0, 1, 1, 1, "r2"]  # last boundary (hours); hour relative to it, n, k, ids
    assert surge.unpack(value) == {"h": {str(T0 // HOUR): [1, 1, "r2"]}, "e": T0}
    assert surge.from_v1(key, value) is value


def test_from_v1_packs_the_dict_form_and_reads_ids_cusum_and_alert_back() -> None:
    d = {"h": {str(T0 // HOUR): [40, 4, "p1", "p2", "p3", "p4"], str(T0 // HOUR + 1): [3, 0]}, "e": T0 + 2 * HOUR,
         "s": 2.5, "a": [T0 - 22 * HOUR, 4]}
    packed = surge.from_v1("a|b|0", d)
    assert isinstance(packed, list)
    assert surge.unpack(packed) == d
    assert surge.from_v1("a|b|0", packed) == packed
    assert surge.wake_of("a|b|0", packed, P) == surge.wake_of("a|b|0", surge.from_v1("a|b|0", d), P)


def test_kept_counts_forget_a_key_given_an_entry_as_a_rebuild_does() -> None:
    """Compliant results counted in a chunk, then the key's first positive: the entry takes the
    chunk's count in, and the counts kept step by step forget the key, as counts rebuilt from the
    table (recovery) leave it out; the key is counted once among the keys held."""
    state: dict[str, Any] = {}
    counts = surge.Counts()
    key = surge.key_of(rec("c0", T0))
    for batch, wm in (([rec(f"c{i}", T0 + i) for i in range(5)], T0 + 600),
                      ([rec("p", T0 + 700, verdict="positive")], T0 + 800)):
        s = surge.step(state, batch, wm, P, memory=counts)
        state = apply(state, s.updates)
        counts.apply(s.updates)
    assert surge.unpack(state[key])["h"][str(T0 // HOUR)][:2] == [6, 1]
    built = surge.Counts.build(state)
    assert key not in counts.refs and counts.refs == built.refs
    assert {h: c for h, c in counts.hours.items() if c} == {h: c for h, c in built.hours.items() if c}
