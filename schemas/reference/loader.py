"""Read and validate the reference CSV files; a broken file fails with its name, line and reason.

File format: UTF-8 CSV with a header row; blank lines and lines starting with ``#`` are comments;
one record per physical line (no quoted line breaks), so the reported line is the line in an editor.
Lists (aliases) are ``|``-separated; booleans are ``yes`` / ``no``; dates ISO ``YYYY-MM-DD``; an empty
``effective_to`` means "still in force".
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from schemas.codes import QUICK_METHODS, AnalyteType, Confidence, Method
from schemas.reference.model import (
    ALL_FOODS,
    ANY_ANALYTE,
    BANNABLE_TYPES,
    CUTOFF_MASS_UNITS,
    GB2762,
    GB2763,
    KIND_ANALYTE_TYPE,
    PERCENT,
    Analyte,
    Ban,
    Commodity,
    Edition,
    Limit,
    LimitKind,
    QuickCutoff,
    Reference,
    ResidueComponent,
    snake,
    up,
)

DATA_DIR = Path(__file__).resolve().parent

FOODS_FILE = "foods.csv"
ANALYTES_FILE = "analytes.csv"
EDITIONS_FILE = "editions.csv"
MRL_FILE = "pesticide_mrls.csv"
CONTAMINANT_FILE = "contaminant_limits.csv"
VET_DRUG_FILE = "vet_drug_mrls.csv"
ADDITIVE_FILE = "additive_limits.csv"
# the limit file of each kind; the files of the later kinds are optional (missing = no such limits)
LIMIT_FILES: dict[LimitKind, str] = {
    LimitKind.mrl: MRL_FILE,
    LimitKind.contaminant: CONTAMINANT_FILE,
    LimitKind.vet_drug: VET_DRUG_FILE,
    LimitKind.additive: ADDITIVE_FILE,
}
OPTIONAL_LIMIT_FILES = frozenset({VET_DRUG_FILE, ADDITIVE_FILE})
BANS_FILE = "bans.csv"
CUTOFFS_FILE = "quick_cutoffs.csv"
RESIDUES_FILE = "residues.csv"

FOOD_COLUMNS = (
    "code",
    "parent",
    "gb2762_parent",
    "is_group",
    "name_en",
    "name_zh",
    "aliases",
    "enzyme_false_positive",
    "note",
)
FOOD_OPTIONAL = ("gb2762_parent",)  # a file written before the column existed reads as all empty
ANALYTE_COLUMNS = ("code", "type", "name_en", "name_zh", "aliases", "speciated_as", "note")
EDITION_COLUMNS = ("edition", "standard", "kind", "effective_from", "effective_to", "source", "confidence")
LIMIT_COLUMNS = (
    "analyte",
    "food",
    "limit_mg_kg",
    "edition",
    "effective_from",
    "effective_to",
    "source",
    "confidence",
)
BAN_COLUMNS = ("analyte", "scope", "effective_from", "effective_to", "announcement", "source", "confidence")
CUTOFF_COLUMNS = (
    "method",
    "analyte",
    "unit",
    "positive_at",
    "watch_from",
    "standard",
    "source",
    "confidence",
)

RESIDUE_COLUMNS = ("definition", "component", "factor", "source", "confidence")

MAX_CELL = 500


class ReferenceDataError(Exception):
    """A reference file is missing or wrong; ``str()`` is ``file:line: reason``."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Row:
    file: str
    line: int
    cells: dict[str, str]

    def fail(self, reason: str) -> ReferenceDataError:
        return ReferenceDataError(self.file, self.line, reason)

    def text(self, column: str, *, required: bool = True) -> str:
        value = self.cells[column]
        if required and not value:
            raise self.fail(f"{column} is empty")
        if len(value) > MAX_CELL:
            raise self.fail(f"{column} is longer than {MAX_CELL} characters")
        return value

    def code(self, column: str, *, required: bool = True) -> str:
        value = self.text(column, required=required)
        if value and value != snake(value):
            raise self.fail(f"{column} {value!r} is not a snake_case code (expected {snake(value)!r})")
        return value

    def flag(self, column: str) -> bool:
        value = self.cells[column].lower()
        if value in ("yes", "true", "1"):
            return True
        if value in ("no", "false", "0", ""):
            return False
        raise self.fail(f"{column} must be yes or no, not {value!r}")

    def day(self, column: str, *, required: bool = True) -> date | None:
        value = self.text(column, required=required)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.fail(f"{column} {value!r} is not a date (YYYY-MM-DD)") from None

    def positive(self, column: str, *, allow_zero: bool = False) -> float:
        value = self.text(column)
        try:
            number = float(value)
        except ValueError:
            raise self.fail(f"{column} {value!r} is not a number") from None
        if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
            raise self.fail(f"{column} must be {'>= 0' if allow_zero else '> 0'} and finite, not {value}")
        return number

    def confidence(self) -> Confidence:
        value = self.text("confidence")
        try:
            return Confidence(value)
        except ValueError:
            allowed = ", ".join(c.value for c in Confidence)
            raise self.fail(f"confidence {value!r} is not one of {allowed}") from None

    def aliases(self) -> tuple[str, ...]:
        raw = self.text("aliases", required=False)
        return tuple(a.strip() for a in raw.split("|") if a.strip())

    def period(self) -> tuple[date, date | None]:
        start = self.day("effective_from")
        end = self.day("effective_to", required=False)
        if start is None:  # unreachable: a required date is never None
            raise self.fail("effective_from is empty")
        if end is not None and end <= start:
            raise self.fail(f"effective_to {end} is not after effective_from {start}")
        return start, end


def _rows(directory: Path, name: str, columns: Sequence[str], optional: Sequence[str] = ()) -> Iterator[_Row]:
    """The records of ``name``; its header is ``columns``, or ``columns`` without the ``optional``
    ones (those then read as empty)."""
    path = directory / name
    short = tuple(c for c in columns if c not in optional)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReferenceDataError(name, 0, f"file not found in {directory}") from None
    except UnicodeDecodeError as exc:
        raise ReferenceDataError(name, 0, f"not UTF-8: {exc}") from None
    header: list[str] | None = None
    missing: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cells = next(csv.reader([raw]))
        if header is None:
            header = [c.strip() for c in cells]
            if tuple(header) not in (tuple(columns), short):
                raise ReferenceDataError(name, number, f"header must be {','.join(columns)}")
            missing = dict.fromkeys((c for c in columns if c not in header), "")
            continue
        if len(cells) != len(header):
            raise ReferenceDataError(name, number, f"{len(cells)} cells, the header has {len(header)}")
        yield _Row(name, number, {**missing, **{k: v.strip() for k, v in zip(header, cells, strict=True)}})
    if header is None:
        raise ReferenceDataError(name, 0, "no header row")


def _overlaps(a: tuple[date, date | None], b: tuple[date, date | None]) -> bool:
    a_end, b_end = a[1] or date.max, b[1] or date.max
    return a[0] < b_end and b[0] < a_end


def _check_aliases(kind: str, records: Sequence[tuple[_Row, str, tuple[str, ...]]]) -> None:
    """No spelling (as given or snake-cased) may name two different codes."""
    owner: dict[str, tuple[str, int]] = {}
    for row, code, spellings in records:
        for spelling in spellings:
            for key in {spelling, snake(spelling)}:
                if not key:
                    continue
                seen = owner.setdefault(key, (code, row.line))
                if seen[0] != code:
                    raise row.fail(f"{kind} spelling {key!r} of {code} already names {seen[0]} (line {seen[1]})")


def _load_foods(directory: Path) -> list[Commodity]:
    rows: list[tuple[_Row, Commodity]] = []
    seen: dict[str, int] = {}
    for row in _rows(directory, FOODS_FILE, FOOD_COLUMNS, FOOD_OPTIONAL):
        code = row.code("code")
        if code == ALL_FOODS:
            raise row.fail(f"{ALL_FOODS!r} is reserved for ban scopes")
        if code in seen:
            raise row.fail(f"duplicate food {code!r} (first on line {seen[code]})")
        seen[code] = row.line
        food = Commodity(
            code=code,
            parent=row.code("parent", required=False) or None,
            gb2762_parent=row.code("gb2762_parent", required=False) or None,
            is_group=row.flag("is_group"),
            name_en=row.text("name_en"),
            name_zh=row.text("name_zh"),
            aliases=row.aliases(),
            enzyme_false_positive=row.flag("enzyme_false_positive"),
            note=row.text("note", required=False),
        )
        rows.append((row, food))
    by_code = {f.code: f for _, f in rows}
    for row, food in rows:
        if food.parent is not None and food.parent not in by_code:
            raise row.fail(f"parent {food.parent!r} of {food.code} is not a food in {FOODS_FILE}")
        if food.gb2762_parent is not None:
            if food.gb2762_parent not in by_code:
                raise row.fail(f"gb2762_parent {food.gb2762_parent!r} of {food.code} is not a food in {FOODS_FILE}")
            if food.gb2762_parent == food.parent:
                raise row.fail(f"gb2762_parent of {food.code} equals its parent; leave it empty")
    for row, food in rows:
        for standard in (GB2763, GB2762):
            path = [food.code]
            cur = up(food, standard)
            while cur is not None:
                if cur in path:
                    raise row.fail(f"{standard} parent cycle: {' -> '.join([*path, cur])}")
                path.append(cur)
                cur = up(by_code[cur], standard)
    _check_aliases("food", [(row, f.code, (f.code, f.name_en, f.name_zh, *f.aliases)) for row, f in rows])
    return [f for _, f in rows]


def _load_analytes(directory: Path) -> list[Analyte]:
    rows: list[tuple[_Row, Analyte]] = []
    seen: dict[str, int] = {}
    for row in _rows(directory, ANALYTES_FILE, ANALYTE_COLUMNS):
        code = row.code("code")
        if code == ANY_ANALYTE:
            raise row.fail(f"{ANY_ANALYTE!r} is reserved")
        if code in seen:
            raise row.fail(f"duplicate analyte {code!r} (first on line {seen[code]})")
        seen[code] = row.line
        kind = row.text("type")
        try:
            analyte_type = AnalyteType(kind)
        except ValueError:
            raise row.fail(f"type {kind!r} is not one of {', '.join(t.value for t in AnalyteType)}") from None
        rows.append(
            (
                row,
                Analyte(
                    code=code,
                    type=analyte_type,
                    name_en=row.text("name_en"),
                    name_zh=row.text("name_zh"),
                    aliases=row.aliases(),
                    speciated_as=row.code("speciated_as", required=False) or None,
                    note=row.text("note", required=False),
                ),
            )
        )
    by_code = {a.code: a for _, a in rows}
    for row, a in rows:
        if a.speciated_as is None:
            continue
        species = by_code.get(a.speciated_as)
        if species is None:
            raise row.fail(f"speciated_as {a.speciated_as!r} is not an analyte in {ANALYTES_FILE}")
        if species.code == a.code or species.speciated_as is not None or species.type != a.type:
            raise row.fail(f"speciated_as {a.speciated_as!r} must be another, final analyte of type {a.type}")
    _check_aliases("analyte", [(row, a.code, (a.code, a.name_en, a.name_zh, *a.aliases)) for row, a in rows])
    return [a for _, a in rows]


def _load_editions(directory: Path) -> list[Edition]:
    out: dict[str, Edition] = {}
    for row in _rows(directory, EDITIONS_FILE, EDITION_COLUMNS):
        name = row.text("edition")
        if name in out:
            raise row.fail(f"duplicate edition {name!r}")
        kind = row.text("kind")
        try:
            limit_kind = LimitKind(kind)
        except ValueError:
            raise row.fail(f"kind {kind!r} is not one of {', '.join(k.value for k in LimitKind)}") from None
        start, end = row.period()
        out[name] = Edition(
            edition=name,
            standard=row.text("standard"),
            kind=limit_kind,
            effective_from=start,
            effective_to=end,
            source=row.text("source"),
            confidence=row.confidence(),
        )
    return list(out.values())


def _load_limits(
    directory: Path,
    name: str,
    kind: LimitKind,
    foods: dict[str, Commodity],
    analytes: dict[str, Analyte],
    editions: dict[str, Edition],
) -> list[Limit]:
    want = KIND_ANALYTE_TYPE[kind]
    out: list[Limit] = []
    if name in OPTIONAL_LIMIT_FILES and not (directory / name).exists():
        return out
    periods: dict[tuple[str, str], list[tuple[tuple[date, date | None], int]]] = {}
    for row in _rows(directory, name, LIMIT_COLUMNS):
        analyte = row.code("analyte")
        if analyte not in analytes:
            raise row.fail(f"analyte {analyte!r} is not in {ANALYTES_FILE}")
        if analytes[analyte].type is not want:
            raise row.fail(f"analyte {analyte!r} is a {analytes[analyte].type}, this file holds {want} limits")
        food = row.code("food")
        if food not in foods:
            raise row.fail(f"food {food!r} is not in {FOODS_FILE}")
        value = row.positive("limit_mg_kg")
        edition_name = row.text("edition")
        edition = editions.get(edition_name)
        if edition is None:
            raise row.fail(f"edition {edition_name!r} is not in {EDITIONS_FILE}")
        if edition.kind is not kind:
            raise row.fail(f"edition {edition_name!r} is a {edition.kind} edition, not {kind}")
        period = row.period()
        if period[0] < edition.effective_from or (
            edition.effective_to is not None and (period[1] is None or period[1] > edition.effective_to)
        ):
            raise row.fail(f"period {period[0]}..{period[1] or ''} lies outside edition {edition_name}")
        key = (analyte, food)
        for other, line in periods.get(key, ()):
            if _overlaps(period, other):
                raise row.fail(f"duplicate: another {analyte} limit on {food} is in force then (line {line})")
        periods.setdefault(key, []).append((period, row.line))
        out.append(
            Limit(
                analyte=analyte,
                food=food,
                limit_mg_kg=value,
                edition=edition_name,
                effective_from=period[0],
                effective_to=period[1],
                source=row.text("source"),
                confidence=row.confidence(),
                kind=kind,
                file=name,
                line=row.line,
            )
        )
    return out


def _load_bans(directory: Path, foods: dict[str, Commodity], analytes: dict[str, Analyte]) -> list[Ban]:
    out: list[Ban] = []
    for row in _rows(directory, BANS_FILE, BAN_COLUMNS):
        analyte = row.code("analyte")
        if analyte not in analytes:
            raise row.fail(f"analyte {analyte!r} is not in {ANALYTES_FILE}")
        if analytes[analyte].type not in BANNABLE_TYPES:
            allowed = ", ".join(sorted(t.value for t in BANNABLE_TYPES))
            raise row.fail(f"analyte {analyte!r} is a {analytes[analyte].type}; a ban names one of {allowed}")
        scope = row.code("scope")
        if scope != ALL_FOODS and scope not in foods:
            raise row.fail(f"scope {scope!r} is neither {ALL_FOODS!r} nor a food in {FOODS_FILE}")
        period = row.period()
        for other in out:
            if other.analyte != analyte or not _overlaps(period, (other.effective_from, other.effective_to)):
                continue
            if _nested(scope, other.scope, foods):
                raise row.fail(
                    f"duplicate: {analyte} is already banned on {other.scope} then (line {other.line}); "
                    "end one ban where the other starts"
                )
        out.append(
            Ban(
                analyte=analyte,
                scope=scope,
                effective_from=period[0],
                effective_to=period[1],
                announcement=row.text("announcement"),
                source=row.text("source"),
                confidence=row.confidence(),
                file=BANS_FILE,
                line=row.line,
            )
        )
    return out


def _nested(a: str, b: str, foods: dict[str, Commodity]) -> bool:
    """True when one scope contains the other (``all`` contains every food)."""
    if ALL_FOODS in (a, b):
        return True

    def up(code: str) -> set[str]:
        seen: set[str] = set()
        cur: str | None = code
        while cur is not None and cur not in seen:
            seen.add(cur)
            cur = foods[cur].parent
        return seen

    return a in up(b) or b in up(a)


_CUTOFF_UNIT_SPELLINGS = {"ug/kg": "µg/kg", "μg/kg": "µg/kg"}  # the Greek mu and plain u as the micro sign


def _load_cutoffs(directory: Path, analytes: dict[str, Analyte]) -> list[QuickCutoff]:
    out: dict[tuple[Method | None, str], QuickCutoff] = {}
    for row in _rows(directory, CUTOFFS_FILE, CUTOFF_COLUMNS):
        raw_unit = row.text("unit")
        unit = _CUTOFF_UNIT_SPELLINGS.get(raw_unit, raw_unit)
        if unit != PERCENT and unit not in CUTOFF_MASS_UNITS:
            raise row.fail(f"unit {raw_unit!r} is not one of {PERCENT}, {', '.join(CUTOFF_MASS_UNITS)}")
        raw_method = row.text("method")
        method: Method | None = None
        if raw_method == ANY_ANALYTE:
            if unit == PERCENT:
                raise row.fail(f"method {ANY_ANALYTE!r} (any quick method) is for cut-offs in mg/kg or µg/kg")
        else:
            try:
                method = Method(raw_method)
            except ValueError:
                raise row.fail(f"method {raw_method!r} is not a method") from None
            if method not in QUICK_METHODS:
                raise row.fail(f"method {method} is not a quick method")
        analyte = row.text("analyte")
        if analyte != ANY_ANALYTE and analyte not in analytes:
            raise row.fail(f"analyte {analyte!r} is neither {ANY_ANALYTE!r} nor in {ANALYTES_FILE}")
        if analyte == ANY_ANALYTE and unit != PERCENT:
            raise row.fail("a cut-off in mg/kg or µg/kg names its analyte")
        positive_at = row.positive("positive_at")
        watch_from = row.positive("watch_from", allow_zero=True)
        if watch_from > positive_at:
            raise row.fail(f"watch_from {watch_from:g} is above positive_at {positive_at:g}")
        if (method, analyte) in out:
            raise row.fail(f"duplicate cut-off for {raw_method}/{analyte}")
        out[(method, analyte)] = QuickCutoff(
            method=method,
            analyte=analyte,
            unit=unit,
            standard=row.text("standard"),
            positive_at=positive_at,
            watch_from=watch_from,
            source=row.text("source"),
            confidence=row.confidence(),
            file=CUTOFFS_FILE,
            line=row.line,
        )
    return list(out.values())


def _load_residues(directory: Path, analytes: dict[str, Analyte]) -> list[ResidueComponent]:
    """Residue definitions that are sums; an old reference directory without the file has none."""
    if not (directory / RESIDUES_FILE).exists():
        return []
    out: list[ResidueComponent] = []
    seen: set[tuple[str, str]] = set()
    for row in _rows(directory, RESIDUES_FILE, RESIDUE_COLUMNS):
        definition, component = row.code("definition"), row.code("component")
        for column, code in (("definition", definition), ("component", component)):
            if code not in analytes:
                raise row.fail(f"{column} {code!r} is not in {ANALYTES_FILE}")
        if analytes[component].type is not analytes[definition].type:
            raise row.fail(
                f"component {component!r} is a {analytes[component].type}, "
                f"its definition {definition!r} a {analytes[definition].type}: a sum adds parts of one family"
            )
        if (definition, component) in seen:
            raise row.fail(f"duplicate component {component!r} of {definition!r}")
        seen.add((definition, component))
        out.append(
            ResidueComponent(
                definition=definition,
                component=component,
                factor=row.positive("factor"),
                source=row.text("source"),
                confidence=row.confidence(),
                file=RESIDUES_FILE,
                line=row.line,
            )
        )
    return out


def load_reference(directory: Path | None = None) -> Reference:
    """Read and check every reference file in ``directory`` (default: the packaged data)."""
    directory = DATA_DIR if directory is None else Path(directory)
    foods = _load_foods(directory)
    analytes = _load_analytes(directory)
    editions = _load_editions(directory)
    food_map = {f.code: f for f in foods}
    analyte_map = {a.code: a for a in analytes}
    edition_map = {e.edition: e for e in editions}
    limits: list[Limit] = []
    for kind, name in LIMIT_FILES.items():
        limits += _load_limits(directory, name, kind, food_map, analyte_map, edition_map)
    bans = _load_bans(directory, food_map, analyte_map)
    cutoffs = _load_cutoffs(directory, analyte_map)
    residues = _load_residues(directory, analyte_map)
    return Reference(
        foods=foods,
        analytes=analytes,
        editions=editions,
        limits=limits,
        bans=bans,
        cutoffs=cutoffs,
        residues=residues,
        source=str(directory),
    )


def load_names(directory: Path | None = None) -> Reference:
    """Only the food classification and the analytes of ``directory`` (no limits, bans or cut-offs):
    what a standard's table is resolved against when the limit files are being rebuilt."""
    directory = DATA_DIR if directory is None else Path(directory)
    return Reference(
        foods=_load_foods(directory),
        analytes=_load_analytes(directory),
        editions=(),
        limits=(),
        bans=(),
        cutoffs=(),
        source=str(directory),
    )
