"""Nothing passes in silence (issue 19 item 4, the shell side): an ``unclassified`` verdict is carried
to the early-warning agent with its rule, counted by field, and read back from older records."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from prometheus_client import CollectorRegistry

import agents.batch
from agents.batch import Incoming, screen_batch
from agents.metrics import count_unclassified, create
from agents.screened import Screened, decode_batch, encode_batch, gap_field, screened_record
from schemas.reference import default_reference
from schemas.result import Result
from schemas.rules import screen
from schemas.verdict import Rule, Verdict, VerdictKind
from sinks.ddl import RESULTS_COLUMNS
from tests.early.records import rec
from tests.integration.factories import encode, result

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def unclassified(rule: Rule) -> Verdict:
    return Verdict(verdict=VerdictKind.unclassified, limit_mg_kg=None, ratio=None, rule=str(rule), edition=None,
                   source=None, confidence=None, limit_food=None, basis="not in the reference data")


def _screen_unknown_labels(r: Result, reference: object, **kw: object) -> Verdict:
    """``schemas.rules.screen`` as it reads once unknown labels are unclassified (the lead's change):
    the commodity is looked up first."""
    ref = default_reference()
    if ref.commodity(r.commodity) is None:
        return unclassified(Rule.unknown_food)
    if ref.analyte(r.analyte) is None:
        return unclassified(Rule.unknown_analyte)
    return screen(r, ref, **kw)  # type: ignore[arg-type]  # watch_fraction passed through


def test_gap_field_names_the_unknown_label() -> None:
    assert gap_field("unknown_food") == "commodity"
    assert gap_field("unknown_analyte") == "analyte"
    assert gap_field(None) == "commodity"


def test_unclassified_results_counted_by_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents.batch, "screen", _screen_unknown_labels)
    values = [
        encode(result("u1", commodity="dragon_beans")),
        encode(result("u2", commodity="dragon_beans")),
        encode(result("u3", analyte="pesticide_x", method="lc_msms", value=0.1, unit="mg/kg")),
        encode(result("ok", commodity="cowpea")),
    ]
    items = [Incoming("foodrisk.results", 0, i, None, None, v) for i, v in enumerate(values)]
    out = screen_batch(items, reference=default_reference(), columns=RESULTS_COLUMNS, watch_fraction=0.5, now=NOW)
    assert out.unclassified == {"commodity": 2, "analyte": 1}
    assert [r.rule for r in out.screened][:3] == ["unknown_food", "unknown_food", "unknown_analyte"]
    assert out.alerts == []  # an unknown label raises no single-result alert (the early-warning side does)

    registry = CollectorRegistry()
    m = create(registry)
    assert registry.get_sample_value("foodrisk_unclassified_results_total", {"field": "analyte"}) == 0
    count_unclassified(m, out.unclassified)
    count_unclassified(m, {"method": 1})  # a field this code does not know stays bounded
    get = registry.get_sample_value
    assert get("foodrisk_unclassified_results_total", {"field": "commodity"}) == 2
    assert get("foodrisk_unclassified_results_total", {"field": "analyte"}) == 1
    assert get("foodrisk_unclassified_results_total", {"field": "other"}) == 1


def test_screened_record_carries_the_rule_and_older_records_still_decode() -> None:
    r = Result.model_validate(result("x1", commodity="dragon_beans"))
    s = screened_record(r, unclassified(Rule.unknown_food))
    assert s.rule == "unknown_food" and s.verdict == "unclassified"
    assert decode_batch(encode_batch([s])) == [s]
    # Records written before the rule field: an array one shorter, or an object without "rule".
    old = rec("o1")
    legacy_array = orjson.dumps([list(old)[:-1]])
    legacy_object = orjson.dumps([{k: v for k, v in old._asdict().items() if k != "rule"}])
    assert decode_batch(legacy_array) == [old._replace(rule=None)]
    assert decode_batch(legacy_object) == [old._replace(rule=None)]
    mixed = orjson.dumps([list(old), list(old)[:-1]])
    assert decode_batch(mixed) == [old, old._replace(rule=None)]
    with pytest.raises(ValueError, match="not a screened batch"):
        decode_batch(orjson.dumps([list(old)[:-2]]))
    assert isinstance(decode_batch(legacy_array)[0], Screened)
