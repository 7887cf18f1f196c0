"""sinks.ddl without a server: the column contract, rendering per server version, migration
bookkeeping (on an in-memory implementation of the ClickHouse interface), and the SQL text the
access layer binds."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest

from sinks.clickhouse import (
    ClickHouse,
    Features,
    QueryResult,
    bind,
    literal,
    parse_version,
    quote_identifier,
    quote_table,
)
from sinks.ddl import (
    ALERTS_COLUMNS,
    DEADLETTERS_COLUMNS,
    MIGRATIONS,
    RESULTS_COLUMNS,
    column_type,
    migrate,
    render_all,
)

OLD = Features.for_version((18, 16, 1))
MODERN = Features.for_version((26, 9, 2))


class RecordingClickHouse:
    """Keeps statements and schema_migrations rows in memory; answers only what migrate asks."""

    def __init__(self, features: Features = OLD) -> None:
        self.statements: list[str] = []
        self.migration_rows: list[tuple[Any, ...]] = []
        self._features = features

    @property
    def database(self) -> str:
        return "foodrisk"

    @property
    def server_version(self) -> tuple[int, int, int]:
        return (26, 9, 2) if self._features.low_cardinality else (18, 16, 1)

    @property
    def features(self) -> Features:
        return self._features

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.statements.append(bind(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        if "system.tables" in sql:  # migration 7 reads the sorting keys: the ones migration 1 creates
            return QueryResult(columns=["name", "sorting_key"],
                               rows=[("results", "result_id, device_id"), ("results_hourly_mv", "")])
        if "system.columns" in sql:  # migration 8 looks for reference_edition: migration 1 made it
            return QueryResult(columns=["name"], rows=[(c,) for c in RESULTS_COLUMNS])
        assert "schema_migrations" in sql
        versions = sorted({row[0] for row in self.migration_rows})
        return QueryResult(columns=["version"], rows=[(v,) for v in versions])

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        assert table.endswith(".schema_migrations")
        assert tuple(columns) == ("version", "name", "applied_at")
        self.migration_rows.extend(tuple(r) for r in rows)
        return len(rows)

    def close(self) -> None:
        pass


def _created_columns(statement: str) -> tuple[str, ...]:
    body = statement.split("(", 1)[1].rsplit(")\nENGINE", 1)[0]
    return tuple(re.findall(r"^\s+`(\w+)` ", body, re.MULTILINE))


def _statement(statements: list[str], table: str) -> str:
    (found,) = [s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS `foodrisk`.`{table}`\n")]
    return found


# --- the column contract ---------------------------------------------------------------------------


def test_results_columns_are_the_contract() -> None:
    assert RESULTS_COLUMNS == (
        "result_id", "schema_version", "sample_id", "device_id", "site_id", "site_type", "district",
        "site_name", "vendor_id", "supplier_id", "origin", "commodity", "analyte", "method", "quick",
        "value_mg_kg", "percent", "raw_value", "raw_unit", "qualitative", "lod_mg_kg", "loq_mg_kg",
        "sampled_at", "tested_at", "confirms", "verdict", "limit_mg_kg", "ratio", "rule", "edition",
        "source", "confidence", "basis", "src_topic", "src_partition", "src_offset", "ingested_at",
        "reference_edition",
    )  # fmt: skip
    assert ALERTS_COLUMNS == (
        "alert_id", "kind", "classification", "risk", "status", "summary_en", "summary_zh", "district",
        "site_id", "site_type", "commodity", "analyte", "supplier_id", "vendor_id", "device_id", "evidence",
        "starts_at", "ends_at", "details", "src_partition", "src_offset", "ingested_at",
    )  # fmt: skip
    assert DEADLETTERS_COLUMNS == (
        "src_topic", "src_partition", "src_offset", "src_item", "received_at", "failed_at", "key", "payload", "errors",
        "error_kind",
    )  # fmt: skip


@pytest.mark.parametrize("features", [OLD, MODERN], ids=["18.16", "modern"])
def test_the_ddl_creates_exactly_the_exported_columns(features: Features) -> None:
    statements = render_all("foodrisk", features)
    assert _created_columns(_statement(statements, "results")) == RESULTS_COLUMNS
    assert _created_columns(_statement(statements, "alerts")) == ALERTS_COLUMNS
    assert _created_columns(_statement(statements, "deadletters")) == DEADLETTERS_COLUMNS


# --- rendering per server ---------------------------------------------------------------------------


def test_features_by_version() -> None:
    assert Features.for_version((18, 16, 1)) == Features()
    assert Features.for_version((19, 17, 4)) == Features()
    assert Features.for_version((21, 8, 0)) == Features(
        low_cardinality=True, ttl=True, datetime64=True, insert_deduplication_token=False,
        add_column_if_not_exists=True,
    )
    assert Features.for_version((22, 2, 0)).insert_deduplication_token
    assert parse_version("26.9.2.1") == (26, 9, 2)
    assert parse_version("18.16") == (18, 16, 0)


def test_column_types_are_lowered_for_old_servers() -> None:
    assert column_type("LowCardinality(String)", OLD) == "String"
    assert column_type("LowCardinality(Nullable(String))", OLD) == "Nullable(String)"
    assert column_type("LowCardinality(Nullable(String))", MODERN) == "LowCardinality(Nullable(String))"
    assert column_type("Array(LowCardinality(String))", OLD) == "Array(String)"
    assert column_type("DateTime('UTC')", OLD) == "DateTime('UTC')"


def test_18_16_ddl_keeps_to_the_shared_subset() -> None:
    text = "\n".join(render_all("foodrisk", OLD))
    for modern_only in ("LowCardinality", "DateTime64", "TTL", "CODEC", "SimpleAggregateFunction", "Map(", "Bool"):
        assert modern_only not in text
    assert "non_replicated_deduplication_window" not in text
    assert "IF NOT EXISTS" in text and "ON CLUSTER" not in text


def test_modern_ddl_uses_low_cardinality_and_the_dedup_window() -> None:
    statements = render_all("foodrisk", MODERN)
    results = _statement(statements, "results")
    assert "`district` LowCardinality(String)" in results
    assert "`result_id` String" in results  # the business id stays a plain String
    assert "SETTINGS non_replicated_deduplication_window = 1000" in results


def test_engines_and_keys() -> None:
    statements = render_all("foodrisk", OLD)
    results = _statement(statements, "results")
    # a result is (device_id, result_id): one device's result never replaces another's
    assert (
        "ENGINE = ReplacingMergeTree(ingested_at)\nPARTITION BY toYYYYMM(sampled_at)\nORDER BY (result_id, device_id)"
        in results
    )
    alerts = _statement(statements, "alerts")
    assert "ReplacingMergeTree(ingested_at)\nPARTITION BY toYYYYMM(starts_at)\nORDER BY (alert_id, status)" in alerts
    dead = _statement(statements, "deadletters")
    assert "ORDER BY (src_topic, src_partition, src_offset, src_item)" in dead
    assert "ReplacingMergeTree(failed_at)" in dead
    hourly = _statement(statements, "results_hourly")
    assert "AggregatingMergeTree()" in hourly and "AggregateFunction(uniqExactIf, String, UInt8)" in hourly
    (mv,) = [s for s in statements if "MATERIALIZED VIEW" in s]
    assert "TO `foodrisk`.`results_hourly`" in mv
    key = "concat(toString(length(device_id)), ':', device_id, ':', result_id)"
    assert f"uniqExactState({key}) AS `tests`" in mv
    assert f"uniqExactIfState({key}, verdict = 'exceeds') AS `exceedances`" in mv
    assert "AggregateFunction(uniqExact, String)" in hourly  # the state type of the bare-id states
    (view,) = [s for s in statements if s.startswith("CREATE VIEW") and "results_hourly_v" in s]
    assert "uniqExactMerge(`tests`)" in view and "GROUP BY" in view
    plans = _statement(statements, "sampling_plans")
    assert "ReplacingMergeTree(planned_at)" in plans
    assert "ORDER BY (plan_date, district, planned_at, site_id, line)" in plans
    votes = _statement(statements, "citizen_votes")
    assert "ReplacingMergeTree(imported_at)" in votes and "ORDER BY (period, imported_at, category)" in votes
    (latest,) = [s for s in statements if "`citizen_votes_latest`" in s]
    assert "GLOBAL IN" in latest and "max(`imported_at`)" in latest and "GROUP BY `period`" in latest


# --- migrate -------------------------------------------------------------------------------------------


def test_migrate_applies_everything_once() -> None:
    ch = RecordingClickHouse()
    fixed = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert migrate(ch, "foodrisk", now=lambda: fixed) == [m.version for m in MIGRATIONS]
    assert [(v, n) for v, n, _ in ch.migration_rows] == [(m.version, m.name) for m in MIGRATIONS]
    assert {at for _, _, at in ch.migration_rows} == {fixed.replace(microsecond=0)}
    first_run = len(ch.statements)
    assert migrate(ch, "foodrisk") == []
    # The second run only makes sure the database and the bookkeeping table exist.
    assert ch.statements[first_run:] == ch.statements[:2]
    assert len(ch.migration_rows) == len(MIGRATIONS)


def test_migrate_applies_only_what_is_missing() -> None:
    ch = RecordingClickHouse(MODERN)
    ch.migration_rows = [(1, "results", None), (2, "alerts", None), (2, "alerts", None)]  # 2 recorded twice
    assert migrate(ch, "foodrisk") == [m.version for m in MIGRATIONS if m.version > 2]
    assert not any(s.startswith("CREATE TABLE IF NOT EXISTS `foodrisk`.`results`\n") for s in ch.statements)
    created = " ".join(ch.statements)
    assert "`deadletters`" in created and "`results_hourly_mv`" in created


def test_migrate_is_typed_against_the_interface() -> None:
    ch: ClickHouse = RecordingClickHouse()
    assert isinstance(ch, ClickHouse)
    # migrate(..., cluster=...) is tested in test_ddl_cluster.py.
    with pytest.raises(ValueError):
        migrate(ch, "foo-bar; DROP")


def test_versions_are_unique_and_increasing() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] == 1


# --- SQL text: literals and binding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sql"),
    [
        (None, "NULL"),
        (True, "1"),
        (7, "7"),
        (0.25, "0.25"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        (Decimal("1.50"), "1.50"),
        ("it's", "'it\\'s'"),
        ("back\\slash", "'back\\\\slash'"),
        ("line\nnext\ttab\0", "'line\\nnext\\ttab\\0'"),
        ("中文", "'中文'"),
        (dt.datetime(2024, 5, 1, 10, 0, 5, 999), "toDateTime('2024-05-01 10:00:05', 'UTC')"),  # noqa: DTZ001 - naive is UTC
        (
            dt.datetime(2024, 5, 1, 18, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))),
            "toDateTime('2024-05-01 10:00:00', 'UTC')",
        ),
        (dt.date(2024, 5, 1), "toDate('2024-05-01')"),
        (uuid.UUID(int=1), "toUUID('00000000-0000-0000-0000-000000000001')"),
        ([1, "a"], "[1, 'a']"),
        (("a",), "('a',)"),
        ((1, 2), "(1, 2)"),
    ],
)
def test_literals(value: Any, sql: str) -> None:
    assert literal(value) == sql


def test_bind() -> None:
    assert bind("SELECT %(a)s, %(b)s", {"a": "x' OR '1'='1", "b": 3}) == "SELECT 'x\\' OR \\'1\\'=\\'1', 3"
    assert bind("SELECT 'a%' LIKE 'a%'", None) == "SELECT 'a%' LIKE 'a%'"
    assert bind("SELECT 'a%%' LIKE %(p)s", {"p": "a%"}) == "SELECT 'a%' LIKE 'a%'"
    with pytest.raises(KeyError):
        bind("SELECT %(missing)s", {"other": 1})
    with pytest.raises(TypeError):
        literal(object())


def test_identifiers() -> None:
    assert quote_identifier("results") == "`results`"
    assert quote_table("results", "foodrisk") == "`foodrisk`.`results`"
    assert quote_table("other.results", "foodrisk") == "`other`.`results`"
    for bad in ("a b", "x`; DROP", "", "1abc"):
        with pytest.raises(ValueError):
            quote_identifier(bad)
