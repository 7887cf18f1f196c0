"""Counts of what a reference edition holds, by family, source standard and confidence (pure).

The family of a row is the type of its analyte (pesticide, contaminant, veterinary_drug,
banned_compound, additive, screen): limits are counted by family, edition and confidence; bans by
family and confidence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from schemas.reference.model import KIND_ANALYTE_TYPE, Reference

__all__ = ["ReferenceCounts", "reference_counts"]


@dataclass(frozen=True, slots=True)
class ReferenceCounts:
    foods: int  # named foods (leaves and foods that are not groups)
    groups: int  # categories and subgroups
    spellings: int  # names and aliases a label can resolve through (foods and analytes)
    analytes: Counter[str]  # by family (analyte type)
    limits: Counter[tuple[str, str, str]]  # (family, edition, confidence)
    limit_analytes: Counter[str]  # distinct analytes with a limit, by family
    bans: Counter[tuple[str, str]]  # (family, confidence)
    banned_analytes: Counter[str]  # distinct banned analytes, by family
    residue_sums: Counter[str]  # residue definitions that are sums, by family
    cutoffs: Counter[str]  # quick-test cut-off rows: "reading scale (%)" or "kit detection (mg/kg)"

    def rows(self) -> list[tuple[str, str, int]]:
        """(what, detail, count) lines for a table."""
        out: list[tuple[str, str, int]] = [
            ("foods", "named foods", self.foods),
            ("foods", "categories and subgroups", self.groups),
            ("names", "spellings that resolve (names and aliases)", self.spellings),
        ]
        out += [("analytes", family, n) for family, n in sorted(self.analytes.items())]
        out += [("analytes with a limit", family, n) for family, n in sorted(self.limit_analytes.items())]
        out += [
            ("limits", f"{family} {edition} {confidence}", n)
            for (family, edition, confidence), n in sorted(self.limits.items())
        ]
        out += [("bans", f"{family} {confidence}", n) for (family, confidence), n in sorted(self.bans.items())]
        out += [("banned analytes", family, n) for family, n in sorted(self.banned_analytes.items())]
        out += [("residue definitions (sums)", family, n) for family, n in sorted(self.residue_sums.items())]
        out += [("quick-test cut-offs", kind, n) for kind, n in sorted(self.cutoffs.items())]
        return out


def reference_counts(reference: Reference) -> ReferenceCounts:
    spellings: set[str] = set()
    for f in reference.foods:
        spellings.update(s for s in (f.code, f.name_en, f.name_zh, *f.aliases) if s)
    for a in reference.analytes:
        spellings.update(s for s in (a.code, a.name_en, a.name_zh, *a.aliases) if s)

    def family(code: str) -> str:
        analyte = reference.analyte(code)
        return "unknown" if analyte is None else str(analyte.type)

    limit_analytes: dict[str, set[str]] = {}
    for lim in reference.limits:
        limit_analytes.setdefault(str(KIND_ANALYTE_TYPE[lim.kind]), set()).add(lim.analyte)
    banned: dict[str, set[str]] = {}
    for b in reference.bans:
        banned.setdefault(family(b.analyte), set()).add(b.analyte)
    return ReferenceCounts(
        foods=sum(1 for f in reference.foods if not f.is_group),
        groups=sum(1 for f in reference.foods if f.is_group),
        spellings=len(spellings),
        analytes=Counter(str(a.type) for a in reference.analytes),
        limits=Counter(
            (str(KIND_ANALYTE_TYPE[lim.kind]), lim.edition, str(lim.confidence)) for lim in reference.limits
        ),
        limit_analytes=Counter({kind: len(codes) for kind, codes in limit_analytes.items()}),
        bans=Counter((family(b.analyte), str(b.confidence)) for b in reference.bans),
        banned_analytes=Counter({kind: len(codes) for kind, codes in banned.items()}),
        residue_sums=Counter(family(d) for d in {r.definition for r in reference.residues}),
        cutoffs=Counter("kit detection (mg/kg)" if c.is_mass else "reading scale (%)" for c in reference.cutoffs),
    )
