# ruff: noqa: PERF401  (readable loops that build test traffic)
"""Pure unit tests of the early-warning detectors (agents/early): each fires on its pattern with
the right evidence, stays silent on noise, ignores a result seen twice and is deterministic."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from agents.early import cluster, device, offender, surge, unconfirmed
from agents.early.common import EarlyParams, apply, binom_sf
from agents.early.engine import apply_all, empty_tables
from agents.early.engine import step as engine_step
from agents.screened import Screened, decode_batch, encode_batch
from schemas.alert import Alert
from tests.early.records import HOUR, T0, lab, rec

P = EarlyParams()


def run(
    mod: object, records: list[Screened], watermark: int, state: dict[Any, Any] | None = None
) -> tuple[dict[Any, Any], list[Alert]]:
    s = mod.step(state or {}, records, watermark, P)  # type: ignore[attr-defined]
    return apply(state or {}, s.updates), s.alerts


def engine(batches: list[list[Screened]], params: EarlyParams = P) -> tuple[dict[Any, Any], list[Alert]]:
    tables = empty_tables()
    alerts: list[Alert] = []
    for b in batches:
        out = engine_step(tables, b, params)
        apply_all(tables, out.updates)
        alerts.extend(out.alerts)
    return tables, alerts


def test_binomial_tail_matches_direct_sums() -> None:
    assert binom_sf(0, 10, 0.1) == 1.0
    assert abs(binom_sf(1, 10, 0.1) - (1 - 0.9**10)) < 1e-12
    assert abs(binom_sf(10, 10, 0.5) - 0.5**10) < 1e-15
    assert abs(binom_sf(3, 200, 0.0015) - 0.00346) < 1e-4
    assert binom_sf(11, 10, 0.5) == 0.0


def test_screened_batch_round_trip() -> None:
    rs = [rec("a"), lab("b", verdict="banned", confirms="a")]
    assert decode_batch(encode_batch(rs)) == rs


def test_screened_batch_reads_the_older_object_form_and_rejects_malformed_records() -> None:
    rs = [rec("a"), lab("b", verdict="banned", confirms="a")]
    assert orjson.loads(encode_batch(rs))[0][0] == "a"  # records are written as arrays
    assert decode_batch(orjson.dumps([r._asdict() for r in rs])) == rs  # written by an older worker
    for bad in (b"{}", b"not json", orjson.dumps([["a", "b"]]), orjson.dumps([{"result_id": "a"}]), b"[1]"):
        with pytest.raises(ValueError, match="not a screened batch"):
            decode_batch(bad)


# -- rate surge -------------------------------------------------------------------------------

def _traffic(prefix: str, hours: int, per_hour: int, positives_at: set[int], **kw: object) -> list[Screened]:
    out = []
    for h in range(hours):
        for i in range(per_hour):
            rid = f"{prefix}-{h}-{i}"
            bad = (h * per_hour + i) in positives_at
            out.append(rec(rid, T0 + h * HOUR + i * 10, verdict="positive" if bad else "compliant", **kw))
    return out


def test_surge_fires_on_a_cluster_of_positives_with_observed_expected_and_p() -> None:
    records = _traffic("x", 24, 20, {30, 90, 150, 200, 260, 300})  # 6 of 480 vs 0.15%: expected 0.72
    state, alerts = run(surge, records, T0 + 24 * HOUR)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.kind == "rate_surge" and a.status == "firing"
    assert (a.district, a.commodity) == ("Tianhe", "cowpea")
    assert a.details["observed"] == 6 and a.details["tested"] == 480
    assert a.details["expected"] == 0.72
    assert float(a.details["p_value"]) < 1e-3  # type: ignore[arg-type]
    assert len(a.evidence) == 6 and all(r.startswith("x-") for r in a.evidence)
    # the same window again (next batch, nothing new): no re-raise
    _, again = run(surge, [], T0 + 24 * HOUR, state)
    assert again == []
    # a further positive in the open window: same id, richer evidence
    state2, more = run(surge, [rec("late", T0 + 23 * HOUR, verdict="positive")], T0 + 24 * HOUR, state)
    assert [m.alert_id for m in more] == [a.alert_id] and more[0].details["observed"] == 7
    # two quiet days later: resolved, same id, ends_at set
    _, later = run(surge, _traffic("q", 1, 20, set()), T0 + 72 * HOUR, state2)
    assert [(m.alert_id, m.status) for m in later] == [(a.alert_id, "resolved")]
    assert later[0].ends_at is not None


def test_surge_silent_on_baseline_noise_and_too_few_results() -> None:
    rng = random.Random(1)
    positives = {i for i in range(24 * 20) if rng.random() < 0.0015}
    _, alerts = run(surge, _traffic("n", 24, 20, positives), T0 + 25 * HOUR)
    assert alerts == []
    _, alerts = run(surge, _traffic("s", 2, 10, {1, 2, 3}), T0 + 3 * HOUR)  # 20 results < min_n
    assert alerts == []


def test_surge_idempotent_to_duplicates_through_the_engine() -> None:
    records = _traffic("d", 24, 20, {30, 90, 150, 200, 260, 300})
    tick = rec("tick", T0 + 26 * HOUR)
    _, once = engine([records, [tick]])
    _, twice = engine([records, records[:300], [tick], records])
    assert [a.model_dump() for a in once] == [a.model_dump() for a in twice]
    assert [a.kind for a in once].count("rate_surge") == 1


# -- repeat offender ----------------------------------------------------------------------------

def test_offender_listed_at_n_samples_and_delisted_after_k_clean() -> None:
    bad = [rec(f"b{i}", T0 + i * 86400, verdict="positive") for i in range(3)]
    confirm = lab("b0-lab", T0 + 3600, sample_id="s-b0", verdict="banned", confirms="b0")  # same sample
    state, alerts = run(offender, [*bad[:2], confirm], T0 + 2 * 86400)
    assert alerts == []  # two samples (the confirmation is the same sample)
    step = offender.step(state, bad[2:], T0 + 3 * 86400, P)
    state = apply(state, step.updates)
    assert [a.kind for a in step.alerts] == ["repeat_offender"]
    a = step.alerts[0]
    assert a.vendor_id == "stall-1" and set(a.evidence) == {"b0-lab", "b1", "b2"}
    assert a.classification == "alert" and a.risk == "serious"  # a lab found a banned pesticide
    assert [(e.vendor_id, e.listed, e.findings) for e in step.redlist] == [("stall-1", True, 3)]
    clean = [rec(f"c{i}", T0 + 4 * 86400 + i) for i in range(5)]
    s2, none = run(offender, clean[:4] + clean[:4], T0 + 4 * 86400, state)  # duplicates count once
    assert none == []
    step = offender.step(s2, clean[4:], T0 + 4 * 86400, P)
    assert [(x.alert_id, x.status) for x in step.alerts] == [(a.alert_id, "resolved")]
    assert [e.listed for e in step.redlist] == [False]
    assert apply(s2, step.updates) == {}


def test_offender_silent_when_findings_are_spread_beyond_d_days_or_duplicated() -> None:
    spread = [rec(f"b{i}", T0 + i * 20 * 86400, verdict="positive") for i in range(3)]
    state: dict[Any, Any] = {}
    for r in spread:
        state, alerts = run(offender, [r], r.sampled_at, state)
        assert alerts == []
    same = [rec("b0", T0, verdict="positive")] * 3
    assert run(offender, same, T0)[1] == []


# -- supplier cluster ----------------------------------------------------------------------------

def test_cluster_one_alert_growing_with_sites_then_resolved() -> None:
    hits = [rec(f"h{i}", T0 + i * 600, site_id=f"m-{i}", vendor_id=f"v{i}", verdict="positive") for i in range(4)]
    state, a1 = run(cluster, hits[:1], T0)
    assert a1 == []
    state, a2 = run(cluster, hits[1:2], T0 + 600, state)
    assert len(a2) == 1 and a2[0].kind == "supplier_cluster" and a2[0].supplier_id == "sup-1"
    assert a2[0].details["sites"] == "m-0,m-1" and a2[0].evidence == ("h0", "h1")
    state, a3 = run(cluster, hits[1:3], T0 + 1200, state)  # h1 again + a third site
    assert [x.alert_id for x in a3] == [a2[0].alert_id]
    assert a3[0].details["places"] == 3 and a3[0].evidence == ("h0", "h1", "h2")
    state, a4 = run(cluster, hits[1:3], T0 + 1300, state)  # nothing new: no update
    assert a4 == []
    confirmed = lab("h2-lab", T0 + 1800, vendor_id="v2", verdict="banned", confirms="h2")
    state, a5 = run(cluster, [confirmed], T0 + 1800, state)
    assert a5[0].classification == "alert" and a5[0].risk == "serious"
    _, a6 = run(cluster, [], T0 + 60 * HOUR, state)
    assert [(x.alert_id, x.status) for x in a6] == [(a2[0].alert_id, "resolved")]


def test_cluster_silent_for_one_site_or_findings_days_apart() -> None:
    same_site = [rec(f"s{i}", T0 + i * 600, verdict="positive", vendor_id=f"v{i}") for i in range(3)]
    assert run(cluster, same_site, T0 + 2000)[1] == []
    state, _ = run(cluster, [rec("a", T0, verdict="positive")], T0)
    _, alerts = run(cluster, [rec("b", T0 + 72 * HOUR, site_id="m-9", verdict="positive")], T0 + 72 * HOUR, state)
    assert alerts == []


def test_cluster_keyed_by_origin_when_supplier_missing() -> None:
    hits = [rec(f"o{i}", T0 + i, site_id=f"m-{i}", supplier_id=None, verdict="positive") for i in range(2)]
    _, alerts = run(cluster, hits, T0 + 10)
    assert len(alerts) == 1 and alerts[0].supplier_id is None and alerts[0].details["origin"] == "460000"


# -- unconfirmed positive ------------------------------------------------------------------------

def test_unconfirmed_fires_after_t_and_a_late_confirmation_resolves_it() -> None:
    pos = rec("p1", T0, verdict="positive")
    state, alerts = run(unconfirmed, [pos], T0)
    state, alerts = run(unconfirmed, [], T0 + 47 * HOUR, state)
    assert alerts == []
    state, alerts = run(unconfirmed, [pos], T0 + 48 * HOUR, state)  # and a duplicate of it
    assert [(a.kind, a.evidence) for a in alerts] == [("unconfirmed_positive", ("p1",))]
    first = alerts[0]
    state, alerts = run(unconfirmed, [], T0 + 50 * HOUR, state)
    assert alerts == []
    confirmation = lab("l1", T0, verdict="compliant", confirms="p1", tested_at=T0 + 60 * HOUR)
    state, alerts = run(unconfirmed, [confirmation], T0 + 60 * HOUR, state)
    assert [(a.alert_id, a.status) for a in alerts] == [(first.alert_id, "resolved")]
    assert alerts[0].details["confirmed_by"] == "l1"


def test_unconfirmed_silent_when_confirmed_in_time_or_confirmation_came_first() -> None:
    pos = rec("p1", T0, verdict="positive")
    confirmation = lab("l1", T0, verdict="banned", confirms="p1")
    state, _ = run(unconfirmed, [pos, confirmation], T0)
    _, alerts = run(unconfirmed, [pos], T0 + 100 * HOUR, state)
    assert alerts == []
    state, _ = run(unconfirmed, [lab("l2", T0, confirms="p2")], T0)
    _, alerts = run(unconfirmed, [rec("p2", T0, verdict="positive")], T0 + 100 * HOUR, state)
    assert alerts == []


# -- device health -------------------------------------------------------------------------------

def _site_traffic(hours: int, devices: tuple[str, ...], per_hour: int, start: int = T0) -> list[Screened]:
    out = []
    for h in range(hours):
        for d in devices:
            for i in range(per_hour):
                out.append(rec(f"{d}-{start + h}-{i}", start + h * HOUR + i * 60, device_id=d))
    return out


def test_device_silent_while_peers_report_then_resolved_when_it_returns() -> None:
    history = _site_traffic(4, ("d1", "d2", "d3"), 10)
    state, alerts = run(device, history, T0 + 4 * HOUR)
    assert alerts == []
    peers = _site_traffic(3, ("d2", "d3"), 10, start=T0 + 4 * HOUR)
    state, alerts = run(device, peers, T0 + 7 * HOUR, state)
    assert [(a.kind, a.device_id) for a in alerts] == [("device_silent", "d1")]
    assert alerts[0].details["subject"] == "device" and alerts[0].details["peer_results"] == 60
    state, again = run(device, peers[:3], T0 + 7 * HOUR, state)
    assert again == []
    back = [rec("d1-back", T0 + 7 * HOUR, device_id="d1")]
    _, res = run(device, back, T0 + 7 * HOUR, state)
    assert [(a.alert_id, a.status) for a in res] == [(alerts[0].alert_id, "resolved")]


def test_device_drift_against_peers_same_day() -> None:
    traffic = _site_traffic(3, ("d1", "d2"), 10)
    drift = [rec(f"dr{i}", T0 + i * 300, device_id="d1", verdict="positive") for i in range(5)]
    state, alerts = run(device, traffic + drift, T0 + 3 * HOUR)
    drifts = [a for a in alerts if a.kind == "device_drift"]
    assert [a.device_id for a in drifts] == ["d1"]
    assert drifts[0].details["positives"] == 5 and set(drifts[0].evidence) == {f"dr{i}" for i in range(5)}
    assert drifts[0].classification == "attention" and drifts[0].details["subject"] == "device"
    _, res = run(device, [rec("next-day", T0 + 30 * HOUR, device_id="d2")], T0 + 30 * HOUR, state)
    assert [(a.alert_id, a.status) for a in res if a.kind == "device_drift"] == [(drifts[0].alert_id, "resolved")]


def test_device_drift_on_a_day_already_closed_fires_and_resolves_once() -> None:
    """Late or replayed data: the whole day arrives after it closed; the drift is still reported."""
    traffic = _site_traffic(3, ("d1", "d2"), 10)
    drift = [rec(f"dr{i}", T0 + i * 300, device_id="d1", verdict="positive") for i in range(5)]
    state, alerts = run(device, traffic + drift, T0 + 30 * HOUR)
    drifts = [(a.kind, a.device_id, a.status) for a in alerts if a.kind == "device_drift"]
    assert drifts == [("device_drift", "d1", "firing"), ("device_drift", "d1", "resolved")]
    more = [rec("dr-late", T0 + 3600, device_id="d1", verdict="positive")]
    _, again = run(device, more, T0 + 31 * HOUR, state)
    assert [a for a in again if a.kind == "device_drift"] == []


def test_device_silent_on_ordinary_traffic() -> None:
    rng = random.Random(3)
    traffic = [
        rec(f"r{i}", T0 + i * 120, device_id=rng.choice(("d1", "d2", "d3")),
            verdict="positive" if rng.random() < 0.002 else "compliant")
        for i in range(400)
    ]
    _, alerts = run(device, traffic, T0 + 400 * 120)
    assert alerts == []


# -- determinism ---------------------------------------------------------------------------------

def test_engine_is_deterministic_and_alert_ids_stable() -> None:
    hits = [rec(f"h{i}", T0 + i * 600, site_id=f"m-{i}", vendor_id=f"v{i}", verdict="positive") for i in range(3)]
    batches = [hits[:2], hits[2:], [rec("tick", T0 + 60 * HOUR)]]
    t1, a1 = engine(batches)
    t2, a2 = engine(batches)
    assert t1 == t2
    assert [a.model_dump() for a in a1] == [a.model_dump() for a in a2]
    assert {a.kind for a in a1} >= {"supplier_cluster", "unconfirmed_positive"}


def test_engine_stale_records_only_reach_the_idempotent_detectors() -> None:
    fresh = [rec("f", T0 + 10 * 86400)]
    stale = [rec("old", T0, verdict="positive")._replace(site_id="m-old")]
    tables, _ = engine([fresh, stale, stale])
    assert "p:old" in tables["unconfirmed"]
    assert not any("old" in str(v) for v in tables["surge"].values())
