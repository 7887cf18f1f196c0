"""The ClickHouse schema of foodrisk: versioned, idempotent migrations, run by both backends.

``migrate(ch)`` creates the database and a ``schema_migrations`` table, then applies the
migrations whose version is not recorded there, in order, recording each. Every statement is
``CREATE ... IF NOT EXISTS``, so a migration cut short by a crash is simply applied again, and
running ``migrate`` twice is a no-op.

The DDL keeps to what Debian's clickhouse-server 18.16 and modern ClickHouse (chdb 26.x) both
run (STACK.md). Column types are written in their modern form and lowered by :func:`column_type`
for the server at hand (:class:`~sinks.clickhouse.Features`):

- ``LowCardinality(T)`` becomes ``T`` below 20.1. On 18.16 it exists behind
  ``allow_experimental_low_cardinality_type``, but a materialized view over such a column fails
  ("Type mismatch for column district ... got type LowCardinality(String): while pushing to
  view"), after the source insert has been written: never use it there.
- ``SETTINGS non_replicated_deduplication_window`` (which makes the sink's
  ``insert_deduplication_token`` work on a non-replicated MergeTree) only where the server has
  the token (22.2+).

Rows are written in the column order of the exported tuples ``RESULTS_COLUMNS``,
``ALERTS_COLUMNS`` and ``DEADLETTERS_COLUMNS``: those names and that order are a contract.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from sinks.clickhouse import DEFAULT_DATABASE, ClickHouse, Features, quote_identifier

log = logging.getLogger(__name__)

ColumnSpec = tuple[tuple[str, str], ...]

# ---------------------------------------------------------------------------------------------
# Tables: (column, type in its modern form)

RESULTS: ColumnSpec = (
    ("result_id", "String"),
    ("schema_version", "UInt8"),
    ("sample_id", "String"),
    ("device_id", "String"),
    ("site_id", "String"),
    ("site_type", "LowCardinality(String)"),
    ("district", "LowCardinality(String)"),
    ("site_name", "String"),
    ("vendor_id", "Nullable(String)"),
    ("supplier_id", "Nullable(String)"),
    ("origin", "LowCardinality(Nullable(String))"),
    ("commodity", "LowCardinality(String)"),
    ("analyte", "LowCardinality(String)"),
    ("method", "LowCardinality(String)"),
    ("quick", "UInt8"),
    ("value_mg_kg", "Nullable(Float64)"),
    ("percent", "Nullable(Float64)"),
    ("raw_value", "Nullable(Float64)"),
    ("raw_unit", "LowCardinality(String)"),
    ("qualitative", "LowCardinality(Nullable(String))"),
    ("lod_mg_kg", "Nullable(Float64)"),
    ("loq_mg_kg", "Nullable(Float64)"),
    ("sampled_at", "DateTime('UTC')"),
    ("tested_at", "DateTime('UTC')"),
    ("confirms", "Nullable(String)"),
    ("verdict", "LowCardinality(String)"),
    ("limit_mg_kg", "Nullable(Float64)"),
    ("ratio", "Nullable(Float64)"),
    ("rule", "LowCardinality(String)"),
    ("edition", "LowCardinality(Nullable(String))"),
    ("source", "LowCardinality(Nullable(String))"),
    ("confidence", "LowCardinality(Nullable(String))"),
    ("basis", "LowCardinality(String)"),
    ("src_topic", "LowCardinality(String)"),
    ("src_partition", "Int32"),
    ("src_offset", "Int64"),
    ("ingested_at", "DateTime('UTC')"),
)

ALERTS: ColumnSpec = (
    ("alert_id", "String"),
    ("kind", "LowCardinality(String)"),
    ("classification", "LowCardinality(String)"),
    ("risk", "LowCardinality(String)"),
    ("status", "LowCardinality(String)"),
    ("summary_en", "String"),
    ("summary_zh", "String"),
    ("district", "LowCardinality(Nullable(String))"),
    ("site_id", "Nullable(String)"),
    ("site_type", "LowCardinality(Nullable(String))"),
    ("commodity", "LowCardinality(Nullable(String))"),
    ("analyte", "LowCardinality(Nullable(String))"),
    ("supplier_id", "Nullable(String)"),
    ("vendor_id", "Nullable(String)"),
    ("device_id", "Nullable(String)"),
    ("evidence", "Array(String)"),
    ("starts_at", "DateTime('UTC')"),
    ("ends_at", "Nullable(DateTime('UTC'))"),
    ("details", "String"),  # JSON text
    ("src_partition", "Int32"),
    ("src_offset", "Int64"),
    ("ingested_at", "DateTime('UTC')"),
)

DEADLETTERS: ColumnSpec = (
    ("src_topic", "LowCardinality(String)"),
    ("src_partition", "Int32"),
    ("src_offset", "Int64"),
    ("received_at", "DateTime('UTC')"),  # the broker's timestamp of the message: stable across replays
    ("failed_at", "DateTime('UTC')"),
    ("key", "Nullable(String)"),
    ("payload", "String"),  # the original bytes, decoded with errors='replace', cut to 64 KiB
    ("errors", "Array(String)"),  # each "field: reason"
    ("error_kind", "LowCardinality(String)"),
)

HOURLY_DIMENSIONS: ColumnSpec = (
    ("hour", "DateTime('UTC')"),
    ("district", "LowCardinality(String)"),
    ("site_type", "LowCardinality(String)"),
    ("commodity", "LowCardinality(String)"),
    ("analyte", "LowCardinality(String)"),
    ("method", "LowCardinality(String)"),
)

# results_hourly's counters: column -> the verdict it counts (None: every result).
HOURLY_COUNTS: tuple[tuple[str, str | None], ...] = (
    ("tests", None),
    ("positives", "positive"),
    ("exceedances", "exceeds"),
    ("banned", "banned"),
    ("watch", "watch"),
)

SCHEMA_MIGRATIONS: ColumnSpec = (
    ("version", "UInt32"),
    ("name", "String"),
    ("applied_at", "DateTime('UTC')"),
)

RESULTS_COLUMNS: tuple[str, ...] = tuple(name for name, _ in RESULTS)
ALERTS_COLUMNS: tuple[str, ...] = tuple(name for name, _ in ALERTS)
DEADLETTERS_COLUMNS: tuple[str, ...] = tuple(name for name, _ in DEADLETTERS)
SCHEMA_MIGRATIONS_COLUMNS: tuple[str, ...] = tuple(name for name, _ in SCHEMA_MIGRATIONS)
HOURLY_VIEW_COLUMNS: tuple[str, ...] = (
    *(name for name, _ in HOURLY_DIMENSIONS),
    *(name for name, _ in HOURLY_COUNTS),
    "max_ratio",
)

# Blocks a non-replicated MergeTree remembers for insert deduplication (modern servers only).
DEDUPLICATION_WINDOW = 1000

# maxState over a Nullable column has a different state type on 18.16 (max, Float64) than on
# modern servers (max, Nullable(Float64)), and 18.16 merges an all-NULL group to 0. So NULL goes in
# as -inf (a ratio is never negative) and comes out of the view as NULL again: one DDL for both.
_NO_RATIO = "-inf"


# ---------------------------------------------------------------------------------------------
# Rendering

_LOW_CARDINALITY = re.compile(r"LowCardinality\(((?:[^()]|\([^()]*\))*)\)")


def column_type(modern: str, features: Features) -> str:
    """``modern`` lowered to what the server supports."""
    if features.low_cardinality:
        return modern
    return _LOW_CARDINALITY.sub(r"\1", modern)


def _columns_sql(spec: ColumnSpec, features: Features) -> str:
    return ",\n".join(f"    {quote_identifier(name)} {column_type(t, features)}" for name, t in spec)


def _table(db: str, name: str) -> str:
    return f"{quote_identifier(db)}.{quote_identifier(name)}"


def _dedup_settings(features: Features) -> str:
    if features.insert_deduplication_token:
        return f"\nSETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
    return ""


def _create_table(db: str, name: str, spec: ColumnSpec, features: Features, engine: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {_table(db, name)}\n(\n{_columns_sql(spec, features)}\n)\nENGINE = {engine}"


def schema_migrations_sql(db: str, features: Features) -> str:
    return _create_table(db, "schema_migrations", SCHEMA_MIGRATIONS, features, "MergeTree() ORDER BY version")


def _results(db: str, f: Features) -> list[str]:
    # A replayed or resent result has the same result_id: ReplacingMergeTree keeps the latest
    # ingested_at, and reads with FINAL (or argMax) count it once.
    engine = "ReplacingMergeTree(ingested_at)\nPARTITION BY toYYYYMM(sampled_at)\nORDER BY result_id"
    return [_create_table(db, "results", RESULTS, f, engine + _dedup_settings(f))]


def _alerts(db: str, f: Features) -> list[str]:
    engine = "ReplacingMergeTree(ingested_at)\nPARTITION BY toYYYYMM(starts_at)\nORDER BY (alert_id, status)"
    return [_create_table(db, "alerts", ALERTS, f, engine + _dedup_settings(f))]


def _deadletters(db: str, f: Features) -> list[str]:
    engine = (
        "ReplacingMergeTree(failed_at)\nPARTITION BY toYYYYMM(received_at)\n"
        "ORDER BY (src_topic, src_partition, src_offset)"
    )
    return [_create_table(db, "deadletters", DEADLETTERS, f, engine + _dedup_settings(f))]


def _results_hourly(db: str, f: Features) -> list[str]:
    # Why AggregatingMergeTree with uniqExact states and not a SummingMergeTree of counts: the
    # view sees every INSERT into `results`, including a replay of rows already there (a worker
    # restarted from its last commit, a device resending). A sum would count those twice, and
    # FINAL on `results` cannot undo what the view already added. A set of result_ids per hour
    # (uniqExactState / uniqExactIfState) absorbs the replay: merging {a, b} with {a, b} is still
    # two tests. Checked on 18.16 and on chdb 26.x: uniqExactState, uniqExactIfState, maxState
    # and their -Merge forms, MATERIALIZED VIEW ... TO, CREATE VIEW IF NOT EXISTS.
    dims = ", ".join(quote_identifier(name) for name, _ in HOURLY_DIMENSIONS)
    states: list[tuple[str, str, str]] = []  # (column, state type, state expression)
    for name, verdict in HOURLY_COUNTS:
        if verdict is None:
            states.append((name, "AggregateFunction(uniqExact, String)", "uniqExactState(result_id)"))
        else:
            states.append(
                (
                    name,
                    "AggregateFunction(uniqExactIf, String, UInt8)",
                    f"uniqExactIfState(result_id, verdict = '{verdict}')",
                )
            )
    states.append(("max_ratio", "AggregateFunction(max, Float64)", f"maxState(ifNull(ratio, {_NO_RATIO}))"))
    spec: ColumnSpec = (*HOURLY_DIMENSIONS, *((name, state_type) for name, state_type, _ in states))
    table = _create_table(
        db,
        "results_hourly",
        spec,
        f,
        f"AggregatingMergeTree()\nPARTITION BY toYYYYMM(hour)\nORDER BY ({dims})",
    )
    state_exprs = ",\n".join(f"    {expr} AS {quote_identifier(name)}" for name, _, expr in states)
    group_dims = ", ".join(quote_identifier(name) for name, _ in HOURLY_DIMENSIONS[1:])
    mv = (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {_table(db, 'results_hourly_mv')}\n"
        f"TO {_table(db, 'results_hourly')}\nAS SELECT\n"
        f"    toStartOfHour(sampled_at) AS hour, {group_dims},\n{state_exprs}\n"
        f"FROM {_table(db, 'results')}\nGROUP BY {dims}"
    )
    merges = []
    for name, verdict in HOURLY_COUNTS:
        fn = "uniqExactMerge" if verdict is None else "uniqExactIfMerge"
        merges.append(f"    {fn}({quote_identifier(name)}) AS {quote_identifier(name)}")
    merges.append(f"    nullIf(maxMerge(max_ratio), {_NO_RATIO}) AS max_ratio")
    merge_exprs = ",\n".join(merges)
    view = (
        f"CREATE VIEW IF NOT EXISTS {_table(db, 'results_hourly_v')}\nAS SELECT\n    {dims},\n{merge_exprs}\n"
        f"FROM {_table(db, 'results_hourly')}\nGROUP BY {dims}"
    )
    return [table, mv, view]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    render: Callable[[str, Features], list[str]]  # (database, features) -> statements, in order

    def statements(self, database: str, features: Features) -> list[str]:
        return self.render(database, features)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "results", _results),
    Migration(2, "alerts", _alerts),
    Migration(3, "deadletters", _deadletters),
    Migration(4, "results_hourly", _results_hourly),
)


# ---------------------------------------------------------------------------------------------
# Applying


def applied_versions(ch: ClickHouse, database: str = DEFAULT_DATABASE) -> set[int]:
    """The versions recorded in ``database.schema_migrations`` (which must exist)."""
    table = _table(database, "schema_migrations")  # a quoted identifier, not data
    res = ch.query(f"SELECT DISTINCT version FROM {table}")  # noqa: S608
    return {int(row[0]) for row in res.rows}


def migrate(
    ch: ClickHouse,
    database: str = DEFAULT_DATABASE,
    *,
    cluster: str | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> list[int]:
    """Apply the missing migrations to ``database``; returns their versions (empty: up to date).

    Safe to run again, and by two processes at once (both create the same things IF NOT EXISTS,
    a version recorded twice is read as one).
    """
    if cluster is not None:
        raise NotImplementedError("ON CLUSTER migrations (Replicated*/Distributed tables) are not written yet")
    quote_identifier(database)
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    features = ch.features
    ch.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    ch.execute(schema_migrations_sql(database, features))
    done = applied_versions(ch, database)
    applied: list[int] = []
    for migration in sorted(MIGRATIONS, key=lambda m: m.version):
        if migration.version in done:
            continue
        for statement in migration.statements(database, features):
            ch.execute(statement)
        ch.insert(
            f"{database}.schema_migrations",
            SCHEMA_MIGRATIONS_COLUMNS,
            [(migration.version, migration.name, clock().astimezone(dt.UTC).replace(microsecond=0))],
        )
        log.info("ClickHouse %s: applied migration %d (%s)", database, migration.version, migration.name)
        applied.append(migration.version)
    return applied


def render_all(database: str, features: Features) -> list[str]:
    """Every statement ``migrate`` would run on an empty database (for review and tests)."""
    out = [f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}", schema_migrations_sql(database, features)]
    for migration in MIGRATIONS:
        out.extend(migration.statements(database, features))
    return out
