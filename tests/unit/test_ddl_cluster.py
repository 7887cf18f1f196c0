"""The cluster layout of the schema (sinks.ddl.on_cluster, migrate(..., cluster=...)).

Without a ClickHouse cluster here (no Keeper, no second server), this checks the rendering
statement by statement, the migration bookkeeping on an in-memory implementation of the
ClickHouse interface, and then RUNS the layout on chdb configured as a one-shard cluster: the
Distributed tables, their sharding keys, FINAL through them, the materialized view on the local
tables and the view over the Distributed ones are real. Only the two things that need Keeper are
lowered for that run: ``ON CLUSTER`` is dropped and ``Replicated*MergeTree('path', '{replica}', x)``
becomes ``*MergeTree(x)`` (chdb's replicas stay read-only without Keeper). The answers must equal
those of the single-server schema on the same input, replay included.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Settings
from pipeline.topics import topic_configs
from sinks.clickhouse import Features, QueryResult, bind
from sinks.ddl import (
    MIGRATIONS,
    RESULTS_COLUMNS,
    SHARED_TABLES,
    ClusterDDLError,
    ClusterLayout,
    created_tables,
    migrate,
    on_cluster,
    render_all,
    sharding_key,
)
from sinks.errors import ClickHouseError

ROOT = Path(__file__).resolve().parents[2]
MODERN = Features.for_version((25, 8, 0))
OLD = Features.for_version((18, 16, 1))
CLUSTER = "foodrisk"
ON = f" ON CLUSTER `{CLUSTER}`"


def _name(statement: str) -> str:
    m = re.match(r"^CREATE (?:TABLE|VIEW|MATERIALIZED VIEW|DATABASE) IF NOT EXISTS (`\w+`(?:\.`\w+`)?)", statement)
    assert m, statement
    return m.group(1)


def _body(statement: str) -> str:
    return statement.split("\n(\n", 1)[1].split("\n)\nENGINE", 1)[0]


def _by_name(statements: list[str]) -> dict[str, str]:
    """The CREATE statements by the name they create (ALTERs of later migrations left out)."""
    return {_name(s): s for s in statements if not s.startswith("ALTER TABLE ")}


# --- rendering ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("features", [MODERN, OLD], ids=["modern", "18.16-types"])
def test_every_table_becomes_replicated_local_plus_distributed(features: Features) -> None:
    single = render_all("foodrisk", features)
    cluster = render_all("foodrisk", features, cluster=CLUSTER)
    assert render_all("foodrisk", features, cluster=None) == single  # the single-server form is untouched
    assert all(ON in s.splitlines()[0] for s in cluster), "every statement runs ON CLUSTER"
    by_name = _by_name(cluster)
    tables = created_tables("foodrisk")
    assert {"results", "alerts", "deadletters", "results_hourly", "schema_migrations"} <= tables
    zk_paths = []
    for table in tables - SHARED_TABLES:
        local = by_name[f"`foodrisk`.`{table}_local`"]
        dist = by_name[f"`foodrisk`.`{table}`"]
        plain = _by_name(single)[f"`foodrisk`.`{table}`"]
        engine = re.search(
            r"ENGINE = Replicated(\w+)\('(/clickhouse/tables/\{shard\}/foodrisk/\w+)', '\{replica\}'", local
        )
        assert engine, local
        assert f"ENGINE = {engine.group(1)}(" in plain  # the same engine family, replicated
        zk_paths.append(engine.group(2))
        assert engine.group(2).endswith(f"/{table}_local")
        assert _body(local) == _body(dist) == _body(plain)  # same columns, same types, same order
        assert plain.split("ENGINE = ")[1].split("\n", 1)[1].replace(
            "non_replicated_deduplication_window", "replicated_deduplication_window"
        ) in local  # PARTITION BY, ORDER BY, SETTINGS as in the single-server table
        assert f"ENGINE = Distributed('{CLUSTER}', 'foodrisk', '{table}_local', cityHash64(" in dist
    assert len(set(zk_paths)) == len(zk_paths)
    migrations = by_name["`foodrisk`.`schema_migrations`"]
    assert "ReplicatedMergeTree('/clickhouse/tables/all/foodrisk/schema_migrations', '{replica}')" in migrations
    assert "`foodrisk`.`schema_migrations_local`" not in by_name
    assert "non_replicated_deduplication_window" not in "\n".join(cluster)
    if features.insert_deduplication_token:
        assert "SETTINGS replicated_deduplication_window = 1000" in by_name["`foodrisk`.`results_local`"]


def test_sharding_keys_keep_rows_that_collapse_together() -> None:
    by_name = _by_name(render_all("foodrisk", MODERN, cluster=CLUSTER))
    # results is keyed by (result_id, device_id) but sharded by its prefix result_id, as before
    # that key: a result's rows still land together, and a rebuild keeps every row on its shard
    assert by_name["`foodrisk`.`results`"].endswith("cityHash64(result_id))")
    assert "ORDER BY (result_id, device_id)" in by_name["`foodrisk`.`results_local`"]
    assert by_name["`foodrisk`.`alerts`"].endswith("cityHash64(alert_id, status))")
    assert sharding_key("\nPARTITION BY x\nORDER BY (a, b)\nSETTINGS y = 1") == "cityHash64(a, b)"
    assert sharding_key("\nORDER BY tuple()") == "rand()"
    with pytest.raises(ClusterDDLError, match="ORDER BY"):
        sharding_key("\nPARTITION BY x")


def test_views_read_the_right_layer() -> None:
    by_name = _by_name(render_all("foodrisk", MODERN, cluster=CLUSTER))
    mv = by_name["`foodrisk`.`results_hourly_mv`"]
    # Each node turns its own inserts into its own hourly rows.
    assert "TO `foodrisk`.`results_hourly_local`" in mv and "FROM `foodrisk`.`results_local`" in mv
    view = by_name["`foodrisk`.`results_hourly_v`"]
    # The view sees every shard.
    assert "FROM `foodrisk`.`results_hourly`\n" in view and "_local" not in view


def test_migration_8_adds_the_edition_column_to_both_layers() -> None:
    alters = [s for s in render_all("foodrisk", MODERN, cluster=CLUSTER) if s.startswith("ALTER TABLE ")]
    column = "ADD COLUMN IF NOT EXISTS `reference_edition` LowCardinality(String)"
    assert alters == [
        f"ALTER TABLE `foodrisk`.`results_local`{ON} {column}",
        f"ALTER TABLE `foodrisk`.`results`{ON} {column}",
    ]
    # 18.16 has no IF NOT EXISTS there: nothing to print, the step adds it after looking
    assert not [s for s in render_all("foodrisk", OLD, cluster=CLUSTER) if s.startswith("ALTER TABLE ")]


def test_alter_and_unknown_statements() -> None:
    layout = ClusterLayout(CLUSTER)
    out = on_cluster(["ALTER TABLE `foodrisk`.`results` ADD COLUMN IF NOT EXISTS `x` UInt8"], "foodrisk", layout)
    assert out == [
        f"ALTER TABLE `foodrisk`.`results_local`{ON} ADD COLUMN IF NOT EXISTS `x` UInt8",
        f"ALTER TABLE `foodrisk`.`results`{ON} ADD COLUMN IF NOT EXISTS `x` UInt8",
    ]
    ttl = on_cluster(["ALTER TABLE `foodrisk`.`results` MODIFY TTL sampled_at + INTERVAL 5 YEAR"], "foodrisk", layout)
    assert ttl == [f"ALTER TABLE `foodrisk`.`results_local`{ON} MODIFY TTL sampled_at + INTERVAL 5 YEAR"]
    with pytest.raises(ClusterDDLError, match="CREATE DICTIONARY"):
        on_cluster(["CREATE DICTIONARY `foodrisk`.`d` (k UInt64) PRIMARY KEY k"], "foodrisk", layout)
    with pytest.raises(ClusterDDLError):
        memory = "CREATE TABLE IF NOT EXISTS `foodrisk`.`m`\n(\n    `a` UInt8\n)\nENGINE = Memory"
        on_cluster([memory], "foodrisk", layout)


def test_layout_validation() -> None:
    for bad in ("a-b", "x; DROP", ""):
        with pytest.raises(ValueError, match="identifier"):
            ClusterLayout(bad)
    with pytest.raises(ValueError, match="shard"):
        ClusterLayout("c", zookeeper_path="/clickhouse/tables/{database}/{table}")
    with pytest.raises(ValueError, match="quotes"):
        ClusterLayout("c", zookeeper_path="/x/{shard}/'{table}")
    custom = ClusterLayout("prov", zookeeper_path="/ch/{shard}/{database}.{table}", replica="{host}")
    (stmt, _) = on_cluster([render_all("fr", MODERN)[2]], "fr", custom)
    assert "ReplicatedReplacingMergeTree('/ch/{shard}/fr.results_local', '{host}', ingested_at)" in stmt


# --- migrate(..., cluster=...) --------------------------------------------------------------------------


class RecordingCluster:
    """The ClickHouse interface in memory: knows ``clusters``, records statements and versions."""

    def __init__(self, clusters: Sequence[str]) -> None:
        self.clusters = list(clusters)
        self.statements: list[str] = []
        self.versions: list[tuple[Any, ...]] = []
        self.results_key = "result_id, device_id"

    database = "foodrisk"
    server_version = (25, 8, 0)
    features = MODERN

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.statements.append(bind(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        if "system.clusters" in sql:
            if params:
                return QueryResult(["count()"], [(self.clusters.count(params["name"]),)])
            return QueryResult(["cluster"], [(c,) for c in sorted(self.clusters)])
        if "system.tables" in sql:  # migration 7 reads the sorting key of results_local
            return QueryResult(["name", "sorting_key"],
                               [("results_local", self.results_key), ("results_hourly_mv", "")])
        if "system.columns" in sql:  # migration 8 looks for reference_edition: migration 1 made it
            return QueryResult(["name"], [(c,) for c in RESULTS_COLUMNS])
        assert "schema_migrations" in sql
        return QueryResult(["version"], [(v,) for v in sorted({r[0] for r in self.versions})])

    def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        assert table == "foodrisk.schema_migrations"  # the replicated table every node holds
        self.versions.extend(tuple(r) for r in rows)
        return len(rows)

    def close(self) -> None:
        pass


def test_migrate_on_a_cluster_runs_the_cluster_layout_once() -> None:
    ch = RecordingCluster(["foodrisk", "other"])
    at = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC)
    assert migrate(ch, "foodrisk", cluster=CLUSTER, now=lambda: at) == [m.version for m in MIGRATIONS]
    assert ch.statements == render_all("foodrisk", MODERN, cluster=CLUSTER)
    before = len(ch.statements)
    assert migrate(ch, "foodrisk", cluster=ClusterLayout(CLUSTER)) == []
    assert ch.statements[before:] == ch.statements[:2]  # database and bookkeeping table, ON CLUSTER


def test_migration_7_refuses_an_old_key_cluster_table_and_says_what_to_do() -> None:
    ch = RecordingCluster(["foodrisk"])
    ch.versions = [(v, "", None) for v in range(1, 7)]  # a cluster schema from before migration 7
    ch.results_key = "result_id"
    with pytest.raises(ClickHouseError) as err:
        migrate(ch, "foodrisk", cluster=CLUSTER)
    text = str(err.value)
    assert "\n" not in text and "results_local is keyed by (result_id)" in text
    assert "README" in text and "Results keyed by device" in text
    assert 7 not in {v for v, _, _ in ch.versions}  # not recorded: the next run checks again
    ch.results_key = "result_id, device_id"  # after the operator's rebuild
    assert migrate(ch, "foodrisk", cluster=CLUSTER) == [7, 8, 9]


def test_migrate_refuses_an_unknown_cluster_and_says_what_to_do() -> None:
    ch = RecordingCluster(["default", "test_shard_localhost"])
    with pytest.raises(ClickHouseError) as err:
        migrate(ch, "foodrisk", cluster="provincial")
    text = str(err.value)
    assert "'provincial' is not defined" in text and "default, test_shard_localhost" in text
    assert "FOODRISK_CLICKHOUSE_CLUSTER" in text
    assert ch.statements == []


def test_cluster_and_replication_settings() -> None:
    with pytest.raises(ValueError, match="FOODRISK_CLICKHOUSE_CLUSTER needs a ClickHouse server"):
        Settings(clickhouse_cluster="foodrisk")
    with pytest.raises(ValueError, match="must not exceed"):
        Settings(topic_replication=2, topic_min_insync_replicas=3)
    kafka = Settings(broker_url="kafka://k:9092", topic_replication=3)
    assert kafka.min_insync_replicas == 2
    assert topic_configs(kafka) == {"min.insync.replicas": "2"}
    assert topic_configs(Settings(broker_url="kafka://k:9092", topic_min_insync_replicas=1)) == {
        "min.insync.replicas": "1"
    }
    assert topic_configs(Settings()) == {"min.insync.replicas": "1"}  # the embedded broker is Kafka too


# --- the layout on a real engine (chdb as a one-shard cluster) --------------------------------------------


def single_node(statement: str) -> str:
    """``statement`` without what needs Keeper: ON CLUSTER, and the Replicated engine prefix."""
    statement = statement.replace(ON, "")
    return re.sub(r"ENGINE = Replicated(\w*MergeTree)\('[^']*', '[^']*'(?:, )?", r"ENGINE = \1(", statement)


def results_insert(db: str, n: int, ingested: str) -> str:
    return f"""
INSERT INTO `{db}`.`results` (result_id, sample_id, device_id, site_id, site_type, district, commodity,
    analyte, method, verdict, ratio, rule, basis, sampled_at, tested_at, ingested_at, src_topic,
    src_partition, src_offset)
SELECT concat('r-', toString(number)), concat('s-', toString(number)), 'dev-1', 'gz-th-m01',
    'farmers_market', if(number % 3 = 0, 'Tianhe', 'Yuexiu'), 'cowpea', 'ache_inhibition',
    'enzyme_inhibition', multiIf(number % 10 = 0, 'positive', number % 7 = 0, 'exceeds', 'compliant'),
    if(number % 5 = 0, NULL, number / 100), 'r', 'b',
    toDateTime('2026-11-20 00:00:00', 'UTC') + number * 97, toDateTime('2026-11-20 00:30:00', 'UTC') + number * 97,
    toDateTime('{ingested}', 'UTC'), 'foodrisk.results', toInt32(number % 6), toInt64(number)
FROM numbers({n})"""


def alerts_insert(db: str, ingested: str) -> str:
    return f"""
INSERT INTO `{db}`.`alerts` (alert_id, kind, classification, risk, status, summary_en, summary_zh,
    evidence, starts_at, details, src_partition, src_offset, ingested_at)
SELECT concat('a-', toString(number % 40)), 'quick_test_positive', 'c', 'high', if(number < 40, 'firing', 'resolved'),
    's', 's', [concat('r-', toString(number))], toDateTime('2026-11-20 00:00:00', 'UTC'), '{{}}',
    toInt32(0), toInt64(number), toDateTime('{ingested}', 'UTC')
FROM numbers(60)"""


QUERIES = [
    "SELECT count() FROM `{db}`.`results` FINAL",
    "SELECT uniqExact(result_id) FROM `{db}`.`results`",
    "SELECT sum(tests), sum(positives), sum(exceedances), round(max(max_ratio), 2) FROM `{db}`.`results_hourly_v`",
    "SELECT district, sum(tests) FROM `{db}`.`results_hourly_v` GROUP BY district ORDER BY district",
    "SELECT count() FROM `{db}`.`alerts` FINAL",
    "SELECT status, count() FROM `{db}`.`alerts` FINAL GROUP BY status ORDER BY status",
    "SELECT argMax(status, ingested_at) AS s, count() FROM (SELECT alert_id, status, ingested_at "
    "FROM `{db}`.`alerts` FINAL) GROUP BY alert_id ORDER BY alert_id LIMIT 3",
]


def run_probe(tmp_path: Path, statements: list[str], queries: list[str]) -> list[list[Any]]:
    job = {"path": str(tmp_path / "chdb"), "cluster": CLUSTER, "statements": statements, "queries": queries}
    out = subprocess.run(
        [sys.executable, "-m", "tests.unit.chdb_cluster_probe"], input=json.dumps(job), capture_output=True,
        text=True, timeout=300, cwd=ROOT, check=False,
    )
    assert out.stdout, f"chdb probe printed nothing (exit {out.returncode}): {out.stderr[-2000:]}"
    answer = json.loads(out.stdout)
    assert "error" not in answer, f"{answer.get('error')}\nin:\n{answer.get('statement')}"
    results: list[list[Any]] = answer["results"]
    return results


def test_cluster_layout_runs_on_chdb_and_answers_like_a_single_server(tmp_path: Path) -> None:
    cluster_ddl = [single_node(s) for s in render_all("fr_cluster", MODERN, cluster=CLUSTER)]
    plain_ddl = render_all("fr_plain", MODERN)
    loads = []
    for db in ("fr_cluster", "fr_plain"):
        # The same 400 results and 60 alert states twice: a replay after a crash.
        loads += [results_insert(db, 400, "2026-11-20 08:00:00"), results_insert(db, 400, "2026-11-20 09:00:00")]
        loads += [alerts_insert(db, "2026-11-20 08:00:00"), alerts_insert(db, "2026-11-20 09:00:00")]
    queries = [q.format(db=db) for db in ("fr_cluster", "fr_plain") for q in QUERIES]
    queries += [
        "SELECT name, engine FROM system.tables WHERE database = 'fr_cluster' AND name IN "
        "('results', 'results_local', 'alerts', 'results_hourly', 'results_hourly_local') ORDER BY name",
        "SELECT count() FROM `fr_cluster`.`results_local` FINAL",
    ]
    answers = run_probe(tmp_path, [*cluster_ddl, *plain_ddl, *loads], queries)
    on_cluster_answers, plain_answers = answers[: len(QUERIES)], answers[len(QUERIES) : 2 * len(QUERIES)]
    assert on_cluster_answers == plain_answers
    assert int(on_cluster_answers[0][0][0]) == 400
    tests, positives, exceedances, _ = on_cluster_answers[2][0]
    assert (int(tests), int(positives)) == (400, 40) and int(exceedances) > 0
    assert int(on_cluster_answers[4][0][0]) == 60  # 40 alerts firing, 20 of them resolved; replay absorbed
    assert [[s, int(c)] for s, c in on_cluster_answers[5]] == [["firing", 40], ["resolved", 20]]
    engines = dict(map(tuple, answers[-2]))
    assert engines == {
        "alerts": "Distributed",
        "results": "Distributed",
        "results_hourly": "Distributed",
        "results_hourly_local": "AggregatingMergeTree",
        "results_local": "ReplacingMergeTree",
    }
    assert int(answers[-1][0][0]) == 400  # every row landed in the (only) shard's local table
