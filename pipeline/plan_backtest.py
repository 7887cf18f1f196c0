"""`foodrisk plan --backtest`: the risk plan against uniform allocation on the simulator's hidden truth.

In process, no broker and no ClickHouse: the world of a seed (``pipeline/simulator/world.py``), its
hidden truth (``pipeline/simulator/truth.py``: who carries residues), the district budgets of
``district_populations.csv``, and the pure planner (``schemas/plan.py``).

1. **Warm-up**: ``warmup_days`` (90) days of routine sampling before any plan, the same daily budget
   spread uniformly over each site's strata: the history both arms start from.
2. **30 days, two arms, the same budget and seed**: the *risk* arm plans every day with
   :func:`schemas.plan.make_plan` on the history so far (its own results included) and the
   follow-ups the history raises (red-listed vendors: ``3`` non-compliant samples within 30 days,
   off after 5 clean ones; supplier clusters: one supplier non-compliant at 2+ sites within 2 days,
   open 7 days, a follow-up at every site it was seen delivering to); the *uniform* arm spends each
   site's budget on strata drawn uniformly at random. Every test is drawn from the truth.
3. **Figures**: non-compliant samples found per 1,000 tests in each arm and their ratio; the pass
   rate the risk arm's random share estimates (1 - found / tests of its random lines) against the
   truth's pass rate of the population the random share samples (sites in proportion to their
   budgets, strata uniform), exactly computed.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from datetime import date, timedelta

from pipeline.simulator.limits import current_limits
from pipeline.simulator.truth import Truth
from pipeline.simulator.world import World
from schemas.plan import (
    POPULATIONS_FILE,
    REASON_CLUSTER,
    REASON_RANDOM,
    REASON_REDLIST,
    FollowUp,
    HistoryCount,
    Plan,
    PlanParams,
    SiteBudget,
    Stratum,
    make_plan,
    parse_populations,
    site_budgets,
)

START = date(2026, 11, 1)
REDLIST_N, REDLIST_DAYS, REDLIST_CLEAN = 3, 30, 5
CLUSTER_SITES, CLUSTER_DAYS, CLUSTER_OPEN_DAYS = 2, 2, 7


@dataclass(frozen=True)
class BacktestResult:
    days: int
    seed: int
    tests_risk: int
    found_risk: int
    tests_uniform: int
    found_uniform: int
    random_tests: int
    random_found: int
    true_pass_rate: float
    tests_per_day: int
    sites: int
    strata: int
    by_reason: dict[str, tuple[int, int]]  # reason -> (tests, found) in the risk arm

    @property
    def per_1000_risk(self) -> float:
        return 1000.0 * self.found_risk / self.tests_risk if self.tests_risk else 0.0

    @property
    def per_1000_uniform(self) -> float:
        return 1000.0 * self.found_uniform / self.tests_uniform if self.tests_uniform else 0.0

    @property
    def ratio(self) -> float:
        return self.per_1000_risk / self.per_1000_uniform if self.per_1000_uniform else float("inf")

    @property
    def estimated_pass_rate(self) -> float:
        return 1.0 - self.random_found / self.random_tests if self.random_tests else float("nan")

    @property
    def estimate_error_pp(self) -> float:
        return 100.0 * (self.estimated_pass_rate - self.true_pass_rate)

    def lines(self) -> list[str]:
        out = [
            f"backtest: seed {self.seed}, {self.days} days, {self.sites} sites, {self.strata} strata "
            f"(commodity, method, analyte), {self.tests_per_day} tests a day (5 per 1,000 residents a year)",
            f"  risk plan     {self.tests_risk:6d} tests  {self.found_risk:5d} non-compliant  "
            f"{self.per_1000_risk:6.1f} per 1,000",
            f"  uniform       {self.tests_uniform:6d} tests  {self.found_uniform:5d} non-compliant  "
            f"{self.per_1000_uniform:6.1f} per 1,000",
            f"  ratio         {self.ratio:.2f}x (goal >= 2x)",
            f"  random share  {self.random_tests} tests, pass rate {100 * self.estimated_pass_rate:.2f} % vs truth "
            f"{100 * self.true_pass_rate:.2f} %: error {self.estimate_error_pp:+.2f} pp (goal within 1 pp)",
        ]
        for reason, (n, k) in sorted(self.by_reason.items()):
            if n:
                out.append(f"    {reason:22s} {n:6d} tests  {k:5d} found  {1000.0 * k / n:6.1f} per 1,000")
        return out


class _Signals:
    """The follow-ups the risk arm's own results raise (a simple model of the early-warning agents)."""

    def __init__(self) -> None:
        self.findings: dict[str, deque[date]] = {}
        self.clean_run: dict[str, int] = {}
        self.listed: dict[str, tuple[str, str, Stratum]] = {}  # vendor -> (site, district, stratum)
        self.supplier_hits: dict[str, list[tuple[date, str, Stratum]]] = {}
        self.supplier_sites: dict[str, set[tuple[str, str]]] = {}
        self.clusters: dict[str, tuple[date, Stratum]] = {}

    def record(self, day: date, site: str, district: str, stratum: Stratum, vendor: str | None, supplier: str,
               bad: bool) -> None:
        self.supplier_sites.setdefault(supplier, set()).add((site, district))
        if vendor is not None:
            if bad:
                q = self.findings.setdefault(vendor, deque())
                q.append(day)
                while q and (day - q[0]).days >= REDLIST_DAYS:
                    q.popleft()
                self.clean_run[vendor] = 0
                if len(q) >= REDLIST_N:
                    self.listed[vendor] = (site, district, stratum)
            elif vendor in self.listed:
                self.clean_run[vendor] = self.clean_run.get(vendor, 0) + 1
                if self.clean_run[vendor] >= REDLIST_CLEAN:
                    del self.listed[vendor]
        if bad:
            hits = [h for h in self.supplier_hits.get(supplier, []) if (day - h[0]).days < CLUSTER_DAYS]
            hits.append((day, site, stratum))
            self.supplier_hits[supplier] = hits
            if len({h[1] for h in hits}) >= CLUSTER_SITES:
                self.clusters[supplier] = (day, stratum)

    def follow_ups(self, day: date) -> list[FollowUp]:
        out: list[FollowUp] = []
        for supplier, (opened, stratum) in sorted(self.clusters.items()):
            if (day - opened).days >= CLUSTER_OPEN_DAYS:
                continue
            for site, district in sorted(self.supplier_sites.get(supplier, ())):
                out.append(FollowUp(REASON_CLUSTER, site, district, stratum,
                                    f"supplier {supplier}: non-compliant at 2+ sites since {opened}",
                                    supplier_id=supplier))
        for vendor, (site, district, stratum) in sorted(self.listed.items()):
            out.append(FollowUp(REASON_REDLIST, site, district, stratum, f"red-listed vendor {vendor}",
                                vendor_id=vendor))
        return out


def _uniform_day(rng: random.Random, budgets: list[SiteBudget], truth: Truth) -> list[tuple[str, Stratum]]:
    out: list[tuple[str, Stratum]] = []
    for b in budgets:
        pool = truth.candidates(b.site_id)
        out.extend((b.site_id, pool[int(rng.random() * len(pool))]) for _ in range(b.tests))
    return out


def _true_pass_rate(truth: Truth, budgets: list[SiteBudget]) -> float:
    """The pass rate of the random share's population: sites by budget, strata uniform."""
    total_w = 0.0
    bad = 0.0
    for b in budgets:
        pool = truth.candidates(b.site_id)
        if not pool or not b.tests:
            continue
        mean = sum(truth.expected(b.site_id, s) for s in pool) / len(pool)
        bad += b.tests * mean
        total_w += b.tests
    return 1.0 - bad / total_w


def run_backtest(*, days: int = 30, seed: int = 7, warmup_days: int = 90,
                 params: PlanParams | None = None) -> BacktestResult:
    params = params or PlanParams()
    world = World(random.Random(f"foodrisk-fleet:{seed}:world"))  # noqa: S311 - simulation
    truth = Truth(world, current_limits(), seed)
    sites = [(s.id, s.district, s.type) for s in truth.sites.values()]
    budgets = site_budgets(sites, parse_populations(POPULATIONS_FILE.read_text(encoding="utf-8")))
    district = {b.site_id: b.district for b in budgets}
    candidates = {b.site_id: truth.candidates(b.site_id) for b in budgets}

    history: list[HistoryCount] = []
    warm = random.Random(f"foodrisk-backtest:{seed}:warmup")  # noqa: S311 - simulation
    counts: dict[tuple[str, Stratum, date], list[int]] = {}
    signals = _Signals()
    for d in range(warmup_days, 0, -1):
        day = START - timedelta(days=d)
        for site, stratum in _uniform_day(warm, budgets, truth):
            draw = truth.draw(warm, site, stratum)
            c = counts.setdefault((site, stratum, day), [0, 0])
            c[0] += 1
            c[1] += draw.noncompliant
            signals.record(day, site, district[site], stratum, draw.vendor_id, draw.supplier_id, draw.noncompliant)
    history = [HistoryCount(s, district[s], st, day, n, k) for (s, st, day), (n, k) in counts.items()]

    risk_rng = random.Random(f"foodrisk-backtest:{seed}:outcomes")  # noqa: S311 - simulation
    uni_rng = random.Random(f"foodrisk-backtest:{seed}:outcomes")  # noqa: S311 - the same seed
    tests_r = found_r = tests_u = found_u = 0
    by_reason: dict[str, tuple[int, int]] = {}
    for d in range(days):
        day = START + timedelta(days=d)
        plan: Plan = make_plan(day, budgets, candidates, history, follow_ups=signals.follow_ups(day),
                               params=params, seed=seed)
        today: dict[tuple[str, Stratum], list[int]] = {}
        for line in plan.lines:
            for _ in range(line.tests):
                draw = truth.draw(risk_rng, line.site_id, line.stratum, line.vendor_id)
                tests_r += 1
                found_r += draw.noncompliant
                n, k = by_reason.get(line.reason, (0, 0))
                by_reason[line.reason] = (n + 1, k + draw.noncompliant)
                c = today.setdefault((line.site_id, line.stratum), [0, 0])
                c[0] += 1
                c[1] += draw.noncompliant
                signals.record(day, line.site_id, line.district, line.stratum, draw.vendor_id, draw.supplier_id,
                               draw.noncompliant)
        history.extend(HistoryCount(s, district[s], st, day, n, k) for (s, st), (n, k) in today.items())
        for site, stratum in _uniform_day(uni_rng, budgets, truth):
            draw = truth.draw(uni_rng, site, stratum)
            tests_u += 1
            found_u += draw.noncompliant
    rn, rk = by_reason.get(REASON_RANDOM, (0, 0))
    return BacktestResult(
        days=days, seed=seed, tests_risk=tests_r, found_risk=found_r, tests_uniform=tests_u, found_uniform=found_u,
        random_tests=rn, random_found=rk, true_pass_rate=_true_pass_rate(truth, budgets),
        tests_per_day=sum(b.tests for b in budgets), sites=len(budgets), strata=len(truth.strata),
        by_reason=by_reason,
    )
