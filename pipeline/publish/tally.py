"""The period's results as a regulator publishes them, computed from plain rows (pure: no ClickHouse,
no settings, no clock; the shell in :mod:`pipeline.publish.command` reads the rows).

The rules, each a function a unit test checks:

- **Who is named.** Only a lab-confirmed finding names a vendor: a result of a confirmatory method
  (not a quick screen) whose verdict is ``exceeds`` or ``banned``. :func:`named_findings` keeps those
  and nothing else, whatever the rows handed to it (the shell's query already asks for no other).
- **Quick positives are counts.** A quick screen's ``positive`` (and a quick ``exceeds`` or ``banned``,
  which the screen never gives but a forged message might carry) is counted as a quick positive: no
  row of the quick tests carries a vendor, a site name or a result id into the report.
- **Not judged is not a pass.** ``unclassified``, ``inconclusive`` and ``no_limit`` (and any verdict this
  module does not know) are counted as "not judged"; the pass rate is passes / (passes + non-compliant)
  over the lab tests only, and is None when nothing was judged.
- ``watch`` is a pass: the value is within the limit (or a banned substance was detected below its
  LOQ, a follow-up and no legal finding).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.codes import QUICK_METHODS
from schemas.reference import CHINA_TZ, Reference
from schemas.votes import PRIORITY_CATEGORIES

PASS_VERDICTS = frozenset({"compliant", "watch"})
NONCOMPLIANT_VERDICTS = frozenset({"exceeds", "banned"})
QUICK_POSITIVE_VERDICTS = frozenset({"positive", "exceeds", "banned"})
NOT_JUDGED_VERDICTS = frozenset({"unclassified", "inconclusive", "no_limit"})  # and anything unknown

UNCLASSIFIED = "unclassified"  # the category of a commodity label the classification does not know
_QUICK_METHOD_NAMES = frozenset(str(m) for m in QUICK_METHODS)


@dataclass(frozen=True, slots=True)
class CountRow:
    """How many of the period's results share these values (one row of the shell's GROUP BY)."""

    commodity: str
    district: str
    site_type: str
    quick: bool
    verdict: str
    tests: int


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One stored result offered for the list of findings (a lab exceedance or ban, if the rules agree)."""

    result_id: str
    sample_id: str
    method: str
    quick: bool
    verdict: str
    vendor_id: str | None
    site_name: str
    district: str
    site_type: str
    commodity: str
    analyte: str
    value_mg_kg: float | None
    limit_mg_kg: float | None
    basis: str
    sampled_at: datetime


@dataclass(frozen=True, slots=True)
class Food:
    """A food or group of the classification: its GB 2763 chain (itself first, the root last)."""

    code: str
    name_zh: str
    name_en: str
    chain: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Names:
    """What the page calls things: the food classification and the analytes' names (code -> (zh, en))."""

    foods: Mapping[str, Food]
    analytes: Mapping[str, tuple[str, str]]

    def food_name(self, code: str) -> tuple[str, str]:
        f = self.foods.get(code)
        return (f.name_zh, f.name_en) if f is not None else (code, code)

    def analyte_name(self, code: str) -> tuple[str, str]:
        return self.analytes.get(code, (code, code))

    def category(self, commodity: str) -> tuple[str, str]:
        """(top category, subgroup) of a commodity code: the root of its chain and the group below it
        (a food directly under its category, or a category itself, is its own subgroup);
        (UNCLASSIFIED, UNCLASSIFIED) for a label the classification does not know."""
        f = self.foods.get(commodity)
        if f is None or not f.chain:
            return UNCLASSIFIED, UNCLASSIFIED
        chain = f.chain
        return chain[-1], chain[-2] if len(chain) >= 2 else chain[-1]

    def within(self, commodity: str, group: str) -> bool:
        f = self.foods.get(commodity)
        return f is not None and group in f.chain


@dataclass(frozen=True, slots=True)
class Priority:
    """A citizens' priority category of the period (its rank among the votes, 1 = most)."""

    category: str
    label: str
    votes: int
    rank: int


@dataclass(slots=True)
class Counts:
    """The tests of one group. Lab: passes, non-compliant and not judged; quick: negative, positive
    (counts only) and not judged."""

    lab_tests: int = 0
    lab_pass: int = 0
    lab_noncompliant: int = 0
    lab_not_judged: int = 0
    quick_tests: int = 0
    quick_negative: int = 0
    quick_positive: int = 0
    quick_not_judged: int = 0

    def add(self, quick: bool, verdict: str, n: int) -> None:
        if quick:
            self.quick_tests += n
            if verdict in QUICK_POSITIVE_VERDICTS:
                self.quick_positive += n
            elif verdict in PASS_VERDICTS:
                self.quick_negative += n
            else:
                self.quick_not_judged += n
        else:
            self.lab_tests += n
            if verdict in NONCOMPLIANT_VERDICTS:
                self.lab_noncompliant += n
            elif verdict in PASS_VERDICTS:
                self.lab_pass += n
            else:  # unclassified, inconclusive, no_limit, and a lab 'positive' no rule gives
                self.lab_not_judged += n

    @property
    def tests(self) -> int:
        return self.lab_tests + self.quick_tests

    @property
    def not_judged(self) -> int:
        return self.lab_not_judged + self.quick_not_judged

    @property
    def pass_rate_pct(self) -> float | None:
        return pass_rate_pct(self.lab_pass, self.lab_noncompliant)


def pass_rate_pct(passes: int, noncompliant: int) -> float | None:
    """Passes over judged lab tests in percent, to one decimal, rounded down (100.0 only when nothing
    failed); None when nothing was judged."""
    judged = passes + noncompliant
    if judged == 0:
        return None
    return (passes * 1000 // judged) / 10


def is_quick(method: str, quick: bool) -> bool:
    """A quick screen by either sign: the stored flag or the method's name."""
    return quick or method in _QUICK_METHOD_NAMES


def is_confirmed_finding(row: ResultRow) -> bool:
    """A lab-confirmed finding: a confirmatory method and a verdict of ``exceeds`` or ``banned``."""
    return not is_quick(row.method, row.quick) and row.verdict in NONCOMPLIANT_VERDICTS


@dataclass(frozen=True, slots=True)
class Finding:
    """A lab-confirmed non-compliant result as published: it names the vendor."""

    sampled_on: str
    district: str
    site_type: str
    site_name: str
    vendor_id: str
    commodity: str
    commodity_zh: str
    commodity_en: str
    analyte: str
    analyte_zh: str
    analyte_en: str
    verdict: str
    value_mg_kg: float | None
    limit_mg_kg: float | None
    basis: str
    sample_id: str


def local_day(ts: datetime) -> str:
    """The date in China of a time (naive = UTC, as ClickHouse hands it out)."""
    aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return aware.astimezone(CHINA_TZ).date().isoformat()


def named_findings(rows: Iterable[ResultRow], names: Names) -> list[Finding]:
    """The lab-confirmed findings among ``rows`` (every other row is left out), oldest first, dated in
    China time."""
    out: list[tuple[datetime, str, Finding]] = []
    for r in rows:
        if not is_confirmed_finding(r):
            continue
        czh, cen = names.food_name(r.commodity)
        azh, aen = names.analyte_name(r.analyte)
        out.append((r.sampled_at, r.result_id, Finding(
            sampled_on=local_day(r.sampled_at), district=r.district, site_type=r.site_type, site_name=r.site_name,
            vendor_id=r.vendor_id or "", commodity=r.commodity, commodity_zh=czh, commodity_en=cen,
            analyte=r.analyte, analyte_zh=azh, analyte_en=aen, verdict=r.verdict, value_mg_kg=r.value_mg_kg,
            limit_mg_kg=r.limit_mg_kg, basis=r.basis, sample_id=r.sample_id,
        )))
    out.sort(key=lambda t: (t[0], t[1]))
    return [f for _, _, f in out]


@dataclass(frozen=True, slots=True)
class FollowUps:
    """What became of the period's quick positives: a lab result that ``confirms`` one found a
    non-compliance (confirmed), lab results on it all passed (not confirmed), or none yet / none judged
    (awaiting). Counts only: nothing here names anyone."""

    confirmed: int = 0
    not_confirmed: int = 0
    awaiting: int = 0


def follow_ups(quick_positive_ids: Iterable[str], lab_follow_ups: Iterable[tuple[str, str]]) -> FollowUps:
    """Each quick positive (by result id, as a lab result's ``confirms`` names it) counted once: confirmed
    when any lab result on it is ``exceeds`` or ``banned``, not confirmed when lab results on it exist and
    all pass, else awaiting (no lab result yet, or only results not judged)."""
    verdicts: dict[str, set[str]] = {}
    for confirms, verdict in lab_follow_ups:
        verdicts.setdefault(confirms, set()).add(verdict)
    confirmed = not_confirmed = awaiting = 0
    for rid in quick_positive_ids:
        seen = verdicts.get(rid, set())
        if seen & NONCOMPLIANT_VERDICTS:
            confirmed += 1
        elif seen and seen <= PASS_VERDICTS:
            not_confirmed += 1
        else:
            awaiting += 1
    return FollowUps(confirmed, not_confirmed, awaiting)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a table: a key (a code), its names, its level (category tables) and its counts."""

    key: str
    name_zh: str
    name_en: str
    counts: Counts
    level: str = ""
    parent: str = ""


@dataclass(frozen=True, slots=True)
class PriorityLine:
    priority: Priority
    name_zh: str
    name_en: str
    known: bool
    counts: Counts


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one period's pages show."""

    period: str
    total: Counts
    categories: list[Line]
    districts: list[Line]
    site_types: list[Line]
    findings: list[Finding]
    priorities: list[PriorityLine]
    generated_at: str
    follow_ups: FollowUps = FollowUps()


SITE_TYPE_NAMES: Mapping[str, tuple[str, str]] = {
    "farmers_market": ("农贸市场", "Farmers' market"),
    "supermarket": ("超市", "Supermarket"),
    "ecommerce_warehouse": ("电商仓库", "E-commerce warehouse"),
    "wholesale_market": ("批发市场", "Wholesale market"),
    "testing_centre": ("检测中心", "Testing centre"),
}


def _rollup(rows: Iterable[CountRow], key: str) -> dict[str, Counts]:
    out: dict[str, Counts] = {}
    for r in rows:
        out.setdefault(getattr(r, key), Counts()).add(r.quick, r.verdict, r.tests)
    return out


def by_category(rows: Sequence[CountRow], names: Names) -> list[Line]:
    """Each top category, then its subgroups (the category's order: most tests first; the
    unclassified labels last)."""
    tops: dict[str, Counts] = {}
    subs: dict[tuple[str, str], Counts] = {}
    for r in rows:
        top, sub = names.category(r.commodity)
        tops.setdefault(top, Counts()).add(r.quick, r.verdict, r.tests)
        subs.setdefault((top, sub), Counts()).add(r.quick, r.verdict, r.tests)

    def order(item: tuple[str, Counts]) -> tuple[bool, int, str]:
        return item[0] == UNCLASSIFIED, -item[1].tests, item[0]

    lines: list[Line] = []
    for top, c in sorted(tops.items(), key=order):
        zh, en = ("未分类食品名称", "Unclassified food label") if top == UNCLASSIFIED else names.food_name(top)
        lines.append(Line(top, zh, en, c, level="category"))
        if top == UNCLASSIFIED:
            continue
        for (t, sub), sc in sorted(subs.items(), key=lambda kv: (-kv[1].tests, kv[0][1])):
            if t != top or sub == top:
                continue
            szh, sen = names.food_name(sub)
            lines.append(Line(sub, szh, sen, sc, level="subgroup", parent=top))
    return lines


def by_district(rows: Sequence[CountRow]) -> list[Line]:
    return [Line(k, k, k, c) for k, c in sorted(_rollup(rows, "district").items())]


def by_site_type(rows: Sequence[CountRow]) -> list[Line]:
    out = []
    for k, c in sorted(_rollup(rows, "site_type").items()):
        zh, en = SITE_TYPE_NAMES.get(k, (k, k))
        out.append(Line(k, zh, en, c))
    return out


def priority_lines(rows: Sequence[CountRow], priorities: Iterable[Priority], names: Names) -> list[PriorityLine]:
    """The citizens' top-10 categories (rank 1..PRIORITY_CATEGORIES) with the results on every food within
    each (a category the classification does not know is listed, with no results, never dropped)."""
    out = []
    for p in sorted(priorities, key=lambda p: (p.rank, -p.votes, p.category)):
        if not 1 <= p.rank <= PRIORITY_CATEGORIES:
            continue
        c = Counts()
        for r in rows:
            if names.within(r.commodity, p.category):
                c.add(r.quick, r.verdict, r.tests)
        known = p.category in names.foods
        zh, en = names.food_name(p.category) if known else (p.label, p.label)
        out.append(PriorityLine(p, zh, en, known, c))
    return out


def total(rows: Iterable[CountRow]) -> Counts:
    c = Counts()
    for r in rows:
        c.add(r.quick, r.verdict, r.tests)
    return c


def build_report(
    period: str, rows: Sequence[CountRow], results: Iterable[ResultRow], priorities: Iterable[Priority],
    names: Names, *, generated_at: str, follow_up: FollowUps | None = None,
) -> Report:
    """The whole report of a period from its counts, the rows offered as findings, the votes and what
    became of the quick positives."""
    return Report(
        period=period, total=total(rows), categories=by_category(rows, names), districts=by_district(rows),
        site_types=by_site_type(rows), findings=named_findings(results, names),
        priorities=priority_lines(rows, priorities, names), generated_at=generated_at,
        follow_ups=follow_up or FollowUps(awaiting=total(rows).quick_positive),
    )


def names_from(reference: Reference) -> Names:
    """The classification and analyte names of a loaded reference, as plain data."""
    foods = {f.code: Food(f.code, f.name_zh, f.name_en, reference.ancestors(f.code)) for f in reference.foods}
    return Names(foods=foods, analytes={a.code: (a.name_zh, a.name_en) for a in reference.analytes})
