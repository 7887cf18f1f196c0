"""The finding detectors (cluster, offender, unconfirmed, gap) on a national key space, before and
after issue 21: step cost of the first and the last simulated day, state held, bytes written per
result, alert messages per 100,000 records.

    .venv/bin/python -m tests.bench.bench_detectors_findings [--days 30] [--per-day 20000] [--before REF]

Synthetic traffic (seeded): 200,000 vendors at 20,000 sites (300 districts), 500 commodities, 3,000
suppliers (skewed: a few deliver to many sites), 1 % non-compliance, 1,000 repeat offenders (5 % of
the results) at 20 % (2 % in all), 8 bad lots a day found at several places for 36 h, 85 % quick
tests of which 60 % of the positives are confirmed by a lab 2-60 h later, late results, some unknown
labels; 1,000-record steps. Each detector runs on its own table as the engine runs it (``step(state,
records, watermark, params, due)``); after issue 21 the due keys come from a schedule kept here (a
heap of wake times, as the engine's), before every key was found by the detector itself. Bytes
written: ``orjson.dumps`` of each written key and value (a deletion: the key), per key as the engine
writes after issue 21; before, the agent also rewrote whole shards, so the before figure here is a
lower bound.

Also the alert messages per 100,000 records of the pipeline bench data (``bench_pipeline.
fresh_messages``, screened by the real rules) through the whole pure engine at 500-record steps.

"Before" is the code at ``--before`` (default: the issue-21 contract commit, the detectors as shipped
with shims), exported with ``git archive``; each side runs in a child process of its own, one after
the other. Figures are wall-clock on a shared machine: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from tests.bench.wakes import WakeHeap

ROOT = Path(__file__).resolve().parents[2]
BEFORE_REF = "64f368a"  # the issue-21 contract commit: every detector as shipped before issue 21
DETECTORS = ("cluster", "offender", "unconfirmed", "gap")
T0 = 1_790_000_000 - 1_790_000_000 % 86400 - 8 * 3600  # a local midnight (Asia/Shanghai)
DAY = 86400
HOUR = 3600

N_VENDORS = 200_000
N_SITES = 20_000
N_DISTRICTS = 300
N_COMMODITIES = 500
N_SUPPLIERS = 3_000
N_OFFENDERS = 1_000
N_BUSY = 10_000
STEP_RECORDS = 1_000
BENCH_STEP = 500  # the bench data: one step per screened message (SCREENED_PER_MESSAGE)


def traffic(days: int, per_day: int, make: Callable[..., Any], seed: int = 21) -> Iterator[tuple[int, list[Any]]]:
    """(day, records) per step of ``STEP_RECORDS``; ``make`` builds a screened record from its fields."""
    rng = random.Random(seed)
    steps_per_day = max(1, per_day // STEP_RECORDS)
    slot = DAY // steps_per_day
    labs: list[tuple[int, int, Any]] = []  # (due step, seq, record)
    lots: list[tuple[int, int, int]] = []  # (supplier, commodity, until)
    seq = 0
    n = 0
    for day in range(days):
        lots.extend((int(N_SUPPLIERS * rng.random() ** 3), int(N_COMMODITIES * rng.random() ** 2),
                     T0 + day * DAY + 36 * HOUR) for _ in range(8))  # bad lots of popular suppliers, for 36 h
        for s in range(steps_per_day):
            step_no = day * steps_per_day + s
            start = T0 + day * DAY + s * slot
            lots = [x for x in lots if x[2] > start]
            batch = []
            for _ in range(STEP_RECORDS):
                n += 1
                at = start + rng.randrange(slot)
                if rng.random() < 0.05:
                    at -= rng.randrange(6 * HOUR)  # late
                roll = rng.random()
                vendor = (rng.randrange(N_OFFENDERS) if roll < 0.05 else rng.randrange(N_BUSY) if roll < 0.3
                          else rng.randrange(N_VENDORS))
                site = vendor % N_SITES
                supplier = int(N_SUPPLIERS * rng.random() ** 3)
                commodity = int(N_COMMODITIES * rng.random() ** 2)
                if lots and rng.random() < 0.004:  # a finding of a bad lot at some site
                    supplier, commodity, _ = rng.choice(lots)
                    bad = True
                else:
                    bad = rng.random() < (0.2 if vendor < N_OFFENDERS else 0.01)
                quick = rng.random() < 0.85
                verdict = ("positive" if quick else rng.choice(("exceeds", "banned"))) if bad else "compliant"
                commodity_label = f"c{commodity}"
                rule = None
                if rng.random() < 0.0005:
                    verdict, commodity_label, rule = "unclassified", f"unknown-{rng.randrange(30)}", "unknown_food"
                rid = f"r{n}"
                rec = make(
                    result_id=rid, sample_id=f"s{n}", sampled_at=at, tested_at=at + 600,
                    device_id=f"d{site}-{rng.randrange(3)}" if quick else f"lab{site % 50}",
                    site_id=f"m{site}", site_type="supermarket" if site % 10 == 0 else "farmers_market",
                    district=f"D{site % N_DISTRICTS}", vendor_id=f"v{vendor}", supplier_id=f"S{supplier}",
                    origin="440000", commodity=commodity_label, analyte="ache_inhibition" if quick else "carbofuran",
                    method="enzyme_inhibition" if quick else "lc_msms", quick=quick, verdict=verdict,
                    value_mg_kg=None, percent=None, ratio=None, confirms=None, rule=rule)
                batch.append(rec)
                if bad and quick and rng.random() < 0.6:
                    lag = rng.randrange(2 * HOUR, 60 * HOUR)
                    seq += 1
                    lab = rec._replace(
                        result_id=f"l{n}", tested_at=at + lag, device_id=f"lab{site % 50}",
                        site_id=f"tc{site % 50}", site_type="testing_centre", analyte="carbofuran", method="lc_msms",
                        quick=False, verdict=rng.choice(("exceeds", "banned", "banned", "compliant")), confirms=rid)
                    heapq.heappush(labs, (step_no + max(1, lag // slot), seq, lab))
            while labs and labs[0][0] <= step_no:
                batch.append(heapq.heappop(labs)[2])
            yield day, batch


def _size(state: dict[str, Any]) -> int:
    return sum(len(orjson.dumps(k)) + len(orjson.dumps(v)) for k, v in state.items())


def worker(src: str, days: int, per_day: int, bench_data: str, scheduled: bool) -> dict[str, Any]:
    """One side (the code under ``src``): the national run, then the bench data through the engine."""
    sys.path.insert(0, src)
    from agents.early import cluster, engine, gap, offender, unconfirmed
    from agents.early.common import EarlyParams
    from agents.screened import Screened, decode_batch

    mods = {"cluster": cluster, "offender": offender, "unconfirmed": unconfirmed, "gap": gap}
    params = EarlyParams()
    state: dict[str, dict[str, Any]] = {d: {} for d in DETECTORS}
    sched = {d: WakeHeap() for d in DETECTORS}
    per_day_stats: dict[int, dict[str, Counter[str]]] = {}
    alerts_total: Counter[str] = Counter()
    alert_kinds: dict[str, Counter[str]] = {d: Counter() for d in DETECTORS}  # new / update / resolved
    ids_seen: set[str] = set()
    step_ms: dict[int, dict[str, list[float]]] = {}  # day -> detector -> ms per 1,000 records, per step
    sizes: dict[int, dict[str, int]] = {}
    max_event = 0
    records_total = 0
    last_day = -1
    for day, batch in traffic(days, per_day, Screened):
        if day != last_day and last_day >= 0:
            sizes[last_day] = {d: _size(state[d]) for d in DETECTORS} | {f"{d}_keys": len(state[d]) for d in DETECTORS}
        last_day = day
        max_event = max([max_event, *(r.sampled_at for r in batch)])
        wm = max_event - params.grace_s
        fresh = batch
        stats = per_day_stats.setdefault(day, {d: Counter() for d in DETECTORS})
        ms = step_ms.setdefault(day, {d: [] for d in DETECTORS})
        records_total += len(batch)
        for d in DETECTORS:
            mod = mods[d]
            st = state[d]
            t0 = time.process_time()  # CPU time: less disturbed by other work on a shared machine
            due = sched[d].due(wm) if scheduled else None
            s = mod.step(st, fresh, wm, params, due) if scheduled else mod.step(st, fresh, wm, params)
            if scheduled:
                sched[d].apply(s.wake)
            dt = time.process_time() - t0
            written = 0
            for k, v in s.updates.items():
                written += len(orjson.dumps(k)) + (len(orjson.dumps(v)) if v is not None else 0)
                if v is None:
                    st.pop(k, None)
                else:
                    st[k] = v
            c = stats[d]
            c["us"] += int(dt * 1e6)
            ms[d].append(dt * 1e6 / len(batch))
            for a in s.alerts:
                if a.status == "resolved":
                    alert_kinds[d]["resolved"] += 1
                elif a.alert_id in ids_seen:
                    alert_kinds[d]["update"] += 1
                else:
                    ids_seen.add(a.alert_id)
                    alert_kinds[d]["new"] += 1
            c["records"] += len(batch)
            c["steps"] += 1
            c["bytes"] += written
            c["writes"] += len(s.updates)
            c["alerts"] += len(s.alerts)
            alerts_total[d] += len(s.alerts)
    sizes[last_day] = {d: _size(state[d]) for d in DETECTORS} | {f"{d}_keys": len(state[d]) for d in DETECTORS}
    days_out = {day: {d: dict(c) for d, c in v.items()} for day, v in per_day_stats.items()}

    # the pipeline bench data through the whole engine
    recs = decode_batch(Path(bench_data).read_bytes())
    tables = engine.empty_tables()
    kinds: Counter[str] = Counter()
    bench_ids: set[str] = set()
    for i in range(0, len(recs), BENCH_STEP):
        out = engine.step(tables, recs[i:i + BENCH_STEP], params)
        engine.apply_all(tables, out.updates)
        for a in out.alerts:
            what = "resolved" if a.status == "resolved" else "update" if a.alert_id in bench_ids else "new"
            bench_ids.add(a.alert_id)
            kinds[f"{a.kind}:{what}"] += 1
    medians = {day: {d: statistics.median(v) for d, v in x.items()} for day, x in step_ms.items()}
    return {"days": days_out, "sizes": sizes, "records": records_total, "alerts": dict(alerts_total),
            "median_ms": medians, "alert_kinds": {d: dict(c) for d, c in alert_kinds.items()},
            "bench_alerts": dict(kinds), "bench_records": len(recs)}


def bench_data_file(path: Path, n: int) -> None:
    """The pipeline bench data (``fresh_messages(n, seed=1)``), screened by the real rules."""
    from agents.screened import encode_batch, screened_record
    from schemas.reference import default_reference
    from schemas.result import InvalidResult, parse_result
    from schemas.rules import screen
    from tests.bench.bench_pipeline import fresh_messages, now_utc

    ref = default_reference()
    now = now_utc()
    out = []
    for m in fresh_messages(n, seed=1):
        try:
            r = parse_result(orjson.loads(m), reference=ref, now=now)
        except InvalidResult:
            continue
        out.append(screened_record(r, screen(r, ref)))
    path.write_bytes(encode_batch(out))


def _side(name: str, src: str, args: argparse.Namespace, data: Path, scheduled: bool) -> dict[str, Any]:
    print(f"running {name} ({src}) ...", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "tests.bench.bench_detectors_findings", "--worker", src, "--days", str(args.days),
           "--per-day", str(args.per_day), "--data", str(data)] + (["--scheduled"] if scheduled else [])
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def report(before: dict[str, Any], after: dict[str, Any], days: int) -> str:
    first, third, mid, last = "0", str(min(2, days - 1)), str(days // 2), str(days - 1)
    lines = [f"median step, CPU ms per 1,000 records: day 1, day 3, day {days // 2 + 1} -> day {days} "
             f"(day {days}/day 1, /day 3, /day {days // 2 + 1}) | "
             "bytes written per result | state at end of day 1 -> last day (keys) | alert messages per 100k "
             "(new + update + resolved)"]
    for side, res in (("before", before), ("after", after)):
        lines.append(f"-- {side}")
        tot = [0.0, 0.0, 0.0, 0.0]
        for d in DETECTORS:
            m = [res["median_ms"][x][d] for x in (first, third, mid, last)]
            tot = [a + b for a, b in zip(tot, m, strict=True)]
            bytes_per = sum(res["days"][k][d]["bytes"] for k in res["days"]) / res["records"]
            s1, sl = res["sizes"][first], res["sizes"][last]
            k = res["alert_kinds"][d]
            per = 100_000 / res["records"]
            lines.append(
                f"{d:12} | {m[0]:5.2f}, {m[1]:5.2f}, {m[2]:5.2f} -> {m[3]:5.2f} "
                f"({m[3] / m[0]:5.2f}, {m[3] / m[1]:5.2f}, {m[3] / m[2]:5.2f}) | "
                f"{bytes_per:6.1f} B | {s1[d] / 1e6:5.2f} MB ({s1[d + '_keys']:,}) -> {sl[d] / 1e6:5.2f} MB "
                f"({sl[d + '_keys']:,}) | {res['alerts'][d] * per:6.0f} ({k.get('new', 0) * per:.0f} + "
                f"{k.get('update', 0) * per:.0f} + {k.get('resolved', 0) * per:.0f})")
        lines.append(f"{'all four':12} | {tot[0]:5.2f}, {tot[1]:5.2f}, {tot[2]:5.2f} -> {tot[3]:5.2f} "
                     f"({tot[3] / tot[0]:5.2f}, {tot[3] / tot[1]:5.2f}, {tot[3] / tot[2]:5.2f})")
        n = res["bench_records"]
        total = sum(res["bench_alerts"].values())
        lines.append(f"bench data ({n:,} records, {BENCH_STEP}-record steps, whole engine): "
                     f"{total * 100_000 / n:,.0f} alert messages per 100,000 records: "
                     + ", ".join(f"{k} {v * 100_000 / n:,.0f}" for k, v in sorted(res["bench_alerts"].items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--per-day", type=int, default=20_000)
    ap.add_argument("--before", default=BEFORE_REF, help="git ref of the code before (default: %(default)s)")
    ap.add_argument("--bench-records", type=int, default=100_000)
    ap.add_argument("--json", type=Path, help="write both sides' figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--scheduled", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.days, args.per_day, args.data, args.scheduled)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-findings-") as tmp:
        old = Path(tmp) / "before"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.before, "agents", "schemas"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        data = Path(tmp) / "bench.json"
        print(f"screening {args.bench_records:,} bench records ...", file=sys.stderr, flush=True)
        bench_data_file(data, args.bench_records)
        before = _side("before", str(old), args, data, scheduled=False)
        after = _side("after", str(ROOT), args, data, scheduled=True)
    if args.json:
        args.json.write_text(json.dumps({"before": before, "after": after}, indent=1))
    print(f"{args.days} days x {args.per_day:,} results/day, {STEP_RECORDS:,}-record steps "
          f"({N_VENDORS:,} vendors, {N_SITES:,} sites, {N_COMMODITIES} commodities, {N_SUPPLIERS:,} suppliers)")
    print(report(before, after, args.days))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
