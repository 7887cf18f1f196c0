"""False-alarm rate of the early-warning detectors on 30 simulated days of baseline traffic
(Guangzhou volume, ~5,000 results a day, no injected incidents), screened by the real rules and
run through the pure engine in 30-minute batches. Goal (issue 5): < 1 rate-surge alert a week."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from agents.early.common import EarlyParams
from agents.early.engine import apply_all, empty_tables, step
from agents.screened import screened_record
from pipeline.simulator import CST, Fleet, FleetConfig
from schemas.alert import Alert
from schemas.reference import default_reference
from schemas.result import InvalidResult, parse_result
from schemas.rules import screen

DAYS = 30


def test_rate_surge_false_alarms_under_one_a_week_on_baseline_traffic() -> None:
    ref = default_reference()
    params = EarlyParams(enzyme_prone=frozenset(f.code for f in ref.foods if f.enzyme_false_positive))
    start = datetime(2026, 10, 1, tzinfo=CST)
    fleet = Fleet(FleetConfig(start=start, rate_per_sim_hour=210, incidents=False, invalid_fraction=0.0))
    tables = empty_tables()
    alerts: dict[str, Alert] = {}
    n = 0
    t = start
    while t < start + timedelta(days=DAYS):
        t += timedelta(minutes=30)
        batch = []
        for m in fleet.next_batch(t):
            try:
                r = parse_result(m.value, reference=ref, now=t + timedelta(days=1))
            except InvalidResult:
                continue
            batch.append(screened_record(r, screen(r, ref)))
        n += len(batch)
        out = step(tables, batch, params)
        apply_all(tables, out.updates)
        for a in out.alerts:
            alerts.setdefault(a.alert_id, a)
    per_week = Counter({k: v * 7 / DAYS for k, v in Counter(a.kind for a in alerts.values()).items()})
    print(f"\n{n} results in {DAYS} days; distinct alerts per week at defaults: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_week.items())))
    assert 4000 * DAYS < n < 6000 * DAYS
    assert per_week["rate_surge"] < 1.0
    assert per_week["device_drift"] < 1.0
    assert per_week["device_silent"] < 1.0
