"""The national soak's phase A (tests/bench/bench_soak.py) on a small run: its figures, and the
replays of the first and the last day doing the run's own work again."""

from __future__ import annotations

import pytest

from agents.early import engine
from agents.early.common import EarlyParams
from tests.bench.bench_soak import (
    EngineDriver,
    count_writes,
    first_last,
    floor_pass,
    part_levers,
    phase_a,
    render_a,
    replay_first_last,
)
from tests.bench.soak_data import SoakConfig, SoakStream, chunks

SMALL = SoakConfig(days=3, per_day=3_000)


def test_phase_a_reports_the_goals_and_the_replayed_days() -> None:
    a = phase_a(SMALL, 500, replays=2)
    m = a["must_show"]
    assert [d["day"] for d in a["days"]] == [1, 2, 3] and all(d["records"] > 3_000 for d in a["days"])
    r = m["step_cost_replayed"]
    assert r["replays"] == 2 and r["first_ms_per_1000"] > 0 and r["last_ms_per_1000"] > 0
    assert r["last_over_first"] == round(r["last_ms_per_1000"] / r["first_ms_per_1000"], 2)
    for day in ("first", "last"):  # each part's least over the replays: together no more than the least whole
        p = r["parts"][day]
        assert set(p) == {"surge", "cluster", "unconfirmed", "device", "gap", "offender", "engine", "writes", "memory"}
        assert all(v >= 0 for v in p.values()) and p["device"] > 0 and p["writes"] > 0
        assert sum(p.values()) <= r[f"{day}_ms_per_1000"] * 1.01
    assert m["step_cost_met"] == (r["last_over_first"] <= 1.2)
    assert r["records"]["first"] > 3_000 and r["writes"]["first"]["device"]["create"] > 0
    assert r["writes"]["last"]["device"]["rewrite"] > 0
    f = r["floor"]
    assert f["first_ms_per_1000"] > 0 and f["last_ms_per_1000"] > 0
    assert f["last_over_first"] == round(f["last_ms_per_1000"] / f["first_ms_per_1000"], 2)
    assert 0 < m["changelog_bytes_per_result"] < 1_000
    # 3 days against the 30-day repeat-offender look-back: the RSS days start before it is full, and say so
    assert m["longest_window_days"] == 30 and m["rss_days_after_windows_full"] is False
    assert "look-back, is full" in render_a(a)
    assert phase_a(SoakConfig(days=2, per_day=1_000), 500, replays=0)["must_show"]["step_cost_replayed"] is None


def test_replays_in_a_process_with_threads_keep_a_copy_instead_of_forking(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import threading

    def no_fork() -> int:
        raise AssertionError("forked a process that has other threads")

    monkeypatch.setattr(os, "fork", no_fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        r = phase_a(SoakConfig(days=2, per_day=1_000), 500, replays=1)["must_show"]["step_cost_replayed"]
    finally:
        stop.set()
        other.join()
    assert r["replays"] == 1 and r["first_ms_per_1000"] > 0 and r["last_ms_per_1000"] > 0


def test_a_driver_started_from_a_snapshot_ends_where_the_run_ends() -> None:
    """The last day replayed from the tables at its start (as ``replay_first_last`` does) does the
    run's own work: it ends with the same tables, encoded as the agent holds them."""
    params = EarlyParams()
    run = EngineDriver(engine, params)
    days = [records for _, records in SoakStream(SMALL).days()]
    for records in days[:-1]:
        for chunk in chunks(records, 500):
            run.step(chunk)
    start = {t: dict(m) for t, m in run.tables.items()}
    again = EngineDriver(engine, params, {t: dict(m) for t, m in start.items()})
    for chunk in chunks(days[-1], 500):
        a, b = run.step(chunk), again.step(chunk)
        assert [x.alert_id for x in a.alerts] == [x.alert_id for x in b.alerts]
    assert again.tables == run.tables != start
    assert all(type(v) is bytes for t in run.tables.values() for v in t.values())


def test_the_counted_writes_of_a_day_add_up_to_the_keys_it_leaves() -> None:
    """``count_writes``: a key is created only when absent and deleted only when held, so each table
    ends with the keys it started with, plus those created, less those deleted; from empty tables
    that is the creations less the deletions, and the next day rewrites keys the first left."""
    params = EarlyParams()
    first, second = [records for _, records in SoakStream(SMALL).days()][:2]
    day = count_writes(engine, params, first, 500)
    counts, driver = day.counts, day.driver
    assert counts["device"]["create"] > 0 and counts["surge"]["create"] > 0
    start = {t: dict(m) for t, m in driver.tables.items()}
    then = count_writes(engine, params, second, 500, start)
    nxt, after = then.counts, then.driver
    assert len(then.expiry) == len(list(chunks(second, 500)))
    assert sum(len(gone) for _, gone in then.expiry) == sum(c["delete"] for c in nxt.values())
    assert sum(len(due) for due, _ in then.expiry) == sum(c["due"] for c in nxt.values())
    assert nxt["device"]["rewrite"] > 0
    for table in set(counts) | set(nxt):
        if table == "meta":  # holds the layout record, written when the driver starts
            continue
        c, n = counts.get(table, {}), nxt.get(table, {})
        assert len(start.get(table, {})) == c.get("create", 0) - c.get("delete", 0), table
        assert len(after.tables.get(table, {})) == len(start.get(table, {})) + n.get("create", 0) - n.get("delete", 0)
        assert c.get("due", 0) == 0 or table in engine.DETECTORS, table


def test_the_floor_pass_reads_the_tables_it_is_given_without_changing_them() -> None:
    params = EarlyParams()
    first, second = [records for _, records in SoakStream(SMALL).days()][:2]
    start = count_writes(engine, params, first, 500).driver.tables
    held = {t: dict(m) for t, m in start.items()}
    then = count_writes(engine, params, second, 500, start)
    assert then.counts["surge"]["delete"] + then.counts["unconfirmed"]["delete"] > 0  # expiry to replay
    assert floor_pass(start, second, then.expiry, 500) > 0
    assert start == held


def test_a_ratio_is_the_ratio_of_the_figures_printed_beside_it() -> None:
    """From the unrounded figures the ratio of 2.9449 / 2.8651 rounds to 1.03, beside 2.94 / 2.87
    (1.02): the failure CI met once."""
    assert first_last({"first": 2.8651, "last": 2.9449}) == {
        "first_ms_per_1000": 2.87, "last_ms_per_1000": 2.94, "last_over_first": 1.02}


def test_a_part_made_flat_takes_its_own_growth_out_of_the_ratio() -> None:
    """``part_levers``: the whole step's ratio with one part as cheap on the last day as on the first."""
    r = {"first_ms_per_1000": 10.0, "last_ms_per_1000": 16.0,
         "parts": {"first": {"device": 6.0, "surge": 2.0, "memory": 2.0},
                   "last": {"device": 10.0, "surge": 1.5, "memory": 4.5}}}
    assert part_levers(r) == {"device": 1.2, "surge": 1.65, "memory": 1.35}
    assert part_levers({"first_ms_per_1000": 1.0, "last_ms_per_1000": 1.0}) == {}


def test_replays_with_the_caches_emptied_before_each_step_report_it() -> None:
    params = EarlyParams()
    first, second = [records for _, records in SoakStream(SoakConfig(days=2, per_day=1_000)).days()]
    start = count_writes(engine, params, first, 500).driver.tables
    r = replay_first_last(engine, params, first, (start, second), 500, 1, evict_mib=4)
    assert r["evict_mib"] == 4 and r["first_ms_per_1000"] > 0 and r["last_ms_per_1000"] > 0
    text = render_a({**phase_a(SoakConfig(days=2, per_day=1_000), 500, replays=1, evict_mib=4)})
    assert "4 MiB of other memory written before each step" in text
    assert "the ratio if one part alone cost on the last day what it cost on the first" in text


def test_a_steady_day_is_replayed_beside_the_first_and_the_last() -> None:
    """``steady_day``: its tables and records wait in a file during the run and are replayed alike."""
    a = phase_a(SoakConfig(days=3, per_day=1_000), 500, replays=1, steady_day=2)
    r = a["must_show"]["step_cost_replayed"]
    s = r["steady"]
    assert s["day"] == 2 and s["ms_per_1000"] > 0
    assert s["last_over_steady"] == round(r["last_ms_per_1000"] / s["ms_per_1000"], 2)
    assert set(r["parts"]) == {"first", "last"}
    assert "the last day against day 2" in render_a(a)
    assert phase_a(SoakConfig(days=2, per_day=1_000), 500, replays=1, steady_day=2)[
        "must_show"]["step_cost_replayed"]["steady"] is None  # the run is not longer than that day
