"""The daily sampling plan (issue 23): what to test tomorrow, where, how many, and why. Pure.

Inputs are values (the sites with their budgets, the history of tests as day counts, the follow-ups
open on the day, the citizens' priority categories, the parameters and a seed); the output is a
:class:`Plan` of :class:`PlanLine` s. No clock, no I/O: ``foodrisk plan``, ``GET /v1/plan`` and the
backtest (``pipeline/plan_cmd.py``) feed it.

**Scoring.** Each stratum is (commodity, method, analyte); a cell is a stratum at a site. History
counts are weighted by recency, ``w = 0.5 ** (age_days / half_life_days)`` (default half-life 30
days: a test a month old counts half, three months old an eighth). The non-compliance estimate of a
cell is a beta-binomial posterior mean, shrunk in two levels:

1. the city's rate of each method ``g`` (shrunk to the overall rate) and of each stratum
   ``c = (k + m * g) / (n + m)`` over all sites;
2. the baseline of each district and method, ``b = (k + m * g) / (n + m)``;
3. the stratum in the district, ``d = (k + m * c * b / g) / (n + m)``: a Beta(m*q, m*(1-q)) prior
   whose mean ``q`` is the city's rate of the stratum scaled by how the district's baseline for the
   method compares with the city's;
4. the cell, ``p = (k + m * d) / (n + m)``.

``m`` (``prior_tests``, default 20) is how many tests the prior is worth: three tests with one
finding move a 2 % prior to (1 + 0.4) / 23 = 6 %, not to 33 %.

**Allocation per site and day**, the site's budget ``B`` respected exactly:

1. the random share first, fixed: ``round(random_share * total budget)`` tests (default 20 %) spread
   over the sites by systematic sampling proportional to their budgets (each site gets the floor or
   the ceiling of its share), each test a stratum drawn uniformly at random from the candidate
   strata, seeded; so the random lines estimate the pass rate of the sites' candidate strata without
   bias, whatever the risk lines do;
2. follow-ups: unconfirmed quick positives, open supplier clusters, red-listed vendors, in that
   order (then by their own order), one line each of ``follow_up_tests`` (default 1) at the site;
   those past the budget are returned as ``deferred``, never dropped silently;
3. citizens' priority categories (the period's top-10 categories of ``citizen_votes``): up to
   ``priority_share`` of the budget (default 10 %, at least one test where a candidate stratum falls in a
   category and budget remains), the highest-scoring cells whose commodity is in a category;
4. the rest by risk: cells by estimate, highest first, each up to ``max_tests_per_line`` (default 2)
   tests, down the ranking until the budget is spent.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Final

REASON_UNCONFIRMED: Final = "unconfirmed_positive"
REASON_CLUSTER: Final = "supplier_cluster"
REASON_REDLIST: Final = "redlist"
REASON_PRIORITY: Final = "priority"
REASON_RISK: Final = "risk"
REASON_RANDOM: Final = "random"
REASONS: Final = (REASON_UNCONFIRMED, REASON_CLUSTER, REASON_REDLIST, REASON_PRIORITY, REASON_RISK, REASON_RANDOM)
FOLLOW_UP_ORDER: Final = {REASON_UNCONFIRMED: 0, REASON_CLUSTER: 1, REASON_REDLIST: 2}

DAYS_PER_YEAR: Final = 365
POPULATIONS_FILE: Final = Path(__file__).parent / "reference" / "planning" / "district_populations.csv"


@dataclass(frozen=True, slots=True, order=True)
class Stratum:
    commodity: str
    method: str
    analyte: str

    def label(self) -> str:
        return f"{self.commodity} / {self.analyte or '-'} ({self.method or 'any method'})"


@dataclass(frozen=True, slots=True)
class SiteBudget:
    site_id: str
    district: str
    tests: int  # tests per day at the site
    site_type: str = ""


@dataclass(frozen=True, slots=True)
class HistoryCount:
    """Tests of one stratum at one site on one day, and how many were non-compliant."""

    site_id: str
    district: str
    stratum: Stratum
    day: date
    tests: int
    noncompliant: int


@dataclass(frozen=True, slots=True)
class FollowUp:
    reason: str  # unconfirmed_positive | supplier_cluster | redlist
    site_id: str
    district: str
    stratum: Stratum
    text: str
    vendor_id: str | None = None
    supplier_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlanParams:
    half_life_days: float = 30.0
    prior_tests: float = 20.0
    random_share: float = 0.2
    priority_share: float = 0.1
    max_tests_per_line: int = 2
    follow_up_tests: int = 1

    def __post_init__(self) -> None:
        if not (self.half_life_days > 0 and self.prior_tests > 0):
            raise ValueError("half_life_days and prior_tests must be > 0")
        if not (0.0 <= self.random_share <= 1.0 and 0.0 <= self.priority_share <= 1.0):
            raise ValueError("random_share and priority_share must be within [0, 1]")
        if self.max_tests_per_line < 1 or self.follow_up_tests < 1:
            raise ValueError("max_tests_per_line and follow_up_tests must be >= 1")


@dataclass(frozen=True, slots=True)
class PlanLine:
    district: str
    site_id: str
    line: int
    stratum: Stratum
    tests: int
    reason: str
    reason_text: str
    score: float
    vendor_id: str | None = None
    supplier_id: str | None = None

    @property
    def commodity(self) -> str:
        return self.stratum.commodity


@dataclass(frozen=True, slots=True)
class Plan:
    day: date
    seed: int
    lines: tuple[PlanLine, ...]
    budgets: Mapping[str, int]  # site -> tests per day
    deferred: tuple[FollowUp, ...] = field(default=())

    def tests_at(self, site_id: str) -> int:
        return sum(line.tests for line in self.lines if line.site_id == site_id)

    def tests_by_reason(self) -> dict[str, int]:
        out = dict.fromkeys(REASONS, 0)
        for line in self.lines:
            out[line.reason] += line.tests
        return out


# ---------------------------------------------------------------------------------------------
# Budgets


def parse_populations(text: str) -> dict[str, int]:
    """``district -> residents`` from the CSV text of ``district_populations.csv`` (``#`` comments)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    out: dict[str, int] = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        out[row["district"].strip()] = int(row["population"])
    return out


def district_daily_tests(population: int, tests_per_1000_a_year: float) -> float:
    """Tests a day in a district: ``tests_per_1000_a_year`` per 1,000 residents a year."""
    return population * tests_per_1000_a_year / 1000.0 / DAYS_PER_YEAR


def site_budgets(
    sites: Sequence[tuple[str, str, str]],  # (site_id, district, site_type)
    populations: Mapping[str, int],
    *,
    tests_per_1000_a_year: float = 5.0,
    per_site: int | None = None,
    minimum: int = 1,
) -> list[SiteBudget]:
    """Each site's tests per day: ``per_site`` when given, else its district's daily tests (from the
    population) split over the district's sites by largest remainder, at least ``minimum``. A
    district with no population on record gets the mean per-site budget of the known ones."""
    if per_site is not None:
        return [SiteBudget(s, d, per_site, t) for s, d, t in sorted(sites)]
    by_district: dict[str, list[tuple[str, str, str]]] = {}
    for site in sorted(sites):
        by_district.setdefault(site[1], []).append(site)
    known = [
        district_daily_tests(populations[d], tests_per_1000_a_year) / len(members)
        for d, members in by_district.items()
        if d in populations
    ]
    fallback = sum(known) / len(known) if known else float(minimum)
    out: list[SiteBudget] = []
    for district, members in sorted(by_district.items()):
        total = (
            district_daily_tests(populations[district], tests_per_1000_a_year)
            if district in populations
            else fallback * len(members)
        )
        share = total / len(members)
        counts = [math.floor(share)] * len(members)
        left = round(total) - sum(counts)
        for i in range(max(0, left)):
            counts[i % len(members)] += 1
        out.extend(SiteBudget(s, d, max(minimum, c), t) for (s, d, t), c in zip(members, counts, strict=True))
    return out


# ---------------------------------------------------------------------------------------------
# Scoring


def recency_weight(age_days: float, half_life_days: float) -> float:
    """``0.5 ** (age / half_life)``; a test of the planned day or later weighs 1."""
    return float(0.5 ** (max(0.0, age_days) / half_life_days))


def shrunk(k: float, n: float, prior_mean: float, prior_tests: float) -> float:
    """Beta-binomial posterior mean with a Beta(m*p0, m*(1-p0)) prior: (k + m p0) / (n + m)."""
    return (k + prior_tests * prior_mean) / (n + prior_tests)


@dataclass(frozen=True, slots=True)
class Scores:
    """Shrunk estimates: per cell (site, stratum), district stratum, city stratum, district and city method."""

    cell: Mapping[tuple[str, Stratum], float]
    district_stratum: Mapping[tuple[str, Stratum], float]
    city_stratum: Mapping[Stratum, float]
    district_method: Mapping[tuple[str, str], float]
    city_method: Mapping[str, float]
    weighted_tests: Mapping[tuple[str, Stratum], float]

    def of(self, site_id: str, district: str, stratum: Stratum) -> float:
        """The cell's estimate; an untested cell takes its district stratum's, then the city
        stratum's, the district method's, the city method's, then the overall rate."""
        for found in (
            self.cell.get((site_id, stratum)),
            self.district_stratum.get((district, stratum)),
            self.city_stratum.get(stratum),
            self.district_method.get((district, stratum.method)),
            self.city_method.get(stratum.method),
        ):
            if found is not None:
                return found
        rates = list(self.city_method.values())
        return sum(rates) / len(rates) if rates else 0.0


def score(history: Iterable[HistoryCount], on: date, params: PlanParams) -> Scores:
    """Recency-weighted, shrunk non-compliance estimates (see the module's text)."""
    cell_n: dict[tuple[str, Stratum], float] = {}
    cell_k: dict[tuple[str, Stratum], float] = {}
    cell_district: dict[tuple[str, Stratum], str] = {}
    for h in history:
        if h.tests <= 0:
            continue
        w = recency_weight((on - h.day).days, params.half_life_days)
        key = (h.site_id, h.stratum)
        cell_n[key] = cell_n.get(key, 0.0) + w * h.tests
        cell_k[key] = cell_k.get(key, 0.0) + w * min(h.noncompliant, h.tests)
        cell_district[key] = h.district
    ds_n: dict[tuple[str, Stratum], float] = {}
    ds_k: dict[tuple[str, Stratum], float] = {}
    dm_n: dict[tuple[str, str], float] = {}
    dm_k: dict[tuple[str, str], float] = {}
    cm_n: dict[str, float] = {}
    cm_k: dict[str, float] = {}
    for key, n in cell_n.items():
        k = cell_k[key]
        district, stratum = cell_district[key], key[1]
        ds = (district, stratum)
        ds_n[ds] = ds_n.get(ds, 0.0) + n
        ds_k[ds] = ds_k.get(ds, 0.0) + k
        dm = (district, stratum.method)
        dm_n[dm] = dm_n.get(dm, 0.0) + n
        dm_k[dm] = dm_k.get(dm, 0.0) + k
        cm_n[stratum.method] = cm_n.get(stratum.method, 0.0) + n
        cm_k[stratum.method] = cm_k.get(stratum.method, 0.0) + k
    total_n, total_k = sum(cm_n.values()), sum(cm_k.values())
    overall = total_k / total_n if total_n > 0 else 0.0
    m = params.prior_tests
    cs_n: dict[Stratum, float] = {}
    cs_k: dict[Stratum, float] = {}
    for (district, stratum), n in ds_n.items():
        cs_n[stratum] = cs_n.get(stratum, 0.0) + n
        cs_k[stratum] = cs_k.get(stratum, 0.0) + ds_k[(district, stratum)]
    city_method = {meth: shrunk(cm_k[meth], n, overall, m) for meth, n in cm_n.items()}
    city_stratum = {st: shrunk(cs_k[st], n, city_method[st.method], m) for st, n in cs_n.items()}
    district_method = {dm: shrunk(dm_k[dm], n, city_method[dm[1]], m) for dm, n in dm_n.items()}

    def district_prior(district: str, stratum: Stratum) -> float:
        g = city_method[stratum.method]
        factor = district_method[(district, stratum.method)] / g if g > 0 else 1.0
        return min(1.0, city_stratum[stratum] * factor)

    district_stratum = {ds: shrunk(ds_k[ds], n, district_prior(*ds), m) for ds, n in ds_n.items()}
    cell = {
        key: shrunk(cell_k[key], n, district_stratum[(cell_district[key], key[1])], m) for key, n in cell_n.items()
    }
    return Scores(cell, district_stratum, city_stratum, district_method, city_method, dict(cell_n))


# ---------------------------------------------------------------------------------------------
# Allocation


def _systematic(budgets: Sequence[SiteBudget], total: int, rng: random.Random) -> dict[str, int]:
    """``total`` draws over the sites proportional to their budgets (systematic sampling: each site
    gets the floor or the ceiling of its expected count), never more than a site's budget."""
    out = {b.site_id: 0 for b in budgets}
    mass = sum(b.tests for b in budgets)
    if total <= 0 or mass <= 0:
        return out
    step = mass / total
    point = rng.random() * step
    cumulative = 0.0
    for b in budgets:
        upper = cumulative + b.tests
        while point < upper and out[b.site_id] < b.tests:
            out[b.site_id] += 1
            point += step
        cumulative = upper
    return out


def in_categories(commodity: str, categories: Sequence[str], ancestors: Mapping[str, Sequence[str]]) -> str | None:
    """The first of ``categories`` that ``commodity`` is or falls under (by ``ancestors``), else None."""
    chain = set(ancestors.get(commodity, (commodity,))) | {commodity}
    for category in categories:
        if category in chain:
            return category
    return None


def make_plan(
    day: date,
    budgets: Sequence[SiteBudget],
    candidates: Mapping[str, Sequence[Stratum]],  # site -> the strata that may be sampled there
    history: Iterable[HistoryCount],
    *,
    follow_ups: Sequence[FollowUp] = (),
    priority: Sequence[str] = (),
    ancestors: Mapping[str, Sequence[str]] | None = None,
    params: PlanParams = PlanParams(),
    seed: int = 0,
) -> Plan:
    """The plan of ``day`` (see the module's text). Deterministic for its arguments; it mutates none."""
    rng = random.Random(f"foodrisk-plan:{seed}:{day.isoformat()}")  # noqa: S311 - sampling design, not security
    scores = score(history, day, params)
    ancestry = ancestors or {}
    budgets = sorted(budgets, key=lambda b: (b.district, b.site_id))
    left = {b.site_id: b.tests for b in budgets}
    district_of = {b.site_id: b.district for b in budgets}
    lines: dict[str, list[PlanLine]] = {b.site_id: [] for b in budgets}

    def add(site: str, stratum: Stratum, tests: int, reason: str, text: str, score_: float,
            vendor: str | None = None, supplier: str | None = None) -> None:
        left[site] -= tests
        lines[site].append(PlanLine(district_of[site], site, 0, stratum, tests, reason, text, round(score_, 6),
                                    vendor, supplier))

    # 1. the random share: fixed, uniform over each drawn site's candidate strata
    total = sum(b.tests for b in budgets)
    drawn = _systematic([b for b in budgets if candidates.get(b.site_id)], round(params.random_share * total), rng)
    for b in budgets:
        pool = sorted(candidates.get(b.site_id, ()))
        counts: dict[Stratum, int] = {}
        for _ in range(drawn.get(b.site_id, 0)):
            pick = pool[int(rng.random() * len(pool))]
            counts[pick] = counts.get(pick, 0) + 1
        for stratum, n in sorted(counts.items()):
            add(b.site_id, stratum, n, REASON_RANDOM,
                f"random share ({params.random_share:.0%} of the budget, drawn uniformly): unbiased pass rate",
                0.0)

    # 2. follow-ups first
    deferred: list[FollowUp] = []
    ordered = sorted(enumerate(follow_ups), key=lambda iu: (FOLLOW_UP_ORDER.get(iu[1].reason, 9), iu[0]))
    seen: set[tuple[str, str, Stratum, str | None, str | None]] = set()
    for _, f in ordered:
        key = (f.reason, f.site_id, f.stratum, f.vendor_id, f.supplier_id)
        if key in seen:
            continue
        seen.add(key)
        if f.site_id not in left or left[f.site_id] < params.follow_up_tests:
            deferred.append(f)
            continue
        add(f.site_id, f.stratum, params.follow_up_tests, f.reason, f.text,
            scores.of(f.site_id, f.district, f.stratum), f.vendor_id, f.supplier_id)

    # 3. citizens' priority categories, then 4. risk: cells by estimate
    ranked: dict[str, list[tuple[float, Stratum]]] = {}
    for b in budgets:
        estimates = [(scores.of(b.site_id, b.district, s), s) for s in set(candidates.get(b.site_id, ()))]
        ranked[b.site_id] = sorted(estimates, key=lambda c: (-c[0], c[1]))
    if priority:
        for b in budgets:
            share = max(1, round(params.priority_share * b.tests)) if b.tests else 0
            take = min(share, left[b.site_id])
            tagged = [(p, s, cat) for p, s in ranked[b.site_id]
                      if (cat := in_categories(s.commodity, priority, ancestry)) is not None]
            for p, s, cat in _round_robin(tagged, take, params.max_tests_per_line):
                add(b.site_id, s, p[1], REASON_PRIORITY,
                    f"citizens' priority category {cat} (rank {list(priority).index(cat) + 1} of the votes); "
                    f"estimated non-compliance {p[0]:.1%}", p[0])
    for b in budgets:
        untagged = [(p, s, "") for p, s in ranked[b.site_id]]
        for p, s, _ in _round_robin(untagged, left[b.site_id], params.max_tests_per_line):
            n_w = scores.weighted_tests.get((b.site_id, s), 0.0)
            add(b.site_id, s, p[1], REASON_RISK,
                f"estimated non-compliance {p[0]:.1%} here (shrunk; {n_w:.0f} recency-weighted tests at the site)",
                p[0])

    out: list[PlanLine] = []
    for b in budgets:
        merged = sorted(_merge(lines[b.site_id]), key=lambda ln: REASONS.index(ln.reason))  # stable: follow-ups first
        out.extend(replace(line, line=i) for i, line in enumerate(merged, start=1))
    return Plan(day, seed, tuple(out), {b.site_id: b.tests for b in budgets}, tuple(deferred))


def _round_robin(
    cells: Sequence[tuple[float, Stratum, str]], budget: int, cap: int
) -> list[tuple[tuple[float, int], Stratum, str]]:
    """Spend ``budget`` down the ranking: each cell up to ``cap`` tests, best first; with fewer cells
    than budget / cap, the cap rises until the budget is spent. Returns ((estimate, tests), stratum,
    tag) per cell used, in ranking order."""
    if not cells or budget <= 0:
        return []
    limit = max(cap, -(-budget // len(cells)))
    given: list[int] = []
    spent = 0
    for _ in cells:
        n = min(limit, budget - spent)
        if n <= 0:
            break
        given.append(n)
        spent += n
    return [((cells[i][0], n), cells[i][1], cells[i][2]) for i, n in enumerate(given)]


def _merge(lines: list[PlanLine]) -> list[PlanLine]:
    """Lines of one site with the same stratum, reason, vendor and supplier as one line."""
    merged: dict[tuple[Stratum, str, str | None, str | None], PlanLine] = {}
    for line in lines:
        key = (line.stratum, line.reason, line.vendor_id, line.supplier_id)
        if key in merged:
            merged[key] = replace(merged[key], tests=merged[key].tests + line.tests)
        else:
            merged[key] = line
    return list(merged.values())
