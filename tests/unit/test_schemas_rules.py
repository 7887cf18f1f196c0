"""screen(): table-driven from every docs/domain.md value, edge cases, and hypothesis properties."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from schemas.codes import QUICK_METHODS, Confidence, Method
from schemas.reference import ALL_FOODS, CHINA_TZ, default_reference
from schemas.result import MAX_PERCENT, MAX_PLAUSIBLE_MG_KG, Result, parse_result
from schemas.rules import screen, screen_naive
from schemas.verdict import SEVERITY, Rule, Verdict, VerdictKind, severity
from tests.bench.bench_screen import example_message, generate_messages
from tests.unit.test_schemas_reference import DOMAIN_MRLS

REF = default_reference()
NOW = datetime(2030, 1, 1, tzinfo=UTC)
V = VerdictKind


def china(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=CHINA_TZ)


def make(
    analyte: str,
    commodity: str,
    *,
    value: float | None = None,
    day: date = date(2025, 6, 15),
    when: datetime | None = None,
    method: str | None = None,
    unit: str = "mg/kg",
    loq: float | None = None,
    lod: float | None = None,
    qualitative: str | None = None,
) -> Result:
    sampled = when if when is not None else china(day)
    if method is None:
        analyte_row = REF.analyte(analyte)
        method = "icp_ms" if analyte_row is not None and analyte_row.type == "contaminant" else "lc_msms"
    msg: dict[str, Any] = example_message(
        analyte=analyte,
        commodity=commodity,
        method=method,
        value=value,
        unit=unit if value is not None or loq is not None or lod is not None else None,
        lod=lod,
        loq=loq,
        qualitative=qualitative,
        sampled_at=sampled.isoformat(),
        tested_at=(sampled + timedelta(hours=3)).isoformat(),
    )
    return parse_result(orjson.dumps(msg), reference=REF, now=NOW)


def both(result: Result, **kw: Any) -> Verdict:
    """screen, checked against screen_naive on every call."""
    verdict = screen(result, REF, **kw)
    assert screen_naive(result, REF, **kw) == verdict
    return verdict


def member(food: str) -> str:
    """A commodity to test a food's limit with (a group's member that has no limit of its own)."""
    return {"legume_vegetables": "cowpea", "vegetables": "spinach"}.get(food, food)


# --- every docs/domain.md pesticide MRL ------------------------------------------------------------------------


@pytest.mark.parametrize(("analyte", "food", "limit", "mark"), DOMAIN_MRLS)
def test_domain_mrl_verdicts(analyte: str, food: str, limit: float, mark: Confidence) -> None:
    commodity = member(food)
    day = date(2024, 6, 15)  # GB 2763-2021 in force; before the 2024-09-01 bans
    banned = REF.ban_in_force(analyte, commodity, china(day)) is not None
    expected_fields = {"limit_mg_kg": limit, "edition": "GB 2763-2021", "confidence": mark, "limit_food": food}
    if banned:
        v = both(make(analyte, commodity, value=limit * 0.2, day=day))
        assert v.verdict is V.banned and v.rule == Rule.ban
    else:
        over = both(make(analyte, commodity, value=limit * 1.01, day=day))
        assert over.verdict is V.exceeds and over.rule == Rule.mrl
        assert over.model_dump(include=set(expected_fields)) == expected_fields
        assert over.ratio == pytest.approx(1.01)
        assert "GB 2763-2021" in over.basis and food in over.basis and mark.value in over.basis
        assert both(make(analyte, commodity, value=limit, day=day)).verdict is V.watch  # equal is not over
        assert both(make(analyte, commodity, value=limit * 0.5, day=day)).verdict is V.watch
        assert both(make(analyte, commodity, value=limit * 0.49, day=day)).verdict is V.compliant
    # a quick test reading mg/kg is read against the same limit, and says positive at most; a banned
    # pesticide on a semi-quantitative strip is positive whatever its amount (rule quick_ban)
    quick = both(make(analyte, commodity, value=limit * 1.01, day=day, method="colloidal_gold"))
    if banned:
        assert quick.verdict is V.positive and quick.rule == Rule.quick_ban
        low = both(make(analyte, commodity, value=limit * 0.2, day=day, method="colloidal_gold"))
        assert (low.verdict, low.rule) == (V.positive, Rule.quick_ban)
    else:
        assert quick.verdict is V.positive and quick.rule == Rule.quick_limit
        assert quick.model_dump(include=set(expected_fields)) == expected_fields
    # GB 2763-2026 (from 2026-03-01): the value carried forward, marked unverified
    later = both(make(analyte, commodity, value=limit * 1.01, day=date(2026, 4, 15)))
    if REF.ban_in_force(analyte, commodity, china(date(2026, 4, 15))) is None:
        assert (later.limit_mg_kg, later.edition, later.confidence) == (limit, "GB 2763-2026", Confidence.unverified)
    hit = REF.limit_in_force(analyte, commodity, china(date(2026, 4, 15)))
    assert hit is not None
    assert (hit[0].limit_mg_kg, hit[0].edition, hit[0].confidence) == (limit, "GB 2763-2026", Confidence.unverified)


def test_edition_switches_at_midnight_china_time() -> None:
    last_2021 = datetime(2026, 2, 28, 23, 59, 59, tzinfo=CHINA_TZ)
    first_2026 = datetime(2026, 3, 1, 0, 0, 0, tzinfo=CHINA_TZ)
    assert both(make("clothianidin", "cowpea", value=0.004, when=last_2021)).edition == "GB 2763-2021"
    assert both(make("clothianidin", "cowpea", value=0.004, when=first_2026)).edition == "GB 2763-2026"


def test_no_limit_before_the_first_edition_here() -> None:
    v = both(make("clothianidin", "cowpea", value=0.5, day=date(2021, 9, 2)))
    assert v.verdict is V.no_limit and v.rule == Rule.no_limit


# --- every docs/domain.md contaminant limit ------------------------------------------------------------------

CONTAMINANT_CASES = [
    # (analyte, commodity, limit, food whose limit applies, mark)
    ("lead", "pepper", 0.1, "vegetables", Confidence.old),
    ("lead", "cabbage", 0.2, "brassica_vegetables", Confidence.checked),
    ("lead", "spinach", 0.3, "leafy_vegetables", Confidence.old),
    ("lead", "chinese_cabbage", 0.3, "leafy_vegetables", Confidence.old),
    ("lead", "cowpea", 0.2, "legume_vegetables", Confidence.old),
    ("cadmium", "pepper", 0.05, "vegetables", Confidence.checked),
    ("cadmium", "cabbage", 0.05, "vegetables", Confidence.checked),
    ("cadmium", "celery", 0.2, "leafy_vegetables", Confidence.old),
    ("cadmium", "cowpea", 0.1, "legume_vegetables", Confidence.old),
    ("mercury", "spinach", 0.01, "vegetables", Confidence.checked),
    ("mercury", "cabbage", 0.01, "vegetables", Confidence.checked),
    ("arsenic", "cowpea", 0.5, "vegetables", Confidence.checked),
    ("arsenic", "leek", 0.5, "vegetables", Confidence.checked),
    ("chromium", "pepper", 0.5, "vegetables", Confidence.checked),
    ("chromium", "cabbage", 0.5, "vegetables", Confidence.checked),
    ("lead", "rice", 0.2, "rice", Confidence.old),
    ("cadmium", "rice", 0.2, "rice", Confidence.old),
    ("mercury", "rice", 0.02, "rice", Confidence.unverified),
    ("inorganic_arsenic", "rice", 0.2, "rice", Confidence.old),
    ("chromium", "rice", 1.0, "rice", Confidence.unverified),
    ("lead", "pork", 0.2, "meat", Confidence.old),
    ("cadmium", "pork", 0.1, "meat", Confidence.unverified),
    ("mercury", "pork", 0.05, "meat", Confidence.unverified),
    ("chromium", "pork", 1.0, "meat", Confidence.unverified),
    ("lead", "offal", 0.5, "offal", Confidence.old),
    ("lead", "fish", 0.5, "fish", Confidence.old),
    ("cadmium", "fish", 0.1, "fish", Confidence.unverified),
    ("methylmercury", "fish", 0.5, "fish", Confidence.checked),
    ("inorganic_arsenic", "fish", 0.1, "fish", Confidence.unverified),
    ("chromium", "fish", 2.0, "fish", Confidence.checked),
    ("methylmercury", "predatory_fish", 1.0, "predatory_fish", Confidence.checked),
    ("lead", "predatory_fish", 0.5, "fish", Confidence.old),
]


@pytest.mark.parametrize(("analyte", "commodity", "limit", "food", "mark"), CONTAMINANT_CASES)
def test_domain_contaminant_verdicts(analyte: str, commodity: str, limit: float, food: str, mark: Confidence) -> None:
    over = both(make(analyte, commodity, value=limit * 1.01))
    assert over.verdict is V.exceeds and over.rule == Rule.contaminant
    assert (over.limit_mg_kg, over.limit_food, over.confidence, over.edition) == (limit, food, mark, "GB 2762-2022")
    assert both(make(analyte, commodity, value=limit * 0.99)).verdict is V.watch
    assert both(make(analyte, commodity, value=limit * 0.1)).verdict is V.compliant
    xrf = both(make(analyte, commodity, value=limit * 1.01, method="xrf"))
    assert xrf.verdict is V.positive and xrf.rule == Rule.quick_limit  # a quick test over the limit
    assert both(make(analyte, commodity, value=limit * 3, day=date(2023, 6, 29))).verdict is V.no_limit


def test_offal_does_not_inherit_meat_limits() -> None:
    assert both(make("cadmium", "offal", value=5.0)).verdict is V.no_limit


def test_most_specific_food_wins() -> None:
    v = both(make("lead", "cowpea", value=0.15))  # vegetables 0.1 would say exceeds
    assert (v.verdict, v.limit_mg_kg, v.limit_food) == (V.watch, 0.2, "legume_vegetables")


# --- totals and species -----------------------------------------------------------------------------------


def test_total_mercury_against_the_methylmercury_limit() -> None:
    over = both(make("mercury", "fish", value=0.6, method="afs"))
    assert (over.verdict, over.rule, over.limit_mg_kg) == (V.watch, Rule.speciated, 0.5)
    assert "methylmercury limit applied to mercury" in over.basis
    assert both(make("mercury", "fish", value=0.2, method="afs")).verdict is V.compliant
    assert both(make("mercury", "predatory_fish", value=0.9, method="afs")).limit_mg_kg == 1.0
    assert both(make("methylmercury", "fish", value=0.6)).verdict is V.exceeds


def test_total_arsenic_in_rice_against_inorganic() -> None:
    v = both(make("arsenic", "rice", value=0.25))
    assert (v.verdict, v.rule, v.limit_food) == (V.watch, Rule.speciated, "rice")
    assert both(make("arsenic", "rice", value=0.05)).verdict is V.compliant


def test_own_total_limit_wins_over_species() -> None:
    v = both(make("mercury", "rice", value=0.03))
    assert (v.verdict, v.rule) == (V.exceeds, Rule.contaminant)


def test_species_without_limit_is_no_limit() -> None:
    assert both(make("methylmercury", "spinach", value=0.5)).verdict is V.no_limit


# --- bans ---------------------------------------------------------------------------------------------------


def test_banned_takes_precedence_over_exceeds() -> None:
    v = both(make("carbofuran", "cowpea", value=0.5, loq=0.005))
    assert (v.verdict, v.rule, v.limit_mg_kg, v.ratio) == (V.banned, Rule.ban, None, None)
    assert v.limit_food == "vegetables" and v.confidence == Confidence.unverified
    after = both(make("carbofuran", "cowpea", value=0.01, loq=0.005, day=date(2026, 6, 1)))
    assert (after.verdict, after.limit_food, after.edition) == (V.banned, ALL_FOODS, "MARA announcement 736")
    assert after.confidence == Confidence.checked


@pytest.mark.parametrize(
    ("value", "loq", "verdict"),
    [
        (0.004, 0.005, V.watch),  # below LOQ: detected, not quantified: a follow-up (ban_trace)
        (0.005, 0.005, V.banned),  # at LOQ: detected
        (0.0, None, V.compliant),  # no LOQ: 0 is not detected
        (0.0001, None, V.banned),  # no LOQ: > 0 is detected
    ],
)
def test_detection_rule(value: float, loq: float | None, verdict: VerdictKind) -> None:
    assert both(make("carbofuran", "cowpea", value=value, loq=loq)).verdict is verdict


def test_loq_in_micrograms() -> None:
    r = make("carbofuran", "cowpea", value=4, loq=5, unit="µg/kg")
    assert (both(r).verdict, both(r).rule) == (V.watch, Rule.ban_trace)
    assert both(make("carbofuran", "cowpea", value=5, loq=5, unit="ug/kg")).verdict is V.banned


@pytest.mark.parametrize(
    ("when", "verdict"),
    [
        (datetime(2024, 8, 31, 23, 59, 59, tzinfo=CHINA_TZ), V.exceeds),
        (datetime(2024, 8, 31, 15, 59, 59, tzinfo=UTC), V.exceeds),
        (datetime(2024, 8, 31, 16, 0, 0, tzinfo=UTC), V.banned),  # 2024-09-01 00:00 in China
        (datetime(2024, 9, 1, 0, 0, 0, tzinfo=CHINA_TZ), V.banned),
        (datetime(2025, 9, 1, 0, 0, 0, tzinfo=CHINA_TZ), V.banned),
    ],
)
def test_ban_applies_from_its_effective_date(when: datetime, verdict: VerdictKind) -> None:
    # rice lies outside the 2002 scopes (vegetables, fruit, tea, herbal crops): only the 2024 ban reaches it
    assert both(make("phorate", "rice", value=0.05, when=when)).verdict is verdict


def test_the_2002_scopes_ban_phorate_on_vegetables_long_before_2024() -> None:
    v = both(make("phorate", "leek", value=0.02, day=date(2023, 5, 1)))
    assert v.verdict is V.banned and "announcement 199" in v.basis


def test_group_ban_does_not_cover_other_foods_until_all_foods_ban() -> None:
    # carbofuran: vegetables, fruit, tea and herbal crops from 2002 (announcement 199), every food from 2026-06-01
    assert both(make("carbofuran", "banana", value=0.01, day=date(2026, 5, 31))).verdict is V.banned
    assert both(make("carbofuran", "rice", value=0.01, day=date(2026, 5, 31))).verdict is V.compliant
    assert both(make("carbofuran", "rice", value=0.01, day=date(2026, 6, 1))).verdict is V.banned
    # chlorpyrifos is banned on vegetables only: on banana its MRL applies
    assert both(make("chlorpyrifos", "banana", value=0.01, day=date(2026, 6, 1))).verdict is V.compliant
    assert both(make("chlorpyrifos", "celery", value=0.01, day=date(2016, 12, 31))).verdict is V.banned


def test_all_foods_ban_covers_unknown_food() -> None:
    v = both(make("methamidophos", "okra", value=0.01))
    assert v.verdict is V.banned
    assert both(make("carbofuran", "okra", value=0.01, day=date(2026, 1, 1))).verdict is V.unclassified
    trace = both(make("methamidophos", "okra", value=0.001, loq=0.002))
    assert (trace.verdict, trace.rule) == (V.watch, Rule.ban_trace)
    # not detected on a food nobody classified: not a finding, so the unknown label shows
    below_lod = both(make("methamidophos", "okra", value=0.0005, lod=0.001, loq=0.002))
    assert (below_lod.verdict, below_lod.rule) == (V.unclassified, Rule.unknown_food)
    not_detected = both(make("methamidophos", "pork", value=0.0005, lod=0.001, loq=0.002))
    assert (not_detected.verdict, not_detected.rule) == (V.compliant, Rule.ban)
    assert not_detected.basis.startswith("not detected")


def test_quick_tests_never_say_banned() -> None:
    strip = both(make("methamidophos", "spinach", qualitative="positive", method="colloidal_gold"))
    assert strip.verdict is V.positive and strip.rule == Rule.quick_qualitative
    # mushroom: ethoprophos has no MRL there (it has one on vegetables), and it is banned on every food
    no_mrl = both(make("ethoprophos", "mushroom", value=0.01, method="colloidal_gold", day=date(2025, 1, 1)))
    assert (no_mrl.verdict, no_mrl.rule) == (V.positive, Rule.quick_ban)
    below = both(make("ethoprophos", "mushroom", value=0.001, loq=0.002, method="colloidal_gold"))
    assert (below.verdict, below.rule) == (V.watch, Rule.ban_trace)


def test_lab_qualitative_positive_of_banned_is_banned() -> None:
    assert both(make("methamidophos", "spinach", qualitative="positive")).verdict is V.banned
    assert both(make("methamidophos", "spinach", qualitative="negative")).verdict is V.compliant


def test_lab_qualitative_against_limit() -> None:
    v = both(make("clothianidin", "cowpea", qualitative="positive"))
    assert (v.verdict, v.rule, v.limit_mg_kg) == (V.watch, Rule.detected, 0.01)
    assert both(make("clothianidin", "cowpea", qualitative="negative")).verdict is V.compliant
    assert both(make("spinosad", "cowpea", qualitative="positive")).verdict is V.unclassified


# --- quick tests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "verdict"),
    [
        (0.0, V.compliant),
        (39.9, V.compliant),
        (40.0, V.watch),
        (49.9, V.watch),
        (50.0, V.positive),
        (100.0, V.positive),
    ],
)
def test_enzyme_cutoffs(percent: float, verdict: VerdictKind) -> None:
    v = both(make("ache_inhibition", "leek", value=percent, unit="%", method="enzyme_inhibition"))
    assert (v.verdict, v.rule, v.limit_mg_kg, v.edition) == (verdict, Rule.quick_cutoff, None, "GB/T 5009.199-2003")
    assert v.ratio == pytest.approx(percent / 50)


def test_enzyme_cutoff_is_configurable() -> None:
    ref40 = REF.with_cutoff(Method.enzyme_inhibition, "ache_inhibition", positive_at=40, watch_from=30)
    r = make("ache_inhibition", "cowpea", value=42, unit="%", method="enzyme_inhibition")
    assert screen(r, REF).verdict is V.watch
    assert screen(r, ref40).verdict is V.positive
    assert screen_naive(r, ref40).verdict is V.positive
    assert "configured" in screen(r, ref40).basis


def test_enzyme_read_outs() -> None:
    pos = both(make("ache_inhibition", "cowpea", qualitative="positive", method="enzyme_inhibition"))
    assert (pos.verdict, pos.rule) == (V.positive, Rule.quick_qualitative)
    mg = both(make("ache_inhibition", "cowpea", value=0.3, method="enzyme_inhibition"))
    assert (mg.verdict, mg.rule) == (V.no_limit, Rule.unit_mismatch)
    # the enzyme screen is keyed on the method, whatever the device calls the analyte
    for label in ("organophosphates", "农药残留", "有机磷和氨基甲酸酯类农药", "AChE", "chlorpyrifos"):
        labelled = both(make(label, "cowpea", value=70, unit="%", method="enzyme_inhibition"))
        assert (labelled.verdict, labelled.rule) == (V.positive, Rule.quick_cutoff), label


def test_percent_from_a_lab_or_xrf() -> None:
    assert both(make("lead", "rice", value=12, unit="%")).rule == Rule.unit_mismatch
    assert both(make("lead", "rice", value=12, unit="%", method="xrf")).verdict is V.no_limit


def test_strip_read_outs_carry_the_limit_for_context() -> None:
    v = both(make("carbofuran", "cowpea", qualitative="positive", method="colloidal_gold"))
    assert (v.verdict, v.limit_mg_kg, v.ratio) == (V.positive, 0.02, None)
    neg = both(make("spinosad", "okra", qualitative="negative", method="colloidal_gold"))
    assert (neg.verdict, neg.limit_mg_kg, neg.rule) == (V.unclassified, None, Rule.unknown_food)


def test_invalid_test_is_no_limit() -> None:
    for method in ("colloidal_gold", "enzyme_inhibition", "lc_msms"):
        v = both(make("carbofuran", "cowpea", qualitative="invalid", method=method))
        assert (v.verdict, v.rule) == (V.no_limit, Rule.invalid_test)


def test_unknown_commodity_or_analyte_is_unclassified() -> None:
    for analyte, commodity, rule in (
        ("clothianidin", "okra_from_mars", Rule.unknown_food),
        ("spinosad_x", "cowpea", Rule.unknown_analyte),
        ("x", "y", Rule.unknown_food),
    ):
        v = both(make(analyte, commodity, value=1.0))
        assert (v.verdict, v.limit_mg_kg, v.rule) == (V.unclassified, None, rule)
        assert analyte in v.basis and commodity in v.basis


def test_known_food_and_analyte_without_limit_is_no_limit() -> None:
    v = both(make("lead", "banana", value=0.01, day=date(2020, 1, 1)))  # before GB 2762-2022 here
    assert (v.verdict, v.rule) == (V.no_limit, Rule.no_limit)


def test_watch_fraction_parameter() -> None:
    r = make("clothianidin", "cowpea", value=0.004)
    assert both(r).verdict is V.compliant
    assert both(r, watch_fraction=0.3).verdict is V.watch
    assert both(r, watch_fraction=0.0).verdict is V.watch
    with pytest.raises(ValueError, match="watch_fraction"):
        screen(r, REF, watch_fraction=1.5)
    with pytest.raises(ValueError, match="watch_fraction"):
        screen_naive(r, REF, watch_fraction=-0.1)


def test_severity_order() -> None:
    order = [V.compliant, V.watch, V.positive, V.exceeds, V.banned]
    assert [SEVERITY[k] for k in order] == sorted(SEVERITY[k] for k in order)
    assert len({SEVERITY[k] for k in order}) == 5
    assert SEVERITY[V.no_limit] < SEVERITY[V.compliant]
    assert severity("banned") == 4 and set(SEVERITY) == set(VerdictKind)


# --- properties -------------------------------------------------------------------------------------------

FOODS = [f.code for f in REF.foods] + ["okra"]
ANALYTES = [a.code for a in REF.analytes] + ["spinosad"]
_BOUNDARIES = sorted(
    {china(d, 0) for d in [b.effective_from for b in REF.bans] + [lim.effective_from for lim in REF.limits]}
)
_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
_SPAN = int((datetime(2028, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds())

instants = st.one_of(
    st.integers(0, _SPAN).map(lambda s: _EPOCH + timedelta(seconds=s)),
    st.builds(lambda b, d: b + timedelta(seconds=d), st.sampled_from(_BOUNDARIES), st.integers(-2, 2)),
)
# amounts with at most 6 significant digits, as instruments report them
amounts = st.builds(lambda m, e: float(Decimal(m).scaleb(e)), st.integers(0, 999_999), st.integers(-9, -2))
percents = st.builds(lambda m: float(Decimal(m).scaleb(-2)), st.integers(0, 10_000))  # 0-100.00 %


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments for ``make``: any food, analyte, method, time, reading."""
    kw: dict[str, Any] = {
        "analyte": draw(st.sampled_from(ANALYTES)),
        "commodity": draw(st.sampled_from(FOODS)),
        "method": draw(st.sampled_from([m.value for m in Method])),
        "when": draw(instants),
    }
    if draw(st.booleans()):
        kw["qualitative"] = draw(st.sampled_from(["negative", "positive", "invalid"]))
    else:
        kw["unit"] = draw(st.sampled_from(["mg/kg", "%"]))
        kw["value"] = draw(percents if kw["unit"] == "%" else amounts)
        kw["loq"] = draw(st.one_of(st.none(), percents if kw["unit"] == "%" else amounts))
    return kw


@settings(deadline=None, max_examples=400)
@given(kw=cases(), fraction=st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_screen_equals_naive(kw: dict[str, Any], fraction: float) -> None:
    r = make(**kw)
    assert screen(r, REF, watch_fraction=fraction) == screen_naive(r, REF, watch_fraction=fraction)


def test_screen_equals_naive_on_generated_traffic() -> None:
    for msg in generate_messages(3000, seed=21):
        r = parse_result(msg, reference=REF, now=NOW)
        assert screen(r, REF) == screen_naive(r, REF)


@settings(deadline=None, max_examples=300)
@given(kw=cases(), factor=st.floats(min_value=1.0, max_value=1000.0), bump=amounts)
def test_raising_a_value_never_lowers_severity(kw: dict[str, Any], factor: float, bump: float) -> None:
    assume("value" in kw)
    low = make(**kw)
    ceiling = MAX_PERCENT if kw["unit"] == "%" else MAX_PLAUSIBLE_MG_KG  # beyond it: dead-lettered
    high = make(**{**kw, "value": min(kw["value"] * factor + bump, ceiling)})
    assert screen(high, REF).severity >= screen(low, REF).severity


@settings(deadline=None, max_examples=300)
@given(kw=cases(), micrograms=st.integers(0, 10**7), loq_ug=st.one_of(st.none(), st.integers(0, 10**5)))
def test_micrograms_and_milligrams_give_the_same_verdict(
    kw: dict[str, Any], micrograms: int, loq_ug: int | None
) -> None:
    kw = {k: v for k, v in kw.items() if k != "qualitative"}
    ug = Decimal(micrograms).scaleb(-2)  # e.g. 1234.56 µg/kg
    loq = None if loq_ug is None else Decimal(loq_ug).scaleb(-2)
    in_ug = make(**{**kw, "value": float(ug), "unit": "µg/kg", "loq": None if loq is None else float(loq)})
    in_mg = make(
        **{**kw, "value": float(ug / 1000), "unit": "mg/kg", "loq": None if loq is None else float(loq / 1000)}
    )
    assert in_ug.value_mg_kg == in_mg.value_mg_kg
    assert screen(in_ug, REF) == screen(in_mg, REF)


_CHILDREN = [f for f in REF.foods if f.parent is not None]


@settings(deadline=None, max_examples=300)
@given(
    food=st.sampled_from(_CHILDREN),
    analyte=st.sampled_from(sorted({lim.analyte for lim in REF.limits} | {"mercury", "arsenic"})),
    when=instants,
    value=amounts,
    method=st.sampled_from(["lc_msms", "icp_ms", "xrf", "colloidal_gold"]),
)
def test_food_without_own_limit_gets_its_groups(
    food: Any, analyte: str, when: datetime, value: float, method: str
) -> None:
    species = REF.analyte(analyte).speciated_as  # type: ignore[union-attr]  # analytes with limits exist
    own = [
        lim for lim in REF.limits if lim.food == food.code and lim.analyte in {analyte, species} and lim.in_force(when)
    ]
    assume(not own)
    assume(all(b.scope != food.code for b in REF.bans))
    on_food = screen(make(analyte, food.code, value=value, when=when, method=method), REF)
    on_group = screen(make(analyte, food.parent, value=value, when=when, method=method), REF)
    fields = ("verdict", "limit_mg_kg", "ratio", "rule", "edition", "confidence", "limit_food")
    assert on_food.model_dump(include=set(fields)) == on_group.model_dump(include=set(fields))


_BANNED = sorted({b.analyte for b in REF.bans})


def _ban_windows(analyte: str, commodity: str) -> list[tuple[date, date | None]]:
    """The days a ban on ``analyte`` covers ``commodity``, read straight from the table."""
    covering = set(REF.ancestors(commodity)) | {ALL_FOODS}
    return [(b.effective_from, b.effective_to) for b in REF.bans if b.analyte == analyte and b.scope in covering]


@settings(deadline=None, max_examples=400)
@given(
    analyte=st.sampled_from(_BANNED),
    commodity=st.sampled_from(FOODS),
    when=instants,
    value=st.floats(min_value=0.001, max_value=10),
)
def test_ban_only_applies_from_its_effective_date(analyte: str, commodity: str, when: datetime, value: float) -> None:
    day = when.astimezone(CHINA_TZ).date()
    in_force = any(start <= day and (end is None or day < end) for start, end in _ban_windows(analyte, commodity))
    verdict = screen(make(analyte, commodity, value=value, when=when), REF).verdict
    assert (verdict is V.banned) == in_force


@settings(deadline=None, max_examples=200)
@given(kw=cases())
def test_quick_tests_never_exceed_or_ban(kw: dict[str, Any]) -> None:
    r = make(**kw)
    if r.method in QUICK_METHODS:
        assert screen(r, REF).verdict not in (V.exceeds, V.banned)
    else:
        assert screen(r, REF).verdict is not V.positive


@settings(deadline=None, max_examples=100)
@given(kw=cases())
def test_screen_is_deterministic_and_leaves_its_input(kw: dict[str, Any]) -> None:
    r = make(**kw)
    before = copy.deepcopy(r.model_dump())
    first = screen(r, REF)
    assert screen(r, REF) == first
    assert r.model_dump() == before
    assert Verdict.model_validate_json(first.model_dump_json()) == first
