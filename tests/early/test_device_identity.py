"""A result is (device_id, result_id) in early warning too: two devices' results with one result_id
both count; the same device's resend is skipped; state written before the device key still
de-duplicates a replay across the upgrade."""

from __future__ import annotations

import zlib
from typing import Any

from agents.early import cluster, surge, unconfirmed
from agents.early.common import EarlyParams, apply, hour_start
from agents.early.engine import SEEN_SHARDS, apply_all, empty_tables
from agents.early.engine import step as engine_step
from agents.screened import Screened
from schemas.alert import Alert, alert_id_for
from schemas.result import result_key
from tests.early.records import HOUR, T0, lab, rec

P = EarlyParams()


def _engine(tables: dict[str, dict[str, Any]], records: list[Screened]) -> tuple[int, int, list[Alert]]:
    out = engine_step(tables, records, P)
    apply_all(tables, out.updates)
    return out.fresh, out.duplicates, out.alerts


def test_two_devices_same_result_id_both_counted() -> None:
    tables = empty_tables()
    b = rec("r-777", T0, device_id="lab-B", verdict="positive")
    a = rec("r-777", T0 + 60, device_id="lab-A", verdict="compliant")
    assert _engine(tables, [b, a]) == (2, 0, [])  # one batch
    assert _engine(tables, [b, a]) == (0, 2, [])  # each resent: skipped
    c = rec("r-777", T0 + 120, device_id="lab-C")
    assert _engine(tables, [c])[:2] == (1, 0)  # a later batch, a third device
    stored = [k for k in tables["seen"] if tables["seen"][k]]
    assert all(":d" in k for k in stored)
    kept = {x for k in stored for x in tables["seen"][k]}
    assert {result_key(d, "r-777") for d in ("lab-A", "lab-B", "lab-C")} <= kept


def test_surge_counts_both_devices_results() -> None:
    tables = empty_tables()
    _engine(tables, [rec("x", T0, device_id=d, verdict="positive") for d in ("d1", "d2")])
    (st,) = tables["surge"].values()
    (bucket,) = surge.unpack(st)["h"].values()
    assert bucket[:2] == [2, 2]  # results, non-compliant


def test_seen_written_before_the_device_key_still_skips_a_replay() -> None:
    tables = empty_tables()
    old = rec("r-1", T0, device_id="lab-B")
    legacy_key = f"{hour_start(T0)}:{zlib.crc32(b'r-1') % SEEN_SHARDS}"
    tables["seen"][legacy_key] = ["r-1"]  # the bare id, as written by the previous version
    tables["meta"]["wm"] = {"max": T0, "pruned": hour_start(T0)}
    assert _engine(tables, [old])[:2] == (0, 1)  # replayed across the upgrade: not counted twice
    assert legacy_key in tables["seen"] and tables["seen"][legacy_key] == ["r-1"]  # read, never rewritten
    # the bare buckets expire like the others
    later = rec("r-2", T0 + 10 * 86400)
    _engine(tables, [later])
    assert legacy_key not in tables["seen"]


def test_cluster_takes_two_devices_findings_with_one_id_as_two() -> None:
    hits = [
        rec("h", T0, device_id="d1", site_id="m-1", verdict="positive"),
        rec("h", T0 + 60, device_id="d2", site_id="m-2", verdict="positive"),
    ]
    s = cluster.step({}, hits, T0 + 60, P)
    (alert,) = s.alerts
    assert alert.details["places"] == 2 and alert.details["results"] == 2
    state = apply({}, s.updates)
    again = cluster.step(state, hits, T0 + 120, P)  # both resent: nothing new
    assert again.alerts == []
    # an entry written before the device was kept (7 items, in the state format before issue 21)
    # stands for its id from any device
    (key,) = state
    old_state = {key: {"ev": [[T0, "h", "m-1", "m-1", "stall-1", "positive", True]],
                       "ep": {"start": T0, "last": T0, "a": {"id": alert.alert_id, "fp": "2:2:False", "start": T0}},
                       "hv": hour_start(T0)}}
    replay = cluster.step(old_state, [hits[0]], T0 + 120, P)
    assert replay.updates.get(key) is None or cluster.findings_of(replay.updates[key]) == 1


def test_unconfirmed_positives_of_two_devices_are_two_alerts_one_confirmation_resolves_both() -> None:
    b = rec("p-1", T0, device_id="lab-B", verdict="positive")
    a = rec("p-1", T0 + 30, device_id="lab-A", verdict="positive")
    state = apply({}, unconfirmed.step({}, [b, a], T0, P).updates)
    fired = unconfirmed.step(state, [b], T0 + 48 * HOUR + 60, P)  # b resent: still one entry per device
    state = apply(state, fired.updates)
    assert sorted(x.device_id or "" for x in fired.alerts) == ["lab-A", "lab-B"]
    assert len({x.alert_id for x in fired.alerts}) == 2
    confirmation = lab("l-1", T0, confirms="p-1", tested_at=T0 + 50 * HOUR)
    done = unconfirmed.step(state, [confirmation], T0 + 50 * HOUR, P)
    assert sorted((x.alert_id, x.status) for x in done.alerts) == sorted((x.alert_id, "resolved") for x in fired.alerts)


def test_unconfirmed_pending_from_before_the_device_key_keeps_its_alert_id() -> None:
    pos = rec("p-9", T0, device_id="lab-B", verdict="positive")
    fields = {f: getattr(pos, f) for f in ("result_id", "site_id", "site_type", "district", "vendor_id",
                                           "supplier_id", "commodity", "analyte", "method", "device_id",
                                           "sample_id")}
    old_state: dict[str, Any] = {"p:p-9": {"t": T0, "r": fields, "a": None}}  # the previous form
    fired = unconfirmed.step(old_state, [], T0 + 48 * HOUR, P)
    (alert,) = fired.alerts
    assert alert.alert_id == alert_id_for("unconfirmed_positive", "p-9")  # the id it had before
    state = apply(old_state, fired.updates)
    done = unconfirmed.step(state, [lab("l-9", T0, confirms="p-9", tested_at=T0 + 49 * HOUR)], T0 + 49 * HOUR, P)
    assert [(x.alert_id, x.status) for x in done.alerts] == [(alert.alert_id, "resolved")]
