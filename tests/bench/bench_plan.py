"""The sampling-plan backtest as `make bench` rows (`python -m tests.bench.bench_plan [--seeds 7,11,23]`):
the risk plan against uniform allocation, 30 simulated days, the same budget and seed, on the
simulator's hidden truth (pipeline/plan_backtest.py); the random share's pass-rate error."""

from __future__ import annotations

import argparse
import sys
import time

from pipeline.plan_backtest import BacktestResult, run_backtest
from tests.bench.bench_pipeline import Row


def rows(seeds: list[int], days: int = 30) -> tuple[list[Row], list[BacktestResult]]:
    results = [run_backtest(days=days, seed=s) for s in seeds]
    first = results[0]
    others = "; ".join(f"seed {r.seed}: {r.ratio:.2f}x, error {r.estimate_error_pp:+.2f} pp" for r in results[1:])
    note = f"{first.tests_risk:,} tests per arm over {days} days, {first.sites} sites" + (
        f"; other seeds: {others}" if others else "")
    out = [
        Row(f"sampling plan backtest (seed {first.seed}): non-compliant found, risk plan", first.per_1000_risk,
            "per 1,000 tests", f"uniform {first.per_1000_uniform:.1f} per 1,000", first.ratio, ">= 2x",
            all(r.ratio >= 2.0 for r in results), note),
        Row(f"sampling plan backtest (seed {first.seed}): random share pass-rate error", abs(first.estimate_error_pp),
            "pp", f"truth {100 * first.true_pass_rate:.2f} %", None, "<= 1 pp",
            all(abs(r.estimate_error_pp) <= 1.0 for r in results),
            f"estimated {100 * first.estimated_pass_rate:.2f} % from {first.random_tests:,} random tests"),
    ]
    return out, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_plan", description=__doc__)
    p.add_argument("--seeds", default="7,11,23")
    p.add_argument("--days", type=int, default=30)
    args = p.parse_args(argv)
    started = time.monotonic()
    _, results = rows([int(s) for s in args.seeds.split(",")], args.days)
    for r in results:
        print("\n".join(r.lines()))
    print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
