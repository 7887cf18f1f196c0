"""`make bench`: every benchmark, one table of figures with ratios to same-run baselines, and a JSON copy
under bench/results/ with the machine's description."""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stdout, suppress
from datetime import UTC, datetime
from pathlib import Path

from tests.bench import bench_plan, bench_screen, bench_soak
from tests.bench.bench_pipeline import Row, run_all, run_batch, run_latency, run_single

ROOT = Path(__file__).resolve().parents[2]


def machine() -> dict[str, object]:
    cpu = ""
    with suppress(OSError, StopIteration):
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    mem = 0
    with suppress(OSError, StopIteration):
        mem = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                       if ln.startswith("MemTotal")))
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 1024 / 1024, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def render(rows: list[Row]) -> str:
    head = ["benchmark", "figure", "baseline (same run)", "ratio", "goal", "met"]
    cells = [head]
    for r in rows:
        fig = f"{r.value:,.0f} {r.unit}" if r.value >= 100 else f"{r.value:,.1f} {r.unit}"
        cells.append([r.name, fig, r.baseline, f"{r.ratio:.2f}" if r.ratio is not None else "",
                      r.goal, "" if r.met is None else ("yes" if r.met else "NO")])
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def full(scale: float, only_screen: bool, log: Callable[[str], None],
         soak: dict[str, object] | None = None) -> tuple[list[Row], str]:
    """Every benchmark (or the rule engine and the plan backtest only): the rows and the rule engine's text."""
    log("rule engine")
    buf = io.StringIO()
    with redirect_stdout(buf):
        bench_screen.main(["--lines", "200000"])
    screen_text = buf.getvalue()
    print(screen_text)
    rows: list[Row] = []
    log("sampling plan backtest (in process, seeds 7, 11, 23)")
    plan_rows, _ = bench_plan.rows([7, 11, 23])
    rows += plan_rows
    if soak is not None:
        soak_rows, soak["record"] = bench_soak.rows(scale, log)
        rows += soak_rows
    if only_screen:
        print(render(rows))
    else:
        with tempfile.TemporaryDirectory(prefix="foodrisk-bench-") as tmp:
            rows += run_all(Path(tmp), scale, log)
        print(render(rows))
    return rows, screen_text


def main() -> int:
    p = argparse.ArgumentParser(prog="make bench", description=__doc__)
    p.add_argument("--scale", type=float, default=1.0, help="1.0 = 200,000 results (the issue's size)")
    p.add_argument("--only-screen", action="store_true", help="only the rule-engine benchmark")
    p.add_argument("--only", choices=["single", "latency", "batch"],
                   help="only these pipeline rows: single = the bare faust agent, then the screening agent alone, "
                        "the quix-streams peer and the direct-consumer layout on single-result messages (--repeat "
                        "rounds); latency = the broker hop and the alert latency per layout; batch = the batch "
                        "form through every agent, the screening agent alone and the early-warning agent alone")
    p.add_argument("--soak", action="store_true",
                   help="add the national soak phase A rows (30 days x 10,000 x scale results; full: make bench-soak)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of foodrisk / quix peer / direct with --only single")
    args = p.parse_args()

    def log(text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    started = time.monotonic()
    rows: list[Row] = []
    screen_text = ""
    soak: dict[str, object] | None = {} if args.soak else None
    if args.only:
        with tempfile.TemporaryDirectory(prefix="foodrisk-bench-") as tmp:
            if args.only == "single":
                rows = run_single(Path(tmp), args.scale, log, args.repeat)
            elif args.only == "batch":
                rows = run_batch(Path(tmp), args.scale, log)
            else:
                rows = run_latency(Path(tmp), args.scale, log)
        print(render(rows))
    else:
        rows, screen_text = full(args.scale, args.only_screen, log, soak)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {"when": stamp, "machine": machine(), "scale": args.scale, "seconds": round(time.monotonic() - started),
              "only": args.only, "rule_engine": screen_text.splitlines(),
              "rows": [dict(r.__dict__) for r in rows], "soak": (soak or {}).get("record")}
    path = out_dir / f"bench-{stamp}.json"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False))
    log(f"written {path.relative_to(ROOT)} in {record['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
