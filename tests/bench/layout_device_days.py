"""What the device detector would cost in the layout surge has since issue 21's third pass, measured
before building it: ``python -m tests.bench.layout_device_days [--days 30]``.

Not used by the pipeline. The candidate keeps a site's counts per local day in memory (device ->
results, judged, positives, last result, positive ids), with a running total of each device's
results over the history, and writes per step one chunk per day of what the step counted (encoded);
a day leaves memory whole once it has left the history (its counts taken off the totals). A site
gets an entry (today's per-site value and visit, not modelled here: counted, not timed) once
something can happen there: a device with ``MIN_HISTORY`` results in its history or a device day
with ``drift_min_positives`` positives. Run on the soak's records (``tests/bench/soak_data.py``),
the first day from empty memory and the last day from the memory at its start, alternately, the
least CPU time of each, as the soak replays them.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import time
from collections.abc import Sequence
from typing import Any

import orjson

from agents.early.common import EarlyParams
from agents.early.device import MIN_HISTORY, day_index
from agents.screened import Screened
from pipeline.worker import tune_gc
from tests.bench.soak_data import SoakConfig, SoakStream, chunks

# a device's counts on one day: results, judged, positives, last result (epoch s), positive id...
RESULTS, JUDGED, POSITIVES, LAST = 0, 1, 2, 3


class DayCounts:
    """The candidate's memory: day -> site -> device -> counts, the history totals, the sites that
    have an entry."""

    def __init__(self) -> None:
        self.days: dict[int, dict[str, dict[str, list[Any]]]] = {}
        self.totals: dict[tuple[str, str], int] = {}
        self.entries: set[str] = set()

    def expire(self, first: int) -> None:
        for d in [d for d in self.days if d < first]:
            totals = self.totals
            for site, devices in self.days.pop(d).items():
                for dev, c in devices.items():
                    k = (site, dev)
                    n = totals[k] - c[RESULTS]
                    if n:
                        totals[k] = n
                    else:
                        del totals[k]


def _count(target: dict[int, dict[str, dict[str, list[Any]]]], di: int, r: Screened) -> list[Any]:
    day = target.get(di)
    if day is None:
        day = target[di] = {}
    site = day.get(r.site_id)
    if site is None:
        site = day[r.site_id] = {}
    c = site.get(r.device_id)
    if c is None:
        c = site[r.device_id] = [0, 0, 0, 0]
    c[RESULTS] += 1
    t = int(r.sampled_at)
    if t > c[LAST]:
        c[LAST] = t
    if r.judged:
        c[JUDGED] += 1
        if r.non_compliant:
            c[POSITIVES] += 1
            c.append(r.result_id)
    return c


def step(mem: DayCounts, records: Sequence[Screened], watermark: int, params: EarlyParams) -> tuple[int, list[bytes]]:
    """One step of the candidate: the visits that go to an entry (counted), the chunks it writes."""
    first = day_index(watermark) - params.silent_history_days
    mem.expire(first)
    chunk: dict[int, dict[str, dict[str, list[Any]]]] = {}
    to_entries = 0
    for r in records:
        if not r.quick:
            continue
        if r.site_id in mem.entries:
            to_entries += 1
            continue
        di = day_index(r.sampled_at)
        if di < first:
            continue
        c = _count(mem.days, di, r)
        _count(chunk, di, r)
        k = (r.site_id, r.device_id)
        n = mem.totals.get(k, 0) + 1
        mem.totals[k] = n
        if n >= MIN_HISTORY or c[POSITIVES] >= params.drift_min_positives:
            mem.entries.add(r.site_id)
    return to_entries, [bytes(memoryview(orjson.dumps(v))) for v in chunk.values()]


def _run(mem: DayCounts, records: Sequence[Screened], params: EarlyParams, step_size: int) -> tuple[float, int]:
    cpu, to_entries, max_t = 0.0, 0, 0
    for c in chunks(records, step_size):
        max_t = max([max_t, *(r.sampled_at for r in c)])
        t = time.thread_time()
        n, _ = step(mem, c, max_t - params.grace_s, params)
        cpu += time.thread_time() - t
        to_entries += n
    return cpu * 1e6 / max(1, len(records)), to_entries


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--per-day", type=int, default=50_000)
    p.add_argument("--step", type=int, default=1_000)
    p.add_argument("--replays", type=int, default=5)
    args = p.parse_args(argv)
    tune_gc()
    params = EarlyParams()
    mem = DayCounts()
    first: list[Screened] = []
    last: list[Screened] = []
    snapshot = b""
    for day, records in SoakStream(SoakConfig(days=args.days, per_day=args.per_day)).days():
        if day == 0:
            first = records
        if day == args.days - 1:
            snapshot, last = pickle.dumps(mem), records
            break
        _run(mem, records, params, args.step)
    best: dict[str, float] = {}
    seen: dict[str, tuple[int, int]] = {}
    for _ in range(args.replays):
        for which, records in (("first", first), ("last", last)):
            m = DayCounts() if which == "first" else pickle.loads(snapshot)  # noqa: S301 - our own bytes
            gc.collect()
            ms, to_entries = _run(m, records, params, args.step)
            best[which] = min(best.get(which, float("inf")), ms)
            seen[which] = (to_entries, len(m.entries))
    for which in ("first", "last"):
        to_entries, entries = seen[which]
        print(f"{which} day: counting {best[which]:.2f} ms of CPU per 1,000 records (least of {args.replays}); "
              f"{to_entries:,} quick results to sites with an entry ({entries:,} such sites at the day's end)")
    print(f"counting, last / first: {best['last'] / best['first']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
