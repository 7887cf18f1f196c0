"""The reference data as immutable values, with the lookup structures ``screen`` needs precomputed.

Nothing here reads files (the loader does) or the clock (times are parameters). Effective dates are
calendar days in China: a limit effective from 2026-03-01 applies from 2026-03-01T00:00+08:00.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from schemas.codes import AnalyteType, Confidence, Method

CHINA_TZ: Final = ZoneInfo("Asia/Shanghai")
ALL_FOODS: Final = "all"  # the ban scope that covers every food, known to the taxonomy or not
ANY_ANALYTE: Final = "*"  # a quick-test cut-off row that applies to every analyte of its method
GB2763: Final = "GB 2763"  # pesticide MRLs and bans: a food's groups are its ``parent`` chain
GB2762: Final = "GB 2762"  # contaminant limits: a food's groups follow ``gb2762_parent`` where set
STANDARDS: Final = (GB2763, GB2762)

_NON_CODE = re.compile(r"[^0-9a-z\u00b5\u03bc\u3400-\u9fff]+")


def snake(name: str) -> str:
    """``"Lambda-Cyhalothrin "`` -> ``"lambda_cyhalothrin"``: lower case, runs of other characters -> ``_``.

    Letters outside ASCII that matter here (CJK ideographs, µ) are kept, so ``"豇豆"`` stays ``"豇豆"``.
    """
    return _NON_CODE.sub("_", name.strip().lower()).strip("_")


def china_midnight_utc(day: date) -> datetime:
    """The instant a calendar day starts in China, as an aware UTC datetime."""
    return datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ).astimezone(UTC)


class LimitKind(StrEnum):
    mrl = "mrl"  # pesticide maximum residue limit (GB 2763)
    contaminant = "contaminant"  # contaminant maximum level (GB 2762)
    vet_drug = "vet_drug"  # veterinary drug maximum residue limit (GB 31650)
    additive = "additive"  # food additive maximum use level (GB 2760), judged as a residue limit


# the analyte family each kind of limit holds, and the food chain it is looked up along
KIND_ANALYTE_TYPE: Final[Mapping[LimitKind, AnalyteType]] = {
    LimitKind.mrl: AnalyteType.pesticide,
    LimitKind.contaminant: AnalyteType.contaminant,
    LimitKind.vet_drug: AnalyteType.veterinary_drug,
    LimitKind.additive: AnalyteType.additive,
}
KIND_CHAIN: Final[Mapping[LimitKind, str]] = {
    LimitKind.mrl: GB2763,
    LimitKind.contaminant: GB2762,
    LimitKind.vet_drug: GB2763,  # GB 31650 tissues sit in GB 2763's animal categories
    LimitKind.additive: GB2763,  # GB 2760 foods placed in GB 2763's tree (processed foods added)
}
# the analyte families a ban may name
BANNABLE_TYPES: Final = frozenset({AnalyteType.pesticide, AnalyteType.banned_compound, AnalyteType.veterinary_drug})


@dataclass(frozen=True, slots=True)
class Commodity:
    """A food or a food group in the taxonomy (one parent; the roots have none).

    ``parent`` places it in the GB 2763 classification (Appendix A). ``gb2762_parent`` is set only
    where GB 2762 files it under another group (celery: a leafy vegetable in GB 2763, a stem
    vegetable in GB 2762); contaminant limits are looked up along that chain, everything else
    along ``parent``.
    """

    code: str
    name_en: str
    name_zh: str
    parent: str | None = None
    gb2762_parent: str | None = None
    is_group: bool = False
    aliases: tuple[str, ...] = ()
    enzyme_false_positive: bool = False  # known to give enzyme-inhibition false positives
    note: str = ""


@dataclass(frozen=True, slots=True)
class Analyte:
    code: str
    type: AnalyteType
    name_en: str
    name_zh: str
    aliases: tuple[str, ...] = ()
    speciated_as: str | None = None  # a total (mercury) whose regulated species (methylmercury) has limits
    note: str = ""


@dataclass(frozen=True, slots=True)
class Edition:
    """One edition of a standard and the days it was in force (``effective_to`` exclusive)."""

    edition: str
    standard: str
    kind: LimitKind
    effective_from: date
    effective_to: date | None
    source: str
    confidence: Confidence


@dataclass(frozen=True, slots=True)
class Limit:
    """One maximum limit for an analyte on a food or food group, in force on [from, to)."""

    analyte: str
    food: str
    limit_mg_kg: float
    edition: str
    effective_from: date
    effective_to: date | None
    source: str
    confidence: Confidence
    kind: LimitKind
    file: str = ""
    line: int = 0
    starts: datetime = field(init=False, compare=False, repr=False)
    ends: datetime | None = field(init=False, compare=False, repr=False)
    basis: str = field(init=False, compare=False, repr=False)
    rule: str = field(init=False, compare=False, repr=False)  # the verdict rule code: mrl | contaminant

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts", china_midnight_utc(self.effective_from))
        ends = None if self.effective_to is None else china_midnight_utc(self.effective_to)
        object.__setattr__(self, "ends", ends)
        object.__setattr__(self, "basis", f"{self.edition}; {self.food}; {self.confidence}; {self.source}")
        object.__setattr__(self, "rule", str(self.kind.value))

    def in_force(self, at: datetime) -> bool:
        return self.starts <= at and (self.ends is None or at < self.ends)


@dataclass(frozen=True, slots=True)
class Ban:
    """A pesticide banned from sale and use on a scope (a food group, or ``all``) from a date."""

    analyte: str
    scope: str
    effective_from: date
    effective_to: date | None
    announcement: str
    source: str
    confidence: Confidence
    file: str = ""
    line: int = 0
    starts: datetime = field(init=False, compare=False, repr=False)
    ends: datetime | None = field(init=False, compare=False, repr=False)
    basis: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts", china_midnight_utc(self.effective_from))
        ends = None if self.effective_to is None else china_midnight_utc(self.effective_to)
        object.__setattr__(self, "ends", ends)
        object.__setattr__(
            self,
            "basis",
            f"{self.announcement}; banned on {'all foods' if self.scope == ALL_FOODS else self.scope} "
            f"from {self.effective_from.isoformat()}; "
            f"{self.confidence}; {self.source}",
        )

    def in_force(self, at: datetime) -> bool:
        return self.starts <= at and (self.ends is None or at < self.ends)


PERCENT: Final = "%"
# mass units a quick-test cut-off may be written in -> how many of them make one mg/kg
CUTOFF_MASS_UNITS: Final[Mapping[str, int]] = {"mg/kg": 1, "µg/kg": 1000}


@dataclass(frozen=True, slots=True)
class QuickCutoff:
    """The cut-offs of a quick method: on its own scale (enzyme inhibition, in %), or, for a strip or
    rapid kit that reports an amount, the kit's detection cut-off for one analyte (in mg/kg or µg/kg).

    A mass cut-off stands in for the LOD / LOQ a device does not send: below ``watch_from`` not
    detected, from ``watch_from`` up to ``positive_at`` detected but below the cut-off, from
    ``positive_at`` detected. ``method`` None (``*`` in the file) means any quick method (a rapid kit
    sent under whichever quick method the device declares); only mass cut-offs may use it.
    """

    method: Method | None
    analyte: str  # an analyte code or ``*``
    unit: str
    standard: str  # the method standard the cut-off comes from (reported as the verdict's edition)
    positive_at: float  # positive when the reading is >= this
    watch_from: float  # watch band [watch_from, positive_at)
    source: str
    confidence: Confidence
    file: str = ""
    line: int = 0
    basis: str = field(init=False, compare=False, repr=False)
    positive_mg_kg: float | None = field(init=False, compare=False, repr=False)  # None for % cut-offs
    watch_mg_kg: float | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        per_mg = CUTOFF_MASS_UNITS.get(self.unit)
        object.__setattr__(self, "positive_mg_kg", None if per_mg is None else self.positive_at / per_mg)
        object.__setattr__(self, "watch_mg_kg", None if per_mg is None else self.watch_from / per_mg)
        unit = self.unit if self.unit == PERCENT else f" {self.unit}"
        object.__setattr__(
            self,
            "basis",
            f"{self.standard}; {self.method or 'any quick method'} positive >= {self.positive_at:g}{unit}, "
            f"watch >= {self.watch_from:g}{unit}; {self.confidence}; {self.source}",
        )

    @property
    def is_mass(self) -> bool:
        """True for a kit's detection cut-off in mg/kg or µg/kg (False for a reading scale in %)."""
        return self.positive_mg_kg is not None


@dataclass(frozen=True, slots=True)
class ResidueComponent:
    """One part of a residue definition that is a sum: the limit on ``definition`` applies to the sum
    of its components' values, each times ``factor`` (expressed as the definition's analyte)."""

    definition: str
    component: str
    factor: float
    source: str
    confidence: Confidence
    file: str = ""
    line: int = 0


class Reference:
    """All reference data, validated, with precomputed lookups.

    Build it with :func:`schemas.reference.load_reference`; the constructor trusts that the parts
    are consistent (the loader checks them and says which file and line is wrong).
    """

    __slots__ = (
        "_alias_analyte",
        "_alias_food",
        "_analytes",
        "_ancestors",
        "_ancestors_gb2762",
        "_ban_chain",
        "_bans_all_foods",
        "_cutoffs",
        "_definition_of",
        "_foods",
        "_limit_chain",
        "_mass_cutoffs",
        "_screen_analyte",
        "_sums",
        "analytes",
        "bans",
        "commodities",
        "cutoffs",
        "editions",
        "foods",
        "limits",
        "residues",
        "source",
    )

    def __init__(
        self,
        *,
        foods: Iterable[Commodity],
        analytes: Iterable[Analyte],
        editions: Iterable[Edition],
        limits: Iterable[Limit],
        bans: Iterable[Ban],
        cutoffs: Iterable[QuickCutoff],
        residues: Iterable[ResidueComponent] = (),
        source: str = "",
    ) -> None:
        self.foods: tuple[Commodity, ...] = tuple(foods)
        self.commodities: tuple[Commodity, ...] = tuple(f for f in self.foods if not f.is_group)
        self.analytes: tuple[Analyte, ...] = tuple(analytes)
        self.editions: Mapping[str, Edition] = {e.edition: e for e in editions}
        self.limits: tuple[Limit, ...] = tuple(limits)
        self.bans: tuple[Ban, ...] = tuple(bans)
        self.cutoffs: tuple[QuickCutoff, ...] = tuple(cutoffs)
        self.residues: tuple[ResidueComponent, ...] = tuple(residues)
        self.source = source
        self._foods: dict[str, Commodity] = {f.code: f for f in self.foods}
        self._analytes: dict[str, Analyte] = {a.code: a for a in self.analytes}
        self._ancestors = {f.code: self._walk_up(f.code, GB2763) for f in self.foods}
        self._ancestors_gb2762 = {f.code: self._walk_up(f.code, GB2762) for f in self.foods}
        self._alias_food = _alias_map((f.code, f.name_en, f.name_zh, f.aliases) for f in self.foods)
        self._alias_analyte = _alias_map((a.code, a.name_en, a.name_zh, a.aliases) for a in self.analytes)
        self._limit_chain = self._build_limit_chain()
        self._ban_chain, self._bans_all_foods = self._build_ban_chain()
        self._cutoffs = {(c.method, c.analyte): c for c in self.cutoffs if not c.is_mass}
        self._mass_cutoffs = {(c.method, c.analyte): c for c in self.cutoffs if c.is_mass}
        # a quick method whose reading is a group screen (enzyme inhibition -> ache_inhibition): the
        # analyte it measures whatever label the device puts on it
        self._screen_analyte: dict[Method, str] = {}
        for c in self.cutoffs:
            if c.method is None or c.is_mass:
                continue
            if c.analyte != ANY_ANALYTE and self._analytes.get(c.analyte, _NO_ANALYTE).type is AnalyteType.screen:
                self._screen_analyte.setdefault(c.method, c.analyte)
        sums: dict[str, list[ResidueComponent]] = {}
        for part in self.residues:
            sums.setdefault(part.definition, []).append(part)
        self._sums = {d: tuple(parts) for d, parts in sums.items()}
        # a component regulated only through a sum (3-hydroxycarbofuran) -> the sum's row; a component
        # with limits or bans of its own, or that is a definition itself (carbendazim, lindane,
        # triadimenol), is judged as itself
        regulated = {lim.analyte for lim in self.limits} | {b.analyte for b in self.bans} | set(self._sums)
        self._definition_of: dict[str, ResidueComponent] = {}
        for part in self.residues:
            if part.component != part.definition and part.component not in regulated:
                self._definition_of.setdefault(part.component, part)

    def __repr__(self) -> str:
        return (
            f"Reference({self.source!r}: {len(self.foods)} foods, {len(self.analytes)} analytes, "
            f"{len(self.limits)} limits, {len(self.bans)} bans)"
        )

    # --- lookups by code -------------------------------------------------------------------------
    def commodity(self, code: str) -> Commodity | None:
        return self._foods.get(code)

    def analyte(self, code: str) -> Analyte | None:
        return self._analytes.get(code)

    def ancestors(self, code: str, *, standard: str = GB2763) -> tuple[str, ...]:
        """The food itself, then its groups up to the root, as ``standard`` groups them
        (GB 2763: ``parent``; GB 2762: ``gb2762_parent`` where set, else ``parent``);
        ``()`` for a food not in the taxonomy."""
        if standard == GB2763:
            return self._ancestors.get(code, ())
        if standard == GB2762:
            return self._ancestors_gb2762.get(code, ())
        raise ValueError(f"standard must be one of {', '.join(STANDARDS)}, not {standard!r}")

    def normalise_commodity(self, name: str) -> str:
        """A code, English or Chinese name, or alias -> the code; anything else -> ``snake(name)``."""
        code = self._alias_food.get(name)
        if code is not None:
            return code
        key = snake(name)
        return self._alias_food.get(key, key)

    def normalise_analyte(self, name: str) -> str:
        code = self._alias_analyte.get(name)
        if code is not None:
            return code
        key = snake(name)
        return self._alias_analyte.get(key, key)

    # --- what screen needs -------------------------------------------------------------------------
    def limit_chain(self, analyte: str, food: str) -> tuple[tuple[Limit, bool], ...]:
        """Candidate limits, most specific food first; per food level, the analyte's own limits,
        then (flag True) those of its regulated species (total mercury -> methylmercury).
        The first one in force on the sample time is the applicable limit."""
        return self._limit_chain.get((analyte, food), ())

    def limit_in_force(self, analyte: str, food: str, at: datetime) -> tuple[Limit, bool] | None:
        for entry in self._limit_chain.get((analyte, food), ()):
            if entry[0].in_force(at):
                return entry
        return None

    def ban_in_force(self, analyte: str, food: str, at: datetime) -> Ban | None:
        """The ban on ``analyte`` covering ``food`` at ``at`` (the most specific scope first)."""
        chain = self._ban_chain.get((analyte, food))
        if chain is None:
            chain = self._bans_all_foods.get(analyte, ())
        for ban in chain:
            if ban.in_force(at):
                return ban
        return None

    def is_known_food(self, code: str) -> bool:
        return code in self._foods

    def is_known_analyte(self, code: str) -> bool:
        return code in self._analytes

    def screen_analyte(self, method: Method) -> str | None:
        """The group screen a quick method reads (enzyme inhibition -> ``ache_inhibition``), if any."""
        return self._screen_analyte.get(method)

    def sum_components(self, definition: str) -> tuple[ResidueComponent, ...]:
        """The components of a residue definition that is a sum (``()`` when it is not one)."""
        return self._sums.get(definition, ())

    def definition_of(self, component: str) -> ResidueComponent | None:
        """For a component that is not a definition itself (3-hydroxycarbofuran), its sum's row."""
        return self._definition_of.get(component)

    def cutoff(self, method: Method, analyte: str) -> QuickCutoff | None:
        """The cut-off of a reading on the method's own scale (%), for the analyte or ``*``."""
        c = self._cutoffs.get((method, analyte))
        if c is None:
            c = self._cutoffs.get((method, ANY_ANALYTE))
        return c

    def mass_cutoff(self, method: Method, analyte: str) -> QuickCutoff | None:
        """A quick kit's detection cut-off for ``analyte`` in mg/kg: the method's own, else any quick method's."""
        c = self._mass_cutoffs.get((method, analyte))
        if c is None:
            c = self._mass_cutoffs.get((None, analyte))
        return c

    def with_cutoff(self, method: Method, analyte: str, *, positive_at: float, watch_from: float) -> Reference:
        """A copy whose cut-off for (method, analyte) is replaced (configuration, e.g. enzyme 40%)."""
        if not 0 <= watch_from <= positive_at:
            raise ValueError("need 0 <= watch_from <= positive_at")
        found = False
        cutoffs: list[QuickCutoff] = []
        for c in self.cutoffs:
            if c.method == method and c.analyte == analyte:
                c = replace(
                    c,
                    positive_at=positive_at,
                    watch_from=watch_from,
                    source=f"configured (reference: {c.source})",
                )
                found = True
            cutoffs.append(c)
        if not found:
            raise KeyError(f"no cut-off for {method}/{analyte} to replace")
        return Reference(
            foods=self.foods,
            analytes=self.analytes,
            editions=self.editions.values(),
            limits=self.limits,
            bans=self.bans,
            cutoffs=cutoffs,
            residues=self.residues,
            source=self.source,
        )

    # --- construction ----------------------------------------------------------------------------
    def _walk_up(self, code: str, standard: str) -> tuple[str, ...]:
        out: list[str] = []
        cur: str | None = code
        while cur is not None and cur not in out:
            out.append(cur)
            node = self._foods.get(cur)
            cur = None if node is None else up(node, standard)
        return tuple(out)

    def _build_limit_chain(self) -> dict[tuple[str, str], tuple[tuple[Limit, bool], ...]]:
        by_key: dict[tuple[str, str], list[Limit]] = {}
        for lim in self.limits:
            by_key.setdefault((lim.analyte, lim.food), []).append(lim)
        for rows in by_key.values():
            rows.sort(key=lambda r: r.effective_from)
        chains: dict[tuple[str, str], tuple[tuple[Limit, bool], ...]] = {}
        for analyte in self.analytes:
            species = analyte.speciated_as
            # contaminant limits hang on GB 2762's groups, pesticide MRLs on GB 2763's
            tree = self._ancestors_gb2762 if analyte.type is AnalyteType.contaminant else self._ancestors
            for food, ancestors in tree.items():
                chain: list[tuple[Limit, bool]] = []
                for level in ancestors:
                    chain.extend((r, False) for r in by_key.get((analyte.code, level), ()))
                    if species is not None:
                        chain.extend((r, True) for r in by_key.get((species, level), ()))
                if chain:
                    chains[(analyte.code, food)] = tuple(chain)
        return chains

    def _build_ban_chain(
        self,
    ) -> tuple[dict[tuple[str, str], tuple[Ban, ...]], dict[str, tuple[Ban, ...]]]:
        chains: dict[tuple[str, str], tuple[Ban, ...]] = {}
        for analyte in {b.analyte for b in self.bans}:
            bans = [b for b in self.bans if b.analyte == analyte]
            for food, ancestors in self._ancestors.items():
                depth = {code: i for i, code in enumerate(ancestors)}
                covering = [b for b in bans if b.scope == ALL_FOODS or b.scope in depth]
                # most specific scope first; ``all`` sits above every root
                covering.sort(key=lambda b: depth.get(b.scope, len(ancestors)))
                if covering:
                    chains[(analyte, food)] = tuple(covering)
        all_foods: dict[str, list[Ban]] = {}
        for b in self.bans:
            if b.scope == ALL_FOODS:
                all_foods.setdefault(b.analyte, []).append(b)
        return chains, {k: tuple(v) for k, v in all_foods.items()}


_NO_ANALYTE: Final = Analyte(code="", type=AnalyteType.pesticide, name_en="", name_zh="")


def up(food: Commodity, standard: str) -> str | None:
    """The group ``standard`` files ``food`` under (GB 2762: ``gb2762_parent`` if set, else ``parent``)."""
    if standard == GB2762 and food.gb2762_parent is not None:
        return food.gb2762_parent
    return food.parent


def _alias_map(entries: Iterable[tuple[str, str, str, tuple[str, ...]]]) -> dict[str, str]:
    """Every spelling (as given and snake-cased) -> code. The loader rejects collisions first."""
    out: dict[str, str] = {}
    for code, name_en, name_zh, aliases in entries:
        for spelling in (code, name_en, name_zh, *aliases):
            if spelling:
                out.setdefault(spelling, code)
                out.setdefault(snake(spelling), code)
    return out
