"""The tables' layout: one key per detector key, and the upgrade of state stored by the version
before (detector tables in shards, ``meta["layout"] == {"shards": n}``, values in that version's
form): after it, alerts continue as if nothing happened."""

from __future__ import annotations

import copy
import logging
import zlib
from typing import Any

import pytest

from agents.early.common import HOUR, EarlyParams, hour_start, iso
from agents.early.engine import LAYOUT, V1_SHARDED, EngineMemory, apply_all, empty_tables, step, upgrade
from agents.screened import Screened
from schemas.alert import alert_id_for
from schemas.result import result_key
from tests.early.records import T0, rec

P = EarlyParams()
SHARDS = 4

# State as the version before issue 21 stored it (values in its form, written by its detectors):
# vendor V-bad listed after three positives (its repeat_offender alert firing), and a quick positive
# u1 of vendor V-u waiting for its lab confirmation (due at T0 + 4 h + 48 h).
V1_OFFENDER: dict[str, Any] = {
    "V-bad": {
        "bad": {"s-b0": [T0, "b0", "positive", "m-07"], "s-b1": [T0 + HOUR, "b1", "positive", "m-07"],
                "s-b2": [T0 + 2 * HOUR, "b2", "positive", "m-07"]},
        "clean": [], "listed": T0 + 2 * HOUR,
        "a": {"id": alert_id_for("repeat_offender", "V-bad", iso(T0 + 2 * HOUR)), "fp": "3", "start": T0 + 2 * HOUR},
        "where": ["m-07", "Tianhe"],
    },
    "V-u": {"bad": {"s-u1": [T0 + 4 * HOUR, "u1", "positive", "m-08"]}, "clean": [], "listed": None, "a": None,
            "where": ["m-08", "Tianhe"]},
}
V1_UNCONFIRMED: dict[str, Any] = {
    "p:u1": {"by": {"dev-8": {"t": T0 + 4 * HOUR, "r": {
        "result_id": "u1", "site_id": "m-08", "site_type": "farmers_market", "district": "Tianhe", "vendor_id": "V-u",
        "supplier_id": "su", "commodity": "cowpea", "analyte": "ache_inhibition", "method": "enzyme_inhibition",
        "device_id": "dev-8", "sample_id": "s-u1"}, "a": None}}},
}


def _shard_of(key: str) -> str:
    return str(zlib.crc32(key.encode()) % SHARDS)


def _fold(entries: dict[str, Any]) -> dict[str, Any]:
    """The stored form of the version before: shard -> {key: state}."""
    shards: dict[str, Any] = {}
    for k, v in entries.items():
        shards.setdefault(_shard_of(k), {})[k] = v
    return shards


def _v1_tables() -> dict[str, dict[str, Any]]:
    t = empty_tables()
    t["offender"] = _fold(copy.deepcopy(V1_OFFENDER))
    t["unconfirmed"] = _fold(copy.deepcopy(V1_UNCONFIRMED))
    h = hour_start(T0)
    # seen as that version wrote it: per hour, the result keys in shards "<hour>:d<shard>"
    t["seen"][f"{h}:d{zlib.crc32(b'b0') % 8}"] = [result_key("dev-9", "b0")]
    t["meta"]["wm"] = {"max": T0 + 4 * HOUR, "pruned": hour_start(T0 + 3 * HOUR)}
    t["meta"]["layout"] = {"shards": SHARDS}
    return t


def _upgraded() -> dict[str, dict[str, Any]]:
    tables = _v1_tables()
    apply_all(tables, upgrade(tables))
    return tables


def test_upgrade_unfolds_the_shards_into_one_key_per_detector_key() -> None:
    tables = _upgraded()
    assert tables["meta"]["layout"] == {"v": LAYOUT}
    assert set(tables["offender"]) == set(V1_OFFENDER)
    assert set(tables["unconfirmed"]) == set(V1_UNCONFIRMED)
    assert not any(k in tables[name] for name in V1_SHARDED for k in map(str, range(SHARDS)))
    assert upgrade(tables) == {}  # once
    assert tables["seen"] == _v1_tables()["seen"]  # read as it is, expires with its hour


def test_fresh_state_records_the_layout_only() -> None:
    assert upgrade(empty_tables()) == {"meta": {"layout": {"v": LAYOUT}}}


def _run(tables: dict[str, dict[str, Any]], mem: EngineMemory, records: list[Screened]) -> Any:
    out = step(tables, records, P, mem)
    apply_all(tables, out.updates)
    mem.apply(out)
    return out


def test_alerts_continue_across_the_upgrade() -> None:
    tables = _upgraded()
    mem = EngineMemory.build(tables, P)
    # a result the old version had seen, replayed: skipped
    replay = _run(tables, mem, [rec("b0", T0, vendor_id="V-bad", verdict="positive", device_id="dev-9")])
    assert (replay.fresh, replay.duplicates) == (0, 1)
    # the listed vendor stays listed: four clean samples do not delist it, the fifth does, resolving
    # the alert it had before the upgrade
    listed_alert = V1_OFFENDER["V-bad"]["a"]["id"]
    resolved: list[str] = []
    for i in range(5):
        out = _run(tables, mem, [rec(f"c{i}", T0 + (5 + i) * HOUR, vendor_id="V-bad", device_id="dev-9")])
        resolved += [a.alert_id for a in out.alerts if a.kind == "repeat_offender" and a.status == "resolved"]
        delisted = [e for e in out.redlist if e.vendor_id == "V-bad" and not e.listed]
        assert (resolved, delisted != []) == (([], False) if i < 4 else ([listed_alert], True))
    # the pending quick positive fires once its 48 h pass (watermark = latest sampled_at - 1 h)
    late = _run(tables, mem, [rec("tick", T0 + 4 * HOUR + 48 * HOUR + HOUR + 60, vendor_id="V-x")])
    fired = [a for a in late.alerts if a.kind == "unconfirmed_positive"]
    assert [(a.vendor_id, a.status) for a in fired] == [("V-u", "firing")]
    assert "u1" in " ".join(fired[0].evidence) or fired[0].details.get("result_id") == "u1"


def test_a_version_before_the_shards_is_converted_in_place() -> None:
    tables = empty_tables()
    tables["offender"] = copy.deepcopy(V1_OFFENDER)
    tables["meta"]["wm"] = {"max": T0 + 4 * HOUR, "pruned": hour_start(T0 + 3 * HOUR)}
    apply_all(tables, upgrade(tables))
    assert tables["meta"]["layout"] == {"v": LAYOUT} and set(tables["offender"]) == set(V1_OFFENDER)
    mem = EngineMemory.build(tables, P)
    out = _run(tables, mem, [rec(f"c{i}", T0 + (5 + i) * HOUR, vendor_id="V-bad") for i in range(5)])
    assert [a.status for a in out.alerts if a.kind == "repeat_offender"] == ["resolved"]


def test_an_upgrade_cut_short_runs_again() -> None:
    """A crash after some of the upgrade's writes (the shard deletes come after their entries):
    the next start unfolds what is still in shards; the outcome is the full upgrade's."""
    whole = _upgraded()
    tables = _v1_tables()
    writes = upgrade(tables)
    part = {name: dict(list(w.items())[: len(w) // 2]) for name, w in writes.items() if name != "meta"}
    apply_all(tables, part)
    apply_all(tables, upgrade(tables))
    assert tables == whole


def test_the_shard_setting_is_accepted_and_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.app import early_warning_config
    from pipeline.settings import Settings
    from schemas.reference import default_reference

    with caplog.at_level(logging.WARNING, logger="pipeline.app"):
        early_warning_config(Settings(ew_table_shards=16), default_reference())
    assert [r.getMessage() for r in caplog.records if "FOODRISK_EW_TABLE_SHARDS" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.app"):
        early_warning_config(Settings(), default_reference())
    assert not [r for r in caplog.records if "FOODRISK_EW_TABLE_SHARDS" in r.getMessage()]
