"""The judgement of one result: ``screen(result, reference) -> Verdict``. Pure: no I/O, no clock.

Order of the rules (first match wins):

1. ``qualitative: invalid`` -> ``no_limit`` (rule ``invalid_test``): the device says the test itself
   failed; it says nothing about the food, and severity -1 keeps it out of findings while it stays
   visible (a device-health matter).
2. Quick methods (enzyme_inhibition, colloidal_gold, xrf) never give ``exceeds`` or ``banned``:
   - a reading in % -> the method's cut-off (enzyme: positive >= 50%, watch >= 40%);
   - a reading in mg/kg -> the food's limit: over it ``positive``, >= watch_fraction of it ``watch``;
     with a ban in force, a detection is ``positive`` (rule ``quick_ban``), over a limit or not. A
     kit's detection cut-off (quick_cutoffs.csv, mg/kg or µg/kg) stands in for the LOD / LOQ the
     device does not send: below its watch level not detected, up to its positive level a trace;
   - a read-out only (negative / positive) -> ``compliant`` / ``positive`` (the limit, else the ban,
     attached for context).
3. Confirmatory methods:
   - a substance (pesticide, animal drug, non-food substance) banned for the food on the sample date,
     detected (>= LOQ, or > 0 without LOQ, or a qualitative positive) -> ``banned`` (takes precedence
     over the limit);
   - the limit in force on ``sampled_at`` for the most specific food level (pesticide MRLs, veterinary
     drug and additive limits and bans along GB 2763's food groups, contaminant limits along GB 2762's)
     -> ``exceeds`` when over it, ``watch`` when >= watch_fraction of it, else ``compliant``. A total
     (mercury, arsenic) with no limit of its own, judged against its species' limit (methylmercury,
     inorganic arsenic), is at most ``watch`` (rule ``speciated``: over that limit means "speciate", since the
     species is part of the total);
   - banned but not detected, and no limit -> ``compliant`` (rule ``ban``);
   - otherwise ``no_limit``.

A value equal to the limit is not over it. ``screen_naive`` gives the same verdicts by scanning
the tables linearly; it is the benchmark's baseline and a cross-check in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final, NamedTuple

from schemas.codes import QUICK_METHODS, Method, Qualitative
from schemas.reference.model import (
    ALL_FOODS,
    ANY_ANALYTE,
    CHINA_TZ,
    GB2762,
    GB2763,
    Ban,
    Limit,
    LimitKind,
    QuickCutoff,
    Reference,
    up,
)
from schemas.result import Result
from schemas.verdict import Rule, Verdict, VerdictKind

__all__ = ["Reading", "screen", "screen_naive", "screen_sum"]

_COMPLIANT: Final = VerdictKind.compliant
_WATCH: Final = VerdictKind.watch
_POSITIVE: Final = VerdictKind.positive
_EXCEEDS: Final = VerdictKind.exceeds
_BANNED: Final = VerdictKind.banned
_NO_LIMIT: Final = VerdictKind.no_limit
_UNCLASSIFIED: Final = VerdictKind.unclassified
_INCONCLUSIVE: Final = VerdictKind.inconclusive
_FINDINGS: Final = frozenset({_WATCH, _POSITIVE, _EXCEEDS, _BANNED})
_Q_INVALID: Final = Qualitative.invalid
_Q_POSITIVE: Final = Qualitative.positive
_ENZYME: Final = Method.enzyme_inhibition
# rule codes as plain str (cheaper to validate than the enum members)
_R_BAN: Final = Rule.ban.value
_R_SPECIATED: Final = Rule.speciated.value
_R_DETECTED: Final = Rule.detected.value
_R_QUICK_CUTOFF: Final = Rule.quick_cutoff.value
_R_QUICK_LIMIT: Final = Rule.quick_limit.value
_R_QUICK_BAN: Final = Rule.quick_ban.value
_R_QUICK_QUALITATIVE: Final = Rule.quick_qualitative.value
_R_UNIT_MISMATCH: Final = Rule.unit_mismatch.value
_R_NO_LIMIT: Final = Rule.no_limit.value
_R_UNKNOWN_FOOD: Final = Rule.unknown_food.value
_R_UNKNOWN_ANALYTE: Final = Rule.unknown_analyte.value
_R_LOQ_ABOVE_LIMIT: Final = Rule.loq_above_limit.value
_R_BAN_TRACE: Final = Rule.ban_trace.value

_INVALID_TEST: Final = Verdict(
    verdict=_NO_LIMIT,
    limit_mg_kg=None,
    ratio=None,
    rule=Rule.invalid_test.value,
    edition=None,
    source=None,
    confidence=None,
    limit_food=None,
    basis="the test itself was reported invalid; repeat it",
)

LimitHit = tuple[Limit, bool]  # the limit, and True when it is the limit of the analyte's species

# Validating a plain dict straight through the model's core validator is ~2x faster than
# ``Verdict(**kwargs)`` (no Python-level __init__), and still validates every field.
_validate_verdict: Final = Verdict.__pydantic_validator__.validate_python


def _make(fields: dict[str, Any]) -> Verdict:
    verdict: Verdict = _validate_verdict(fields)
    return verdict


def _check_fraction(watch_fraction: float) -> None:
    if not 0.0 <= watch_fraction <= 1.0:
        raise ValueError(f"watch_fraction must be within [0, 1], not {watch_fraction}")


# How a lab reads a value against its method's LOD and LOQ (docs/domain.md §7).
_NOT_DETECTED: Final = 0  # below the LOD (or zero, or a negative read-out)
_TRACE: Final = 1  # at or above the LOD, below the LOQ: detected, not quantified
_QUANTIFIED: Final = 2  # at or above the LOQ (or no LOQ given), or a positive read-out


def _reading(value: float | None, qualitative: Qualitative | None, lod: float | None, loq: float | None) -> int:
    if value is None:
        return _QUANTIFIED if qualitative is _Q_POSITIVE else _NOT_DETECTED
    if value <= 0.0 or (lod is not None and value < lod):
        return _NOT_DETECTED
    if loq is not None and value < loq:
        return _TRACE
    return _QUANTIFIED


def _no_limit(result: Result, rule: str, why: str, kind: VerdictKind = _NO_LIMIT) -> Verdict:
    return _make(
        {
            "verdict": kind,
            "limit_mg_kg": None,
            "ratio": None,
            "rule": rule,
            "edition": None,
            "source": None,
            "confidence": None,
            "limit_food": None,
            "basis": f"{why}: {result.analyte} on {result.commodity} ({result.method})",
        }
    )


def _from_limit(
    kind: VerdictKind, hit: LimitHit, ratio: float | None, rule: str, analyte: str, note: str = ""
) -> Verdict:
    limit, speciated = hit
    basis = (
        f"{limit.analyte} limit applied to {analyte} (speciate if over); {limit.basis}" if speciated else limit.basis
    )
    return _make(
        {
            "verdict": kind,
            "limit_mg_kg": limit.limit_mg_kg,
            "ratio": ratio,
            "rule": rule,
            "edition": limit.edition,
            "source": limit.source,
            "confidence": limit.confidence,
            "limit_food": limit.food,
            "basis": note + basis,
        }
    )


def _from_ban(kind: VerdictKind, ban: Ban, rule: str, note: str = "") -> Verdict:
    if rule == _R_BAN_TRACE:
        note += "detected below the LOQ: follow up (re-test or re-sample), not a legal finding; "
    elif kind is _COMPLIANT:
        note += "not detected; "
    return _make(
        {
            "verdict": kind,
            "limit_mg_kg": None,
            "ratio": None,
            "rule": rule,
            "edition": ban.announcement,
            "source": ban.source,
            "confidence": ban.confidence,
            "limit_food": ban.scope,
            "basis": note + ban.basis,
        }
    )


def _unfit(hit: LimitHit, threshold: float, which: str, note: str) -> Verdict:
    limit = hit[0]
    return _make(
        {
            "verdict": _INCONCLUSIVE,
            "limit_mg_kg": limit.limit_mg_kg,
            "ratio": None,
            "rule": _R_LOQ_ABOVE_LIMIT,
            "edition": limit.edition,
            "source": limit.source,
            "confidence": limit.confidence,
            "limit_food": limit.food,
            "basis": f"{note}the method's {which} {threshold:g} mg/kg is above the limit "
            f"{limit.limit_mg_kg:g} mg/kg: it cannot show compliance; re-test with a more sensitive method; "
            + limit.basis,
        }
    )


def _unfit_for(hit: LimitHit, found: int, lod: float | None, loq: float | None, note: str) -> Verdict | None:
    """``inconclusive`` when the reading cannot show compliance with the limit: not detected by a method
    whose LOD (else LOQ) is above it, or not quantified below an LOQ above it; else None."""
    limit = hit[0].limit_mg_kg
    if found == _NOT_DETECTED:
        threshold, which = (lod, "LOD") if lod is not None else (loq, "LOQ")
        if threshold is not None and threshold > limit:
            return _unfit(hit, threshold, which, note)
    elif found == _TRACE and loq is not None and loq > limit:
        return _unfit(hit, loq, "LOQ", note)
    return None


class Reading(NamedTuple):
    """What ``_judge`` compares: the result's amounts, as the analyte the limit is set on."""

    analyte: str  # the analyte whose limits and bans apply (a sum's definition for its components)
    value: float | None  # mg/kg
    lod: float | None
    loq: float | None
    note: str  # prefixed to the basis (e.g. the residue definition used)


def _judge(
    result: Result,
    reading: Reading,
    hit: LimitHit | None,
    ban: Ban | None,
    cutoff: QuickCutoff | None,
    watch_fraction: float,
) -> Verdict:
    """The verdict, given the limit, ban and cut-off that apply (found by either lookup)."""
    qualitative = result.qualitative
    if qualitative is _Q_INVALID:
        return _INVALID_TEST
    value, lod, loq, note = reading.value, reading.lod, reading.loq, reading.note
    percent = result.percent
    if result.method not in QUICK_METHODS:
        if percent is not None:
            return _no_limit(result, _R_UNIT_MISMATCH, "a lab result in % cannot be judged")
        found = _reading(value, qualitative, lod, loq)
        if ban is not None and found == _QUANTIFIED:
            return _from_ban(_BANNED, ban, _R_BAN, note)
        if ban is not None and found == _TRACE:
            return _from_ban(_WATCH, ban, _R_BAN_TRACE, note)
        if hit is not None:
            limit_row, speciated = hit
            limit = limit_row.limit_mg_kg
            unfit = _unfit_for(hit, found, lod, loq, note)
            if unfit is not None:
                return unfit
            if value is None:  # a lab's read-out without a number
                kind = _WATCH if qualitative is _Q_POSITIVE else _COMPLIANT
                return _from_limit(kind, hit, None, _R_DETECTED, result.analyte, note)
            if value > limit:
                kind = _WATCH if speciated else _EXCEEDS
            elif value >= watch_fraction * limit:
                kind = _WATCH
            else:
                kind = _COMPLIANT
            rule = _R_SPECIATED if speciated else limit_row.rule
            return _from_limit(kind, hit, value / limit, rule, result.analyte, note)
        if ban is not None:
            return _from_ban(_COMPLIANT, ban, _R_BAN, note)
        return _no_limit(result, _R_NO_LIMIT, "no limit in force")
    # quick methods: positive at most
    if percent is not None:
        if cutoff is None:
            return _no_limit(result, _R_NO_LIMIT, "no quick-test cut-off in %")
        if percent >= cutoff.positive_at:
            kind = _POSITIVE
        elif percent >= cutoff.watch_from:
            kind = _WATCH
        else:
            kind = _COMPLIANT
        return _make(
            {
                "verdict": kind,
                "limit_mg_kg": None,
                "ratio": percent / cutoff.positive_at,
                "rule": _R_QUICK_CUTOFF,
                "edition": cutoff.standard,
                "source": cutoff.source,
                "confidence": cutoff.confidence,
                "limit_food": None,
                "basis": note + cutoff.basis,
            }
        )
    if value is not None:
        if result.method is _ENZYME:
            return _no_limit(result, _R_UNIT_MISMATCH, "enzyme inhibition is read in %, not mg/kg")
        if cutoff is not None and lod is None and loq is None:
            # the kit's detection cut-off stands in for the LOD / LOQ the device did not send
            lod, loq = cutoff.watch_mg_kg, cutoff.positive_mg_kg
            note += f"read against the kit cut-off ({cutoff.basis}); "
        found = _reading(value, qualitative, lod, loq)
        if ban is not None and found == _QUANTIFIED:  # a banned substance on a strip: positive, over a limit or not
            return _from_ban(_POSITIVE, ban, _R_QUICK_BAN, note)
        if ban is not None and found == _TRACE:
            return _from_ban(_WATCH, ban, _R_BAN_TRACE, note)
        if hit is not None:
            limit = hit[0].limit_mg_kg
            unfit = _unfit_for(hit, found, lod, loq, note)
            if unfit is not None:
                return unfit
            if value > limit:
                kind = _POSITIVE
            elif value >= watch_fraction * limit:
                kind = _WATCH
            else:
                kind = _COMPLIANT
            return _from_limit(kind, hit, value / limit, _R_QUICK_LIMIT, result.analyte, note)
        if ban is not None:
            return _from_ban(_COMPLIANT, ban, _R_QUICK_BAN, note)
        return _no_limit(result, _R_NO_LIMIT, "no limit in force")
    kind = _POSITIVE if qualitative is _Q_POSITIVE else _COMPLIANT
    if cutoff is not None:
        note += (
            f"the kit reads positive at >= {cutoff.positive_at:g} {cutoff.unit} "
            f"({cutoff.standard}; {cutoff.confidence}); "
        )
    if hit is not None:
        return _from_limit(kind, hit, None, _R_QUICK_QUALITATIVE, result.analyte, note)
    if ban is not None:  # no limit: the ban is attached for context (it names the announcement)
        return _from_ban(kind, ban, _R_QUICK_QUALITATIVE, note)
    return _make(
        {
            "verdict": kind,
            "limit_mg_kg": None,
            "ratio": None,
            "rule": _R_QUICK_QUALITATIVE,
            "edition": None,
            "source": None,
            "confidence": None,
            "limit_food": None,
            "basis": f"{note}{result.method} read {qualitative}; a quick test, not a legal finding",
        }
    )


def _unclassified(result: Result, food_known: bool, verdict: Verdict) -> Verdict:
    """An unknown label never yields ``no_limit`` or ``compliant``: a finding made without the label
    (a ban on all foods, a method cut-off) stands; anything else is ``unclassified``."""
    if verdict.verdict in _FINDINGS:
        return verdict
    if not food_known:
        rule, what = _R_UNKNOWN_FOOD, f"food label {result.commodity!r}"
    else:
        rule, what = _R_UNKNOWN_ANALYTE, f"analyte label {result.analyte!r}"
    return _no_limit(
        result,
        rule,
        f"{what} is not in the reference data (add it, or an alias, and rescreen); not judged",
        _UNCLASSIFIED,
    )


def _plain_reading(result: Result, reference: Reference) -> Reading:
    """The result as its own analyte, or, for a component of a sum (3-hydroxycarbofuran), as the
    definition its limit is set on (carbofuran), its amounts times the definition's factor."""
    part = reference.definition_of(result.analyte)
    if part is None:
        return Reading(result.analyte, result.value_mg_kg, result.lod_mg_kg, result.loq_mg_kg, "")
    f = part.factor
    value, lod, loq = result.value_mg_kg, result.lod_mg_kg, result.loq_mg_kg
    return Reading(
        part.definition,
        None if value is None else value * f,
        None if lod is None else lod * f,
        None if loq is None else loq * f,
        f"judged as {part.definition} (a component of its residue definition, factor {f:g}; "
        "other components not seen with it); ",
    )


def _lookup(
    result: Result, reading: Reading, reference: Reference, watch_fraction: float
) -> Verdict:
    analyte, food, at = reading.analyte, result.commodity, result.sampled_at
    hit: LimitHit | None = None
    for entry in reference.limit_chain(analyte, food):
        lim = entry[0]
        if lim.starts <= at and (lim.ends is None or at < lim.ends):
            hit = entry
            break
    ban = reference.ban_in_force(analyte, food, at)
    if result.percent is not None:
        cutoff = reference.cutoff(result.method, analyte)
    elif result.method in QUICK_METHODS:
        cutoff = reference.mass_cutoff(result.method, analyte)
    else:
        cutoff = None
    verdict = _judge(result, reading, hit, ban, cutoff, watch_fraction)
    food_known = reference.is_known_food(food)
    if food_known and reference.is_known_analyte(result.analyte):
        return verdict
    return _unclassified(result, food_known, verdict)


def screen(result: Result, reference: Reference, *, watch_fraction: float = 0.5) -> Verdict:
    """Judge one result against the limits, bans and cut-offs in force on its ``sampled_at``."""
    if not 0.0 <= watch_fraction <= 1.0:
        _check_fraction(watch_fraction)
    if result.qualitative is _Q_INVALID:
        return _INVALID_TEST
    return _lookup(result, _plain_reading(result, reference), reference, watch_fraction)


def screen_sum(
    result: Result,
    reference: Reference,
    total_mg_kg: float,
    parts: Sequence[tuple[str, float]],
    *,
    watch_fraction: float = 0.5,
) -> Verdict:
    """Judge ``result``, a component of a residue definition that is a sum, on the sum of its
    sample's quantified components (``parts``: (analyte, amount as the definition) for each)."""
    if not 0.0 <= watch_fraction <= 1.0:
        _check_fraction(watch_fraction)
    if result.qualitative is _Q_INVALID:
        return _INVALID_TEST
    own = reference.definition_of(result.analyte)
    definition = own.definition if own is not None else result.analyte
    shown = " + ".join(f"{a} {v:g}" for a, v in parts)
    note = (
        f"residue definition {definition} = sum of "
        f"{' + '.join(c.component for c in reference.sum_components(definition))}; "
        f"this sample's sum {total_mg_kg:g} mg/kg ({shown}); "
    )
    return _lookup(result, Reading(definition, total_mg_kg, None, None, note), reference, watch_fraction)


# --- the naive baseline: a linear scan over the tables for every result ------------------------


def _naive_in_force(start: date, end: date | None, day: date) -> bool:
    return start <= day and (end is None or day < end)


def _naive_ancestors(reference: Reference, food: str, standard: str) -> list[str]:
    out = [food]
    node = reference.commodity(food)
    while node is not None:
        group = up(node, standard)
        if group is None or group in out:
            break
        out.append(group)
        node = reference.commodity(group)
    return out


def screen_naive(result: Result, reference: Reference, *, watch_fraction: float = 0.5) -> Verdict:
    """Same verdicts as :func:`screen`, found by scanning every limit, ban and cut-off row."""
    _check_fraction(watch_fraction)
    if result.qualitative is _Q_INVALID:
        return _INVALID_TEST
    reading = Reading(result.analyte, result.value_mg_kg, result.lod_mg_kg, result.loq_mg_kg, "")
    regulated = {lim.analyte for lim in reference.limits} | {b.analyte for b in reference.bans}
    regulated |= {part.definition for part in reference.residues}
    for part in reference.residues:  # a component regulated only through a sum is judged as its definition
        if part.component == result.analyte and part.component not in regulated:
            reading = _plain_reading(result, reference)
            break
    analyte = reading.analyte
    day = result.sampled_at.astimezone(CHINA_TZ).date()
    ancestors = _naive_ancestors(reference, result.commodity, GB2763)  # MRLs and bans
    ancestors_gb2762 = _naive_ancestors(reference, result.commodity, GB2762)  # contaminant limits
    known = reference.commodity(result.commodity) is not None
    analyte_row = reference.analyte(analyte)
    species = analyte_row.speciated_as if analyte_row is not None else None

    best: tuple[int, int] | None = None
    hit: LimitHit | None = None
    for lim in reference.limits:
        if lim.analyte == analyte:
            rank = 0
        elif species is not None and lim.analyte == species:
            rank = 1
        else:
            continue
        chain = ancestors_gb2762 if lim.kind is LimitKind.contaminant else ancestors
        if not known or lim.food not in chain:
            continue
        if not _naive_in_force(lim.effective_from, lim.effective_to, day):
            continue
        key = (chain.index(lim.food), rank)
        if best is None or key < best:
            best, hit = key, (lim, rank == 1)

    ban: Ban | None = None
    ban_depth = 0
    for b in reference.bans:
        if b.analyte != analyte or not _naive_in_force(b.effective_from, b.effective_to, day):
            continue
        if b.scope == ALL_FOODS:
            depth = len(ancestors)
        elif known and b.scope in ancestors:
            depth = ancestors.index(b.scope)
        else:
            continue
        if ban is None or depth < ban_depth:
            ban, ban_depth = b, depth

    cutoff: QuickCutoff | None = None
    if result.percent is not None:  # a reading on the method's own scale
        for c in reference.cutoffs:
            if c.is_mass:
                continue
            if c.method == result.method and c.analyte == analyte:
                cutoff = c
                break
            if c.method == result.method and c.analyte == ANY_ANALYTE and cutoff is None:
                cutoff = c
    elif result.method in QUICK_METHODS:  # a kit's detection cut-off: the method's own, else any method's
        for c in reference.cutoffs:
            if not c.is_mass or c.analyte != analyte:
                continue
            if c.method == result.method:
                cutoff = c
                break
            if c.method is None and cutoff is None:
                cutoff = c
    verdict = _judge(result, reading, hit, ban, cutoff, watch_fraction)
    if known and analyte_known(reference, result.analyte):
        return verdict
    return _unclassified(result, known, verdict)


def analyte_known(reference: Reference, code: str) -> bool:
    return any(a.code == code for a in reference.analytes)
