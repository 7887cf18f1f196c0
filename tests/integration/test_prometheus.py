"""Real Prometheus (Debian's 2.42) scrapes a real worker; promtool checks the exposition and the rules.

One worker (chdb) reads a fresh results topic on the session's Kafka broker; Prometheus scrapes it
every second and evaluates the shipped rules (deploy/prometheus/rules) against it. After the test
produced N valid and M invalid results with kafka-python, PromQL over the foodrisk_ metrics must
count exactly those, the consumer-lag gauges must show every partition drained, every rule must
evaluate without error, and every PromQL expression of the Pipeline board must run.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.localstack.kafka import KafkaBroker
from pipeline.localstack.prometheus import PrometheusMissing, PrometheusServer, find_binary
from schemas.alert import SINGLE_RESULT_KINDS
from tests.conftest import unavailable
from tests.grafana import PROMETHEUS_TYPE, expand_promql, load_dashboards, targets_of
from tests.integration.factories import mixed_batch, produce
from tests.integration.workers import WorkerProcess, metrics_text

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((DEPLOY / "rules").glob("*.yml"))
PARTITIONS = 3


@pytest.fixture(scope="module")
def promtool() -> str:
    try:
        return find_binary("promtool")
    except PrometheusMissing as exc:
        unavailable(str(exc))
        raise


def run_promtool(promtool: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], input=stdin.decode() if stdin is not None else None, capture_output=True, text=True,
        timeout=120, cwd=DEPLOY, check=False,
    )


def test_promtool_checks_config_and_rules_and_runs_the_rule_unit_tests(promtool: str) -> None:
    config = run_promtool(promtool, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run_promtool(promtool, "check", "rules", *(str(p) for p in RULE_FILES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    tests = sorted(str(p) for p in (DEPLOY / "tests").glob("*.yml"))
    assert tests
    unit = run_promtool(promtool, "test", "rules", *tests)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout


def test_promtool_test_rules_fails_when_a_rule_is_wrong(promtool: str, tmp_path: Path) -> None:
    """The rule tests can fail: market hours read as UTC instead of Asia/Shanghai break them."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    for f in RULE_FILES:
        (tmp_path / "rules" / f.name).write_text(f.read_text().replace("(hour() + 8)", "(hour() + 0)"))
    for f in (DEPLOY / "tests").glob("*.yml"):
        (tmp_path / "tests" / f.name).write_text(f.read_text())
    res = subprocess.run(
        [promtool, "test", "rules", *(str(p) for p in (tmp_path / "tests").glob("*.yml"))],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert res.returncode != 0
    assert "FoodriskNoInputInMarketHours" in res.stdout + res.stderr


@pytest.fixture
def topics(unique: str) -> dict[str, str]:
    return {k: f"prom.{k}.{unique}" for k in ("results", "alerts", "deadletter")}


@pytest.fixture
def worker(broker: KafkaBroker, topics: dict[str, str], unique: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(
        tmp_path / "worker", broker_url=broker.url, clickhouse_url=f"chdb://{tmp_path / 'chdb'}",
        app_id=f"prom-{unique}", topics=topics, FOODRISK_CLICKHOUSE_DATABASE=f"prom_{unique}",
        FOODRISK_TOPIC_PARTITIONS=str(PARTITIONS), FOODRISK_METRICS_LAG_INTERVAL_S="1",
    )
    w.start()
    yield w
    w.stop()


@pytest.fixture
def prometheus(worker: WorkerProcess, tmp_path: Path) -> Iterator[PrometheusServer]:
    try:
        find_binary("prometheus")
    except PrometheusMissing as exc:
        unavailable(str(exc))
    # The shipped rules, evaluated every second instead of every 30 s.
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for f in RULE_FILES:
        text = f.read_text()
        assert "    interval: 30s\n" in text
        (rules_dir / f.name).write_text(text.replace("    interval: 30s\n", "    interval: 1s\n"))
    server = PrometheusServer(
        tmp_path / "prometheus", targets=[f"127.0.0.1:{worker.port}"], rule_files=sorted(rules_dir.glob("*.yml")),
    ).start()
    yield server
    server.stop()



def test_prometheus_counts_what_the_worker_screened(
    broker: KafkaBroker, worker: WorkerProcess, prometheus: PrometheusServer, topics: dict[str, str],
    unique: str, promtool: str,
) -> None:
    db = f"prom_{unique}"
    valid, invalid, expected_alerts = mixed_batch(f"pm{unique}", 120)
    n, m = len(valid), len(invalid)
    job = '{job="foodrisk-worker"}'
    prometheus.wait_for(f"sum(up{job})", 1)

    produce(broker.bootstrap, topics["results"], valid + invalid, devices=7)
    worker.wait_for(f"SELECT count() FROM {db}.results FINAL", n)

    # The counts the test sent, through the real scrape path. Each is awaited on its own: messages are
    # counted as consumed when read, the rest once their batch is acknowledged, which is after its rows
    # are visible in ClickHouse, so a scrape can fall between the two.
    prometheus.wait_for(f"sum(foodrisk_results_consumed_total{job})", n + m)
    prometheus.wait_for(f"sum(foodrisk_results_accepted_total{job})", n)
    prometheus.wait_for(f"sum(foodrisk_results_deadlettered_total{job})", m)
    prometheus.wait_for(f"sum(foodrisk_verdicts_total{job})", n)
    # Single-result alerts (the early-warning agent adds pattern alerts and their updates of its own).
    kinds = "|".join(SINGLE_RESULT_KINDS)
    single = f'{{job="foodrisk-worker", kind=~"{kinds}"}}'
    prometheus.wait_for(f"sum(foodrisk_alerts_raised_total{single})", len(expected_alerts))  # once archived
    by_kind = {r["metric"]["kind"]: float(r["value"][1])
               for r in prometheus.query(f"sum by (kind) (foodrisk_alerts_raised_total{single})")}
    assert by_kind == {k: float(list(expected_alerts.values()).count(k)) for k in set(expected_alerts.values())}
    prometheus.wait_for(f"sum(foodrisk_sampled_to_screened_seconds_count{job})", n)
    prometheus.wait_for(f"sum(foodrisk_result_to_alert_seconds_count{job})", len(expected_alerts))
    prometheus.wait_for(f"sum(foodrisk_screen_latency_seconds_count{job})", n + m)
    prometheus.wait_for('sum(foodrisk_sink_rows_total{job="foodrisk-worker", table="results"})', n)
    reasons = {r["metric"]["reason"] for r in prometheus.query(f"foodrisk_results_deadlettered_total{job}")}
    assert reasons and "malformed" in reasons

    # Lag per partition of the results topic: every partition reported, all drained.
    results = f'{{job="foodrisk-worker", topic="{topics["results"]}"}}'
    prometheus.wait_for(f"sum(foodrisk_consumer_committed_offset{results})", n + m)
    assert prometheus.scalar(f"sum(foodrisk_consumer_end_offset{results})") == n + m
    assert prometheus.scalar(f"sum(foodrisk_consumer_lag_messages{results})") == 0
    assert prometheus.scalar(f"count(foodrisk_consumer_lag_messages{results})") == PARTITIONS
    assert prometheus.scalar(f'count(foodrisk_consumer_lag_messages{{topic="{topics["alerts"]}"}})') == PARTITIONS

    # promtool accepts the worker's exposition as it is.
    exposition = metrics_text(worker.port).encode()
    assert b"foodrisk_results_consumed_total" in exposition
    check = run_promtool(promtool, "check", "metrics", stdin=exposition)
    assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check.stdout + check.stderr

    # The shipped rules load and evaluate against live data without error; none fires on a healthy run
    # (market-hours silence aside: the test may run between 05:00 and 11:00 Asia/Shanghai).
    deadline = time.monotonic() + 30
    while True:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        if all(r["health"] != "unknown" for r in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rules) == sum(f.read_text().count("- alert:") for f in RULE_FILES)
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = {r["name"] for r in rules if r["state"] == "firing"}
    assert firing <= {"FoodriskNoInputInMarketHours"}, firing

    # Every expression of the Pipeline board runs; the throughput, lag and latency ones have data.
    board = load_dashboards()["pipeline"]
    exprs = [(p["title"], t["expr"]) for p, t in targets_of(board, PROMETHEUS_TYPE)]
    assert exprs
    for title, expr in exprs:
        result = prometheus.query(expand_promql(expr))
        needs_data = ("foodrisk_results_consumed_total", "foodrisk_consumer_lag_messages",
                      "foodrisk_screen_latency_seconds", "sum(up{")
        if any(name in expr for name in needs_data):
            assert result, f"{title}: {expr} returned nothing"
