"""Benchmark of the screening core: ``python -m tests.bench.bench_screen [--lines N]``.

Prints parse_result/s, screen/s beside the naive baseline (linear scan over the limit table) on the
same generated results, for the packaged reference data and for one scaled to the size of
GB 2763-2026 (~10,749 limits), and `foodrisk screen` (run_screen) lines/s with its peak memory.
Also the home of the result generator the unit tests share.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from pipeline.screen_cmd import run_screen
from schemas.codes import AnalyteType, Confidence
from schemas.reference import CHINA_TZ, Analyte, Limit, LimitKind, Reference, default_reference
from schemas.result import Result, parse_result
from schemas.rules import screen, screen_naive

NOW = datetime(2026, 12, 31, tzinfo=UTC)
_START = datetime(2021, 6, 1, tzinfo=CHINA_TZ)
_SPAN_S = int((datetime(2026, 12, 30, tzinfo=CHINA_TZ) - _START).total_seconds())
_SITES = ("farmers_market", "supermarket", "ecommerce_warehouse", "wholesale_market")
_DISTRICTS = ("tianhe", "yuexiu", "haizhu", "baiyun", "panyu", "huangpu")
_LAB = ("lc_msms", "gc_msms", "gc_ms")
_METAL_LAB = ("icp_ms", "aas", "afs")


def example_message(**overrides: Any) -> dict[str, Any]:
    """One valid lab result message (clothianidin in cowpea, 2025), with ``overrides`` applied;
    an override of None removes the field."""
    msg: dict[str, Any] = {
        "result_id": "r-1",
        "sample_id": "s-1",
        "device_id": "lab-7",
        "site": {"id": "tc-1", "type": "testing_centre", "district": "tianhe", "name": "Tianhe centre"},
        "commodity": "cowpea",
        "analyte": "clothianidin",
        "method": "lc_msms",
        "value": 0.004,
        "unit": "mg/kg",
        "lod": 0.001,
        "loq": 0.003,
        "sampled_at": "2025-06-15T09:30:00+08:00",
        "tested_at": "2025-06-15T16:00:00+08:00",
    }
    for key, value in overrides.items():
        if value is None:
            msg.pop(key, None)
        else:
            msg[key] = value
    return msg


def generate_messages(n: int, *, seed: int = 7, reference: Reference | None = None) -> Iterator[dict[str, Any]]:
    """``n`` v1 result messages shaped like real traffic: mostly quick tests, most values below
    the LOD, a long right tail, some names in Chinese, some unknown foods or analytes."""
    ref = reference if reference is not None else default_reference()
    rng = random.Random(seed)
    pairs = sorted({(lim.analyte, lim.food, lim.limit_mg_kg, lim.kind) for lim in ref.limits})
    foods = list(ref.commodities)
    banned = sorted({b.analyte for b in ref.bans})
    enzyme_analyte = "ache_inhibition"
    for i in range(n):
        sampled = _START + timedelta(seconds=rng.randrange(_SPAN_S))
        tested = sampled + timedelta(minutes=rng.randrange(5, 600))
        food = rng.choice(foods)
        site_type = rng.choice(_SITES)
        msg: dict[str, Any] = {
            "result_id": f"r-{seed}-{i}",
            "sample_id": f"s-{seed}-{i // 2}",
            "device_id": f"dev-{rng.randrange(40)}",
            "site": {"id": f"site-{rng.randrange(60)}", "type": site_type, "district": rng.choice(_DISTRICTS)},
            "vendor_id": f"v-{rng.randrange(500)}",
            "supplier_id": f"sup-{rng.randrange(80)}",
            "commodity": food.name_zh if rng.random() < 0.3 else food.code,
            "sampled_at": sampled.replace(tzinfo=None).isoformat() if rng.random() < 0.5 else sampled.isoformat(),
            "tested_at": tested.isoformat(),
        }
        roll = rng.random()
        if roll < 0.5:  # enzyme inhibition
            msg |= {
                "method": "enzyme_inhibition",
                "analyte": enzyme_analyte if rng.random() < 0.8 else "酶抑制率",
                "value": round(min(100.0, rng.expovariate(1 / 12)), 1),
                "unit": "%",
            }
        elif roll < 0.65:  # colloidal-gold strip
            analyte = rng.choice(pairs)[0]
            msg |= {
                "method": "colloidal_gold",
                "analyte": analyte,
                "qualitative": rng.choices(("negative", "positive", "invalid"), (0.97, 0.025, 0.005))[0],
            }
        elif roll < 0.7:  # xrf heavy metals
            msg |= {
                "method": "xrf",
                "analyte": rng.choice(("lead", "cadmium", "chromium", "铅")),
                "value": round(rng.lognormvariate(-3.5, 1.0), 4),
                "unit": "mg/kg",
            }
        else:  # lab
            if rng.random() < 0.8:
                analyte, limit_food, limit, kind = rng.choice(pairs)
                if rng.random() < 0.7:
                    msg["commodity"] = limit_food if ref.commodity(limit_food) else msg["commodity"]
            else:
                analyte, limit, kind = rng.choice(banned), 0.02, LimitKind.mrl
            if rng.random() < 0.02:
                analyte = "unknown_thing"
            ug = rng.random() < 0.3
            lod = 0.001 if kind is LimitKind.mrl else 0.002
            value = 0.0 if rng.random() < 0.6 else round(limit * rng.lognormvariate(-1.0, 1.0), 5)
            factor = 1000.0 if ug else 1.0
            msg |= {
                "method": rng.choice(_LAB if kind is LimitKind.mrl else _METAL_LAB),
                "analyte": analyte,
                "value": round(value * factor, 6),
                "unit": "µg/kg" if ug else "mg/kg",
                "lod": round(lod * factor, 6),
                "loq": round(lod * 3 * factor, 6),
            }
        yield msg


def scaled_reference(base: Reference, *, target_limits: int = 10_749, seed: int = 11) -> Reference:
    """``base`` plus synthetic pesticides and limits up to ``target_limits`` rows (the size of
    GB 2763-2026), to show how each lookup scales with the table."""
    rng = random.Random(seed)
    foods = [f.code for f in base.foods]
    analytes = list(base.analytes)
    limits = list(base.limits)
    i = 0
    while len(limits) < target_limits:
        code = f"synthetic_{i:04d}"
        analytes.append(Analyte(code=code, type=AnalyteType.pesticide, name_en=code, name_zh=code))
        limits.extend(
            Limit(
                analyte=code,
                food=food,
                limit_mg_kg=round(rng.uniform(0.01, 5), 3),
                edition="GB 2763-2026",
                effective_from=date(2026, 3, 1),
                effective_to=None,
                source="synthetic",
                confidence=Confidence.unverified,
                kind=LimitKind.mrl,
            )
            for food in rng.sample(foods, 18)
        )
        i += 1
    return Reference(
        foods=[*base.foods],
        analytes=analytes,
        editions=base.editions.values(),
        limits=limits[:target_limits],
        bans=base.bans,
        cutoffs=base.cutoffs,
        source=f"{base.source} + synthetic",
    )


class GeneratedLines:
    """A read-only text stream of JSON lines made on demand (nothing accumulates)."""

    def __init__(self, n: int, *, seed: int = 7, invalid_every: int = 0) -> None:
        self._messages = generate_messages(n, seed=seed)
        self._invalid_every = invalid_every
        self._count = 0

    def readline(self, size: int = -1, /) -> str:
        msg = next(self._messages, None)
        if msg is None:
            return ""
        self._count += 1
        if self._invalid_every and self._count % self._invalid_every == 0:
            return '{"result_id": "broken", "value": -1}\n'
        return orjson.dumps(msg).decode() + "\n"


class CountingSink:
    """A write-only text stream that keeps only counts."""

    def __init__(self) -> None:
        self.lines = 0
        self.chars = 0

    def write(self, s: str, /) -> int:
        self.chars += len(s)
        self.lines += s.count("\n")
        return len(s)

    def flush(self) -> None:
        pass


def _rate(fn: Callable[[], int], min_seconds: float = 1.0) -> float:
    """Items per second of ``fn`` (which returns how many items it did), repeated for min_seconds."""
    done, start = 0, time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def _screen_all(fn: Callable[..., object], results: list[Result], ref: Reference) -> int:
    for r in results:
        fn(r, ref)
    return len(results)


def _screen_rates(results: list[Result], ref: Reference, naive_sample: int) -> tuple[float, float]:
    fast = _rate(lambda: _screen_all(screen, results, ref))
    subset = results[:naive_sample]
    naive = _rate(lambda: _screen_all(screen_naive, subset, ref))
    return fast, naive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=20_000, help="generated results to screen")
    parser.add_argument("--lines", type=int, default=200_000, help="lines for run_screen (1000000 for the issue)")
    args = parser.parse_args(argv)
    out = sys.stdout.write
    ref = default_reference()
    # first, while the process is small: peak RSS must not grow with the number of lines
    run_screen(GeneratedLines(2_000, seed=2), CountingSink(), reference=ref, now=NOW)  # warm up
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sink = CountingSink()
    start = time.perf_counter()
    invalid = run_screen(GeneratedLines(args.lines, seed=3, invalid_every=1000), sink, reference=ref, now=NOW)
    elapsed = time.perf_counter() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out(
        f"run_screen       {args.lines / elapsed:>12,.0f} lines/s     ({args.lines} lines incl. generation, "
        f"{invalid} invalid, {sink.lines} out; peak RSS after 2,000 lines {rss_before / 1024:.1f} MiB, "
        f"after {args.lines:,}: {rss_after / 1024:.1f} MiB)\n"
    )

    raw = [orjson.dumps(m) for m in generate_messages(args.results, seed=1)]
    results = [parse_result(r, reference=ref, now=NOW) for r in raw]

    def parse_all() -> int:
        for r in raw:
            parse_result(r, reference=ref, now=NOW)
        return len(raw)

    parse_rate = _rate(parse_all)
    out(f"parse_result     {parse_rate:>12,.0f} results/s   (orjson + pydantic, {len(raw)} messages)\n")

    fast, naive = _screen_rates(results, ref, len(results))
    out(f"screen           {fast:>12,.0f} results/s   ({len(ref.limits)} limits, packaged reference)\n")
    out(f"screen_naive     {naive:>12,.0f} results/s   linear scan; screen is {fast / naive:.1f}x faster\n")

    big = scaled_reference(ref)
    fast_big, naive_big = _screen_rates(results, big, 1_000)
    out(f"screen           {fast_big:>12,.0f} results/s   ({len(big.limits)} limits, GB 2763-2026 size)\n")
    out(f"screen_naive     {naive_big:>12,.0f} results/s   linear scan; screen is {fast_big / naive_big:.0f}x faster\n")
    goal = "meets" if fast >= 200_000 and fast_big >= 200_000 else "MISSES"
    out(f"goal >= 200,000 screens/s on one core: {goal}\n")

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
