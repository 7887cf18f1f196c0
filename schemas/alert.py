"""The alert model the agents publish, and the alert a single screened result raises.

A RASFF-like ``classification`` (how urgently to act) is kept apart from the ``risk`` decision (how
bad it is). Ids are deterministic: the same cause gives the same ``alert_id``, so duplicates
(a replay, a device sending twice) collapse downstream.

Single-result alerts (``alert_for_verdict``):

| verdict | method | kind | classification | risk |
|---|---|---|---|---|
| banned | lab | banned_pesticide (pesticide), banned_substance (other) | alert | serious |
| exceeds | lab | mrl_exceedance (pesticide), contaminant_, vet_drug_, additive_exceedance | alert | serious* |
| positive (or banned/exceeds from a quick test) | quick | quick_test_positive | follow_up | undecided |
| watch by rule ban_trace | lab or quick | banned_trace | follow_up | undecided |
| anything else | | no alert | | |

(*) serious when ratio >= 2, else potentially_serious.

Every single-result alert names the analyte's family (:data:`FAMILIES`: the ``type`` of analytes.csv,
``screen`` for the enzyme screen, ``unknown`` for a label the reference data does not know) in
``details.family`` and in both summaries (检出禁用农药 / 检出禁用物质, 农药残留超标 / 污染物超标 /
兽药残留超标 / 食品添加剂超量); the delivered alert carries it as the label ``family``
(sinks/presentation.py). The family picks the exceedance kind only when the rule does not (the rule
names the limit table judged against: mrl, contaminant, vet_drug, additive).

A finding judged against a limit whose ``confidence`` is ``unverified`` (nobody checked it against the
standard's text) or ``old`` (from an earlier edition) says so at the end of both summaries
(:data:`CONFIDENCE_NOTE`), and the delivered alert carries the label ``limit_confidence``
(sinks/presentation.py); ``details.confidence`` keeps the value for the alerts table.

Risk for an exceedance: twice the limit or more is ``serious``. A limit carries a safety margin,
so a small excess is a violation whose risk is not yet established (``potentially_serious``);
two-fold is where enforcement notices start treating it as serious. Quick tests are never legal
findings, so their risk stays ``undecided`` until a lab confirms.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.codes import QUICK_METHODS, AnalyteType, Method
from schemas.reference import Reference, default_reference
from schemas.result import Result, result_key
from schemas.verdict import Rule, Verdict, VerdictKind

__all__ = [
    "ALERT_SCHEMA_VERSION",
    "CONFIDENCE_NOTE",
    "EXCEEDANCE_KINDS",
    "FAMILIES",
    "FAMILY_NAMES",
    "FAMILY_UNKNOWN",
    "KIND_ADDITIVE",
    "KIND_BANNED",
    "KIND_BANNED_SUBSTANCE",
    "KIND_BANNED_TRACE",
    "KIND_CONTAMINANT",
    "KIND_MRL",
    "KIND_QUICK_POSITIVE",
    "KIND_VET_DRUG",
    "SERIOUS_RATIO",
    "SINGLE_RESULT_KINDS",
    "Alert",
    "AlertStatus",
    "Classification",
    "Risk",
    "alert_for_verdict",
    "alert_id_for",
    "family_of",
]

ALERT_SCHEMA_VERSION: Final = 1
SERIOUS_RATIO: Final = 2.0
KIND_BANNED: Final = "banned_pesticide"  # a pesticide banned for the food, detected by a lab
KIND_BANNED_SUBSTANCE: Final = "banned_substance"  # any other banned analyte (banned compounds, non-food substances)
KIND_MRL: Final = "mrl_exceedance"  # a pesticide over its MRL (GB 2763)
KIND_CONTAMINANT: Final = "contaminant_exceedance"  # GB 2762
KIND_VET_DRUG: Final = "vet_drug_exceedance"  # a veterinary drug over its MRL (GB 31650)
KIND_ADDITIVE: Final = "additive_exceedance"  # a food additive over its maximum use level (GB 2760)
KIND_QUICK_POSITIVE: Final = "quick_test_positive"
KIND_BANNED_TRACE: Final = "banned_trace"  # a banned substance detected below the LOQ: follow up
EXCEEDANCE_KINDS: Final = (KIND_MRL, KIND_CONTAMINANT, KIND_VET_DRUG, KIND_ADDITIVE)
# The kinds one screened result raises on its own (the early-warning agent adds pattern kinds).
SINGLE_RESULT_KINDS: Final = (
    KIND_BANNED,
    KIND_BANNED_SUBSTANCE,
    *EXCEEDANCE_KINDS,
    KIND_QUICK_POSITIVE,
    KIND_BANNED_TRACE,
)

FAMILY_UNKNOWN: Final = "unknown"
"""``details.family`` of an alert whose analyte label the reference data does not know."""
FAMILY_NAMES: Final[dict[str, tuple[str, str]]] = {
    AnalyteType.pesticide: ("pesticide", "农药"),
    AnalyteType.contaminant: ("contaminant", "污染物"),
    AnalyteType.veterinary_drug: ("veterinary drug", "兽药"),
    AnalyteType.banned_compound: ("banned compound", "禁用物质"),
    AnalyteType.additive: ("food additive", "食品添加剂"),
    AnalyteType.screen: ("screen", "快检筛查"),
    FAMILY_UNKNOWN: ("unknown analyte", "未知检测项目"),
}
"""Each family's name in English and Chinese (the ``type`` values of analytes.csv, plus ``unknown``)."""
FAMILIES: Final = tuple(str(f) for f in FAMILY_NAMES)
"""The values of ``details.family`` and of the Alertmanager label ``family``."""

# exceedance kind by the rule that judged the value (the limit table), then by family
_EXCEEDANCE_BY_RULE: Final[dict[str, str]] = {
    Rule.mrl: KIND_MRL,
    Rule.contaminant: KIND_CONTAMINANT,
    Rule.vet_drug: KIND_VET_DRUG,
    Rule.additive: KIND_ADDITIVE,
}
_EXCEEDANCE_BY_FAMILY: Final[dict[str, str]] = {
    AnalyteType.pesticide: KIND_MRL,
    AnalyteType.contaminant: KIND_CONTAMINANT,
    AnalyteType.veterinary_drug: KIND_VET_DRUG,
    AnalyteType.additive: KIND_ADDITIVE,
}
# (en, zh) prefix of an exceedance summary, naming the family
_EXCEEDANCE_TITLE: Final[dict[str, tuple[str, str]]] = {
    KIND_MRL: ("Pesticide residue over its limit", "农药残留超标"),
    KIND_CONTAMINANT: ("Contaminant over its limit", "污染物超标"),
    KIND_VET_DRUG: ("Veterinary drug residue over its limit", "兽药残留超标"),
    KIND_ADDITIVE: ("Food additive over its maximum use level", "食品添加剂超量"),
}

_ALERT_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:foodrisk:alert")


class Classification(StrEnum):
    alert = "alert"  # serious risk, product on the market: act now
    follow_up = "follow_up"  # information for follow-up
    attention = "attention"  # information for attention


class Risk(StrEnum):
    serious = "serious"
    potentially_serious = "potentially_serious"
    not_serious = "not_serious"
    undecided = "undecided"


class AlertStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


Detail = str | int | float | None


class Alert(BaseModel):
    """One alert. ``evidence`` lists result ids; ``starts_at`` is event time (sampled_at)."""

    model_config = ConfigDict(frozen=True, title="Alert")

    alert_id: str = Field(min_length=1, max_length=128)
    kind: str = Field(min_length=1, max_length=64)
    classification: Classification
    risk: Risk
    status: AlertStatus = AlertStatus.firing
    summary_en: str
    summary_zh: str
    district: str | None = None
    site_id: str | None = None
    site_type: str | None = None
    commodity: str | None = None
    analyte: str | None = None
    supplier_id: str | None = None
    vendor_id: str | None = None
    device_id: str | None = None
    evidence: tuple[str, ...] = ()
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    details: dict[str, Detail] = Field(default_factory=dict)
    schema_version: Literal[1] = 1

    def to_json(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Alert:
        return cls.model_validate_json(data)


def alert_id_for(kind: str, *key_parts: str) -> str:
    """A stable id for a cause: uuid5 over the kind and key parts (same cause -> same id)."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, "\x1f".join((kind, *key_parts))))


_METHOD_ZH: Final[dict[Method, str]] = {
    Method.enzyme_inhibition: "酶抑制法",
    Method.colloidal_gold: "胶体金试纸条",
    Method.xrf: "X射线荧光",
    Method.lc_msms: "液相色谱-串联质谱",
    Method.gc_ms: "气相色谱-质谱",
    Method.gc_msms: "气相色谱-串联质谱",
    Method.icp_ms: "电感耦合等离子体质谱",
    Method.aas: "原子吸收光谱",
    Method.afs: "原子荧光光谱",
}


def _reading(result: Result) -> tuple[str, str]:
    """The measured value as text, in English and Chinese."""
    if result.percent is not None:
        return f"{result.percent:g}% inhibition", f"抑制率 {result.percent:g}%"
    if result.value_mg_kg is not None:
        text = f"{result.value_mg_kg:g} mg/kg"
        return text, text
    qualitative = str(result.qualitative)
    zh = {"positive": "阳性", "negative": "阴性", "invalid": "无效"}.get(qualitative, qualitative)
    return f"read {qualitative}", f"判读{zh}"


CONFIDENCE_NOTE: Final[dict[str, tuple[str, str]]] = {
    "unverified": (
        "Limit unverified: it was not checked against the standard's text; confirm the limit before acting.",
        "限量未经核实：未对照标准原文核对，处置前请先确认限量。",
    ),
    "old": (
        "Limit from an older edition: confirm it is still in force before acting.",
        "限量出自旧版标准：处置前请确认其仍然有效。",
    ),
}
"""The sentence (en, zh) a single-result alert ends with when its limit's confidence is not ``checked``."""


_ALERTING: Final = frozenset({VerdictKind.positive, VerdictKind.exceeds, VerdictKind.banned})
_BAN_TRACE: Final = Rule.ban_trace.value
"""The verdicts that raise an alert on their own (the module table); any other raises none."""


def family_of(analyte: str, reference: Reference) -> str:
    """The analyte's family (its ``type`` in analytes.csv), or :data:`FAMILY_UNKNOWN`."""
    row = reference.analyte(analyte)
    return str(row.type) if row is not None else FAMILY_UNKNOWN


def alert_for_verdict(result: Result, verdict: Verdict, *, reference: Reference | None = None) -> Alert | None:
    """The alert one screened result raises, or None (see the module table).

    ``reference`` supplies the English and Chinese names (default: the packaged data).
    """
    kind_of = verdict.verdict
    if kind_of not in _ALERTING and verdict.rule != _BAN_TRACE:
        return None  # most results: nothing to look up or write
    ref = reference if reference is not None else default_reference()
    quick = result.method in QUICK_METHODS
    family = family_of(result.analyte, ref)
    if verdict.rule == _BAN_TRACE:
        kind, classification, risk = KIND_BANNED_TRACE, Classification.follow_up, Risk.undecided
    elif quick:
        kind, classification, risk = KIND_QUICK_POSITIVE, Classification.follow_up, Risk.undecided
    elif kind_of is VerdictKind.banned:
        kind = KIND_BANNED if family == AnalyteType.pesticide else KIND_BANNED_SUBSTANCE
        classification, risk = Classification.alert, Risk.serious
    elif kind_of is VerdictKind.exceeds:
        kind = _EXCEEDANCE_BY_RULE.get(str(verdict.rule)) or _EXCEEDANCE_BY_FAMILY.get(family, KIND_MRL)
        classification = Classification.alert
        serious = verdict.ratio is not None and verdict.ratio >= SERIOUS_RATIO
        risk = Risk.serious if serious else Risk.potentially_serious
    else:  # positive from a confirmatory method: it never gives one; keep it visible
        kind, classification, risk = KIND_QUICK_POSITIVE, Classification.follow_up, Risk.undecided

    food = ref.commodity(result.commodity)
    analyte = ref.analyte(result.analyte)
    food_en, food_zh = (food.name_en, food.name_zh) if food else (result.commodity, result.commodity)
    an_en, an_zh = (analyte.name_en, analyte.name_zh) if analyte else (result.analyte, result.analyte)
    site = result.site
    where_en = f"site {site.id} ({site.type}), {site.district}"
    where_zh = f"站点 {site.id}（{site.type}），{site.district}"
    read_en, read_zh = _reading(result)
    method_zh = _METHOD_ZH.get(result.method, str(result.method))
    limit = f"{verdict.limit_mg_kg:g} mg/kg" if verdict.limit_mg_kg is not None else ""
    times = f"{verdict.ratio:g}" if verdict.ratio is not None else "?"
    fam_en, fam_zh = FAMILY_NAMES.get(family, (family, family))
    # the banned analyte, named by family: 禁用农药 (a pesticide), 禁用物质 (a banned compound), else
    # 禁用物质 with the family in brackets (a veterinary drug banned for this food, say)
    if family == AnalyteType.pesticide:
        banned_en, banned_zh = f"Banned pesticide {an_en}", f"禁用农药{an_zh}"
    elif family == AnalyteType.banned_compound:
        banned_en, banned_zh = f"Banned substance {an_en}", f"禁用物质{an_zh}"
    else:
        banned_en, banned_zh = f"Banned substance {an_en} ({fam_en})", f"禁用物质{an_zh}（{fam_zh}）"

    if kind in (KIND_BANNED, KIND_BANNED_SUBSTANCE):
        en = f"{banned_en} detected in {food_en}: {read_en} ({result.method}); {where_en}. Basis: {verdict.edition}."
        zh = f"{food_zh}检出{banned_zh}：{read_zh}（{method_zh}）；{where_zh}。依据：{verdict.edition}。"
    elif kind == KIND_BANNED_TRACE:
        en = (
            f"{banned_en} detected below the method's LOQ in {food_en}: {read_en} "
            f"({result.method}). Not a legal finding: follow up with a re-test by a method of lower LOQ "
            f"or a new sample; {where_en}. Basis: {verdict.edition}."
        )
        zh = (
            f"{food_zh}检出{banned_zh}，低于方法定量限：{read_zh}（{method_zh}）。非法定结论："
            f"请以更低定量限的方法复检或重新抽样；{where_zh}。依据：{verdict.edition}。"
        )
    elif kind in EXCEEDANCE_KINDS:
        title_en, title_zh = _EXCEEDANCE_TITLE[kind]
        en = (
            f"{title_en}: {an_en} in {food_en} at {read_en} exceeds the limit {limit} "
            f"({times}x; {verdict.edition}, {verdict.limit_food}); {where_en}."
        )
        zh = (
            f"{title_zh}：{food_zh}中{an_zh} {read_zh}，超过限量 {limit}（{times} 倍；{verdict.edition}，"
            f"{verdict.limit_food}）；{where_zh}。"
        )
    else:
        # the family in brackets, except for the enzyme screen (a group screen, no family of its own)
        quick_en, quick_zh = ("", "") if family == AnalyteType.screen else (f" ({fam_en})", f"{fam_zh}；")
        en = (
            f"Quick test positive: {an_en}{quick_en} on {food_en} ({result.method}, {read_en}). Not a legal "
            f"finding: suspend sale and confirm by a lab test; {where_en}."
        )
        zh = (
            f"快检阳性：{food_zh}{an_zh}（{quick_zh}{method_zh}，{read_zh}）。非法定结论：暂停销售并送实验室确证；"
            f"{where_zh}。"
        )
        if result.method is Method.enzyme_inhibition and food is not None and food.enzyme_false_positive:
            en += f" {food_en} is known to give enzyme-inhibition false positives."
            zh += f"{food_zh}易出现酶抑制法假阳性。"

    note = CONFIDENCE_NOTE.get(verdict.confidence or "")
    if note is not None:
        en, zh = f"{en} {note[0]}", f"{zh}{note[1]}"

    details: dict[str, Detail] = {
        "result_id": result.result_id,
        "sample_id": result.sample_id,
        "method": str(result.method),
        "verdict": str(verdict.verdict),
        "value_mg_kg": result.value_mg_kg,
        "percent": result.percent,
        "qualitative": str(result.qualitative) if result.qualitative is not None else None,
        "loq_mg_kg": result.loq_mg_kg,
        "limit_mg_kg": verdict.limit_mg_kg,
        "ratio": verdict.ratio,
        "rule": str(verdict.rule),
        "edition": verdict.edition,
        "confidence": verdict.confidence,
        "limit_food": verdict.limit_food,
        "basis": verdict.basis,
        "origin": result.origin,
        "family": family,
    }
    return Alert(
        # over the result's identity (device, id): two devices' findings with one result_id are two
        # alerts; a device's own resend or a replay gives the same id
        alert_id=alert_id_for(kind, result_key(result.device_id, result.result_id)),
        kind=kind,
        classification=classification,
        risk=risk,
        summary_en=en,
        summary_zh=zh,
        district=site.district,
        site_id=site.id,
        site_type=str(site.type),
        commodity=result.commodity,
        analyte=result.analyte,
        supplier_id=result.supplier_id,
        vendor_id=result.vendor_id,
        device_id=result.device_id,
        evidence=(result.result_id,),
        starts_at=result.sampled_at,
        details=details,
    )
