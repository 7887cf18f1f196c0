"""Alerts name the analyte's family (issue 20): the kind by family, ``details.family``, the summaries
and the Alertmanager label ``family``."""

from __future__ import annotations

from datetime import date

import pytest

from schemas.alert import (
    EXCEEDANCE_KINDS,
    FAMILIES,
    FAMILY_NAMES,
    FAMILY_UNKNOWN,
    KIND_ADDITIVE,
    KIND_BANNED,
    KIND_BANNED_SUBSTANCE,
    KIND_BANNED_TRACE,
    KIND_CONTAMINANT,
    KIND_MRL,
    KIND_QUICK_POSITIVE,
    KIND_VET_DRUG,
    SINGLE_RESULT_KINDS,
    Alert,
    Classification,
    Risk,
    alert_for_verdict,
    family_of,
)
from schemas.codes import AnalyteType
from schemas.reference import default_reference
from schemas.result import Result
from schemas.rules import screen
from schemas.verdict import Rule, Verdict, VerdictKind
from sinks.presentation import alert_labels
from tests.unit.test_schemas_rules import make

REF = default_reference()


def alert_of(result: Result) -> Alert:
    alert = alert_for_verdict(result, screen(result, REF), reference=REF)
    assert alert is not None, result
    return alert


def test_single_result_kinds_are_complete_and_distinct() -> None:
    assert len(set(SINGLE_RESULT_KINDS)) == len(SINGLE_RESULT_KINDS)
    assert set(SINGLE_RESULT_KINDS) == {
        KIND_BANNED, KIND_BANNED_SUBSTANCE, KIND_MRL, KIND_CONTAMINANT, KIND_VET_DRUG, KIND_ADDITIVE,
        KIND_QUICK_POSITIVE, KIND_BANNED_TRACE,
    }  # fmt: skip
    assert set(EXCEEDANCE_KINDS) == {KIND_MRL, KIND_CONTAMINANT, KIND_VET_DRUG, KIND_ADDITIVE}
    # the existing kinds keep their names (drills, boards and Alertmanager routes use them)
    assert (KIND_BANNED, KIND_MRL, KIND_CONTAMINANT) == ("banned_pesticide", "mrl_exceedance", "contaminant_exceedance")


def test_every_analyte_type_is_a_family_with_english_and_chinese_names() -> None:
    assert {str(t) for t in AnalyteType} | {FAMILY_UNKNOWN} <= set(FAMILIES)
    assert all(en and zh for en, zh in FAMILY_NAMES.values())
    assert {str(a.type) for a in REF.analytes} <= set(FAMILIES)


def test_family_of_reads_the_analytes_type() -> None:
    assert family_of("carbofuran", REF) == "pesticide"
    assert family_of("cadmium", REF) == "contaminant"
    assert family_of("ache_inhibition", REF) == "screen"
    assert family_of("no_such_thing", REF) == FAMILY_UNKNOWN


@pytest.mark.parametrize(
    ("result", "kind", "family"),
    [
        (make("carbofuran", "cowpea", value=0.03, loq=0.005, day=date(2026, 6, 20)), KIND_BANNED, "pesticide"),
        (make("clothianidin", "cowpea", value=0.05), KIND_MRL, "pesticide"),
        (make("cadmium", "rice", value=0.5), KIND_CONTAMINANT, "contaminant"),
        (
            make("ache_inhibition", "leek", value=62, unit="%", method="enzyme_inhibition"),
            KIND_QUICK_POSITIVE,
            "screen",
        ),
        (
            make("carbofuran", "cowpea", qualitative="positive", method="colloidal_gold"),
            KIND_QUICK_POSITIVE,
            "pesticide",
        ),
        (make("lead", "rice", value=0.5, method="xrf"), KIND_QUICK_POSITIVE, "contaminant"),
    ],
)
def test_pesticide_and_contaminant_alerts_carry_their_family(result: Result, kind: str, family: str) -> None:
    a = alert_of(result)
    assert (a.kind, a.details["family"]) == (kind, family)
    assert alert_labels(a)["family"] == family


def test_exceedance_summaries_name_the_family() -> None:
    mrl = alert_of(make("clothianidin", "cowpea", value=0.05))
    assert mrl.summary_en.startswith("Pesticide residue over its limit: ")
    assert mrl.summary_zh.startswith("农药残留超标：")
    metal = alert_of(make("cadmium", "rice", value=0.5))
    assert metal.summary_en.startswith("Contaminant over its limit: ") and metal.summary_zh.startswith("污染物超标：")


def test_a_quick_positive_names_the_family_except_for_the_enzyme_screen() -> None:
    strip = alert_of(make("carbofuran", "cowpea", qualitative="positive", method="colloidal_gold"))
    assert "(pesticide)" in strip.summary_en and "农药；" in strip.summary_zh
    enzyme = alert_of(make("ache_inhibition", "leek", value=62, unit="%", method="enzyme_inhibition"))
    assert "(screen)" not in enzyme.summary_en and "快检筛查" not in enzyme.summary_zh


def test_a_banned_pesticide_keeps_its_summary() -> None:
    a = alert_of(make("carbofuran", "cowpea", value=0.03, loq=0.005, day=date(2026, 6, 20)))
    assert "Banned pesticide Carbofuran detected in Cowpea" in a.summary_en
    assert "豇豆检出禁用农药克百威" in a.summary_zh


def test_an_alert_without_family_has_no_family_label() -> None:
    a = alert_of(make("cadmium", "rice", value=0.5))
    bare = a.model_copy(update={"details": {k: v for k, v in a.details.items() if k != "family"}})
    assert "family" not in alert_labels(bare)


def verdict(kind: VerdictKind, rule: Rule, *, limit: float | None = None, ratio: float | None = None) -> Verdict:
    """A verdict as screen() gives it (the tests below fix the kind by the family, whatever the limit data)."""
    edition = {Rule.ban: "MARA announcement 250", Rule.vet_drug: "GB 31650-2019", Rule.additive: "GB 2760-2024"}
    return Verdict(
        verdict=kind, limit_mg_kg=limit, ratio=ratio, rule=rule, edition=edition.get(rule, "?"), source="test",
        confidence="checked", limit_food="pork", basis="test",
    )  # fmt: skip


def test_a_banned_compound_is_a_banned_substance_alert() -> None:
    r = make("瘦肉精", "猪肉", value=0.012, loq=0.001)
    assert (r.analyte, r.commodity) == ("clenbuterol", "pork")
    a = alert_for_verdict(r, verdict(VerdictKind.banned, Rule.ban), reference=REF)
    assert a is not None
    assert (a.kind, a.classification, a.risk) == (KIND_BANNED_SUBSTANCE, Classification.alert, Risk.serious)
    assert a.details["family"] == "banned_compound" and alert_labels(a)["family"] == "banned_compound"
    assert a.summary_en.startswith("Banned substance Clenbuterol detected in Pork: 0.012 mg/kg (lc_msms)")
    assert a.summary_zh.startswith("猪肉检出禁用物质克伦特罗：0.012 mg/kg") and "MARA announcement 250" in a.summary_zh


def test_a_banned_veterinary_drug_says_its_family() -> None:
    r = make("norfloxacin", "chicken", value=0.01, loq=0.002)
    a = alert_for_verdict(r, verdict(VerdictKind.banned, Rule.ban), reference=REF)
    assert a is not None and a.kind == KIND_BANNED_SUBSTANCE and a.details["family"] == "veterinary_drug"
    assert (
        "Banned substance Norfloxacin (veterinary drug)" in a.summary_en and "禁用物质诺氟沙星（兽药）" in a.summary_zh
    )


def test_a_banned_trace_of_a_banned_compound_names_it() -> None:
    r = make("malachite_green", "grass_carp", value=0.0006, lod=0.0003, loq=0.001)
    a = alert_for_verdict(r, verdict(VerdictKind.watch, Rule.ban_trace), reference=REF)
    assert a is not None and a.kind == KIND_BANNED_TRACE and a.details["family"] == "banned_compound"
    assert "Banned substance Malachite green detected below the method's LOQ" in a.summary_en
    assert "草鱼检出禁用物质孔雀石绿，低于方法定量限" in a.summary_zh


@pytest.mark.parametrize(
    ("analyte", "commodity", "rule", "kind", "family", "en", "zh"),
    [
        ("enrofloxacin", "chicken", Rule.vet_drug, KIND_VET_DRUG, "veterinary_drug",
         "Veterinary drug residue over its limit: ", "兽药残留超标："),
        ("sulfur_dioxide", "dried_daylily", Rule.additive, KIND_ADDITIVE, "additive",
         "Food additive over its maximum use level: ", "食品添加剂超量："),
        # the rule names the limit table; without one of the four, the family decides
        ("doxycycline", "pork", Rule.detected, KIND_VET_DRUG, "veterinary_drug",
         "Veterinary drug residue over its limit: ", "兽药残留超标："),
        ("nitrite", "pork", Rule.detected, KIND_ADDITIVE, "additive", "Food additive", "食品添加剂超量"),
    ],
)  # fmt: skip
def test_exceedances_by_family(analyte: str, commodity: str, rule: Rule, kind: str, family: str, en: str,
                               zh: str) -> None:  # fmt: skip
    r = make(analyte, commodity, value=0.3)
    a = alert_for_verdict(r, verdict(VerdictKind.exceeds, rule, limit=0.1, ratio=3.0), reference=REF)
    assert a is not None
    assert (a.kind, a.classification, a.risk, a.details["family"]) == (kind, Classification.alert, Risk.serious, family)
    assert a.summary_en.startswith(en) and a.summary_zh.startswith(zh)
    assert "exceeds the limit 0.1 mg/kg (3x" in a.summary_en and "超过限量 0.1 mg/kg（3 倍" in a.summary_zh
    assert alert_labels(a)["family"] == family


def test_a_quick_positive_on_meat_names_the_banned_compound() -> None:
    r = make("clenbuterol", "pork", qualitative="positive", method="colloidal_gold")
    a = alert_for_verdict(r, verdict(VerdictKind.positive, Rule.quick_qualitative), reference=REF)
    assert a is not None and a.kind == KIND_QUICK_POSITIVE and a.details["family"] == "banned_compound"
    assert "Quick test positive: Clenbuterol (banned compound) on Pork" in a.summary_en
    assert "快检阳性：猪肉克伦特罗（禁用物质；胶体金试纸条，判读阳性）" in a.summary_zh
