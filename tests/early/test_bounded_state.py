"""Issue 21 contract of the cluster, offender, unconfirmed and gap detectors: driven by the keys due
from a schedule (never iterating their state) they give the same alerts and state as when they find
the due keys by scanning; every visited key says when it is next due (``Step.wake``, equal to
``wake_of`` of what was stored); state stays bounded by the rules' windows and caps; values written
before issue 21 are read and converted (``from_v1``)."""

from __future__ import annotations

import copy
import random
from collections.abc import Collection, Mapping
from typing import Any

import orjson
import pytest

from agents.early import cluster, gap, offender, unconfirmed
from agents.early.common import DAY, JSON, EarlyParams, Step, apply, iso
from agents.early.lifecycle import KIND_OFFENDER, KIND_UNCONFIRMED
from agents.screened import Screened
from schemas.alert import Alert, alert_id_for
from schemas.result import result_key
from tests.early.records import HOUR, T0, NoScan, lab, rec

P = EarlyParams()
MODULES = (cluster, offender, unconfirmed, gap)


def traffic(seed: int, days: int = 12) -> list[tuple[list[Screened], int]]:
    """Batches of mixed results over ``days`` (a batch per ~2 hours; some batches empty), with
    repeat offenders, supplier clusters, quick positives confirmed on time, late or never, late and
    duplicate records, and unknown labels; each with its watermark."""
    rng = random.Random(seed)
    out: list[tuple[list[Screened], int]] = []
    pending_labs: list[Screened] = []
    n = 0
    t = T0
    for _ in range(days * 12):
        t += 2 * HOUR
        batch: list[Screened] = []
        for _ in range(rng.randrange(0, 40)):
            n += 1
            at = t - rng.randrange(0, 3 * HOUR)
            vendor = f"v{rng.randrange(25)}" if rng.random() < 0.6 else f"w{rng.randrange(400)}"
            site = f"m-{rng.randrange(12)}"
            supplier = f"sup-{rng.randrange(6)}" if rng.random() < 0.8 else None
            commodity = rng.choice(("cowpea", "pork", "celery"))
            bad = rng.random() < (0.25 if vendor.startswith("v") else 0.05)
            device = f"dev-{rng.randrange(5)}"
            if rng.random() < 0.02:
                batch.append(rec(f"u{n}", at, commodity=f"made-up-{rng.randrange(4)}", verdict="unclassified",
                                 rule="unknown_food", device_id=device))
                continue
            r = rec(f"r{n}", at, vendor_id=vendor, site_id=site, supplier_id=supplier, commodity=commodity,
                    device_id=device, verdict=rng.choice(("positive", "positive", "exceeds")) if bad else "compliant")
            batch.append(r)
            if bad and rng.random() < 0.6:
                verdict = rng.choice(("banned", "compliant", "exceeds"))
                pending_labs.append(lab(f"l{n}", at, confirms=r.result_id, sample_id=r.sample_id, vendor_id=vendor,
                                        supplier_id=supplier, commodity=commodity, verdict=verdict,
                                        tested_at=at + rng.randrange(HOUR, 4 * DAY)))
        ready = [x for x in pending_labs if x.tested_at <= t]
        pending_labs = [x for x in pending_labs if x.tested_at > t]
        batch.extend(ready)
        if out and rng.random() < 0.2:
            batch.extend(rng.sample(out[-1][0], min(5, len(out[-1][0]))))  # resent records
        rng.shuffle(batch)
        out.append((batch, t - P.grace_s))
    return out


def drive(mod: Any, batches: list[tuple[list[Screened], int]], *, scheduled: bool,
          params: EarlyParams = P) -> tuple[dict[str, JSON], list[Alert], list[Any]]:
    state: dict[str, JSON] = {}
    schedule: dict[str, int] = {}
    alerts: list[Alert] = []
    redlist: list[Any] = []
    for records, wm in batches:
        before = copy.deepcopy(state)
        due: Collection[str] | None = None
        view: Mapping[str, JSON] = state
        if scheduled:
            due = sorted(k for k, w in schedule.items() if w <= wm)
            view = NoScan(state)
        s: Step = mod.step(view, records, wm, params, due)
        assert state == before  # the stored state is never changed in place
        assert set(s.updates) <= set(s.wake)  # every key written was visited, and says when it is due
        for k in due or ():
            assert k in s.wake
        for k, w in s.wake.items():
            if w is None:
                schedule.pop(k, None)
            else:
                schedule[k] = w
        state = apply(state, s.updates)
        for k, w in s.wake.items():
            assert mod.wake_of(k, state.get(k), params) == (w if k in state else None), k
        if scheduled:  # the schedule is what a rebuild from the stored state gives
            rebuilt = {k: mod.wake_of(k, v, params) for k, v in state.items()}
            assert schedule == {k: w for k, w in rebuilt.items() if w is not None}
        alerts.extend(s.alerts)
        redlist.extend(getattr(s, "redlist", ()))
    return state, alerts, redlist


def _dump(alerts: list[Alert]) -> list[bytes]:
    return sorted(orjson.dumps(a.model_dump(mode="json")) for a in alerts)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_due_from_a_schedule_gives_the_same_alerts_as_a_scan(mod: Any, seed: int) -> None:
    batches = traffic(seed)
    state_scan, alerts_scan, red_scan = drive(mod, batches, scheduled=False)
    state_due, alerts_due, red_due = drive(mod, batches, scheduled=True)
    assert state_due == state_scan
    assert _dump(alerts_due) == _dump(alerts_scan)
    assert sorted(map(repr, red_due)) == sorted(map(repr, red_scan))
    assert alerts_scan or mod is gap  # the traffic exercises the detector
    if mod is not gap:
        assert any(a.status == "resolved" for a in alerts_scan)


def test_values_are_compact_arrays_and_bounded_by_the_window() -> None:
    batches = traffic(4, days=20)
    for mod in MODULES:
        state, _, _ = drive(mod, batches, scheduled=True)
        for k, v in state.items():
            assert not isinstance(v, dict), (mod.__name__, k)  # no field names stored
        last_wm = batches[-1][1]
        if mod is cluster:  # nothing older than the window outside an open episode
            for v in state.values():
                if v[0] == 0:
                    assert all(e[0] >= last_wm - P.cluster_window_h * HOUR for e in v[1])
        if mod is offender:  # a vendor not listed keeps fewer than N findings, all within D days
            for v in state.values():
                if not offender.is_listed(v):
                    assert 0 < len(v[2]) < P.offender_n
                    assert all(f[0] >= last_wm - P.offender_days * DAY for f in v[2])
        if mod is unconfirmed:  # nothing older than the keep days
            for k, v in state.items():
                times = [v] if k.startswith("c:") else [e[1] for e in v]
                assert all(t >= last_wm - P.unconfirmed_keep_days * DAY for t in times)


def test_a_listed_vendor_keeps_an_exact_count_and_capped_evidence() -> None:
    n = offender.MAX_KEPT + 60
    state: dict[str, JSON] = {}
    for i in range(n):
        s = offender.step(state, [rec(f"b{i}", T0 + i * 60, verdict="positive")], T0 + i * 60, P)
        state = apply(state, s.updates)
    (v,) = state.values()
    assert offender.is_listed(v) and len(v[2]) == offender.MAX_KEPT and v[4] == n
    assert [e.findings for e in s.redlist] == [n]
    assert s.redlist[0].evidence == tuple(f"b{i}" for i in range(offender.MAX_KEPT))  # the earliest
    cond = offender._condition("stall-1", v, P)
    assert cond.alert().details["evidence_total"] == n and cond.alert().details["findings"] == n


def test_a_cluster_keeps_exact_counts_of_places_and_results_and_capped_evidence() -> None:
    n = cluster.MAX_KEPT + 40
    state: dict[str, JSON] = {}
    alerts: list[Alert] = []
    for i in range(n):
        r = rec(f"h{i}", T0 + i * 60, site_id=f"m-{i % 100}", vendor_id=f"v{i}", verdict="positive")
        s = cluster.step(state, [r], T0 + i * 60, P)
        state = apply(state, s.updates)
        alerts.extend(s.alerts)
    (v,) = state.values()
    assert cluster.findings_of(v) == n and len(cluster.evidence_of(v)) == cluster.MAX_KEPT
    assert len(v[3]) == 100  # places, exact
    last = alerts[-1]
    assert last.details["places"] == 100 and last.details["results"] == 200  # the last ladder step
    end = cluster.step(state, [], T0 + n * 60 + 49 * HOUR, P)
    (res,) = end.alerts
    assert res.status == "resolved" and res.alert_id == alerts[0].alert_id
    assert res.details["places"] == 100 and res.details["results"] == n
    assert res.details["evidence_total"] == n and len(res.evidence) == cluster.MAX_KEPT
    assert end.updates == {next(iter(state)): None} and end.wake == {next(iter(state)): None}


def test_expired_state_is_deleted_when_due() -> None:
    st = apply({}, offender.step({}, [rec("b1", T0, verdict="positive")], T0, P).updates)
    (k,) = st
    wake = offender.wake_of(k, st[k], P)
    assert wake == T0 + P.offender_days * DAY + 1
    assert offender.step(NoScan(st), [], wake - 1, P, due=[]).updates == {}
    gone = offender.step(NoScan(st), [], wake, P, due=[k])
    assert gone.updates == {k: None} and gone.wake == {k: None}
    st = apply({}, cluster.step({}, [rec("h1", T0, verdict="positive")], T0, P).updates)
    (k,) = st
    assert cluster.wake_of(k, st[k], P) == T0 + P.cluster_window_h * HOUR + 1
    st = apply({}, unconfirmed.step({}, [rec("p1", T0, verdict="positive")], T0, P).updates)
    assert unconfirmed.wake_of("p:p1", st["p:p1"], P) == T0 + int(P.unconfirmed_h * HOUR)


# -- values written before issue 21 ---------------------------------------------------------------

def test_from_v1_a_listed_vendor_stays_listed_and_resolves_under_its_id() -> None:
    listed_at = T0 + 2 * DAY
    old = {
        "bad": {f"s-b{i}": [T0 + i * DAY, f"b{i}", "positive", "m-01"] for i in range(4)},
        "clean": ["s-c0"],
        "listed": listed_at,
        "a": {"id": alert_id_for(KIND_OFFENDER, "stall-1", iso(listed_at)), "fp": "4", "start": listed_at},
        "where": ["m-01", "Tianhe"],
    }
    new = offender.from_v1("stall-1", old)
    assert offender.is_listed(new) and new[4] == 4 and new[6] == ["s-c0"]
    assert offender.wake_of("stall-1", new, P) is None  # listed: nothing expires
    assert len(orjson.dumps(new)) < len(orjson.dumps(old))
    # one more clean sample: no re-emission on upgrade (the fingerprint carried over on the ladder)
    state = {"stall-1": new}
    s = offender.step(state, [rec("c1", T0 + 10 * DAY)], T0 + 10 * DAY, P)
    assert s.alerts == []
    state = apply(state, s.updates)
    s = offender.step(state, [rec(f"c{i}", T0 + 10 * DAY + i) for i in range(2, 5)], T0 + 10 * DAY, P)
    assert [(a.alert_id, a.status) for a in s.alerts] == [(old["a"]["id"], "resolved")]  # type: ignore[index]
    # read straight from the old form too (before the engine converted it)
    s = offender.step({"stall-1": old}, [rec(f"c{i}", T0 + 10 * DAY + i) for i in range(1, 5)], T0 + 10 * DAY, P)
    assert [(a.alert_id, a.status) for a in s.alerts] == [(old["a"]["id"], "resolved")]  # type: ignore[index]
    # a vendor not listed keeps its findings within the look-back; an empty value goes
    one = offender.from_v1("w", {"bad": {"s": [T0, "x", "banned", "m"]}, "clean": [], "listed": None, "a": None,
                                 "where": ["m", "D"]})
    assert one == ["m", "D", [[T0, "x", "s", 3]], None, 1, 1, [], None]
    assert offender.from_v1("w", {"bad": {}, "clean": [], "listed": None, "a": None, "where": ["", ""]}) is None


def test_from_v1_a_pending_positive_still_fires_and_resolves() -> None:
    fields = {"result_id": "p1", "site_id": "m-01", "site_type": "farmers_market", "district": "Tianhe",
              "vendor_id": "stall-1", "supplier_id": "sup-1", "commodity": "cowpea", "analyte": "ache_inhibition",
              "method": "enzyme_inhibition", "device_id": "dev-1", "sample_id": "s-p1"}
    old = {"p:p1": {"by": {"dev-1": {"t": T0, "r": fields, "a": None}}}, "c:l0": {"t": T0}}
    state = {k: unconfirmed.from_v1(k, v) for k, v in old.items()}
    assert state["c:l0"] == T0 and unconfirmed.is_pending(state["p:p1"]) == 1
    fired = unconfirmed.step(NoScan(state), [], T0 + 48 * HOUR, P, due=["p:p1"])
    (alert,) = fired.alerts
    assert alert.alert_id == alert_id_for(KIND_UNCONFIRMED, result_key("dev-1", "p1"))
    assert alert.site_id == "m-01" and alert.vendor_id == "stall-1" and alert.details["sample_id"] == "s-p1"
    state = apply(state, fired.updates)
    done = unconfirmed.step(state, [lab("l1", T0, confirms="p1", tested_at=T0 + 50 * HOUR)], T0 + 50 * HOUR, P)
    assert [(a.alert_id, a.status) for a in done.alerts] == [(alert.alert_id, "resolved")]
    # one already fired before the upgrade: not fired again, resolved under its id
    fired_old = {"by": {"dev-1": {"t": T0, "r": fields, "a": {"id": alert.alert_id, "fp": "due", "start": T0}}}}
    st = {"p:p1": unconfirmed.from_v1("p:p1", fired_old)}
    assert unconfirmed.step(st, [], T0 + 60 * HOUR, P).alerts == []
    done = unconfirmed.step(st, [lab("l1", T0, confirms="p1", tested_at=T0 + 61 * HOUR)], T0 + 61 * HOUR, P)
    assert [(a.alert_id, a.status) for a in done.alerts] == [(alert.alert_id, "resolved")]


def test_from_v1_a_cluster_episode_keeps_its_id_and_its_places() -> None:
    hits = [rec(f"h{i}", T0 + i * 600, site_id=f"m-{i}", vendor_id=f"v{i}", verdict="positive") for i in range(3)]
    first = cluster.step({}, hits, T0 + 1200, P).alerts[0]
    old = {"ev": [[h.sampled_at, h.result_id, h.site_id, h.site_id, h.vendor_id, h.verdict, h.quick, h.device_id]
                  for h in hits],
           "ep": {"start": T0, "last": T0 + 1200, "a": {"id": first.alert_id, "fp": "3:3:False", "start": T0}},
           "hv": T0}
    (key,) = {cluster.key_of(h) for h in hits}
    assert key is not None
    new = cluster.from_v1(key, old)
    assert cluster.findings_of(new) == 3 and cluster.evidence_of(new) == ("h0", "h1", "h2")
    state = {key: new}
    again = cluster.step(state, [hits[0], rec("h3", T0 + 1800, site_id="m-1", vendor_id="v1", verdict="positive")],
                         T0 + 1800, P)
    assert again.alerts == []  # 4 results, 3 places: no ladder step crossed, nothing re-emitted on upgrade
    state = apply(state, again.updates)
    assert cluster.findings_of(state[key]) == 4
    end = cluster.step(state, [], T0 + 1800 + 49 * HOUR, P)
    assert [(a.alert_id, a.status) for a in end.alerts] == [(first.alert_id, "resolved")]
    pending = cluster.from_v1(key, {"ev": [old["ev"][0][:7]], "ep": None, "hv": T0})  # type: ignore[index]
    assert pending == [0, [[T0, "h0", "m-0", "m-0", "v0", 0, None]]]
    assert cluster.from_v1(key, {"ev": [], "ep": None, "hv": T0}) is None
    assert gap.from_v1("1", ["commodity:x"]) == ["commodity:x"]


def test_a_due_key_no_longer_stored_writes_nothing_and_is_unscheduled() -> None:
    for mod, k in ((cluster, "sup-1|cowpea"), (offender, "stall-1"), (unconfirmed, "p:x"), (gap, str(T0 - T0 % DAY))):
        s = mod.step(NoScan({}), [], T0 + 60 * DAY, P, due=[k])
        assert (s.updates, s.wake, s.alerts) == ({}, {k: None}, []), mod.__name__
