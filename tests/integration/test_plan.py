"""`foodrisk plan` and GET /v1/plan against real ClickHouse (chdb and Debian's 18.16 server): the plan
read from stored results, alerts, the red list and the votes; follow-ups first; every site's budget
spent; the plan stored and the latest run read back through sampling_plans_latest; the query port's
answer with an analyst token; the command line on the server."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.ingest.tokens import ANALYSTS, TokenRegistry, add_token
from pipeline.localstack.clickhouse_server import ClickHouseServer
from pipeline.plan_cmd import make_and_store
from pipeline.query.server import RUNNER_OPTIONS, AnalystQueries, build_query_app
from pipeline.settings import Settings
from schemas.reference import default_reference
from sinks.clickhouse import ClickHouse
from sinks.clickhouse.schema import CITIZEN_VOTES_COLUMNS, REDLIST_COLUMNS
from sinks.ddl import ALERTS_COLUMNS, RESULTS_COLUMNS, migrate
from tests.integration.test_clickhouse import alert_row, result_row

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 12, 1)
T = dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)
SITES = [("FM-TH-01", "Tianhe"), ("FM-TH-02", "Tianhe"), ("FM-BY-01", "Baiyun")]


def seed(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    rows: list[tuple[Any, ...]] = []
    i = 0
    for day in range(10):
        for site, district in SITES:
            for commodity, analyte, method in (("cowpea", "carbofuran", "colloidal_gold"),
                                               ("leek", "phorate", "colloidal_gold"),
                                               ("chinese_cabbage", "ache_inhibition", "enzyme_inhibition")):
                for n in range(4):
                    i += 1
                    bad = site == "FM-TH-02" and commodity == "leek" and n < 2  # a hot cell
                    rows.append(result_row(
                        i, site_id=site, district=district, site_type="farmers_market", commodity=commodity,
                        analyte=analyte, method=method, quick=1, verdict="positive" if bad else "compliant",
                        vendor_id=f"{site}-S0{n}", supplier_id="SUP-1" if commodity == "cowpea" else "SUP-2",
                        sampled_at=T + dt.timedelta(days=day, hours=n), device_id=f"{site}-D1"))
    rows.append(result_row(i + 1, site_id="TC-TH-01", district="Tianhe", site_type="testing_centre",
                           sampled_at=T))  # a lab: not a sampling site
    ch.insert(f"{ch.database}.results", RESULTS_COLUMNS, rows)
    alerts = [
        alert_row(1, kind="unconfirmed_positive", status="firing", site_id="FM-BY-01", district="Baiyun",
                  commodity="leek", analyte="phorate", vendor_id="FM-BY-01-S01", starts_at=T + dt.timedelta(days=8)),
        alert_row(2, kind="supplier_cluster", status="firing", supplier_id="SUP-1", commodity="cowpea",
                  analyte="carbofuran", starts_at=T + dt.timedelta(days=9)),
        alert_row(3, kind="supplier_cluster", status="firing", supplier_id="SUP-2", commodity="leek",
                  analyte="phorate", starts_at=T + dt.timedelta(days=5)),
        alert_row(3, kind="supplier_cluster", status="resolved", supplier_id="SUP-2", commodity="leek",
                  analyte="phorate", starts_at=T + dt.timedelta(days=5)),
    ]
    ch.insert(f"{ch.database}.alerts", ALERTS_COLUMNS, alerts)
    naive = T.replace(tzinfo=None)
    ch.insert(f"{ch.database}.redlist", REDLIST_COLUMNS, [
        ("FM-TH-02-S01", 1, naive, naive, 3, 0, "FM-TH-02", "Tianhe", "a-x", ["r-1"], 1)])
    ch.insert(f"{ch.database}.citizen_votes", CITIZEN_VOTES_COLUMNS, [
        ("2026-11", "leafy_vegetables", "叶菜", 900, 1, naive), ("2026-11", "cowpea", "豇豆", 100, 2, naive)])


def settings_for(ch: ClickHouse, **over: Any) -> Settings:
    return Settings(clickhouse_url="clickhouse://default:@127.0.0.1:9000", clickhouse_database=ch.database,
                    plan_site_budget=6, **over)


def test_plan_from_history_follow_ups_first_budget_spent_and_stored(ch: ClickHouse) -> None:
    seed(ch)
    now = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)
    doc = make_and_store(ch, settings_for(ch), default_reference(), DAY, None, None, now)
    lines = [dict(zip(doc["columns"], r, strict=True)) for r in doc["rows"]]
    assert {ln["site_id"] for ln in lines} == {s for s, _ in SITES}  # not the testing centre
    for site, _ in SITES:
        assert sum(ln["tests"] for ln in lines if ln["site_id"] == site) == 6
    reasons = {(ln["site_id"], ln["reason"]) for ln in lines}
    assert ("FM-BY-01", "unconfirmed_positive") in reasons
    assert ("FM-TH-02", "redlist") in reasons
    assert {s for s, r in reasons if r == "supplier_cluster"} == {s for s, _ in SITES}  # SUP-1 delivers to all
    red = next(ln for ln in lines if ln["reason"] == "redlist")
    assert (red["vendor_id"], red["commodity"], red["analyte"]) == ("FM-TH-02-S01", "leek", "phorate")
    hot = next(ln for ln in lines if ln["site_id"] == "FM-TH-02" and ln["reason"] == "risk")
    assert hot["commodity"] == "leek"  # the highest shrunk estimate at the site
    priority = [ln for ln in lines if ln["reason"] == "priority"]
    assert priority and all(ln["commodity"] in ("chinese_cabbage", "cowpea") for ln in priority)  # leafy, cowpea
    assert "citizens' priority category" in priority[0]["reason_text"]
    assert doc["tests_by_reason"]["random"] == round(0.2 * 18)
    stored = ch.query("SELECT count(), sum(tests), any(site_budget) FROM sampling_plans_latest "
                      "WHERE plan_date = %(d)s", {"d": DAY}).rows[0]
    assert stored == (len(lines), 18, 6)
    # planned again (later): the latest run replaces the first for readers, both are kept
    later = now + dt.timedelta(minutes=5)
    again = make_and_store(ch, settings_for(ch, plan_random_share=0.0), default_reference(), DAY, "Tianhe", 3, later)
    assert again["tests_by_reason"]["random"] == 0 and again["district"] == "Tianhe"
    runs = ch.query("SELECT district, count(DISTINCT planned_at) FROM sampling_plans GROUP BY district "
                    "ORDER BY district").rows
    assert runs == [("Baiyun", 1), ("Tianhe", 2)]
    latest = ch.query("SELECT DISTINCT district, seed FROM sampling_plans_latest ORDER BY district").rows
    assert latest == [("Baiyun", 20261201), ("Tianhe", 3)]


def test_get_plan_on_the_query_port(ch: ClickHouse, tmp_path: Path) -> None:
    seed(ch)
    analysts = tmp_path / "analysts.json"
    token = add_token(analysts, ANALYSTS, "ana")
    settings = Settings(clickhouse_url="clickhouse://default:@127.0.0.1:9000", clickhouse_database=ch.database,
                        plan_site_budget=4, data_dir=tmp_path, analyst_tokens_file=analysts)
    class Kept:  # the fixture's connection, left open when the port closes its own
        def __getattr__(self, name: str) -> Any:
            return getattr(ch, name)

        def close(self) -> None:
            pass

    queries = AnalystQueries(lambda: Kept(), running=1, waiting=2)
    app = build_query_app(settings, queries, TokenRegistry(analysts, kind=ANALYSTS, check_every_s=0))

    async def main() -> None:
        server = TestServer(app)
        await server.start_server(**RUNNER_OPTIONS)
        async with TestClient(server) as client:
            auth = {"Authorization": f"Bearer {token}"}
            ok = await client.get("/v1/plan", params={"date": DAY.isoformat(), "district": "Baiyun"}, headers=auth)
            assert ok.status == 200, await ok.text()
            doc = await ok.json()
            assert doc["date"] == "2026-12-01" and doc["budget"] == 4 and doc["sites"] == 1
            assert doc["rows"][0][doc["columns"].index("reason")] == "unconfirmed_positive"
            for params, status in (({}, 400), ({"date": "yesterday"}, 400), ({"date": "2026-12-01", "x": "1"}, 400),
                                   ({"date": "2026-12-01", "seed": "-1"}, 400)):
                bad = await client.get("/v1/plan", params=params, headers=auth)
                assert bad.status == status and "error" in await bad.json()
            assert (await client.get("/v1/plan", params={"date": "2026-12-01"})).status == 401
            spec = await (await client.get("/openapi.json")).json()
            assert "/v1/plan" in spec["paths"] and "PlanResponse" in spec["components"]["schemas"]
        queries.close()

    asyncio.run(main())
    stored = ch.query("SELECT count() FROM sampling_plans WHERE district = 'Baiyun'").scalar()
    assert stored >= 1


def test_command_line_on_the_server(ch_server: ClickHouse, clickhouse_server: ClickHouseServer) -> None:
    seed(ch_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOODRISK_")}
    env["FOODRISK_CLICKHOUSE_URL"] = f"clickhouse://default:@{clickhouse_server.host}:{clickhouse_server.tcp_port}"
    env["FOODRISK_CLICKHOUSE_DATABASE"] = ch_server.database
    env["FOODRISK_PLAN_SITE_BUDGET"] = "5"
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "plan", "--date", "2026-12-01", "--format", "json"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False)
    assert res.returncode == 0, res.stderr
    rows = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert sum(r["tests"] for r in rows) == 15 and {r["site_id"] for r in rows} == {s for s, _ in SITES}
    assert "plan of 2026-12-01" in res.stderr and "stored in sampling_plans" in res.stderr
    assert ch_server.query("SELECT sum(tests) FROM sampling_plans_latest").scalar() == 15
