"""`foodrisk run`'s closing lines: single-result alerts by family, and the findings each supplier
cluster was built from (pipeline/demo.py, pure parts)."""

from __future__ import annotations

from typing import Any

from pipeline.demo import ClusterFamilies, alert_line


def single(result_id: str, kind: str, family: str, analyte: str) -> dict[str, Any]:
    return {"alert_id": f"a-{result_id}", "kind": kind, "evidence": [result_id], "analyte": analyte,
            "details": {"family": family}, "classification": "alert", "risk": "serious"}  # fmt: skip


def cluster(alert_id: str, evidence: list[str], classification: str = "follow_up") -> dict[str, Any]:
    return {"alert_id": alert_id, "kind": "supplier_cluster", "evidence": evidence, "supplier_id": "SUP-1",
            "commodity": "pork", "classification": classification, "risk": "undecided", "details": {}}  # fmt: skip


def test_a_cluster_names_the_families_of_its_findings_as_it_grows() -> None:
    c = ClusterFamilies()
    c.add(single("q1", "quick_test_positive", "banned_compound", "clenbuterol"))
    c.add(single("q2", "quick_test_positive", "banned_compound", "clenbuterol"))
    c.add(cluster("c1", ["q1", "q2"]))
    c.add(single("l1", "banned_substance", "banned_compound", "clenbuterol"))
    c.add(cluster("c1", ["q1", "q2", "l1"], classification="alert"))  # the update: same id, more evidence
    assert c.of("c1") == {
        ("banned_compound", "quick_test_positive", "clenbuterol"): 2,
        ("banned_compound", "banned_substance", "clenbuterol"): 1,
    }
    (line,) = c.lines()
    assert line.startswith("CLUSTER alert/undecided SUP-1 pork: ")
    assert "banned_substance clenbuterol (banned_compound) x1" in line


def test_clusters_of_the_market_panel_families_come_first() -> None:
    c = ClusterFamilies()
    for i in range(5):
        c.add(single(f"p{i}", "quick_test_positive", "pesticide", "carbofuran"))
    c.add(cluster("cowpea", [f"p{i}" for i in range(5)]))
    c.add(single("m1", "contaminant_exceedance", "contaminant", "cadmium"))
    c.add(cluster("rice", ["m1"]))
    c.add(single("v1", "vet_drug_exceedance", "veterinary_drug", "enrofloxacin"))
    c.add(cluster("chicken", ["v1", "unseen"]))
    lines = c.lines()
    assert "vet_drug_exceedance enrofloxacin (veterinary_drug) x1" in lines[0] and "carbofuran" in lines[1]
    assert "cadmium" in lines[2]  # then by findings
    assert c.lines(limit=1) == lines[:1]


def test_alert_line_keeps_the_summary_up_to_the_site() -> None:
    a = single("l1", "banned_substance", "banned_compound", "clenbuterol")
    a.update(
        summary_en="Banned substance Clenbuterol detected in Pork: 0.01 mg/kg (lc_msms); site TC-1", district="Tianhe"
    )
    line = alert_line(a)
    assert "banned_substance" in line and line.endswith(
        "Banned substance Clenbuterol detected in Pork: 0.01 mg/kg (lc_msms)"
    )
