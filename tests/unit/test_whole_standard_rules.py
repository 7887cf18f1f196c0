"""Issue 19 rules 4-6: nothing passes in silence, detection as a lab reads it, residue sums."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.batch import Incoming, screen_batch
from schemas.codes import Confidence, Method
from schemas.reference import CHINA_TZ, Limit, LimitKind, Reference, default_reference, snake
from schemas.result import InvalidResult, Result, parse_result
from schemas.rules import screen, screen_naive
from schemas.sums import SumBook
from schemas.verdict import Rule, Verdict, VerdictKind
from sinks.ddl import RESULTS_COLUMNS
from tests.integration.factories import result as message

REF = default_reference()
V = VerdictKind
NOW = datetime(2030, 1, 1, tzinfo=UTC)
SAMPLED = datetime(2025, 6, 15, 9, 0, tzinfo=CHINA_TZ)


def lab(analyte: str, commodity: str, value: float | None, *, ref: Reference = REF, **extra: Any) -> Result:
    extra.setdefault("sampled_at", SAMPLED)
    d = message("r1", commodity=commodity, analyte=analyte, method="lc_msms", value=value, unit="mg/kg", **extra)
    return parse_result(orjson.dumps(d), reference=ref, now=NOW)


def judged(r: Result, ref: Reference = REF) -> Verdict:
    v = screen(r, ref)
    assert v == screen_naive(r, ref)
    return v


# --- 5. detection as a lab reads it ------------------------------------------------------------------------


def test_below_lod_is_not_detected() -> None:
    # clothianidin on cowpea, limit 0.01: 0.004 below an LOD of 0.005 is not detected
    v = judged(lab("clothianidin", "cowpea", 0.004, lod=0.005, loq=0.008))
    assert v.verdict is V.compliant


def test_lod_above_the_limit_cannot_show_compliance() -> None:
    v = judged(lab("clothianidin", "cowpea", 0.001, lod=0.02, loq=0.05))
    assert (v.verdict, v.rule) == (V.inconclusive, Rule.loq_above_limit)
    assert "cannot show compliance" in v.basis


def test_value_below_an_loq_above_the_limit_is_not_an_exceedance() -> None:
    # 0.015 is over the 0.01 limit, but below the method's LOQ of 0.05: not quantified
    v = judged(lab("clothianidin", "cowpea", 0.015, lod=0.005, loq=0.05))
    assert (v.verdict, v.rule) == (V.inconclusive, Rule.loq_above_limit)
    quantified = judged(lab("clothianidin", "cowpea", 0.06, lod=0.005, loq=0.05))
    assert quantified.verdict is V.exceeds


def test_banned_between_lod_and_loq_is_a_follow_up_not_a_legal_finding() -> None:
    trace = judged(lab("methamidophos", "rice", 0.003, lod=0.001, loq=0.005))
    assert (trace.verdict, trace.rule) == (V.watch, Rule.ban_trace)
    assert "not a legal finding" in trace.basis
    assert judged(lab("methamidophos", "rice", 0.006, lod=0.001, loq=0.005)).verdict is V.banned
    assert judged(lab("methamidophos", "rice", 0.0005, lod=0.001, loq=0.005)).verdict is V.compliant


@pytest.mark.parametrize(
    ("value", "unit", "method", "field"),
    [
        (120, "%", "enzyme_inhibition", "value"),
        (100.5, "%", "enzyme_inhibition", "value"),
        (1e7, "mg/kg", "lc_msms", "value"),
        (2e7, "µg/kg", "xrf", "value"),
    ],
)
def test_implausible_readings_are_dead_lettered_with_a_reason(value: float, unit: str, method: str, field: str) -> None:
    d = message("r1", value=value, unit=unit, method=method, analyte="lead", commodity="rice")
    with pytest.raises(InvalidResult) as caught:
        parse_result(orjson.dumps(d), reference=REF, now=NOW)
    (error,) = caught.value.errors
    assert error.field == field and ("inhibition" in error.reason or "plausible" in error.reason)


def test_edges_of_plausible_readings_are_accepted() -> None:
    for value, unit, method in ((100, "%", "enzyme_inhibition"), (0, "%", "enzyme_inhibition"), (9999, "mg/kg", "xrf")):
        d = message("r1", value=value, unit=unit, method=method, analyte="lead", commodity="rice")
        parse_result(orjson.dumps(d), reference=REF, now=NOW)


ENZYME_LABELS = ["农药残留", "有机磷和氨基甲酸酯类农药", "有机磷和氨基甲酸酯类", "AChE", "酶抑制率", "pesticides"]


@pytest.mark.parametrize("label", ENZYME_LABELS)
def test_enzyme_screen_is_keyed_on_the_method(label: str) -> None:
    d = message("r1", analyte=label, method="enzyme_inhibition", value=55.0, unit="%", commodity="菜心")
    r = parse_result(orjson.dumps(d), reference=REF, now=NOW)
    assert r.analyte == REF.screen_analyte(Method.enzyme_inhibition) == "ache_inhibition"
    assert screen(r, REF).rule == Rule.quick_cutoff


def test_banned_pesticide_on_a_semi_quantitative_strip_is_positive() -> None:
    d = message("r1", analyte="methamidophos", method="colloidal_gold", value=0.01, unit="mg/kg", commodity="spinach",
                sampled_at=SAMPLED)
    r = parse_result(orjson.dumps(d), reference=REF, now=NOW)
    v = screen(r, REF)
    assert (v.verdict, v.rule) == (V.positive, Rule.quick_ban)  # under its 0.05 limit, and still positive


# --- 4. nothing passes in silence ---------------------------------------------------------------------------

_KNOWN = {f.code for f in REF.foods} | {a.code for a in REF.analytes}
labels = st.text(alphabet=st.sampled_from("abcxyz_蔬菜果肉鱼虾1"), min_size=1, max_size=12).filter(
    lambda t: snake(t) != "" and REF.normalise_commodity(t) not in _KNOWN and REF.normalise_analyte(t) not in _KNOWN
)


@settings(deadline=None, max_examples=300)
@given(
    label=labels,
    which=st.sampled_from(["commodity", "analyte"]),
    method=st.sampled_from([m.value for m in Method if m is not Method.enzyme_inhibition]),
    reading=st.one_of(
        st.tuples(st.floats(0, 50), st.just("mg/kg")),
        st.tuples(st.floats(0, 100), st.just("%")),
        st.tuples(st.none(), st.sampled_from(["negative", "positive"])),
    ),
    day=st.dates(date(2015, 1, 1), date(2027, 12, 31)),
)
def test_an_unknown_label_never_yields_no_limit_or_compliant(
    label: str, which: str, method: str, reading: tuple[float | None, str], day: date
) -> None:
    known = {"commodity": "cowpea", "analyte": "clothianidin"}
    known[which] = label
    value, unit_or_read = reading
    when = datetime(day.year, day.month, day.day, 9, tzinfo=CHINA_TZ)
    if value is None:
        d = message("r1", value=None, unit=None, qualitative=unit_or_read, method=method, sampled_at=when, **known)
    else:
        d = message("r1", value=value, unit=unit_or_read, method=method, sampled_at=when, **known)
    r = parse_result(orjson.dumps(d), reference=REF, now=NOW)
    v = screen(r, REF)
    assert v == screen_naive(r, REF)
    assert v.verdict not in (V.no_limit, V.compliant), (v.verdict, v.rule, v.basis)
    if v.verdict is V.unclassified:
        assert v.rule == (Rule.unknown_food if which == "commodity" else Rule.unknown_analyte)


def test_known_food_and_analyte_with_nothing_in_force_stays_no_limit() -> None:
    v = judged(lab("clothianidin", "cowpea", 0.005, sampled_at=datetime(2019, 1, 1, tzinfo=CHINA_TZ)))
    assert (v.verdict, v.rule) == (V.no_limit, Rule.no_limit)


# --- 6. residue definitions: a sum is judged whole ---------------------------------------------------------


def with_rice_limit(limit: float = 0.1) -> Reference:
    """The packaged data, with carbofuran on rice at ``limit`` (no ban covers rice before 2026-06-01)."""
    rows = [lim for lim in REF.limits if not (lim.analyte == "carbofuran" and lim.food == "rice")]
    extra = Limit(
        analyte="carbofuran", food="rice", limit_mg_kg=limit, edition="GB 2763-2021",
        effective_from=date(2021, 9, 3), effective_to=date(2026, 3, 1), source="test", confidence=Confidence.checked,
        kind=LimitKind.mrl,
    )
    return Reference(foods=REF.foods, analytes=REF.analytes, editions=REF.editions.values(),
                     limits=(*rows, extra), bans=REF.bans, cutoffs=REF.cutoffs, residues=REF.residues)


_HYDROXY = REF.definition_of("carbofuran_3_hydroxy")
assert _HYDROXY is not None and _HYDROXY.definition == "carbofuran"
FACTOR = _HYDROXY.factor
SUM = f"{0.06 + 0.05 * FACTOR:g}"  # carbofuran 0.06 + 3-hydroxycarbofuran 0.05, as carbofuran


def test_a_component_alone_is_judged_as_its_definition() -> None:
    ref = with_rice_limit()
    v = judged(lab("3-hydroxycarbofuran", "rice", 0.12 / FACTOR, ref=ref), ref)
    assert (v.verdict, v.limit_mg_kg) == (V.exceeds, 0.1)
    assert "judged as carbofuran" in v.basis


def sample_batch(*parts: tuple[str, float], sample: str = "S-9") -> bytes:
    return orjson.dumps([
        message(f"r{i}", sample_id=sample, commodity="rice", analyte=a, method="lc_msms", value=v, unit="mg/kg",
                sampled_at=SAMPLED, loq=0.01)
        for i, (a, v) in enumerate(parts)
    ])


def run(ref: Reference, values: list[bytes], book: SumBook) -> list[dict[str, object]]:
    items = [Incoming("foodrisk.results", 0, i, 1_764_000_000.0 + i, b"dev-01", v) for i, v in enumerate(values)]
    out = screen_batch(items, reference=ref, columns=RESULTS_COLUMNS, watch_fraction=0.5, now=NOW, sums=book)
    return [dict(zip(RESULTS_COLUMNS, row, strict=True)) for row in out.result_rows]


def test_components_in_one_message_are_summed_before_the_comparison() -> None:
    ref = with_rice_limit()
    rows = run(ref, [sample_batch(("carbofuran", 0.06), ("3-hydroxycarbofuran", 0.05), ("clothianidin", 0.001))],
               SumBook())
    carbofuran, hydroxy, other = rows
    for row in (carbofuran, hydroxy):  # each alone is under 0.1; their sum is over it
        assert row["verdict"] == "exceeds" and row["limit_mg_kg"] == 0.1
        assert "residue definition carbofuran" in str(row["basis"]) and SUM in str(row["basis"])
    assert "residue definition" not in str(other["basis"])
    alone = run(ref, [sample_batch(("carbofuran", 0.06))], SumBook())
    assert alone[0]["verdict"] == "watch"


def test_components_in_separate_messages_are_combined_per_sample_and_never_twice() -> None:
    ref, book = with_rice_limit(), SumBook()
    first = run(ref, [sample_batch(("carbofuran", 0.06))], book)
    assert first[0]["verdict"] == "watch"
    later = orjson.dumps(message("r1b", sample_id="S-9", commodity="rice", analyte="3-hydroxycarbofuran",
                                 method="lc_msms", value=0.05, unit="mg/kg", sampled_at=SAMPLED, loq=0.01))
    second = run(ref, [later], book)
    assert second[0]["verdict"] == "exceeds" and SUM in str(second[0]["basis"])
    replay = run(ref, [later], book)  # the same result again replaces its own part
    assert replay[0]["basis"] == second[0]["basis"]
    other_sample = run(ref, [sample_batch(("3-hydroxycarbofuran", 0.05), sample="S-10")], book)
    assert other_sample[0]["verdict"] == "compliant" and "judged as carbofuran" in str(other_sample[0]["basis"])


def test_the_book_is_bounded_in_time_and_count() -> None:
    ref, book = with_rice_limit(), SumBook(window=timedelta(hours=24), max_samples=3)
    for n in range(10):
        run(ref, [sample_batch(("carbofuran", 0.06), sample=f"S-{n}")], book)
    assert len(book) == 3
    # a part tested more than the window after the sample's first part starts the sum afresh
    late = message("late", sample_id="S-9", commodity="rice", analyte="3-hydroxycarbofuran", method="lc_msms",
                   value=0.05, unit="mg/kg", sampled_at=SAMPLED, loq=0.01,
                   tested_at=(SAMPLED + timedelta(days=3)).isoformat())
    rows = run(ref, [orjson.dumps(late)], book)
    assert rows[0]["verdict"] == "compliant" and "judged as carbofuran" in str(rows[0]["basis"])  # alone


def test_parts_below_their_loq_add_nothing() -> None:
    ref = with_rice_limit()
    rows = run(ref, [sample_batch(("carbofuran", 0.095), ("3-hydroxycarbofuran", 0.008))], SumBook())
    assert rows[0]["verdict"] == "watch"  # 0.008 is under its LOQ of 0.01: the sum stays 0.095


def test_a_banned_trace_raises_a_follow_up_alert_not_a_banned_one() -> None:
    from schemas.alert import KIND_BANNED_TRACE, alert_for_verdict

    r = lab("methamidophos", "rice", 0.003, lod=0.001, loq=0.005)
    alert = alert_for_verdict(r, screen(r, REF))
    assert alert is not None and alert.kind == KIND_BANNED_TRACE
    assert alert.classification == "follow_up" and "Not a legal finding" in alert.summary_en
    quantified = lab("methamidophos", "rice", 0.006, lod=0.001, loq=0.005)
    banned = alert_for_verdict(quantified, screen(quantified, REF))
    assert banned is not None and banned.kind == "banned_pesticide"
