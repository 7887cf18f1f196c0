"""The data-steward alert (agents/early/gap.py): an unknown label raises ``reference_gap`` once per
label per local day, with bounded state, at the lowest classification, never for judged results."""

from __future__ import annotations

import copy
from typing import Any

from agents.early import gap
from agents.early.common import DAY, HOUR, EarlyParams, apply, local_day
from agents.early.engine import apply_all, empty_tables
from agents.early.engine import step as engine_step
from agents.screened import Screened
from schemas.alert import Alert, Classification, Risk
from sinks.presentation import alert_labels, severity_for
from tests.early.records import T0, rec

P = EarlyParams()


def unknown_food(result_id: str, label: str = "上海青x", t: int = T0, **kw: Any) -> Screened:
    return rec(result_id, t, commodity=label, verdict="unclassified", rule="unknown_food", ratio=None, **kw)


def unknown_analyte(result_id: str, label: str = "农药残留", t: int = T0, **kw: Any) -> Screened:
    return rec(result_id, t, analyte=label, verdict="unclassified", rule="unknown_analyte", ratio=None, **kw)


def run(records: list[Screened], state: dict[str, Any] | None = None,
        watermark: int | None = None) -> tuple[dict[str, Any], list[Alert]]:
    state = state or {}
    before = copy.deepcopy(state)
    wm = watermark if watermark is not None else max(r.sampled_at for r in records)
    s = gap.step(state, records, wm, P)
    assert state == before  # the stored state is never changed in place
    return apply(state, s.updates), s.alerts


def test_an_unknown_label_alerts_the_data_steward_once_a_day() -> None:
    batch = [unknown_food("u1", site_id="m-07", device_id="dev-9"), unknown_food("u2"), rec("ok")]
    state, alerts = run(batch)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.kind == "reference_gap"
    assert (a.classification, a.risk) == (Classification.attention, Risk.undecided)
    assert severity_for(a.classification, a.risk) == "info"
    assert a.details["subject"] == "reference" and a.details["field"] == "commodity"
    assert a.details["label"] == "上海青x" and a.details["first_result_id"] == "u1"
    assert a.commodity == "上海青x" and a.analyte is None
    assert a.site_id == "m-07" and a.device_id == "dev-9" and a.district == "Tianhe"
    assert a.evidence == ("u1",)
    # which label, which field, first seen where, what to do; in both languages
    for needle in ("'上海青x'", "(commodity)", "u1", "dev-9", "m-07", "Tianhe", "foods.csv", "alias"):
        assert needle in a.summary_en, needle
    for needle in ("上海青x", "u1", "dev-9", "m-07", "别名", "foods.csv"):
        assert needle in a.summary_zh, needle
    labels = alert_labels(a)
    assert labels["alertname"] == "reference_gap" and labels["severity"] == "info"
    assert labels["field"] == "commodity" and labels["commodity"] == "上海青x"

    # The same label later that day: nothing new. The next local day: one more alert, another id.
    state, again = run([unknown_food("u3", t=T0 + 2 * HOUR)], state)
    assert again == []
    state, next_day = run([unknown_food("u4", t=T0 + DAY)], state)
    assert len(next_day) == 1 and next_day[0].alert_id != a.alert_id
    # A replay of the first day gives the same id (a deterministic key).
    _, replay = run(batch)
    assert replay[0].alert_id == a.alert_id


def test_analyte_and_food_gaps_are_apart_and_judged_results_raise_nothing() -> None:
    _, alerts = run([unknown_analyte("a1"), unknown_food("f1", label="农药残留"),
                         rec("n1", verdict="no_limit"), rec("c1", verdict="inconclusive")])
    assert sorted((a.details["field"], a.details["label"]) for a in alerts) == [
        ("analyte", "农药残留"), ("commodity", "农药残留")]
    analyte = next(a for a in alerts if a.details["field"] == "analyte")
    assert analyte.analyte == "农药残留" and analyte.commodity is None
    assert "analytes.csv" in analyte.summary_en and "(analyte)" in analyte.summary_en
    assert alert_labels(analyte)["field"] == "analyte"


def test_state_is_bounded_by_day_and_by_label_count() -> None:
    flood = [unknown_food(f"x{i}", label=f"made-up-{i}") for i in range(gap.MAX_LABELS_PER_DAY + 50)]
    state, alerts = run(flood)
    assert len(alerts) == gap.MAX_LABELS_PER_DAY
    assert sum(len(v) for v in state.values()) == gap.MAX_LABELS_PER_DAY
    # Two days on, the first day's state is gone, and a record that late raises nothing.
    later = T0 + 2 * DAY
    state, alerts = run([unknown_food("late", label="made-up-999", t=T0), unknown_food("y", t=later)],
                        state, watermark=later)
    assert list(state) == [str(local_day(later))]
    assert [a.evidence for a in alerts] == [("y",)]


def test_engine_runs_the_gap_detector_once_per_result() -> None:
    tables = empty_tables()
    alerts: list[Alert] = []
    for batch in ([unknown_food("e1")], [unknown_food("e1")], [unknown_food("e2", t=T0 + HOUR)]):
        out = engine_step(tables, batch, P)
        apply_all(tables, out.updates)
        alerts.extend(out.alerts)
    assert [a.kind for a in alerts] == ["reference_gap"]
    assert tables["gap"]
