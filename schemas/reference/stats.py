"""Counts of what a reference edition holds, by kind, source standard and confidence (pure)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from schemas.reference.model import Reference

__all__ = ["ReferenceCounts", "reference_counts"]


@dataclass(frozen=True, slots=True)
class ReferenceCounts:
    foods: int  # named foods (leaves and foods that are not groups)
    groups: int  # categories and subgroups
    spellings: int  # names and aliases a label can resolve through (foods and analytes)
    analytes: Counter[str]  # by type
    limits: Counter[tuple[str, str, str]]  # (kind, edition, confidence)
    limit_analytes: Counter[str]  # distinct analytes with a limit, by kind
    bans: Counter[str]  # by confidence
    banned_analytes: int
    residue_sums: int
    cutoffs: int

    def rows(self) -> list[tuple[str, str, int]]:
        """(what, detail, count) lines for a table."""
        out: list[tuple[str, str, int]] = [
            ("foods", "named foods", self.foods),
            ("foods", "categories and subgroups", self.groups),
            ("names", "spellings that resolve (names and aliases)", self.spellings),
        ]
        out += [("analytes", kind, n) for kind, n in sorted(self.analytes.items())]
        out += [("analytes with a limit", kind, n) for kind, n in sorted(self.limit_analytes.items())]
        out += [
            ("limits", f"{kind} {edition} {confidence}", n)
            for (kind, edition, confidence), n in sorted(self.limits.items())
        ]
        out += [("bans", confidence, n) for confidence, n in sorted(self.bans.items())]
        out += [
            ("bans", "banned analytes", self.banned_analytes),
            ("residue definitions", "sums", self.residue_sums),
            ("quick-test cut-offs", "rows", self.cutoffs),
        ]
        return out


def reference_counts(reference: Reference) -> ReferenceCounts:
    spellings: set[str] = set()
    for f in reference.foods:
        spellings.update(s for s in (f.code, f.name_en, f.name_zh, *f.aliases) if s)
    for a in reference.analytes:
        spellings.update(s for s in (a.code, a.name_en, a.name_zh, *a.aliases) if s)
    limit_analytes: dict[str, set[str]] = {}
    for lim in reference.limits:
        limit_analytes.setdefault(str(lim.kind), set()).add(lim.analyte)
    return ReferenceCounts(
        foods=sum(1 for f in reference.foods if not f.is_group),
        groups=sum(1 for f in reference.foods if f.is_group),
        spellings=len(spellings),
        analytes=Counter(str(a.type) for a in reference.analytes),
        limits=Counter((str(lim.kind), lim.edition, str(lim.confidence)) for lim in reference.limits),
        limit_analytes=Counter({kind: len(codes) for kind, codes in limit_analytes.items()}),
        bans=Counter(str(b.confidence) for b in reference.bans),
        banned_analytes=len({b.analyte for b in reference.bans}),
        residue_sums=len({r.definition for r in reference.residues}),
        cutoffs=len(reference.cutoffs),
    )
