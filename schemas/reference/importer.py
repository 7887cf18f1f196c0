"""Read a limit standard's table in the regulators' layout and turn it into limit rows.

Pure: the caller reads the file and passes its text, the loaded :class:`Reference` and the edition's
dates; nothing here touches the disk or the clock.

The layout (UTF-8 CSV, ``#`` comment lines, one header row; English or Chinese column names):

=====================  ==========================  =====================================================
column                 also accepted               content
=====================  ==========================  =====================================================
``analyte``            农药, 污染物, 农药/污染物      name: code, Chinese or English name, or alias
``food_path``          食品类别/名称, 食品类别, 食品  ``蔬菜:叶菜类蔬菜:大白菜`` (``:`` or ``：``) or one unique name
``limit``              最大残留限量, 限量            number; a trailing ``*`` marks a temporary limit
``unit``               单位                        ``mg/kg`` (empty means mg/kg), ``µg/kg`` or ``g/kg``
``remark``             备注                        ``*`` = temporary limit; other text is kept
``residue_definition`` 残留物                      free text, kept
``source``             来源                        where the value was read (empty: the caller's default)
``confidence``         可信度                      checked | old | unverified (empty: the caller's default)
=====================  ==========================  =====================================================

A food path is resolved segment by segment against the foods' Chinese names and aliases: the last
segment names the food; each earlier segment must name one of its ancestors, in order (a path may
skip levels the classification has in between). Every row that cannot become a limit is returned
as a :class:`Problem` with its file and line; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from schemas.codes import Confidence
from schemas.reference.model import (
    GB2763,
    KIND_ANALYTE_TYPE,
    KIND_CHAIN,
    Analyte,
    Limit,
    LimitKind,
    Reference,
)

PATH_SEPARATORS: Final = re.compile(r"[:：]")
TEMPORARY_MARK: Final = "*"

# canonical column -> the header spellings accepted for it (compared stripped and lower-cased)
HEADER_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "analyte": ("analyte", "pesticide", "contaminant", "农药", "污染物", "农药/污染物", "农药名称", "污染物名称"),
    "food_path": ("food_path", "food", "食品类别/名称", "食品类别", "食品名称", "食品"),
    "limit": ("limit", "mrl", "最大残留限量", "限量", "最大残留限量(mg/kg)"),
    "unit": ("unit", "单位"),
    "remark": ("remark", "remarks", "备注"),
    "residue_definition": ("residue_definition", "residue", "残留物", "残留物定义"),
    "source": ("source", "来源"),
    "confidence": ("confidence", "可信度"),
}
REQUIRED_COLUMNS: Final = ("analyte", "food_path", "limit")

# unit -> how many of it make one mg/kg
UNITS: Final[Mapping[str, Decimal]] = {
    "mg/kg": Decimal(1),
    "g/kg": Decimal("0.001"),  # GB 2760 maximum use levels
    "µg/kg": Decimal(1000),
    "μg/kg": Decimal(1000),
    "ug/kg": Decimal(1000),
}


class ProblemKind(StrEnum):
    bad_header = "bad_header"  # the header lacks a required column or repeats one
    bad_row = "bad_row"  # wrong number of cells
    unknown_path = "unknown_path"  # the food path names no food of the classification (or several)
    unknown_analyte = "unknown_analyte"  # no analyte of that name
    wrong_kind = "wrong_kind"  # e.g. a contaminant in a pesticide table
    bad_number = "bad_number"  # the limit is not a positive finite number
    bad_unit = "bad_unit"
    bad_confidence = "bad_confidence"
    duplicate = "duplicate"  # the same food and analyte twice with different values


# Problems --allow-unknown lets through (the row is still left out and reported)
UNKNOWN_KINDS: Final = frozenset({ProblemKind.unknown_path, ProblemKind.unknown_analyte})


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    kind: ProblemKind
    message: str
    value: str = ""  # the cell at fault (the path, the analyte name, the number)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.message}"


@dataclass(frozen=True, slots=True)
class ImportedLimit:
    """One limit row, with what the table said about it beyond the value."""

    limit: Limit
    path: str
    temporary: bool
    remark: str
    residue_definition: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    file: str
    rows_read: int
    limits: tuple[ImportedLimit, ...]
    problems: tuple[Problem, ...]
    merged: tuple[Problem, ...] = field(default=())  # exact repeats (same food, analyte, value), kept once

    @property
    def blocking(self) -> tuple[Problem, ...]:
        """The problems ``--allow-unknown`` does not excuse."""
        return tuple(p for p in self.problems if p.kind not in UNKNOWN_KINDS)

    def residue_definitions(self) -> dict[str, str]:
        """analyte code -> the residue definition text the table gives for it (first seen)."""
        out: dict[str, str] = {}
        for row in self.limits:
            if row.residue_definition:
                out.setdefault(row.limit.analyte, row.residue_definition)
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class EditionSpec:
    """What the table becomes: which edition, in force when, and the defaults for empty cells."""

    edition: str
    kind: LimitKind
    effective_from: date
    effective_to: date | None
    default_source: str
    default_confidence: Confidence = Confidence.unverified


class FoodIndex:
    """Food names (Chinese name and aliases, also codes) -> candidate foods, for path resolution."""

    def __init__(self, reference: Reference, *, standard: str = GB2763) -> None:
        self._reference = reference
        self._standard = standard  # whose grouping the paths follow (GB 2762 tables: gb2762_parent)
        self._by_name: dict[str, list[str]] = {}
        for food in reference.foods:
            for spelling in {food.code, food.name_zh, *food.aliases}:
                if spelling:
                    self._by_name.setdefault(_name_key(spelling), []).append(food.code)

    def named(self, name: str) -> list[str]:
        return self._by_name.get(_name_key(name), [])

    def resolve(self, path: str) -> tuple[str | None, str]:
        """``(code, "")`` for a path naming exactly one food, else ``(None, why)``."""
        segments = [s.strip() for s in PATH_SEPARATORS.split(path)]
        if not path.strip() or any(not s for s in segments):
            return None, f"food path {path!r} has an empty segment"
        candidates = self.named(segments[-1])
        if not candidates:
            missing = [s for s in segments[:-1] if not self.named(s)]
            also = f" (nor {', '.join(repr(s) for s in missing)})" if missing else ""
            return None, f"no food is named {segments[-1]!r}{also}"
        fitting = [c for c in candidates if self._ancestors_fit(c, segments[:-1])]
        if len(fitting) == 1:
            return fitting[0], ""
        if not fitting:
            return None, f"{segments[-1]!r} is not under {':'.join(segments[:-1])!r} in the food classification"
        return None, f"{path!r} is ambiguous: it names {', '.join(sorted(fitting))}"

    def _ancestors_fit(self, code: str, upper: Sequence[str]) -> bool:
        """Each upper segment (outermost first) names an ancestor of ``code``, in order."""
        chain = list(reversed(self._reference.ancestors(code, standard=self._standard)[1:]))  # root first
        pos = 0
        for segment in upper:
            names = set(self.named(segment))
            while pos < len(chain) and chain[pos] not in names:
                pos += 1
            if pos == len(chain):
                return False
            pos += 1
        return True


def _name_key(name: str) -> str:
    return name.strip().lower()


def parse_table(
    text: str,
    *,
    file: str,
    reference: Reference,
    spec: EditionSpec,
    foods: FoodIndex | None = None,
) -> ImportResult:
    """Parse one table. Rows with a problem are left out and reported; exact repeats are kept once."""
    foods = FoodIndex(reference, standard=KIND_CHAIN[spec.kind]) if foods is None else foods
    want = KIND_ANALYTE_TYPE[spec.kind]
    problems: list[Problem] = []
    merged: list[Problem] = []
    limits: list[ImportedLimit] = []
    seen: dict[tuple[str, str], tuple[ImportedLimit, int]] = {}
    conflicting: set[tuple[str, str]] = set()
    columns: dict[str, int] | None = None
    header_width = 0
    rows_read = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in next(csv.reader([raw]))]
        if columns is None:
            columns, message = _header(cells)
            header_width = len(cells)
            if columns is None:
                problems.append(Problem(file, number, ProblemKind.bad_header, message))
                break
            continue
        rows_read += 1
        if len(cells) != header_width:
            problems.append(
                Problem(file, number, ProblemKind.bad_row, f"{len(cells)} cells, the header has {header_width}")
            )
            continue
        row = {name: cells[i] for name, i in columns.items()}
        fail = _Collector(file, number)
        row_problems = fail.problems
        analyte = _resolve_analyte(row["analyte"], reference)
        if analyte is None:
            fail(ProblemKind.unknown_analyte, f"no analyte is named {row['analyte']!r}", row["analyte"])
        elif analyte.type is not want:
            message = f"{analyte.code} is a {analyte.type}: this is a {spec.kind} table"
            fail(ProblemKind.wrong_kind, message, row["analyte"])
        food, why = foods.resolve(row["food_path"])
        if food is None:
            fail(ProblemKind.unknown_path, why, row["food_path"])
        value, temporary = _limit_value(row["limit"], row.get("unit", ""), fail)
        remark = row.get("remark", "")
        if remark.strip() == TEMPORARY_MARK or remark.strip().startswith(TEMPORARY_MARK):
            temporary = True
        confidence = _confidence(row.get("confidence", ""), spec.default_confidence, fail)
        if row_problems or analyte is None or food is None or value is None or confidence is None:
            problems.extend(row_problems)
            continue
        source = _source_text(row.get("source", "") or spec.default_source, temporary, remark)
        imported = ImportedLimit(
            limit=Limit(
                analyte=analyte.code,
                food=food,
                limit_mg_kg=value,
                edition=spec.edition,
                effective_from=spec.effective_from,
                effective_to=spec.effective_to,
                source=source,
                confidence=confidence,
                kind=spec.kind,
                file=file,
                line=number,
            ),
            path=row["food_path"],
            temporary=temporary,
            remark=remark,
            residue_definition=row.get("residue_definition", ""),
        )
        key = (analyte.code, food)
        earlier = seen.get(key)
        if earlier is not None:
            first, first_line = earlier
            if first.limit.limit_mg_kg != value:
                conflicting.add(key)
                problems.append(
                    Problem(
                        file,
                        number,
                        ProblemKind.duplicate,
                        f"{analyte.code} on {food} is {_fmt(value)} mg/kg here and {_fmt(first.limit.limit_mg_kg)} "
                        f"mg/kg on line {first_line}",
                        row["food_path"],
                    )
                )
            else:
                merged.append(
                    Problem(
                        file, number, ProblemKind.duplicate, f"repeats line {first_line} with the same value: kept once"
                    )
                )
            continue
        seen[key] = (imported, number)
        limits.append(imported)
    if columns is None and not problems:
        problems.append(Problem(file, 0, ProblemKind.bad_header, "no header row"))
    # a conflicting value must not be half-kept: every row of a conflicting key stays out
    limits = [row for row in limits if (row.limit.analyte, row.limit.food) not in conflicting]
    return ImportResult(
        file=file, rows_read=rows_read, limits=tuple(limits), problems=tuple(problems), merged=tuple(merged)
    )


def _header(cells: Sequence[str]) -> tuple[dict[str, int] | None, str]:
    lookup = {_name_key(alias): name for name, aliases in HEADER_NAMES.items() for alias in aliases}
    columns: dict[str, int] = {}
    for i, cell in enumerate(cells):
        name = lookup.get(_name_key(cell))
        if name is None:
            continue
        if name in columns:
            return None, f"column {name} appears twice ({cells[columns[name]]!r} and {cell!r})"
        columns[name] = i
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        return None, f"header lacks {', '.join(missing)} (read {','.join(cells)})"
    return columns, ""


def _resolve_analyte(name: str, reference: Reference) -> Analyte | None:
    return reference.analyte(reference.normalise_analyte(name)) if name else None


class _Collector:
    """The problems of one row."""

    def __init__(self, file: str, line: int) -> None:
        self.file, self.line = file, line
        self.problems: list[Problem] = []

    def __call__(self, kind: ProblemKind, message: str, value: str) -> None:
        self.problems.append(Problem(self.file, self.line, kind, message, value))


def _limit_value(raw: str, unit: str, fail: _Collector) -> tuple[float | None, bool]:
    """The limit in mg/kg (exact decimal conversion) and whether the cell carried the ``*`` mark."""
    text = raw.strip()
    temporary = text.endswith(TEMPORARY_MARK)
    text = text.rstrip(TEMPORARY_MARK).strip()
    unit_key = unit.strip().replace(" ", "") or "mg/kg"
    per_mg = UNITS.get(unit_key.lower()) or UNITS.get(unit_key)
    if per_mg is None:
        fail(ProblemKind.bad_unit, f"unit {unit!r} is not one of {', '.join(UNITS)}", unit)
        return None, temporary
    try:
        number = Decimal(text)
    except InvalidOperation:
        fail(ProblemKind.bad_number, f"limit {raw!r} is not a number", raw)
        return None, temporary
    if not number.is_finite() or number <= 0:
        fail(ProblemKind.bad_number, f"limit {raw!r} must be a positive finite number", raw)
        return None, temporary
    value = float(number / per_mg)
    if not math.isfinite(value) or value <= 0:
        fail(ProblemKind.bad_number, f"limit {raw!r} is out of range", raw)
        return None, temporary
    return value, temporary


def _confidence(raw: str, default: Confidence, fail: _Collector) -> Confidence | None:
    if not raw:
        return default
    try:
        return Confidence(raw)
    except ValueError:
        allowed = ", ".join(c.value for c in Confidence)
        fail(ProblemKind.bad_confidence, f"confidence {raw!r} is not one of {allowed}", raw)
        return None


def _source_text(source: str, temporary: bool, remark: str) -> str:
    parts = [source]
    if temporary:
        parts.append("temporary limit (*)")
    extra = remark.strip().lstrip(TEMPORARY_MARK).strip()
    if extra:
        parts.append(f"remark: {extra}")
    return "; ".join(parts)


def _fmt(value: float) -> str:
    """A limit as written in the CSV files: shortest exact decimal, no exponent, no trailing zeros."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


format_limit = _fmt


# --- writing the limits files -------------------------------------------------------------------------

LIMIT_HEADER: Final = "analyte,food,limit_mg_kg,edition,effective_from,effective_to,source,confidence"


def limit_line(limit: Limit) -> str:
    """One row of pesticide_mrls.csv / contaminant_limits.csv."""
    cells = [
        limit.analyte,
        limit.food,
        _fmt(limit.limit_mg_kg),
        limit.edition,
        limit.effective_from.isoformat(),
        "" if limit.effective_to is None else limit.effective_to.isoformat(),
        limit.source,
        str(limit.confidence),
    ]
    return csv_line(cells)


def csv_line(cells: Iterable[str]) -> str:
    """One CSV record (quoted only where needed), as the reference files are written."""
    out: list[str] = []
    for cell in cells:
        if any(ch in cell for ch in ',"\n\r') or cell != cell.strip():
            out.append('"' + cell.replace('"', '""') + '"')
        else:
            out.append(cell)
    return ",".join(out)


def render_limits(comments: Sequence[str], limits: Iterable[Limit]) -> str:
    """A whole limits file: ``#`` comment lines, the header, one line per limit."""
    lines = [f"# {c}" if c else "#" for c in comments]
    lines.append(LIMIT_HEADER)
    lines.extend(limit_line(lim) for lim in limits)
    return "\n".join(lines) + "\n"


def carried_forward(row: Limit, spec: EditionSpec, carried_from: str) -> Limit:
    """``row`` of edition ``carried_from`` repeated in the next edition, where that edition's own value
    is not known here: same value, marked unverified, and the source says so."""
    return Limit(
        analyte=row.analyte,
        food=row.food,
        limit_mg_kg=row.limit_mg_kg,
        edition=spec.edition,
        effective_from=spec.effective_from,
        effective_to=spec.effective_to,
        source=f"{spec.edition} value unknown here: {carried_from} value carried forward ({row.confidence} there)",
        confidence=Confidence.unverified,
        kind=row.kind,
        file=row.file,
        line=row.line,
    )


__all__ = [
    "HEADER_NAMES",
    "UNITS",
    "EditionSpec",
    "FoodIndex",
    "ImportResult",
    "ImportedLimit",
    "Problem",
    "ProblemKind",
    "carried_forward",
    "csv_line",
    "format_limit",
    "limit_line",
    "parse_table",
    "render_limits",
]
