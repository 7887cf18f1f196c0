"""The repeat-offender detector given the engine's memory of the red list (``offender.Listed``):
it leaves out the vendors not listed whose results in the batch are all clean, and its steps say
exactly what the steps without that memory (every vendor with judged results read) say."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest

from agents.early import offender
from agents.early.common import DAY, HOUR, JSON, EarlyParams, apply
from agents.screened import Screened
from tests.early.records import T0, NoScan, rec

P = EarlyParams()


class Counted(NoScan):
    """A table read by key only, counting the reads (``get`` reads through ``__getitem__``)."""

    def __init__(self, data: Mapping[str, JSON]) -> None:
        super().__init__(data)
        self.reads = 0

    def __getitem__(self, key: str) -> JSON:
        self.reads += 1
        return super().__getitem__(key)


def _traffic(seed: int, days: int) -> list[list[Screened]]:
    """Two-hour batches over ``days`` days: 40 vendors, each sampled a few times a day; a few
    vendors go bad for some days (half their samples non-compliant, now and then banned)."""
    rng = random.Random(seed)
    bad = {f"v{i}": rng.randrange(days) for i in range(40) if rng.random() < 0.3}
    batches = []
    n = 0
    for b in range(days * 12):
        t0 = T0 + b * 2 * HOUR
        batch = []
        for _ in range(rng.randint(5, 25)):
            vendor = f"v{rng.randrange(40)}"
            t = t0 + rng.randrange(2 * HOUR)
            start = bad.get(vendor, -99)
            p = 0.5 if start <= b // 12 < start + 4 else 0.01
            verdict = ("banned" if rng.random() < 0.1 else "positive") if rng.random() < p else "compliant"
            batch.append(rec(f"r{n}", t, vendor_id=vendor, verdict=verdict))
            n += 1
        batches.append(batch)
    return batches


def _summary(s: offender.OffenderStep) -> tuple[Any, ...]:
    alerts = sorted((a.alert_id, a.status, a.kind) for a in s.alerts)
    return s.updates, alerts, sorted(s.redlist, key=lambda e: (e.vendor_id, e.changed_at, e.listed))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_memory_of_the_red_list_leaves_out_reads_not_outcomes(seed: int) -> None:
    plain: dict[str, JSON] = {}
    kept: dict[str, JSON] = {}
    memory = offender.Listed()
    wakes: dict[str, int] = {}
    reads = {"plain": 0, "kept": 0}
    listed_ever: set[str] = set()
    resolved = 0
    max_t = 0
    for batch in _traffic(seed, days=45):
        max_t = max([max_t, *(r.sampled_at for r in batch)])
        wm = max_t - P.grace_s
        due = sorted(k for k, t in wakes.items() if t <= wm)
        a_tab, b_tab = Counted(plain), Counted(kept)
        a = offender.step(a_tab, batch, wm, P, due=due)
        b = offender.step(b_tab, batch, wm, P, due=due, memory=memory)
        assert _summary(a) == _summary(b)
        reads["plain"] += a_tab.reads
        reads["kept"] += b_tab.reads
        plain, kept = apply(plain, a.updates), apply(kept, b.updates)
        memory.apply(b.updates)
        for k in set(due) | set(b.updates):
            v = kept.get(k)
            t = None if v is None else offender.wake_of(k, v, P)
            if t is None:
                wakes.pop(k, None)
            else:
                wakes[k] = t
        listed_ever |= memory.vendors
        resolved += sum(1 for x in b.alerts if x.status == "resolved")
        assert memory.vendors == offender.Listed.build(kept).vendors
    assert listed_ever and resolved  # vendors went on the red list and came off it
    assert reads["kept"] < 0.6 * reads["plain"]  # most reads were of clean samples of vendors not listed


def test_a_vendor_not_listed_with_clean_samples_is_not_read_until_its_finding_leaves() -> None:
    state = apply({}, offender.step({}, [rec("b1", T0, verdict="positive")], T0, P).updates)
    memory = offender.Listed.build(state)
    assert memory.vendors == set()
    tab = Counted(state)
    s = offender.step(tab, [rec("c1", T0 + DAY)], T0 + DAY, P, due=[], memory=memory)
    assert tab.reads == 0 and s.updates == {} and s.wake == {}
    leaves = offender.wake_of("stall-1", state["stall-1"], P)
    assert leaves is not None
    s = offender.step(tab, [rec("c2", leaves)], leaves, P, due=["stall-1"], memory=memory)
    assert tab.reads == 1 and s.updates == {"stall-1": None}  # due: read, its finding gone
