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
    alert_for_verdict,
    family_of,
)
from schemas.codes import AnalyteType
from schemas.reference import default_reference
from schemas.result import Result
from schemas.rules import screen
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
