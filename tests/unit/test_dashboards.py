"""The Grafana boards and their provisioning, checked without Grafana or ClickHouse.

The SQL of every ClickHouse panel is run on both backends by tests/integration/test_dashboards.py;
here: the JSON is well formed, every panel and variable points at a provisioned data source, every
variable and macro a query uses is defined and expandable, panels keep to the SQL that Debian's
ClickHouse 18.16 also runs, every PromQL expression reads metrics the worker exports, and the
expander reproduces what the plugin writes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from agents import metrics as metrics_mod
from tests.grafana import (
    ALL,
    CLICKHOUSE_TYPE,
    PROMETHEUS_TYPE,
    ExpansionError,
    TimeRange,
    conditional_all,
    constants,
    expand,
    expand_macros,
    expand_promql,
    interpolate,
    load_dashboards,
    panels,
    promql_metric_names,
    targets_of,
    variables,
)

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
RULES = ROOT / "deploy" / "prometheus" / "rules"

BOARDS = load_dashboards()
TR = TimeRange(datetime(2026, 11, 20, 0, 0, tzinfo=UTC), datetime(2026, 11, 21, 0, 0, tzinfo=UTC), interval_s=600)

# What each ClickHouse panel must return, in order (the panel's fields, legends and overrides rely on
# these names). A new panel fails test_every_clickhouse_panel_has_expected_columns until added here.
EXPECTED_COLUMNS: dict[tuple[str, str], tuple[str, ...]] = {
    ("markets", "Totals in range"): ("tests", "findings", "non_compliant_rate", "banned_findings"),
    ("markets", "Tests by district"): ("time", "district", "tests"),
    ("markets", "Non-compliant rate by district"): ("time", "district", "non_compliant_rate"),
    ("markets", "Non-compliant rate by site type"): ("time", "site_type", "non_compliant_rate"),
    ("markets", "Non-compliant rate by commodity (8 with most findings)"): ("time", "commodity", "non_compliant_rate"),
    ("markets", "Quick tests vs lab: non-compliant rate"): ("time", "quick_test_rate", "lab_rate"),
    ("markets", "Districts"): (
        "district", "tests", "quick_tests", "lab_tests", "findings", "non_compliant_rate", "banned", "max_ratio",
        "sites",
    ),
    ("markets", "Findings by limit confidence"): (
        "limit_confidence", "tests", "findings", "exceedances", "banned", "quick_positives", "commodities",
    ),
    ("markets", "Quick tests and lab results side by side, by district"): (
        "district", "quick_tests", "quick_positive_rate", "lab_results", "lab_non_compliant_rate",
    ),
    ("markets", "Top commodity x analyte findings"): (
        "commodity", "analyte", "findings", "tests", "non_compliant_rate", "max_ratio", "sites", "districts",
    ),
    ("markets", "Plan against done"): (
        "plan_date", "district", "site_id", "commodity", "reasons", "planned", "done", "done_share", "findings",
    ),
    ("alerts", "Alerts raised in range, by classification"): ("alert", "follow_up", "attention"),
    ("alerts", "Alerts by kind"): ("time", "kind", "alerts"),
    ("alerts", "Alerts by classification"): ("time", "classification", "alerts"),
    ("alerts", "Open alerts"): (
        "starts_at", "kind", "classification", "risk", "district", "site_id", "commodity", "analyte", "supplier_id",
        "results", "summary_en", "summary_zh", "alert_id",
    ),
    ("alerts", "Supplier clusters"): (
        "starts_at", "supplier_id", "commodity", "analyte", "district", "results", "resolved", "summary_en",
        "summary_zh", "alert_id",
    ),
    ("alerts", "Suppliers with findings at two or more sites"): (
        "supplier_id", "origin", "commodities", "analytes", "sites", "districts", "findings", "first_found",
        "last_found",
    ),
    ("alerts", "Red list (repeat offenders)"): (
        "vendor_id", "site_id", "district", "commodity", "findings", "listed_since", "summary_en", "summary_zh",
        "alert_id",
    ),
    ("alerts", "Findings by family over time"): ("time", "family", "findings"),
    ("alerts", "Findings by family"): (
        "family", "kind", "findings", "analytes", "some_analytes", "commodities", "districts", "suppliers",
    ),
    ("devices", "Devices: last seen"): (
        "device_id", "site_id", "district", "site_type", "methods", "results", "findings", "positive_rate",
        "last_seen", "silent_hours",
    ),
    ("devices", "Results per device (15 busiest)"): ("time", "device_id", "results"),
    ("devices", "Quick-test devices against their site's peers"): (
        "device_id", "site_id", "district", "tests", "positives", "device_rate", "peer_rate", "peer_tests",
    ),
    ("devices", "Device alerts"): (
        "starts_at", "kind", "device_id", "site_id", "district", "resolved", "summary_en", "summary_zh", "alert_id",
    ),
    ("pipeline", "Dead letters by error kind"): ("time", "error_kind", "dead_letters"),
    ("pipeline", "Time from sampling to storage (p50, p95)"): ("time", "p50_seconds", "p95_seconds"),
    ("pipeline", "Parked alerts"): (
        "target", "reason", "kind", "alerts", "max_attempts", "first_parked", "last_parked", "an_error",
    ),
    ("pipeline", "Latest dead letters"): (
        "received_at", "src_topic", "src_partition", "src_offset", "error_kind", "reasons", "payload_start",
    ),
}
TIME_SERIES = {key for key, cols in EXPECTED_COLUMNS.items() if cols[0] == "time"}

# SQL that Debian's ClickHouse 18.16 cannot run (docs/stack.md), which the boards must avoid.
NOT_ON_18_16 = {
    r"toStartOfInterval|\$__timeInterval": "toStartOfInterval (and $__timeInterval, which expands to it)",
    r"\bOVER\s*\(": "window functions",
    r"\bWITH\s+\w+\s+AS\s*\(": "WITH name AS (subquery)",
    r"JSONExtract": "JSONExtract",
    r"DateTime64|\$__\w+_ms\b": "DateTime64 (and the _ms macros that produce it)",
    r"(?<!\$)\{\w+:\w+\}": "server-side {name:Type} parameters",
    r"\bdateDiff\b|\bdate_diff\b": "dateDiff",
}
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "foodrisk.yml").read_text())["datasources"]
DS_UIDS = {d["uid"]: d["type"] for d in DATASOURCES}


def exported_metric_names() -> set[str]:
    """Every sample name the worker's registry can expose (counters with _total, histograms'
    _bucket/_sum/_count, the process collector's)."""
    registry = CollectorRegistry()
    metrics_mod.create(registry)
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
        names |= {s.name for s in family.samples}
    return names


def test_four_boards_with_distinct_uids_and_the_foodrisk_tag() -> None:
    assert set(BOARDS) == {"markets", "alerts", "devices", "pipeline"}
    uids = [b["uid"] for b in BOARDS.values()]
    assert len(set(uids)) == 4 and all(u.startswith("foodrisk-") for u in uids)
    for name, board in BOARDS.items():
        assert "foodrisk" in board["tags"], name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        titles = [p["title"] for p in panels(board)]
        assert len(titles) == len(set(titles)), f"{name}: duplicate panel titles"
        for p in panels(board):
            assert p.get("description"), f"{name}/{p['title']}: say what the panel shows"


def test_provisioning_files_parse_and_name_the_plugin() -> None:
    assert DS_UIDS == {"foodrisk-clickhouse": CLICKHOUSE_TYPE, "foodrisk-prometheus": PROMETHEUS_TYPE}
    ch = next(d for d in DATASOURCES if d["type"] == CLICKHOUSE_TYPE)
    assert ch["jsonData"]["protocol"] == "native" and ch["jsonData"]["defaultDatabase"] == "foodrisk"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "foodrisk.yml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]


def test_every_panel_and_variable_uses_a_provisioned_datasource() -> None:
    for name, board in BOARDS.items():
        for p in panels(board):
            ds = p["datasource"]
            assert DS_UIDS.get(ds["uid"]) == ds["type"], f"{name}/{p['title']}: {ds}"
            for t in p["targets"]:
                assert t["datasource"] == ds, f"{name}/{p['title']}: target and panel disagree"
        for v in variables(board).values():
            if "datasource" in v:
                assert DS_UIDS.get(v["datasource"]["uid"]) == v["datasource"]["type"], f"{name} ${v['name']}"


def test_every_clickhouse_panel_has_expected_columns_and_a_matching_format() -> None:
    seen = set()
    for name, board in BOARDS.items():
        for p, t in targets_of(board, CLICKHOUSE_TYPE):
            key = (name, p["title"])
            seen.add(key)
            assert key in EXPECTED_COLUMNS, f"add {key} to EXPECTED_COLUMNS"
            assert t["editorType"] == "sql" and t["rawSql"].lstrip().upper().startswith("SELECT"), key
            if p["type"] == "timeseries":
                assert (t["format"], t["queryType"]) == (0, "timeseries"), key
                assert key in TIME_SERIES, f"{key}: a time series panel returns `time` first"
            else:
                assert (t["format"], t["queryType"]) == (1, "table"), key
    assert seen == set(EXPECTED_COLUMNS)


def test_markets_panels_over_single_results_filter_on_limit_confidence() -> None:
    board = BOARDS["markets"]
    assert variables(board)["confidence"]["multi"]
    # "Plan against done" counts the tests done against the plan, whatever their limit's confidence
    over_results = [p["title"] for p, t in targets_of(board, CLICKHOUSE_TYPE)
                    if "${database}.results\n" in t["rawSql"] and p["title"] != "Plan against done"]
    assert "Findings by limit confidence" in over_results and len(over_results) == 5
    for p, t in targets_of(board, CLICKHOUSE_TYPE):
        if p["title"] in over_results:
            assert "$__conditionalAll(ifNull(confidence, 'none') IN (${confidence:singlequote}), $confidence)" in \
                t["rawSql"], p["title"]


def test_market_alert_and_device_panels_use_the_variables_and_time_macros() -> None:
    for name in ("markets", "alerts", "devices"):
        board = BOARDS[name]
        assert {"district", "commodity", "site_type"} <= set(variables(board)), name
        for p, t in targets_of(board, CLICKHOUSE_TYPE):
            sql = t["rawSql"]
            for var in ("district", "commodity", "site_type"):
                assert f"$__conditionalAll({var} IN (${{{var}:singlequote}}), ${var})" in sql, (name, p["title"], var)
            assert re.search(r"\$__timeFilter\(|\$__toTime|\$__fromTime", sql), (name, p["title"])
            assert "${database}." in sql, (name, p["title"])


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_clickhouse_sql_expands_fully_and_keeps_to_the_18_16_subset(name: str) -> None:
    board = BOARDS[name]
    multi = [n for n, v in variables(board).items() if v.get("multi") and v["type"] == "query"]
    queries = [(p["title"], t["rawSql"]) for p, t in targets_of(board, CLICKHOUSE_TYPE)]
    queries += [
        (f"${n}", v["query"]) for n, v in variables(board).items()
        if v["type"] == "query" and v["datasource"]["type"] == CLICKHOUSE_TYPE
    ]
    for title, sql in queries:
        for pattern, what in NOT_ON_18_16.items():
            assert not re.search(pattern, sql), f"{name}/{title}: {what} does not run on ClickHouse 18.16"
        # ClickHouse resolves a name in WHERE to a SELECT alias first: `any(district) AS district` turns
        # `WHERE district IN (...)` into an aggregate in WHERE (an error once a district is chosen).
        shadow = re.search(r"\w+\([^()]*\)\s+AS\s+(district|site_type|commodity)\b", sql)
        assert not shadow, f"{name}/{title}: {shadow.group(0)!r} shadows the filtered column"
        for selection in ({n: [ALL] for n in multi}, {n: ["Tianhe", "O'Brien"] for n in multi}):
            out = expand(sql, selection=selection, constants=constants(board), time_range=TR)
            assert "$" not in out, f"{name}/{title}: {out}"
            assert "foodrisk." in out


def test_promql_reads_only_metrics_the_worker_exports() -> None:
    exported = exported_metric_names() | {"up", "ALERTS"}
    exprs = [(f"board {p['title']}", t["expr"]) for p, t in targets_of(BOARDS["pipeline"], PROMETHEUS_TYPE)]
    for f in RULES.glob("*.yml"):
        for group in yaml.safe_load(f.read_text())["groups"]:
            exprs += [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in group["rules"]]
    assert len(exprs) > 20
    for where, expr in exprs:
        names = promql_metric_names(expand_promql(expr))
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= exported, f"{where}: {names - exported} not exported by agents.metrics.create"
        assert all(n == "up" or n == "ALERTS" or n.startswith("foodrisk_") for n in names), where


def test_exported_names_are_prefixed_and_carry_units() -> None:
    registry = CollectorRegistry()
    metrics_mod.create(registry)
    # Units, or the conventional suffix of a 0/1 gauge (_ready, _up) or of a count of things (_alerts, _keys).
    units = ("_seconds", "_bytes", "_rows", "_messages", "_info", "_ready", "_up", "_fds", "_offset", "_alerts",
             "_keys")
    for family in registry.collect():
        assert family.name.startswith("foodrisk_"), family.name
        if family.type == "counter":
            continue  # exposed as <name>_total: a count of events
        assert family.name.endswith(units), f"{family.name}: unit?"


# ------------------------------------------------------------------------------------------------
# The expander itself (tests/grafana.py) against what the plugin writes


def test_conditional_all_drops_the_condition_for_all_only() -> None:
    sql = "WHERE $__conditionalAll(district IN (${district:singlequote}), $district) AND x = 1"
    assert conditional_all(sql, {"district": [ALL]}) == "WHERE 1=1 AND x = 1"
    assert conditional_all(sql, {"district": None}) == "WHERE 1=1 AND x = 1"
    assert conditional_all(sql, {"district": ["Tianhe"]}) == (
        "WHERE district IN (${district:singlequote}) AND x = 1"
    )
    with pytest.raises(ExpansionError):
        conditional_all(sql, {})


def test_interpolation_quotes_like_grafana() -> None:
    assert interpolate("IN (${d:singlequote})", {"d": ["Tianhe", "O'Brien"]}) == "IN ('Tianhe','O\\'Brien')"
    assert interpolate("FROM ${database}.t, $x", {"database": "fr", "x": "1"}) == "FROM fr.t, 1"
    assert interpolate("$__timeFilter(ts)", {}) == "$__timeFilter(ts)"
    with pytest.raises(ExpansionError):
        interpolate("$nope", {})
    with pytest.raises(ExpansionError):
        interpolate("IN ($d)", {"d": ["a", "b"]})


def test_macros_as_the_plugin_writes_them() -> None:
    f, t = TR.from_s, TR.to_s
    assert expand_macros("WHERE $__timeFilter(sampled_at)", TR) == (
        f"WHERE sampled_at >= toDateTime({f}) AND sampled_at <= toDateTime({t})"
    )
    assert expand_macros("$__fromTime, $__toTime, $__interval_s", TR) == f"toDateTime({f}), toDateTime({t}), 600"
    assert expand_macros("$__timeInterval(ts)", TR) == "toStartOfInterval(toDateTime(ts), INTERVAL 600 second)"
    assert expand_macros("$__timeFilter(toDate(f(a, b)))", TR).startswith("toDate(f(a, b)) >= ")
    with pytest.raises(ExpansionError):
        expand_macros("$__dateFilter(d)", TR)


def test_expand_orders_the_three_steps() -> None:
    sql = "SELECT 1 FROM ${database}.t WHERE $__conditionalAll(d IN (${d:singlequote}), $d) AND $__timeFilter(ts)"
    out = expand(sql, selection={"d": ["a"]}, constants={"database": "db"}, time_range=TR)
    assert out == (
        f"SELECT 1 FROM db.t WHERE d IN ('a') AND ts >= toDateTime({TR.from_s}) AND ts <= toDateTime({TR.to_s})"
    )


def test_promql_metric_names_skips_labels_functions_and_groupings() -> None:
    expr = 'sum by (topic) (rate(foo_total{reason="a b", x=~"y"}[5m])) > 0.5 unless on (instance) bar_up == 0'
    assert promql_metric_names(expr) == {"foo_total", "bar_up"}


def test_provisioning_fits_the_compose_stack() -> None:
    """Grafana in deploy/compose.yaml sets every variable the data sources read and mounts the boards
    where the provider looks; Prometheus scrapes workers that exist there, on their web port."""
    compose_file = ROOT / "deploy" / "compose.yaml"
    if not compose_file.exists():
        pytest.skip("deploy/compose.yaml comes with the deployment issue")
    services = yaml.safe_load(compose_file.read_text())["services"]
    grafana = services["grafana"]
    env = grafana["environment"]
    env_names = set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
    used = set(re.findall(r"\$\{(\w+)\}", (GRAFANA / "provisioning" / "datasources" / "foodrisk.yml").read_text()))
    assert used and used <= env_names, used - env_names
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in grafana["volumes"]}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "foodrisk.yml").read_text())["providers"][0]
    assert mounts.get("./grafana/dashboards") == provider["options"]["path"]
    assert mounts.get("./grafana/provisioning") == "/etc/grafana/provisioning"
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    hostnames = {s.get("hostname", name) for name, s in services.items()} | set(services)
    for target in prom["scrape_configs"][0]["static_configs"][0]["targets"]:
        host, port = target.rsplit(":", 1)
        assert host in hostnames, target
        assert port == "6066", target
    for target in prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]:
        assert target.rsplit(":", 1)[0] in hostnames, target
