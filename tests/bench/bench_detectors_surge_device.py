"""The rate-surge and device-health detectors at national scale, before (issue 21: every key at every
step boundary, whole site values) and after (touched and due keys, compact values), in one run on the
same batches: step time per day, changelog bytes per result (orjson of key + value of every write),
writes per result, and the state held at the end.

Synthetic key space: 20,000 sites with 50,000 quick-test devices, 3,000 districts, 500 commodities,
the three quick methods; results in local working hours (06:00-20:00), 0.2% positive, in batches of
1,000 in sampled order. ``python -m tests.bench.bench_detectors_surge_device [--days 3] [--per-day
100000] [--gc]``. The machine is shared: read the ratios, not the absolute times.

Python's cyclic garbage collector is off while it runs unless ``--gc``: the state is acyclic JSON, and
with both versions' states in one process a collection's cost (which grows with every container
held) would land on whichever step happens to trigger it. The first day has no expiries yet (keys
created that day expire the next): the steady state is from the second day on."""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import orjson

from agents.early import device, surge
from agents.early.common import DAY, HOUR, JSON, EarlyParams, Step
from agents.screened import Screened
from tests.bench.wakes import WakeHeap
from tests.early import _device_v1, _surge_v1
from tests.early.records import T0, rec

P = EarlyParams()
SITES, DEVICES, DISTRICTS, COMMODITIES = 20_000, 50_000, 3_000, 500
METHODS = ("enzyme_inhibition", "colloidal_gold", "xrf")


def traffic(days: int, per_day: int, seed: int = 1) -> list[list[Screened]]:
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 0.8 for i in range(COMMODITIES)]  # a few commodities are most of the tests
    start = T0 - HOUR  # 06:00 local
    out: list[Screened] = []
    for day in range(days):
        commodities = rng.choices(range(COMMODITIES), weights, k=per_day)
        for i in range(per_day):
            dev = rng.randrange(DEVICES)
            site = dev * SITES // DEVICES
            t = start + day * DAY + rng.randrange(14 * HOUR)
            out.append(rec(
                f"r{day}-{i}", t, device_id=f"qt-{dev:05d}", site_id=f"s-{site:05d}",
                district=f"d{site % DISTRICTS:04d}", commodity=f"c{commodities[i]:03d}",
                method=METHODS[dev % 3], verdict="positive" if rng.random() < 0.002 else "compliant",
            ))
    out.sort(key=lambda r: r.sampled_at)
    return [out[i:i + 1000] for i in range(0, len(out), 1000)]


@dataclass
class Figures:
    name: str
    seconds_by_day: dict[int, float] = field(default_factory=dict)
    bytes_written: int = 0
    writes: int = 0
    largest: int = 0
    alerts: int = 0

    def add(self, day: int, seconds: float, s: Step) -> None:
        self.seconds_by_day[day] = self.seconds_by_day.get(day, 0.0) + seconds
        for k, v in s.updates.items():
            n = len(orjson.dumps(k)) + (len(orjson.dumps(v)) if v is not None else 0)
            self.bytes_written += n
            self.writes += 1
            self.largest = max(self.largest, n)
        self.alerts += len(s.alerts)


def _apply(state: dict[str, JSON], updates: Mapping[str, JSON]) -> None:
    for k, v in updates.items():
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v


StepFn = Callable[..., Step]


def run(days: int, per_day: int, log: Callable[[str], None]) -> dict[str, Figures]:
    batches = traffic(days, per_day)
    n = sum(len(b) for b in batches)
    log(f"{n:,} results in {len(batches):,} batches over {days} days")
    pairs: list[tuple[str, ModuleType, ModuleType]] = [("surge", _surge_v1, surge), ("device", _device_v1, device)]
    figs = {f"{name} {ver}": Figures(f"{name} {ver}") for name, _, _ in pairs for ver in ("before", "after")}
    states: dict[str, dict[str, JSON]] = {k: {} for k in figs}
    schedules = {name: WakeHeap() for name, _, _ in pairs}
    due_s = dict.fromkeys(schedules, 0.0)
    max_t = 0
    start_day = device.day_index(T0)
    for i, batch in enumerate(batches):
        max_t = max(max_t, *(r.sampled_at for r in batch))
        wm = max_t - P.grace_s
        day = device.day_index(batch[0].sampled_at) - start_day
        for name, old, new in pairs:
            st = states[f"{name} before"]
            t = time.perf_counter()
            s = old.step(st, batch, wm, P)
            figs[f"{name} before"].add(day, time.perf_counter() - t, s)
            _apply(st, s.updates)
            st = states[f"{name} after"]
            t = time.perf_counter()
            due = schedules[name].due(wm)
            due_s[name] += time.perf_counter() - t
            t = time.perf_counter()
            s = new.step(st, batch, wm, P, due=due)
            figs[f"{name} after"].add(day, time.perf_counter() - t, s)
            _apply(st, s.updates)
            schedules[name].apply(s.wake)
        if i % 100 == 0:
            log(f"batch {i:,}/{len(batches):,}")
    log("schedule (due) time: " + ", ".join(f"{k} {v:.2f} s" for k, v in due_s.items()))
    for k in figs:
        held = states[k]
        size = sum(len(orjson.dumps(key)) + len(orjson.dumps(v)) for key, v in held.items())
        log(f"{k}: {len(held):,} keys held, {size / 1e6:.1f} MB")
    print(render(figs, n))
    return figs


def render(figs: dict[str, Figures], n: int) -> str:
    lines = ["| detector | step time, s (per day) | last/second day | bytes written per result | writes per result | "
             "largest write, bytes | alerts |", "|---|---|---|---|---|---|---|"]
    for f in figs.values():
        days = [f.seconds_by_day[d] for d in sorted(f.seconds_by_day)]
        ratio = days[-1] / days[1] if len(days) > 1 and days[1] else 0.0
        lines.append(f"| {f.name} | {sum(days):.2f} ({', '.join(f'{d:.2f}' for d in days)}) | {ratio:.2f} | "
                     f"{f.bytes_written / n:,.0f} | {f.writes / n:.2f} | {f.largest:,} | {f.alerts} |")
    for name in ("surge", "device"):
        b, a = figs[f"{name} before"], figs[f"{name} after"]
        tb, ta = sum(b.seconds_by_day.values()), sum(a.seconds_by_day.values())
        lines.append(f"\n{name}: step time after/before {ta / tb:.3f}; bytes per result after/before "
                     f"{a.bytes_written / max(1, b.bytes_written):.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--per-day", type=int, default=100_000)
    p.add_argument("--gc", action="store_true", help="leave the cyclic garbage collector on")
    args = p.parse_args(argv)
    if not args.gc:
        gc.disable()

    def log(text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    run(args.days, args.per_day, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())


