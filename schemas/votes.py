"""Citizens' votes on what to test ("you pick, we test", 你点我检): a vote file in, ranked rows out.

A vote file is CSV (UTF-8, a BOM allowed, ``#`` lines are comments) with the columns ``category``,
``votes`` and ``period`` (also 类别 / 食品类别, 票数 / 投票数, 期间 / 月份). Each category names a food or
a food group of the food classification (``schemas/reference/foods.csv``) by code, English or Chinese
name, or alias; ``votes`` is a whole number (``1,234`` allowed); ``period`` is a month,
``YYYY-MM`` (``2026/11``, ``2026-1`` and ``2026年11月`` are read as such).

:func:`parse_votes` is pure: it returns the rows to store and every problem with its line. Nothing
is dropped silently: a category nobody classified is a problem of kind ``unknown_category`` (the
command lets those through, listed, with ``--allow-unknown``), anything else (a bad number or period,
a missing column) is a problem of its own kind. Two labels that name one category in one period
(豇豆 and 长豆角) are one category: their votes are added and their labels kept, joined by `` | ``
(:data:`VoteBatch.merged` lists them). Within a period the categories are ranked by votes (ties by
code); ranks 1 to :data:`PRIORITY_CATEGORIES` are the period's priority categories.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from schemas.reference.model import Reference

PRIORITY_CATEGORIES: Final = 10  # the ten categories with the most votes become priority categories
MAX_RANK: Final = 255  # rank is a UInt8: categories past 255 share the last rank

COLUMN_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "category": ("category", "类别", "食品类别", "品类"),
    "votes": ("votes", "票数", "投票数"),
    "period": ("period", "期间", "月份", "期次"),
}
UNKNOWN_CATEGORY: Final = "unknown_category"

_PERIOD = re.compile(r"^\s*(\d{4})\s*(?:[-/.]|年)\s*(\d{1,2})\s*月?\s*$")


@dataclass(frozen=True, slots=True)
class VoteRow:
    period: str
    category: str  # food or group code
    label: str  # as the file named it (joined by ' | ' when several labels name the category)
    votes: int
    rank: int


@dataclass(frozen=True, slots=True)
class VoteProblem:
    line: int  # 1-based line of the file (0: the file as a whole)
    kind: str  # unknown_category | bad_votes | bad_period | missing_column | empty
    text: str  # the offending cell
    reason: str

    def render(self, file: str) -> str:
        return f"{file}:{self.line}: {self.kind}: {self.reason}"


@dataclass(frozen=True, slots=True)
class VoteBatch:
    rows: tuple[VoteRow, ...]
    problems: tuple[VoteProblem, ...]
    merged: tuple[str, ...] = field(default=())  # "period category: label | label" notes
    lines_read: int = 0

    @property
    def periods(self) -> tuple[str, ...]:
        return tuple(sorted({r.period for r in self.rows}))

    def unknown(self) -> tuple[VoteProblem, ...]:
        return tuple(p for p in self.problems if p.kind == UNKNOWN_CATEGORY)

    def blocking(self, *, allow_unknown: bool) -> tuple[VoteProblem, ...]:
        """The problems that stop the import (all of them, or all but unknown categories)."""
        return tuple(p for p in self.problems if not (allow_unknown and p.kind == UNKNOWN_CATEGORY))


def parse_period(text: str) -> str | None:
    """``'2026-11'``, ``'2026/1'``, ``'2026年11月'`` -> ``'2026-11'`` / ``'2026-01'``; None if not a month."""
    found = _PERIOD.match(text)
    if found is None:
        return None
    year, month = int(found.group(1)), int(found.group(2))
    if not 1 <= month <= 12:
        return None
    return f"{year:04d}-{month:02d}"


def parse_votes_number(text: str) -> int | None:
    cleaned = text.strip().replace(",", "").replace("，", "").replace("_", "")
    if not cleaned.isdigit() or not cleaned.isascii():
        return None
    return int(cleaned)


def rank_categories(votes: Mapping[str, int]) -> dict[str, int]:
    """category -> rank: most votes first, ties by code, capped at :data:`MAX_RANK`."""
    order = sorted(votes, key=lambda c: (-votes[c], c))
    return {c: min(i + 1, MAX_RANK) for i, c in enumerate(order)}


def _header_map(header: list[str]) -> tuple[dict[str, int], list[str]]:
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.strip().lower()
        for column, names in COLUMN_NAMES.items():
            if key in names and column not in found:
                found[column] = i
    missing = [c for c in COLUMN_NAMES if c not in found]
    return found, missing


def _lines(text: str) -> Iterable[tuple[int, list[str]]]:
    """(line number, cells) of the CSV rows that are not blank or comments."""
    body = text.removeprefix("\ufeff")
    physical = body.splitlines()
    reader = csv.reader(io.StringIO(body))
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if cells[0].lstrip().startswith("#"):
            continue
        if line <= len(physical) and physical[line - 1].lstrip().startswith("#"):
            continue
        yield line, cells


def parse_votes(text: str, reference: Reference) -> VoteBatch:
    """The vote file ``text`` resolved against ``reference``'s food classification (pure)."""
    problems: list[VoteProblem] = []
    rows_iter = iter(_lines(text))
    try:
        _, header = next(rows_iter)
    except StopIteration:
        return VoteBatch((), (VoteProblem(0, "empty", "", "no header and no rows: expected category,votes,period"),))
    columns, missing = _header_map(header)
    if missing:
        names = ", ".join(f"{c} ({' / '.join(COLUMN_NAMES[c][1:])})" for c in missing)
        return VoteBatch((), (VoteProblem(1, "missing_column", ",".join(header), f"missing column(s): {names}"),))
    totals: dict[tuple[str, str], int] = {}
    labels: dict[tuple[str, str], list[str]] = {}
    read = 0
    for line, cells in rows_iter:
        read += 1

        def cell(column: str, cells: list[str] = cells) -> str:
            i = columns[column]
            return cells[i].strip() if i < len(cells) else ""

        label, votes_text, period_text = cell("category"), cell("votes"), cell("period")
        ok = True
        period = parse_period(period_text)
        if period is None:
            problems.append(VoteProblem(line, "bad_period", period_text,
                                        f"period {period_text!r} is not a month (YYYY-MM)"))
            ok = False
        votes = parse_votes_number(votes_text)
        if votes is None:
            problems.append(VoteProblem(line, "bad_votes", votes_text,
                                        f"votes {votes_text!r} is not a whole number >= 0"))
            ok = False
        code = reference.normalise_commodity(label) if label else ""
        if not label or reference.commodity(code) is None:
            problems.append(VoteProblem(
                line, UNKNOWN_CATEGORY, label,
                f"category {label!r} names no food or food group of the classification (foods.csv: a code, "
                "English or Chinese name, or alias)"))
            ok = False
        if not ok or period is None or votes is None:
            continue
        key = (period, code)
        totals[key] = totals.get(key, 0) + votes
        labels.setdefault(key, []).append(label)
    by_period: dict[str, dict[str, int]] = {}
    for (period, code), n in totals.items():
        by_period.setdefault(period, {})[code] = n
    out: list[VoteRow] = []
    merged: list[str] = []
    for period in sorted(by_period):
        ranks = rank_categories(by_period[period])
        for code, rank in sorted(ranks.items(), key=lambda kv: (kv[1], kv[0])):
            given = labels[(period, code)]
            if len(given) > 1:
                merged.append(f"{period} {code}: {' | '.join(given)} (votes added)")
            out.append(VoteRow(period, code, " | ".join(dict.fromkeys(given)), by_period[period][code], rank))
    return VoteBatch(tuple(out), tuple(problems), tuple(merged), read)


def priority_categories(rows: Iterable[VoteRow], period: str, top: int = PRIORITY_CATEGORIES) -> tuple[str, ...]:
    """The period's priority categories: its ``top`` best-ranked category codes, best first."""
    ranked = sorted((r for r in rows if r.period == period), key=lambda r: (r.rank, r.category))
    return tuple(r.category for r in ranked[:top])
