"""The device-layout measurement (tests/bench/layout_device_days.py) keeps its books right: the
running totals are the day counts held, expired days are gone, a site gets an entry once a device
there can be judged."""

from __future__ import annotations

import pytest

from agents.early.common import EarlyParams
from agents.early.device import MIN_HISTORY, day_index
from tests.bench.layout_device_days import RESULTS, DayCounts, main, step
from tests.bench.soak_data import SoakConfig, SoakStream, chunks

P = EarlyParams()


def test_totals_are_the_day_counts_held_and_entries_follow_the_rule() -> None:
    mem = DayCounts()
    wm = 0
    for _, records in SoakStream(SoakConfig(days=10, per_day=2_000, sites=300, devices=900, vendors=3_000,
                                            labs=10, lab_devices=60, suppliers=500)).days():
        for c in chunks(records, 500):
            wm = max([wm, *(r.sampled_at for r in c)])
            _, written = step(mem, c, wm - P.grace_s, P)
            assert written  # each step writes its chunk
    first = day_index(wm - P.grace_s) - P.silent_history_days
    assert mem.days and min(mem.days) >= first  # expired days are gone
    held: dict[tuple[str, str], int] = {}
    for sites in mem.days.values():
        for site, devices in sites.items():
            for dev, c in devices.items():
                held[(site, dev)] = held.get((site, dev), 0) + c[RESULTS]
    assert mem.totals == {k: n for k, n in held.items() if n}
    busy = {site for (site, _), n in held.items() if n >= MIN_HISTORY}
    assert busy and busy <= mem.entries  # a device reaching the history gives its site an entry


def test_the_measurement_runs_and_reports_both_days(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--days", "2", "--per-day", "1000", "--replays", "1"]) == 0
    out = capsys.readouterr().out
    assert "first day: counting" in out and "last day: counting" in out and "last / first" in out
