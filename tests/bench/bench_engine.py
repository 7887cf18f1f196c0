"""The early-warning engine alone, in process (no broker): ``python -m tests.bench.bench_engine
[--records 200000] [--step 1000] [--baseline /work/main]``.

The bench data (``bench_pipeline.fresh_messages``, screened by ``schemas.rules.screen`` into
``agents.screened.screened_record``) goes through ``agents.early.engine.step`` in steps of
``--step`` records, the tables kept as the agent keeps them (plain dicts here). Reported per tree:
the step cost in ms per 1,000 records over the first five steps, steps 60-64 and the last five
(and last / first), the changelog the agent would write (records and bytes: compact JSON key +
value, per result), the keys held, the time to build the engine's memory from the final tables
(what a restart does), and the peak RSS of the run.

Each tree runs in its own process on the same screened records (pickled once): this tree, and with
``--baseline DIR`` another checkout (e.g. the main branch) as the same-run baseline. A tree whose
engine has no ``EngineMemory`` is run as the agent ran it before issue 21: detector tables in
16 shards (``ShardedView`` / ``fold_into_shards``), the changelog counted per shard write.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OLD_SHARDS = 16  # the default FOODRISK_EW_TABLE_SHARDS before issue 21


def make_records(n: int, seed: int, path: Path) -> int:
    """Screen ``n`` bench messages into screened records and pickle them to ``path``."""
    from agents.screened import screened_record
    from schemas.reference import default_reference
    from schemas.result import InvalidResult, parse_result
    from schemas.rules import screen
    from tests.bench.bench_pipeline import fresh_messages, now_utc

    ref = default_reference()
    now = now_utc()
    out = []
    for m in fresh_messages(n, seed=seed):
        try:
            r = parse_result(m, reference=ref, now=now)
        except InvalidResult:
            continue
        out.append(screened_record(r, screen(r, ref)))
    path.write_bytes(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    return len(out)


def _use_tree(tree: Path) -> None:
    """Import the project from ``tree`` (not from the editable install of this venv)."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")
                        and "editable" not in repr(f)]
    sys.path.insert(0, str(tree))


def run(records_path: Path, step_n: int) -> dict[str, Any]:
    """One tree: the records through the engine; figures as a dict (printed as JSON)."""
    import orjson

    from agents.early import engine as this_engine
    from agents.early.common import EarlyParams

    engine: Any = this_engine  # this tree's engine, or an older one (another API)

    records = pickle.loads(records_path.read_bytes())  # noqa: S301 (our own file, written just before)
    params = EarlyParams()
    new = hasattr(engine, "EngineMemory")
    tables = engine.empty_tables()
    mem: Any = engine.EngineMemory.build(tables, params) if new else None

    def size(k: str, v: Any) -> int:  # as Faust's json codec encodes (engine.encode in this tree)
        opt = orjson.OPT_NON_STR_KEYS
        return len(orjson.dumps(k, option=opt)) + (0 if v is None else len(orjson.dumps(v, option=opt)))

    step_ms: list[float] = []
    write_ms = 0.0
    nbytes: dict[str, int] = {}
    nwrites: dict[str, int] = {}
    fresh = alerts = 0
    for i in range(0, len(records), step_n):
        batch = records[i:i + step_n]
        if new:
            t0 = time.perf_counter()
            out = engine.step(tables, batch, params, mem)
            t1 = time.perf_counter()
            writes = out.updates
            engine.apply_all(tables, writes)
            mem.apply(out)
        else:
            views = {n: engine.ShardedView(t, OLD_SHARDS) if n in engine.SHARDED else t for n, t in tables.items()}
            t0 = time.perf_counter()
            out = engine.step(views, batch, params)
            t1 = time.perf_counter()
            writes = {n: engine.fold_into_shards(tables[n], u, OLD_SHARDS) if n in engine.SHARDED else u
                      for n, u in out.updates.items()}
            engine.apply_all(tables, writes)
        t2 = time.perf_counter()
        for name, ups in writes.items():
            for k, v in ups.items():
                nbytes[name] = nbytes.get(name, 0) + size(k, v)
                nwrites[name] = nwrites.get(name, 0) + 1
        step_ms.append((t1 - t0) * 1000 * 1000 / len(batch))
        write_ms += (t2 - t1) * 1000
        fresh += out.fresh
        alerts += len(out.alerts)
    t0 = time.perf_counter()
    if new:
        engine.EngineMemory.build(tables, params)
    rebuild_s = time.perf_counter() - t0

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    first, mid, last = mean(step_ms[:5]), mean(step_ms[60:65]), mean(step_ms[-5:])
    return {
        "layout": "per key (EngineMemory)" if new else f"{OLD_SHARDS} shards",
        "records": len(records), "fresh": fresh, "steps": len(step_ms), "alert_messages": alerts,
        "first_ms_per_1k": first, "steps60_ms_per_1k": mid, "last_ms_per_1k": last,
        "last_over_first": last / first if first else 0.0,
        "engine_s": sum(step_ms) * step_n / 1000 / 1000, "write_fold_s": write_ms / 1000,
        "changelog_bytes": sum(nbytes.values()), "changelog_writes": sum(nwrites.values()),
        "bytes_per_result": sum(nbytes.values()) / max(1, fresh),
        "writes_per_result": sum(nwrites.values()) / max(1, fresh),
        "bytes_by_table": nbytes,
        "keys": {n: len(t) for n, t in tables.items()},
        "state_bytes": sum(size(k, v) for t in tables.values() for k, v in t.items()),
        "memory_build_s": rebuild_s if new else None,
        "writes_by_table": nwrites,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_tree(tree: Path, records_path: Path, step_n: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run", str(records_path), "--tree", str(tree),
           "--step", str(step_n)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=tree)
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


def render(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    rows = [
        ("layout", "layout", "{}"),
        ("fresh results", "fresh", "{:,}"),
        ("steps", "steps", "{:,}"),
        ("ms / 1,000 records, first 5 steps", "first_ms_per_1k", "{:.1f}"),
        ("ms / 1,000 records, steps 60-64", "steps60_ms_per_1k", "{:.1f}"),
        ("ms / 1,000 records, last 5 steps", "last_ms_per_1k", "{:.1f}"),
        ("last / first", "last_over_first", "{:.2f}"),
        ("engine s (all steps)", "engine_s", "{:.2f}"),
        ("changelog bytes / result", "bytes_per_result", "{:,.0f}"),
        ("changelog writes / result", "writes_per_result", "{:.3f}"),
        ("alert messages", "alert_messages", "{:,}"),
        ("state bytes (compacted changelog)", "state_bytes", "{:,}"),
        ("memory build s (restart)", "memory_build_s", "{:.2f}"),
        ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ]
    cells = [["", *names]] + [[label, *(fmt.format(results[n][key]) if results[n][key] is not None else "-"
                                       for n in names)] for label, key, fmt in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip() for c in cells]
    by_table = [f"  {n}: " + ", ".join(f"{t} {b / max(1, results[n]['fresh']):,.0f}"
                                       for t, b in sorted(results[n]["bytes_by_table"].items()))
                for n in names]
    writes = [f"  {n}: " + ", ".join(f"{t} {b / max(1, results[n]['fresh']):.3f}"
                                     for t, b in sorted(results[n]["writes_by_table"].items()))
              for n in names]
    return "\n".join([*lines, "", "changelog bytes per result by table:", *by_table,
                      "changelog writes per result by table:", *writes])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--step", type=int, default=1000, help="records per engine step")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--baseline", type=Path, help="another checkout to run as the same-run baseline")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--run", type=Path, help=argparse.SUPPRESS)  # child: pickled records
    ap.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.run:
        if a.tree:
            _use_tree(a.tree)
        print(json.dumps(run(a.run, a.step)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.pickle"
        t0 = time.perf_counter()
        n = make_records(a.records, a.seed, path)
        print(f"{n:,} screened records in {time.perf_counter() - t0:.1f} s; steps of {a.step:,}", file=sys.stderr)
        results: dict[str, dict[str, Any]] = {}
        if a.baseline:
            results[f"baseline ({a.baseline})"] = _run_tree(a.baseline.resolve(), path, a.step)
        results["this tree"] = _run_tree(ROOT, path, a.step)
    print(render(results))
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
