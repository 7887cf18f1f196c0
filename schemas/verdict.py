"""The outcome of screening one result: what was decided, against which limit, and why."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

__all__ = ["SEVERITY", "Rule", "Verdict", "VerdictKind", "severity"]


class VerdictKind(StrEnum):
    compliant = "compliant"
    watch = "watch"  # >= watch fraction of the limit, or in the enzyme watch band, or needs speciation
    positive = "positive"  # a quick test over its cut-off: not a legal finding, needs a lab test
    exceeds = "exceeds"  # a confirmatory result over the limit
    banned = "banned"  # a confirmatory detection of a pesticide banned for that food on the sample date
    no_limit = "no_limit"  # a known food and analyte with no limit, ban or cut-off in force (or an invalid test)
    unclassified = "unclassified"  # a food or analyte label the reference data does not know: a data-steward matter
    inconclusive = "inconclusive"  # the method cannot show compliance (its LOQ or LOD is above the limit)


# Severity order compliant < watch < positive < exceeds < banned. no_limit, unclassified and
# inconclusive are -1: none is a finding about the food; each says why the food was not judged
# (nothing in force, a label nobody knows, a method unfit for the limit). None of them is compliant.
SEVERITY: Final[dict[VerdictKind, int]] = {
    VerdictKind.no_limit: -1,
    VerdictKind.unclassified: -1,
    VerdictKind.inconclusive: -1,
    VerdictKind.compliant: 0,
    VerdictKind.watch: 1,
    VerdictKind.positive: 2,
    VerdictKind.exceeds: 3,
    VerdictKind.banned: 4,
}


def severity(kind: VerdictKind | str) -> int:
    return SEVERITY[VerdictKind(kind)]


class Rule(StrEnum):
    """Machine codes of the rule that produced a verdict (``Verdict.rule``)."""

    mrl = "mrl"  # confirmatory value vs a pesticide MRL (GB 2763)
    contaminant = "contaminant"  # confirmatory value vs a contaminant limit (GB 2762)
    vet_drug = "vet_drug"  # confirmatory value vs a veterinary drug MRL (GB 31650)
    additive = "additive"  # confirmatory value vs a food additive maximum use level (GB 2760)
    speciated = "speciated"  # a total (mercury, arsenic) vs the limit of its regulated species
    ban = "ban"  # banned substance (pesticide, animal drug, non-food): detected -> banned; else, no limit -> compliant
    detected = "detected"  # a lab's qualitative read-out vs the limit (positive -> watch)
    quick_cutoff = "quick_cutoff"  # quick method on its own scale (enzyme inhibition %)
    quick_limit = "quick_limit"  # quick method reporting mg/kg (xrf, strip) vs the food's limit
    quick_ban = "quick_ban"  # quick detection of a banned substance that has no limit here
    quick_qualitative = "quick_qualitative"  # a strip or device read as negative / positive
    invalid_test = "invalid_test"  # the device reported the test itself invalid
    unit_mismatch = "unit_mismatch"  # % for a method that does not report % (or mg/kg for enzyme)
    no_limit = "no_limit"  # no limit, ban or cut-off found
    unknown_food = "unknown_food"  # the commodity label is not in the food classification
    unknown_analyte = "unknown_analyte"  # the analyte label is not in the reference data
    loq_above_limit = "loq_above_limit"  # not quantified by a method whose LOQ (or LOD) is above the limit
    ban_trace = "ban_trace"  # a banned substance detected between LOD and LOQ: follow up, not a legal finding


class Verdict(BaseModel):
    """``limit_mg_kg`` is the limit the value was judged against (None for bans, cut-offs in %);
    ``ratio`` is value / limit (for the enzyme cut-off: inhibition % / positive cut-off %)."""

    model_config = ConfigDict(frozen=True)

    verdict: VerdictKind
    limit_mg_kg: float | None
    ratio: float | None
    rule: str
    edition: str | None
    source: str | None
    confidence: str | None  # checked | old | unverified (schemas.codes.Confidence values)
    limit_food: str | None
    basis: str

    @property
    def severity(self) -> int:
        return SEVERITY[self.verdict]
