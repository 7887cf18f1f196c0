"""Every ClickHouse panel of the Grafana boards runs on both ClickHouse backends with demo data.

Demo data goes in through the real tables: six simulated hours of the Guangzhou fleet
(pipeline/simulator/, incidents included) screened by the screening agent's pure batch step and
inserted into `results`, `alerts` and `deadletters` (so `results_hourly` fills through its
materialized view), plus the early-warning alerts the boards show (supplier cluster, repeat
offender listed and delisted, silent and drifting device). Each panel's SQL is expanded as Grafana
and the ClickHouse plugin would (tests/grafana.py) and must run and return the columns the panel
expects (tests/unit/test_dashboards.py, EXPECTED_COLUMNS); with every variable on "All" each panel
must also return rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.batch import Incoming, screen_batch
from agents.records import alert_values, as_row, deadletter_values
from pipeline.plan_cmd import store_plan
from pipeline.simulator import CST, Fleet, FleetConfig
from schemas.alert import Alert, AlertStatus, Classification, Risk, alert_id_for
from schemas.plan import Plan, PlanLine, Stratum
from schemas.reference import default_reference
from sinks.clickhouse import ClickHouse
from sinks.ddl import ALERTS_COLUMNS, DEADLETTERS_COLUMNS, PARKED_ALERTS_COLUMNS, RESULTS_COLUMNS, migrate
from tests.grafana import (
    ALL,
    CLICKHOUSE_TYPE,
    TimeRange,
    constants,
    expand,
    load_dashboards,
    targets_of,
    variables,
)
from tests.unit.test_dashboards import EXPECTED_COLUMNS, TIME_SERIES

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 5, 0, tzinfo=CST)
HOURS = 6
TOPIC = "foodrisk.results"


@dataclass(frozen=True)
class Demo:
    results: int
    alerts: int
    dead_letters: int
    district: str
    commodity: str
    site_type: str
    confidence: str


def _early_alerts(fleet: Fleet, now: datetime) -> list[Alert]:
    """The alerts of the early-warning agents the boards show, shaped as those agents write them."""
    by_tag = {i.tag: i for i in fleet.incidents()}
    cluster = by_tag["incident:cowpea_carbofuran"]
    offender = by_tag["incident:repeat_offender"]
    faulty = by_tag["incident:faulty_device"]
    t0 = cluster.starts_at
    common = {"summary_zh": "演示", "starts_at": t0}
    listed = Alert(
        alert_id=alert_id_for("repeat_offender", offender.vendor_id or "v"), kind="repeat_offender",
        classification=Classification.follow_up, risk=Risk.potentially_serious,
        summary_en=f"vendor {offender.vendor_id} non-compliant 3 times in 30 days", vendor_id=offender.vendor_id,
        site_id=offender.site_ids[0], district=offender.districts[0], site_type="farmers_market",
        commodity="cowpea", evidence=("r1", "r2", "r3"), **common,
    )
    delisted_firing = listed.model_copy(
        update={"alert_id": alert_id_for("repeat_offender", "old-vendor"), "vendor_id": "old-vendor"}
    )
    delisted = delisted_firing.model_copy(update={"status": AlertStatus.resolved, "ends_at": t0 + timedelta(hours=1)})
    return [
        Alert(
            alert_id=alert_id_for("supplier_cluster", cluster.supplier_id or "s"), kind="supplier_cluster",
            classification=Classification.alert, risk=Risk.serious,
            summary_en=f"supplier {cluster.supplier_id}: carbofuran in cowpea at {len(cluster.site_ids)} sites",
            supplier_id=cluster.supplier_id, commodity="cowpea", analyte="carbofuran",
            district=cluster.districts[0], site_type="farmers_market",
            evidence=tuple(f"r{i}" for i in range(len(cluster.site_ids))), **common,
        ),
        listed,
        delisted_firing,
        delisted,
        Alert(
            alert_id=alert_id_for("device_drift", faulty.device_id or "d"), kind="device_drift",
            classification=Classification.attention, risk=Risk.undecided,
            summary_en=f"device {faulty.device_id} reads more positives than its peers", device_id=faulty.device_id,
            site_id=faulty.site_ids[0], district=faulty.districts[0], site_type="farmers_market", **common,
        ),
        Alert(
            alert_id=alert_id_for("device_silent", "dev-silent"), kind="device_silent",
            classification=Classification.attention, risk=Risk.not_serious, summary_en="device dev-silent silent",
            device_id="dev-silent", site_id=faulty.site_ids[0], district=faulty.districts[0],
            site_type="farmers_market", **common,
        ),
    ]


def _parked(alerts: list[Alert], now: datetime) -> list[tuple[object, ...]]:
    """Two alerts the webhook never took (agents/delivery/ parks them so)."""
    at = now.astimezone(UTC).replace(tzinfo=None)
    values = [
        {
            "target": "webhook", "alert_id": a.alert_id, "status": str(a.status), "kind": a.kind,
            "severity": "critical", "district": a.district, "reason": "unavailable",
            "error": "connection refused", "attempts": 40, "first_attempt_at": at - timedelta(hours=1),
            "parked_at": at, "alert": a.to_json().decode(), "src_topic": "foodrisk.alerts", "src_partition": 0,
            "src_offset": i,
        }
        for i, a in enumerate(alerts)
    ]
    return [as_row(v, PARKED_ALERTS_COLUMNS) for v in values]


def _plan_for_the_demo_day(
    ch: ClickHouse, database: str, rows: list[tuple[Any, ...]], col: dict[str, int], now: datetime
) -> None:
    """A stored sampling plan of the demo day, through the plan's own storage: one line for each of
    the first 30 (site, commodity) pairs the markets tested, plus one nobody tested (done = 0)."""
    day = START.date()
    seen: dict[tuple[str, str], str] = {}
    for r in rows:
        if r[col["site_type"]] != "testing_centre" and len(seen) < 30:
            seen.setdefault((r[col["site_id"]], r[col["commodity"]]), r[col["district"]])
    lines = [
        PlanLine(district, site, 1, Stratum(commodity, "", ""), 2, "risk", "demo", 0.05)
        for (site, commodity), district in sorted(seen.items())
    ]
    site, district = lines[0].site_id, lines[0].district
    lines.append(PlanLine(district, site, 2, Stratum("dried_longan", "", ""), 1, "random", "demo", 0.0))
    store_plan(ch, database, Plan(day, 1, tuple(lines), {ln.site_id: 3 for ln in lines}), now)


def insert_demo(ch: ClickHouse, database: str) -> Demo:
    fleet = Fleet(FleetConfig(seed=11, start=START, rate_per_sim_hour=800, invalid_fraction=0.01))
    now = START + timedelta(hours=HOURS + 1)
    messages = fleet.next_batch(START + timedelta(hours=HOURS))
    items = [
        Incoming(TOPIC, i % 3, i // 3, m.event_time.timestamp() + 30, m.key, m.value) for i, m in enumerate(messages)
    ]
    out = screen_batch(
        items, reference=default_reference(), columns=RESULTS_COLUMNS, watch_fraction=0.5, now=now
    )
    alerts = out.alerts + _early_alerts(fleet, now)
    alert_rows = [
        as_row(alert_values(a, src_partition=0, src_offset=i, ingested_at=now), ALERTS_COLUMNS)
        for i, a in enumerate(alerts)
    ]
    dl_rows = [as_row(deadletter_values(d.envelope), DEADLETTERS_COLUMNS) for d in out.dead_letters]
    ch.insert(f"{database}.results", RESULTS_COLUMNS, out.result_rows)
    ch.insert(f"{database}.alerts", ALERTS_COLUMNS, alert_rows)
    ch.insert(f"{database}.deadletters", DEADLETTERS_COLUMNS, dl_rows)
    ch.insert(f"{database}.parked_alerts", PARKED_ALERTS_COLUMNS, _parked(alerts[:2], now))
    col = {c: i for i, c in enumerate(RESULTS_COLUMNS)}
    _plan_for_the_demo_day(ch, database, out.result_rows, col, now)
    districts = Counter(r[col["district"]] for r in out.result_rows)
    district = districts.most_common(1)[0][0]
    commodities = Counter(r[col["commodity"]] for r in out.result_rows if r[col["district"]] == district)
    confidences = Counter(r[col["confidence"]] or "none" for r in out.result_rows if r[col["district"]] == district)
    return Demo(
        results=len(out.result_rows), alerts=len({a.alert_id for a in alerts}), dead_letters=len(dl_rows),
        district=district, commodity=commodities.most_common(1)[0][0], site_type="farmers_market",
        confidence=confidences.most_common(1)[0][0],
    )


TIME_RANGE = TimeRange(START - timedelta(hours=1), START + timedelta(hours=HOURS + 2), interval_s=900)
BOARDS = load_dashboards()
CLICKHOUSE_PANELS = [
    (uid, panel, target)
    for uid, board in BOARDS.items()
    for panel, target in targets_of(board, CLICKHOUSE_TYPE)
]


def _multi_vars(board: dict[str, Any]) -> list[str]:
    return [
        n for n, v in variables(board).items()
        if v.get("type") == "query" and v.get("multi") and v["datasource"]["type"] == CLICKHOUSE_TYPE
    ]


def test_every_clickhouse_panel_runs_on_both_backends(ch: ClickHouse) -> None:
    database = ch.database
    migrate(ch, database)
    demo = insert_demo(ch, database)
    assert demo.results > 2000 and demo.dead_letters > 0 and demo.alerts > 10
    chosen = {"district": [demo.district], "commodity": [demo.commodity], "site_type": [demo.site_type],
              "confidence": [demo.confidence]}
    empty: list[str] = []
    ran = 0
    for uid, panel, target in CLICKHOUSE_PANELS:
        board = BOARDS[uid]
        consts = {**constants(board), "database": database}
        names = _multi_vars(board)
        for label, selection in (
            ("all", {n: [ALL] for n in names}),
            ("one value each", {n: chosen[n] for n in names}),
        ):
            sql = expand(target["rawSql"], selection=selection, constants=consts, time_range=TIME_RANGE)
            where = f"{uid} / {panel['title']!r} ({label}) on {type(ch).__name__}"
            try:
                res = ch.query(sql)
            except Exception as exc:  # noqa: BLE001 - any failure of a panel fails the test, with its SQL
                pytest.fail(f"{where} failed: {exc}\n{sql}")
            ran += 1
            assert tuple(res.columns) == EXPECTED_COLUMNS[(uid, panel["title"])], where
            if (uid, panel["title"]) in TIME_SERIES:
                assert res.types[0].startswith("DateTime"), f"{where}: first column is {res.types[0]}"
                assert [r[0] for r in res.rows] == sorted(r[0] for r in res.rows), f"{where}: not in time order"
            if label == "all" and not res.rows:
                empty.append(where)
    assert ran == 2 * len(CLICKHOUSE_PANELS)
    assert not empty, f"panels with no rows on the demo data: {empty}"


def test_variable_queries_list_the_demo_values(ch: ClickHouse) -> None:
    database = ch.database
    migrate(ch, database)
    demo = insert_demo(ch, database)
    for uid, board in BOARDS.items():
        consts = {**constants(board), "database": database}
        for name, var in variables(board).items():
            if var.get("type") != "query" or var["datasource"]["type"] != CLICKHOUSE_TYPE:
                continue
            sql = expand(var["query"], selection={}, constants=consts, time_range=TIME_RANGE)
            values = [r[0] for r in ch.query(sql).rows]
            assert values == sorted(values) and len(values) == len(set(values)), f"{uid} ${name}"
            assert getattr(demo, name) in values, f"{uid} ${name}: {values}"


def test_time_buckets_match_the_plugins_time_interval_on_modern_clickhouse(ch: ClickHouse) -> None:
    """The boards' bucket expression equals $__timeInterval's toStartOfInterval wherever that exists."""
    if not ch.features.low_cardinality:  # 18.16: no toStartOfInterval at all, the reason for the rewrite
        with pytest.raises(Exception, match="toStartOfInterval"):
            ch.query("SELECT toStartOfInterval(now(), INTERVAL 900 second)")
        return
    ts = int(datetime(2026, 11, 20, 5, 7, 31, tzinfo=UTC).timestamp())
    for interval in (1, 60, 900, 3600, 86400):
        ours = f"toDateTime(intDiv(toUInt32(toDateTime({ts})), {interval}) * {interval})"
        plugin = f"toStartOfInterval(toDateTime(toDateTime({ts})), INTERVAL {interval} second)"
        assert ch.query(f"SELECT {ours} = {plugin}").scalar() == 1, interval
