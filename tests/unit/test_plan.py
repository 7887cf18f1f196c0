"""The sampling plan's scoring and allocation (schemas/plan.py): shrinkage, recency, follow-ups first,
budgets respected, the random share uniform and unbiased, priority categories, determinism."""

from __future__ import annotations

import copy
import random
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.plan import (
    POPULATIONS_FILE,
    REASON_CLUSTER,
    REASON_PRIORITY,
    REASON_RANDOM,
    REASON_REDLIST,
    REASON_RISK,
    REASON_UNCONFIRMED,
    FollowUp,
    HistoryCount,
    PlanParams,
    SiteBudget,
    Stratum,
    district_daily_tests,
    make_plan,
    parse_populations,
    recency_weight,
    score,
    shrunk,
    site_budgets,
)

DAY = date(2026, 12, 1)
COWPEA = Stratum("cowpea", "colloidal_gold", "carbofuran")
LEEK = Stratum("leek", "colloidal_gold", "phorate")
CABBAGE = Stratum("chinese_cabbage", "enzyme_inhibition", "ache_inhibition")
STRATA = (COWPEA, LEEK, CABBAGE)


def counts(
    site: str, stratum: Stratum, tests: int, bad: int, days_ago: int = 1, district: str = "Tianhe"
) -> HistoryCount:
    return HistoryCount(site, district, stratum, DAY - timedelta(days=days_ago), tests, bad)


def background(n_sites: int = 10, tests: int = 100, bad: int = 2) -> list[HistoryCount]:
    return [counts(f"S{i}", s, tests, bad) for i in range(n_sites) for s in STRATA]


# --- shrinkage and recency -------------------------------------------------------------------------


def test_three_tests_are_not_a_rate() -> None:
    history = [*background(), counts("X", COWPEA, 3, 1)]
    scores = score(history, DAY, PlanParams(half_life_days=1e9))
    p = scores.cell[("X", COWPEA)]
    assert 0.02 < p < 0.1  # one in three moves a ~2 % prior a little, not to 33 %
    assert p == pytest.approx(shrunk(1, 3, scores.district_stratum[("Tianhe", COWPEA)], 20.0))


def test_much_evidence_moves_the_estimate_to_the_data() -> None:
    history = [*background(), counts("X", COWPEA, 2000, 400)]
    p = score(history, DAY, PlanParams(half_life_days=1e9)).cell[("X", COWPEA)]
    assert 0.18 < p < 0.2


def test_untested_cells_take_the_district_and_city_rates() -> None:
    history = [*background(), counts("X", COWPEA, 200, 40)]
    scores = score(history, DAY, PlanParams())
    assert scores.of("never-seen", "Tianhe", COWPEA) == scores.district_stratum[("Tianhe", COWPEA)]
    assert scores.of("never-seen", "Nansha", COWPEA) == scores.city_stratum[COWPEA]
    unknown = Stratum("x", "colloidal_gold", "y")
    assert scores.of("never-seen", "Nansha", unknown) == scores.city_method["colloidal_gold"]


def test_the_district_prior_follows_the_district_method_baseline() -> None:
    hot = [counts(f"H{i}", s, 100, 10, district="Baiyun") for i in range(5) for s in STRATA]
    scores = score([*background(), *hot], DAY, PlanParams())
    baiyun, tianhe = (scores.district_method[(d, "colloidal_gold")] for d in ("Baiyun", "Tianhe"))
    assert baiyun > 3 * tianhe


def test_recency_halves_the_weight_per_half_life() -> None:
    assert recency_weight(0, 30) == 1.0
    assert recency_weight(30, 30) == pytest.approx(0.5)
    assert recency_weight(90, 30) == pytest.approx(0.125)
    assert recency_weight(-3, 30) == 1.0
    old = [*background(), counts("X", COWPEA, 50, 25, days_ago=120)]
    new = [*background(), counts("X", COWPEA, 50, 25, days_ago=1)]
    params = PlanParams(half_life_days=30)
    assert score(new, DAY, params).cell[("X", COWPEA)] > 2 * score(old, DAY, params).cell[("X", COWPEA)]
    assert score(old, DAY, params).weighted_tests[("X", COWPEA)] == pytest.approx(50 * 0.5**4)


# --- allocation -------------------------------------------------------------------------------------


def budgets(n: int = 6, tests: int = 10) -> list[SiteBudget]:
    return [SiteBudget(f"S{i}", "Tianhe", tests) for i in range(n)]


def cands(bs: list[SiteBudget]) -> dict[str, list[Stratum]]:
    return {b.site_id: list(STRATA) for b in bs}


def test_follow_ups_come_first_and_over_budget_ones_are_deferred() -> None:
    bs = [SiteBudget("S0", "Tianhe", 3)]
    ups = [
        FollowUp(REASON_REDLIST, "S0", "Tianhe", LEEK, "red-listed vendor V1", vendor_id="V1"),
        FollowUp(REASON_CLUSTER, "S0", "Tianhe", COWPEA, "cluster", supplier_id="SUP1"),
        FollowUp(REASON_UNCONFIRMED, "S0", "Tianhe", CABBAGE, "unconfirmed", vendor_id="V2"),
        FollowUp(REASON_REDLIST, "S0", "Tianhe", CABBAGE, "red-listed vendor V3", vendor_id="V3"),
    ]
    plan = make_plan(DAY, bs, cands(bs), background(), follow_ups=ups, params=PlanParams(random_share=0.0))
    assert [(ln.reason, ln.vendor_id or ln.supplier_id) for ln in plan.lines] == [
        (REASON_UNCONFIRMED, "V2"), (REASON_CLUSTER, "SUP1"), (REASON_REDLIST, "V1")]
    assert [f.vendor_id for f in plan.deferred] == ["V3"]  # listed, not dropped
    assert plan.tests_at("S0") == 3


def test_risk_lines_go_to_the_highest_estimates() -> None:
    bs = budgets(2, 4)
    history = [*background(), counts("S0", LEEK, 100, 30)]
    plan = make_plan(DAY, bs, cands(bs), history, params=PlanParams(random_share=0.0))
    s0 = [ln for ln in plan.lines if ln.site_id == "S0"]
    assert s0[0].stratum == LEEK and s0[0].reason == REASON_RISK and s0[0].tests == 2  # capped per line
    assert "estimated non-compliance" in s0[0].reason_text
    assert s0[0].score > max(ln.score for ln in s0[1:])


def test_priority_categories_get_their_share() -> None:
    bs = budgets(3, 10)
    ancestors = {"cowpea": ("cowpea", "legume_vegetables", "vegetables"), "leek": ("leek", "vegetables"),
                 "chinese_cabbage": ("chinese_cabbage", "leafy_vegetables", "vegetables")}
    plan = make_plan(DAY, bs, cands(bs), background(), priority=["legume_vegetables"], ancestors=ancestors,
                     params=PlanParams(random_share=0.0, priority_share=0.2))
    pri = [ln for ln in plan.lines if ln.reason == REASON_PRIORITY]
    assert {ln.site_id for ln in pri} == {"S0", "S1", "S2"}
    assert all(ln.stratum == COWPEA and ln.tests == 2 for ln in pri)
    assert "legume_vegetables (rank 1" in pri[0].reason_text


@settings(deadline=None, max_examples=40)
@given(
    tests=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    share=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    n_follow=st.integers(0, 30),
)
def test_every_site_budget_is_spent_exactly_and_never_exceeded(tests: list[int], share: float, seed: int,
                                                               n_follow: int) -> None:
    bs = [SiteBudget(f"S{i}", "Tianhe" if i % 2 else "Baiyun", t) for i, t in enumerate(tests)]
    rng = random.Random(seed)
    ups = [FollowUp(REASON_REDLIST, f"S{rng.randrange(len(bs))}", "Tianhe", rng.choice(STRATA), "x",
                    vendor_id=f"V{i}") for i in range(n_follow)]
    history = background()
    before = copy.deepcopy((bs, history, ups))
    plan = make_plan(DAY, bs, cands(bs), history, follow_ups=ups, params=PlanParams(random_share=share), seed=seed)
    assert (bs, history, ups) == before  # inputs untouched
    for b in bs:
        assert plan.tests_at(b.site_id) == b.tests
    assert all(ln.tests >= 1 for ln in plan.lines)
    assert len(plan.deferred) + sum(ln.tests for ln in plan.lines if ln.reason == REASON_REDLIST) == len(
        {(f.site_id, f.stratum, f.vendor_id) for f in ups})
    again = make_plan(DAY, bs, cands(bs), history, follow_ups=ups, params=PlanParams(random_share=share), seed=seed)
    assert again == plan  # deterministic for its arguments


def test_random_share_is_fixed_and_uniform_over_strata_whatever_the_risk() -> None:
    bs = budgets(20, 10)
    history = [*background(20), *(counts(f"S{i}", LEEK, 100, 50) for i in range(20))]  # leek looks very risky
    tally = dict.fromkeys(STRATA, 0)
    for seed in range(200):
        plan = make_plan(DAY, bs, cands(bs), history, params=PlanParams(random_share=0.2), seed=seed)
        random_lines = [ln for ln in plan.lines if ln.reason == REASON_RANDOM]
        assert sum(ln.tests for ln in random_lines) == 40  # 20 % of 200, every day
        for ln in random_lines:
            tally[ln.stratum] += ln.tests
    total = sum(tally.values())
    for n in tally.values():  # 8,000 draws, 1/3 each: within 4 standard deviations (~0.021)
        assert abs(n / total - 1 / 3) < 0.021


def test_random_share_estimates_the_pass_rate_without_bias() -> None:
    """Draw outcomes from a known truth: the random lines' pass rate has no bias, the risk lines' does."""
    bs = budgets(10, 10)
    truth = {COWPEA: 0.02, LEEK: 0.30, CABBAGE: 0.05} | {Stratum(f"food{i}", "xrf", "lead"): 0.01 for i in range(5)}
    true_pass = 1 - sum(truth.values()) / len(truth)
    history = [counts(f"S{i}", s, 200, round(200 * p)) for i in range(10) for s, p in truth.items()]
    strata = {b.site_id: list(truth) for b in bs}
    rng = random.Random(1)
    n = bad = risk_n = risk_bad = 0
    for seed in range(300):
        plan = make_plan(DAY, bs, strata, history, params=PlanParams(random_share=0.2), seed=seed)
        for ln in plan.lines:
            for _ in range(ln.tests):
                hit = rng.random() < truth[ln.stratum]
                if ln.reason == REASON_RANDOM:
                    n, bad = n + 1, bad + hit
                else:
                    risk_n, risk_bad = risk_n + 1, risk_bad + hit
    assert abs((1 - bad / n) - true_pass) < 0.01  # 6,000 random tests: SE ~0.0025
    assert (1 - risk_bad / risk_n) < true_pass - 0.02  # the targeted lines are not a pass-rate estimate


def test_budgets_from_district_populations() -> None:
    pops = parse_populations(POPULATIONS_FILE.read_text(encoding="utf-8"))
    assert len(pops) == 11 and 18_000_000 < sum(pops.values()) < 19_000_000
    assert district_daily_tests(pops["Baiyun"], 5.0) == pytest.approx(3_740_263 * 5 / 1000 / 365)
    sites = [(f"BY-{i}", "Baiyun", "farmers_market") for i in range(15)] + [("NS-1", "Nansha", "supermarket"),
                                                                           ("XX-1", "Atlantis", "supermarket")]
    got = {b.site_id: b.tests for b in site_budgets(sites, pops)}
    assert sum(v for k, v in got.items() if k.startswith("BY")) == round(district_daily_tests(pops["Baiyun"], 5.0))
    assert max(got[f"BY-{i}"] for i in range(15)) - min(got[f"BY-{i}"] for i in range(15)) <= 1
    assert got["NS-1"] == round(district_daily_tests(pops["Nansha"], 5.0))
    assert got["XX-1"] >= 1  # a district without a population on record still gets a budget
    assert {b.tests for b in site_budgets(sites, pops, per_site=7)} == {7}


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="random_share"):
        PlanParams(random_share=1.5)
    with pytest.raises(ValueError, match="half_life"):
        PlanParams(half_life_days=0)


def test_backtest_arms_spend_the_same_budget_and_are_deterministic() -> None:
    from pipeline.plan_backtest import run_backtest

    a = run_backtest(days=2, seed=3, warmup_days=10)
    assert a.tests_risk == a.tests_uniform == 2 * a.tests_per_day
    assert a.random_tests == 2 * round(0.2 * a.tests_per_day)
    assert 0.9 < a.true_pass_rate < 1.0
    assert run_backtest(days=2, seed=3, warmup_days=10) == a
    assert any("ratio" in line for line in a.lines())
