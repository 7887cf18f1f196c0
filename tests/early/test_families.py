"""The early-warning detectors on the families of issue 20, unchanged: the simulator's 瘦肉精 incident
(one pig supplier's pork with clenbuterol in three markets) screened by the real rules, its
single-result alerts named by family, and the pure engine building a supplier cluster from them."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from agents.early import cluster as cluster_detector
from agents.early.common import EarlyParams
from agents.early.engine import apply_all, empty_tables, step
from agents.early.lifecycle import ladder
from agents.screened import screened_record
from pipeline.simulator import CST, TAG_CLENBUTEROL_PORK, Fleet, FleetConfig
from schemas.alert import KIND_BANNED_SUBSTANCE, KIND_QUICK_POSITIVE, Alert, alert_for_verdict
from schemas.reference import default_reference
from schemas.result import InvalidResult, parse_result
from schemas.rules import screen

START = datetime(2026, 11, 27, 6, 0, tzinfo=CST)
# the fleet, single-result alerts, early-warning alerts (latest per id), the incident's result ids,
# and the engine's tables at the end
Run = tuple[Fleet, dict[str, Alert], dict[str, Alert], set[str], dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def run() -> Run:
    """Three simulated hours at a tenth of the default rate, screened and run through the engine."""
    ref = default_reference()
    params = EarlyParams(enzyme_prone=frozenset(f.code for f in ref.foods if f.enzyme_false_positive))
    fleet = Fleet(FleetConfig(start=START, rate_per_sim_hour=200, invalid_fraction=0.0))
    tables = empty_tables()
    singles: dict[str, Alert] = {}  # result_id -> its single-result alert
    early: dict[str, Alert] = {}  # alert_id -> latest
    incident: set[str] = set()
    t = START
    while t < START + timedelta(hours=3):
        t += timedelta(minutes=10)
        batch = []
        for m in fleet.next_batch(t):
            try:
                r = parse_result(m.value, reference=ref, now=t + timedelta(days=1))
            except InvalidResult:
                continue
            if m.tag == TAG_CLENBUTEROL_PORK:
                incident.add(r.result_id)
            v = screen(r, ref)
            a = alert_for_verdict(r, v, reference=ref)
            if a is not None:
                singles[r.result_id] = a
            batch.append(screened_record(r, v))
        out = step(tables, batch, params)
        apply_all(tables, out.updates)
        for a in out.alerts:
            early[a.alert_id] = a
    return fleet, singles, early, incident, tables


def test_the_incident_raises_banned_substance_alerts_named_by_family(
    run: Run,
) -> None:
    _, singles, _, incident, _ = run
    kinds = Counter(singles[r].kind for r in incident if r in singles)
    assert kinds[KIND_QUICK_POSITIVE] == 6 and kinds[KIND_BANNED_SUBSTANCE] == 5
    for r in incident:
        a = singles[r]
        assert (a.analyte, a.commodity, a.details["family"]) == ("clenbuterol", "pork", "banned_compound")
        if a.kind == KIND_BANNED_SUBSTANCE:
            assert "猪肉检出禁用物质克伦特罗" in a.summary_zh and a.risk == "serious"


def test_a_supplier_cluster_is_built_from_them_and_confirmed(
    run: Run,
) -> None:
    fleet, singles, early, incident, tables = run
    (info,) = [i for i in fleet.incidents() if i.tag == TAG_CLENBUTEROL_PORK]
    (cluster,) = [a for a in early.values() if a.kind == "supplier_cluster" and a.supplier_id == info.supplier_id]
    assert cluster.commodity == "pork" and len(set(str(cluster.details["sites"]).split(","))) >= 3
    assert (cluster.classification, cluster.risk) == ("alert", "serious")  # a lab confirmed it
    # The alert is updated when its count of places or results crosses a step of the ladder, or a lab
    # confirms it (issue 21), not at every finding: its last update carries the incident's findings
    # up to then, the cluster itself (the stored episode) holds every one of them.
    assert set(cluster.evidence) <= incident
    assert len(cluster.evidence) >= ladder(len(incident))
    assert set(cluster_detector.evidence_of(tables["cluster"][f"{info.supplier_id}|pork"])) == incident
    assert {singles[r].kind for r in cluster.evidence} == {KIND_QUICK_POSITIVE, KIND_BANNED_SUBSTANCE}
