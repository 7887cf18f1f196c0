"""The device-health detector of issue 21: a site is visited when its results arrive or at its wake
(never by scanning), its stored value is small and bounded by the history, and it raises the alerts
the previous detector (``tests/early/_device_v1.py``, every site at every hour of watermark) raised
on random multi-day traffic with silent and drifting devices; ``from_v1`` upgrades stored sites."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from agents.early import device
from agents.early.common import DAY, HOUR, EarlyParams, Step, apply
from agents.early.lifecycle import MAX_EVIDENCE
from agents.screened import Screened
from schemas.alert import Alert
from tests.early import _device_v1 as v1
from tests.early.records import T0, NoScan, rec

P = EarlyParams()


def _traffic(seed: int, days: int) -> list[list[Screened]]:
    """30-minute batches: sites of 2-4 devices working 06:00-20:00 local, each device at its own
    rate; some devices go quiet for hours or die for days, some drift on one day (20% positives)."""
    rng = random.Random(seed)
    out: list[tuple[int, Screened]] = []
    n = 0
    start = T0 - 1 * HOUR  # 06:00 local
    for s in range(5):
        site = f"m-{s}"
        for d in range(rng.randint(2, 4)):
            dev = f"{site}-d{d}"
            rate = rng.uniform(4, 15)
            drift_day = rng.randrange(days) if rng.random() < 0.4 else -1
            dead_from = rng.randrange(days * 24) if rng.random() < 0.3 else 10**9
            dead_until = dead_from + rng.choice((3, 5, 30, 80))
            for h in range(days * 24):
                if not 0 <= h % 24 < 14 or dead_from <= h < dead_until:
                    continue
                p = 0.2 if h // 24 == drift_day else 0.002
                for _ in range(int(rng.expovariate(1 / rate))):
                    t = start + h * HOUR + rng.randrange(HOUR)
                    verdict = "positive" if rng.random() < p else ("no_limit" if rng.random() < 0.03 else "compliant")
                    out.append((t, rec(f"r{n}", t, device_id=dev, site_id=site, verdict=verdict)))
                    n += 1
    return _in_batches(out, start, days)


def _in_batches(out: list[tuple[int, Screened]], start: int, days: int) -> list[list[Screened]]:
    """(arrival time, record) pairs in 30-minute batches by arrival from ``start``, the clock going
    on for 9 days after ``days`` (a lab result every 30 minutes: not a quick test)."""
    end = start + (days + 9) * DAY
    out = [*out, *((t, rec(f"tick{t}", t, quick=False, site_id="tc", device_id="lab"))
                   for t in range(start + days * DAY, end, 1800))]
    out.sort(key=lambda x: x[0])
    batches = []
    i = 0
    for t in range(start + 1800, end + 1800, 1800):
        b = []
        while i < len(out) and out[i][0] < t:
            b.append(out[i][1])
            i += 1
        batches.append(b)
    return batches


def _quiet_traffic(seed: int, days: int, late: float = 0.0) -> list[list[Screened]]:
    """Sites of many devices with a few results a day each, some drifting on one day (4 positives of
    6). At the odd sites no device has 20 results in its history (nothing to watch: a visit looks
    at the devices it changes); at the even ones one device is busy for four days (the site is
    watched), then dies (silent). ``late``: the share of results delivered with a later batch, up
    to two days late."""
    rng = random.Random(seed)
    out: list[tuple[int, Screened]] = []
    n = 0
    start = T0 - 1 * HOUR  # 06:00 local
    for s in range(6):
        site = f"q-{s}"
        for d in range(rng.randint(8, 30)):
            dev = f"{site}-d{d}"
            drift_day = rng.randrange(days) if rng.random() < 0.25 else -1
            busy = rng.randrange(days - 4) if d == 0 and s % 2 == 0 else -99  # odd sites: nothing to watch
            for day in range(days):
                k = 6 if day == drift_day else (rng.randint(5, 9) if busy <= day < busy + 4 else rng.randint(0, 2))
                if d == 0 and day >= busy + 4:
                    k = 0  # the busy device dies (at an odd site device 0 sends nothing)
                for i in range(k):
                    t = start + day * 24 * HOUR + rng.randrange(14 * HOUR)
                    positive = i < 4 if day == drift_day else rng.random() < 0.01
                    verdict = "positive" if positive else ("no_limit" if rng.random() < 0.03 else "compliant")
                    r = rec(f"r{n}", t, device_id=dev, site_id=site, verdict=verdict)
                    n += 1
                    arrives = t + (rng.randrange(2 * 24 * HOUR) if rng.random() < late else 0)
                    out.append((arrives, r))
    return _in_batches(out, start, days)


def _ids(alerts: list[Alert]) -> list[tuple[str, str, str]]:
    return sorted((a.kind, a.alert_id, a.status) for a in alerts)


def _check(s: Step, params: EarlyParams) -> None:
    for k, v in s.updates.items():
        assert s.wake[k] == (None if v is None else device.wake_of(k, v, params))


def _run(batches: list[list[Screened]]) -> tuple[list[Alert], list[Alert], dict[str, Any], int]:
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    wakes: dict[str, int] = {}
    old_alerts: list[Alert] = []
    new_alerts: list[Alert] = []
    max_t = 0
    biggest = 0
    for batch in batches:
        max_t = max([max_t, *(r.sampled_at for r in batch)])
        wm = max_t - P.grace_s
        o = v1.step(old, batch, wm, P)
        old = apply(old, o.updates)
        old_alerts += o.alerts
        due = [k for k, t in wakes.items() if t <= wm]
        s = device.step(NoScan(new), batch, wm, P, due=due)
        _check(s, P)
        assert set(due) <= set(s.wake)
        new = apply(new, s.updates)
        new_alerts += s.alerts
        wakes = {k: t for k, t in {**wakes, **s.wake}.items() if t is not None}
        assert set(wakes) <= set(new)
        for k, v in s.updates.items():
            if v is not None:
                ids = [i for e in v["d"].values() for o in device.open_days(e) for i in o[4:]]
                assert all(len(o) - 4 <= MAX_EVIDENCE for e in v["d"].values() for o in device.open_days(e))
                # without the positive ids a drift alert's evidence needs
                size = len(orjson.dumps(k)) + len(orjson.dumps(v)) - len(orjson.dumps(ids))
                biggest = max(biggest, size)
                assert len(v.get("h", [])) <= P.silent_history_days * 24 + 2
                # [day, results, ...] and [day, judged, positives, ...]: the days of the history at most
                assert all(len(e[device.DAYS]) <= 2 * (P.silent_history_days + 1) for e in v["d"].values())
                assert len(v.get("j", [])) <= 3 * (P.silent_history_days + 1)
    return old_alerts, new_alerts, new, biggest


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wake_driven_visits_raise_the_alerts_of_the_previous_detector(seed: int) -> None:
    old_alerts, new_alerts, new, biggest = _run(_traffic(seed, days=12))
    kinds = {a.kind for a in new_alerts}
    assert kinds == {"device_silent", "device_drift"}
    assert _ids(new_alerts) == _ids(old_alerts)
    # every site without a device left to watch is gone once its history has passed
    assert all(any(e[device.SILENT] for e in v["d"].values()) for v in new.values())
    assert biggest < 500  # at most 4 devices a site here, 8 days of history


def test_the_wake_is_when_a_device_becomes_a_silence_candidate_its_peers_already_outnumber() -> None:
    history = [rec(f"{d}-{i}", T0 + i * 360 + j, device_id=d) for j, d in enumerate(("d1", "d2", "d3"))
               for i in range(40)]
    s = device.step({}, history, T0 + 4 * HOUR, P)
    (value,) = s.updates.values()
    # nobody sent anything after d1's last result: no silence to look for; the next visit without
    # records is when the first day leaves the history
    first_leaves = device.day_start(device.day_index(T0) + P.silent_history_days + 1)
    assert s.wake["m-01"] == device.wake_of("m-01", value, P) == first_leaves
    state = apply({}, s.updates)
    last = T0 + 39 * 360  # d1's
    peers = [rec(f"p{i}", T0 + 4 * HOUR + i * 55, device_id=("d2", "d3")[i % 2]) for i in range(60)]
    s = device.step(NoScan(state), peers, T0 + 5 * HOUR, P, due=[])
    assert s.alerts == []  # d1 is not 2 h silent yet, but its peers already outnumber it: looked at in
    assert s.wake["m-01"] == (last + 2 * HOUR) // HOUR * HOUR + HOUR  # the next hour of watermark
    state = apply(state, s.updates)
    s = device.step(NoScan(state), [], T0 + 6 * HOUR, P, due=["m-01"])
    assert [(a.kind, a.device_id) for a in s.alerts] == [("device_silent", "d1")]
    gone = device.step(NoScan({}), [], T0, P, due=["m-02"])
    assert gone.wake == {"m-02": None} and gone.updates == {}


def test_a_touch_changes_only_the_devices_it_touches_never_the_stored_value() -> None:
    history = [rec(f"{d}-{i}", T0 + i * 360, device_id=d) for d in ("d1", "d2", "d3") for i in range(5)]
    state = apply({}, device.step({}, history, T0 + HOUR, P).updates)
    s = device.step(state, [rec("x", T0 + HOUR + 60, device_id="d1")], T0 + HOUR, P)
    before, after = state["m-01"]["d"], s.updates["m-01"]["d"]
    assert after["d2"] == before["d2"] and after["d3"] == before["d3"] and after["d1"] != before["d1"]
    assert after is not before  # a value of the step's own (``common.own``), changed in place
    t0 = device.day_start(state["m-01"]["b"])  # times in the value are relative to its base day
    assert before["d1"][device.LAST] + t0 == T0 + 4 * 360  # the stored value is not changed in place


def test_from_v1_upgrades_a_site_and_the_alerts_go_on_as_before() -> None:
    history = [rec(f"{d}-{i}", T0 + i * 360 + j, device_id=d,
                   verdict="positive" if d == "d1" and i < 5 else "compliant")
               for j, d in enumerate(("d1", "d2", "d3")) for i in range(40)]
    old = apply({}, v1.step({}, history, T0 + 4 * HOUR, P).updates)
    (old_drift,) = [a for a in v1.step({}, history, T0 + 4 * HOUR, P).alerts if a.kind == "device_drift"]
    new = {k: device.from_v1(k, v) for k, v in old.items()}
    assert len(orjson.dumps(new)) < len(orjson.dumps(old)) / 2
    assert device.wake_of("m-01", new["m-01"], P) == old["m-01"]["ev"]  # due at once
    peers = [rec(f"p{i}", T0 + 4 * HOUR + i * 120, device_id=("d2", "d3")[i % 2]) for i in range(60)]
    a_old = v1.step(old, peers, T0 + 7 * HOUR, P).alerts
    s = device.step(NoScan(new), peers, T0 + 7 * HOUR, P, due=["m-01"])
    assert _ids(s.alerts) == _ids(a_old)
    assert [a.kind for a in s.alerts] == ["device_silent"]  # the drift record came over: no re-emission
    new = apply(new, s.updates)
    nxt = rec("next-day", T0 + 30 * HOUR, device_id="d2")
    closed = device.step(NoScan(new), [nxt], T0 + 30 * HOUR, P, due=["m-01"])
    assert [(a.alert_id, a.status) for a in closed.alerts if a.kind == "device_drift"] == [
        (old_drift.alert_id, "resolved")]
    assert device.from_v1("m-9", None) is None and device.from_v1("m-9", {"w": ["", ""]}) is None


def test_from_v1_keeps_an_open_silent_alert_and_drops_judged_days() -> None:
    day = device.day_start(device.day_index(T0))
    old = {"w": ["Tianhe", "farmers_market"], "ev": T0 + 30 * HOUR, "d": {
        "d1": {"last": T0, "hrs": {str(T0 - HOUR): 30}, "days": {str(day): [30, 4, ["a", "b", "c", "d"]]},
               "s": {"id": "x", "fp": "silent", "start": T0}, "dr": {str(day): {"closed": 1}}},
        "d2": {"last": T0 + 29 * HOUR, "hrs": {str(T0 + 29 * HOUR): 5}, "days": {}, "s": None, "dr": {}},
    }}
    new = device.from_v1("m-01", old)
    assert new is not None
    di = device.day_index(T0)
    assert new["b"] == di and new["j"] == [0, 30, 4]
    # silent since T0 (last: relative to the base day); its day judged and closed
    assert new["d"]["d1"] == [T0 - device.day_start(di), T0, [0, 30]]
    assert new["d"]["d2"][device.DAYS] == [1, 5]
    back = rec("d1-back", T0 + 31 * HOUR, device_id="d1")
    s = device.step(NoScan({"m-01": new}), [back], T0 + 31 * HOUR, P, due=["m-01"])
    assert [(a.kind, a.status, a.starts_at.timestamp()) for a in s.alerts] == [("device_silent", "resolved", T0)]


def test_day_counts_are_runs_of_days_and_expire_from_the_front() -> None:
    """``[first day, results or -(empty days), ...]`` against a plain day -> results map."""
    rng = random.Random(7)
    for _ in range(200):
        days: list[int] = []
        plain: dict[int, int] = {}
        for _ in range(rng.randint(1, 30)):
            i = rng.randrange(10)
            assert device._bump_day(days, i) == (i not in plain)
            plain[i] = plain.get(i, 0) + 1
            assert all(x != 0 for x in days[1:]) and days[1] > 0 and days[-1] > 0
            assert device._results(days) == sum(plain.values())
            assert days[0] == min(plain) and device._newest_day(days) == max(plain)
        oldest = rng.randrange(12)
        kept = device._drop_days_before(days, oldest)
        left = {i: n for i, n in plain.items() if i >= oldest}
        assert device._results(kept) == sum(left.values())
        assert kept == [] if not left else (kept[0] == min(left) and kept[1] > 0)


def test_a_site_with_nothing_to_watch_stores_no_place_and_is_dropped_when_its_newest_day_leaves() -> None:
    """Few results a device (the national case): no district and site type in the value, no visit
    when an old day leaves the history (it goes at the next touch), one visit when the newest has left."""
    first = [rec("a", T0, device_id="d1"), rec("b", T0 + 60, device_id="d2")]
    s = device.step({}, first, T0, P)
    value = s.updates["m-01"]
    assert "w" not in value
    later = T0 + 3 * DAY
    state = apply({}, s.updates)
    s = device.step(NoScan(state), [rec("c", later, device_id="d1")], later, P, due=[])
    value = s.updates["m-01"]
    newest = device.day_index(later)
    assert s.wake["m-01"] == device.day_start(newest + P.silent_history_days + 1)
    state = apply(state, s.updates)
    # d2's day leaves the history: dropped at the next touch, d1 keeps only its newest day
    nxt = T0 + 9 * DAY
    s = device.step(NoScan(state), [rec("d", nxt, device_id="d3")], nxt, P, due=[])
    value = s.updates["m-01"]
    assert set(value["d"]) == {"d1", "d3"} and device._results(value["d"]["d1"][device.DAYS]) == 1
    state = apply(state, s.updates)
    gone = device.day_start(device.day_index(nxt) + P.silent_history_days + 1)
    s = device.step(NoScan(state), [], gone, P, due=["m-01"])
    assert s.updates == {"m-01": None} and s.wake == {"m-01": None}


@pytest.mark.parametrize(("seed", "late"), [(1, 0.0), (2, 0.0), (3, 0.2)])
def test_sites_with_little_traffic_raise_the_alerts_of_the_previous_detector(seed: int, late: float) -> None:
    """``_quiet_traffic``: in time order the alerts are the previous detector's (which visited every
    site every hour); with late results each drift alert raised is resolved."""
    batches = _quiet_traffic(seed, days=14, late=late)
    old_alerts, new_alerts, _, _ = _run(batches)
    kinds = {a.kind for a in new_alerts}
    assert kinds == {"device_silent", "device_drift"}
    # drift alerts at sites with nothing to watch too
    assert {int(a.site_id[2:]) % 2 for a in new_alerts if a.kind == "device_drift" and a.site_id} == {0, 1}
    if not late:
        assert _ids(new_alerts) == _ids(old_alerts)
    drift = [(a.alert_id, a.status) for a in new_alerts if a.kind == "device_drift"]
    assert {i for i, st in drift if st == "resolved"} == {i for i, _ in drift}
