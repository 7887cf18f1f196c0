"""The ClickHouse schema of foodrisk: versioned, idempotent migrations, run by both backends.

``migrate(ch)`` creates the database and a ``schema_migrations`` table, then applies the
migrations whose version is not recorded there, in order, recording each. Every statement is
``CREATE ... IF NOT EXISTS``, so a migration cut short by a crash is simply applied again, and
running ``migrate`` twice is a no-op. A migration that cannot be said in such statements (7, the
rebuild of ``results`` under a new sorting key) is a Python step that looks at what exists first
and picks up wherever a crash left it.

The DDL keeps to what Debian's clickhouse-server 18.16 and modern ClickHouse (chdb 26.x) both
run (docs/stack.md). Column types are written in their modern form and lowered by :func:`column_type`
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
from sinks.errors import ClickHouseError

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
    ("src_item", "Int32"),  # index of the item in a batch message; -1 for the message as a whole
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


# A result is identified by (device_id, result_id): every device has its own namespace of result
# ids, so one device's result can never replace another's (two devices sending one id are two
# results). result_id comes first in the key so that look-ups by id stay primary-key reads.
RESULTS_KEY: tuple[str, ...] = ("result_id", "device_id")
# The sorting key before migration 7: one result per result_id, whichever device sent it.
RESULTS_OLD_KEY: tuple[str, ...] = ("result_id",)

# The identity of a result as one String, for uniqExact states that must stay
# AggregateFunction(uniqExact, String): "<bytes of device_id>:<device_id>:<result_id>". Ids may hold
# any character (schemas/result.py only bounds their length, and JSON can carry U+0000 and U+001F),
# so no separator is safe on its own; the length prefix makes the encoding one-to-one whatever the
# ids contain. schemas.result.result_key builds the same text in Python.
RESULT_KEY_SQL = "concat(toString(length(device_id)), ':', device_id, ':', result_id)"


def _results_engine(key: tuple[str, ...]) -> str:
    order = key[0] if len(key) == 1 else f"({', '.join(key)})"
    return f"ReplacingMergeTree(ingested_at)\nPARTITION BY toYYYYMM(sampled_at)\nORDER BY {order}"


def _results_table(db: str, name: str, f: Features, key: tuple[str, ...] = RESULTS_KEY) -> str:
    return _create_table(db, name, RESULTS, f, _results_engine(key) + _dedup_settings(f))


def _results(db: str, f: Features) -> list[str]:
    # The same device resending a result (or a replay) has the same key: ReplacingMergeTree keeps
    # the latest ingested_at, and reads with FINAL (or argMax) count it once.
    return [_results_table(db, "results", f)]


def _alerts(db: str, f: Features) -> list[str]:
    engine = "ReplacingMergeTree(ingested_at)\nPARTITION BY toYYYYMM(starts_at)\nORDER BY (alert_id, status)"
    return [_create_table(db, "alerts", ALERTS, f, engine + _dedup_settings(f))]


def _deadletters(db: str, f: Features) -> list[str]:
    engine = (
        "ReplacingMergeTree(failed_at)\nPARTITION BY toYYYYMM(received_at)\n"
        "ORDER BY (src_topic, src_partition, src_offset, src_item)"
    )
    return [_create_table(db, "deadletters", DEADLETTERS, f, engine + _dedup_settings(f))]


HOURLY_MV = "results_hourly_mv"


def _results_hourly(db: str, f: Features) -> list[str]:
    # Why AggregatingMergeTree with uniqExact states and not a SummingMergeTree of counts: the
    # view sees every INSERT into `results`, including a replay of rows already there (a worker
    # restarted from its last commit, a device resending). A sum would count those twice, and
    # FINAL on `results` cannot undo what the view already added. A set of results per hour
    # (uniqExactState / uniqExactIfState over RESULT_KEY_SQL, the (device_id, result_id) pair as
    # one String) absorbs the replay: merging {a, b} with {a, b} is still two tests, and two
    # devices' results with one id are two. Checked on 18.16 and on chdb 26.x: uniqExactState,
    # uniqExactIfState, maxState and their -Merge forms, MATERIALIZED VIEW ... TO, CREATE VIEW IF
    # NOT EXISTS. (Before migration 7 the states hashed the bare result_id; the state type is the
    # same, so those hours stay readable.)
    dims = ", ".join(quote_identifier(name) for name, _ in HOURLY_DIMENSIONS)
    states: list[tuple[str, str, str]] = []  # (column, state type, state expression)
    for name, verdict in HOURLY_COUNTS:
        if verdict is None:
            states.append((name, "AggregateFunction(uniqExact, String)", f"uniqExactState({RESULT_KEY_SQL})"))
        else:
            states.append(
                (
                    name,
                    "AggregateFunction(uniqExactIf, String, UInt8)",
                    f"uniqExactIfState({RESULT_KEY_SQL}, verdict = '{verdict}')",
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
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {_table(db, HOURLY_MV)}\n"
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


# Alerts a delivery target (Alertmanager, webhook) did not take before the give-up horizon, or
# refused (HTTP 400/413/422): kept here, counted in metrics, never dropped silently (README, "Alert
# delivery"). A replay re-parks the same message: the sorting key ends in its source offset.
PARKED_ALERTS: ColumnSpec = (
    ("target", "LowCardinality(String)"),  # alertmanager | webhook
    ("alert_id", "String"),
    ("status", "LowCardinality(String)"),
    ("kind", "LowCardinality(String)"),
    ("severity", "LowCardinality(String)"),
    ("district", "LowCardinality(Nullable(String))"),
    ("reason", "LowCardinality(String)"),  # unavailable | rejected
    ("error", "String"),
    ("attempts", "UInt32"),
    ("first_attempt_at", "DateTime('UTC')"),
    ("parked_at", "DateTime('UTC')"),
    ("alert", "String"),  # the alert as on the alerts topic (JSON)
    ("src_topic", "LowCardinality(String)"),
    ("src_partition", "Int32"),
    ("src_offset", "Int64"),
)
PARKED_ALERTS_COLUMNS: tuple[str, ...] = tuple(name for name, _ in PARKED_ALERTS)


def _parked_alerts(db: str, f: Features) -> list[str]:
    engine = (
        "ReplacingMergeTree(parked_at)\nPARTITION BY toYYYYMM(parked_at)\n"
        "ORDER BY (target, alert_id, status, src_partition, src_offset)"
    )
    return [_create_table(db, "parked_alerts", PARKED_ALERTS, f, engine)]


# The red list of repeat offenders (agents/early/offender.py), one row per change of a vendor's
# entry; ReplacingMergeTree(version) keeps the latest per vendor (read it with FINAL). version is
# the writer's clock in microseconds: the single early-warning agent writes in processing order.
REDLIST: ColumnSpec = (
    ("vendor_id", "String"),
    ("listed", "UInt8"),  # 1 on the list, 0 taken off (K consecutive clean samples)
    ("listed_at", "DateTime('UTC')"),  # event time it went on the list
    ("changed_at", "DateTime('UTC')"),  # event time of this change
    ("findings", "UInt32"),  # non-compliant samples in the look-back
    ("clean_run", "UInt32"),  # consecutive clean samples since the last finding
    ("site_id", "String"),
    ("district", "LowCardinality(String)"),
    ("alert_id", "String"),
    ("evidence", "Array(String)"),
    ("version", "UInt64"),
)
REDLIST_COLUMNS: tuple[str, ...] = tuple(name for name, _ in REDLIST)


def _redlist(db: str, f: Features) -> list[str]:
    return [_create_table(db, "redlist", REDLIST, f, "ReplacingMergeTree(version)\nORDER BY vendor_id")]


# ---------------------------------------------------------------------------------------------
# Migration 7: results keyed by device
#
# A database whose migration 1 ran before results were keyed by device has `results` ORDER BY
# result_id: a second device sending the same result_id replaced the first device's row. A sorting
# key cannot be altered in place (not on 18.16, not on modern servers for a leading change), so the
# table is rebuilt. The step looks at what exists before each move, so a crash anywhere leaves a
# state the next run recognises and finishes:
#
#   A  `results` has the old key  -> drop any half-made `results_rekeyed`, create it with the new
#      key, copy every row (INSERT SELECT: no materialized view hangs off it, so the copy feeds
#      nothing), drop `results_hourly_mv`, RENAME results -> results_prekey, results_rekeyed ->
#      results (one statement; 18.16 renames one pair after the other)
#   B  no `results`, `results_rekeyed` there -> the rename was cut in the middle: finish it
#   C  no `results`, only `results_prekey`   -> it was renamed away before the copy was in
#      place: rename it back and start at A
#   D  `results` has the new key -> create `results_hourly_mv` if missing; if `results_prekey` is
#      still there, copy over the rows written to it after the copy (writers that ran during the
#      rebuild; through the view, which never saw them), then drop it. Nothing left: a no-op.

REKEY_NEW = "results_rekeyed"
REKEY_OLD = "results_prekey"


class MigrationError(ClickHouseError):
    """A migration that cannot run here as things are; the message says what to do."""


def _key_text(key: tuple[str, ...]) -> str:
    return ", ".join(key)


def sorting_keys(ch: ClickHouse, database: str, names: tuple[str, ...]) -> dict[str, str]:
    """``{table: sorting key}`` for those of ``names`` that exist in ``database`` (views: "").

    ``system.tables.sorting_key`` exists on 18.16 and on modern servers (both checked); the key
    comes back as the expression list without parentheses, e.g. ``result_id, device_id``.
    """
    res = ch.query(
        "SELECT name, sorting_key FROM system.tables WHERE database = %(db)s AND has(%(names)s, name)",
        {"db": database, "names": list(names)},
    )
    return {str(name): re.sub(r"[\s`]", "", str(key)) for name, key in res.rows}


def _same_key(found: str, key: tuple[str, ...]) -> bool:
    return found == _key_text(key).replace(" ", "")


def _rekey_results(ch: ClickHouse, database: str, features: Features, layout: ClusterLayout | None) -> None:
    results = "results" if layout is None else "results" + layout.local_suffix
    names = (results, REKEY_NEW, REKEY_OLD, HOURLY_MV)
    keys = sorting_keys(ch, database, names)
    if layout is not None:
        if results in keys and not _same_key(keys[results], RESULTS_KEY):
            raise MigrationError(
                f"{database}.{results} is keyed by ({keys[results]}), not ({_key_text(RESULTS_KEY)}): rebuilding a "
                f"replicated table is an operator step on a cluster; follow README, 'Results keyed by device', "
                f"then run foodrisk migrate again"
            )
        if HOURLY_MV not in keys:  # dropped by the operator's rebuild (README): create it again
            for statement in on_cluster([_results_hourly(database, features)[1]], database, layout):
                ch.execute(statement)
        return
    cols = ", ".join(quote_identifier(c) for c in RESULTS_COLUMNS)
    hourly_mv = _results_hourly(database, features)[1]
    if results not in keys:
        if REKEY_NEW in keys:  # B
            ch.execute(f"RENAME TABLE {_table(database, REKEY_NEW)} TO {_table(database, results)}")
        elif REKEY_OLD in keys:  # C
            ch.execute(f"RENAME TABLE {_table(database, REKEY_OLD)} TO {_table(database, results)}")
        else:
            return  # no results table at all: nothing to rebuild
        keys = sorting_keys(ch, database, names)
    if not _same_key(keys[results], RESULTS_KEY):  # A
        rows = ch.query(f"SELECT count() FROM {_table(database, results)}").scalar()  # noqa: S608
        log.info("ClickHouse %s: rebuilding results keyed by (%s), %s rows", database, _key_text(RESULTS_KEY), rows)
        ch.execute(f"DROP TABLE IF EXISTS {_table(database, REKEY_NEW)}")
        ch.execute(_results_table(database, REKEY_NEW, features))
        ch.execute(
            f"INSERT INTO {_table(database, REKEY_NEW)} ({cols}) SELECT {cols} FROM {_table(database, results)}"  # noqa: S608
        )
        ch.execute(f"DROP TABLE IF EXISTS {_table(database, HOURLY_MV)}")
        ch.execute(
            f"RENAME TABLE {_table(database, results)} TO {_table(database, REKEY_OLD)}, "
            f"{_table(database, REKEY_NEW)} TO {_table(database, results)}"
        )
        keys = sorting_keys(ch, database, names)
    # D
    if HOURLY_MV not in keys:
        ch.execute(hourly_mv)
    if REKEY_OLD in keys:
        version = "result_id, device_id, ingested_at"  # one stored version of one result
        ch.execute(
            f"INSERT INTO {_table(database, results)} ({cols}) SELECT {cols} FROM {_table(database, REKEY_OLD)} "  # noqa: S608
            f"WHERE ({version}) NOT IN (SELECT {version} FROM {_table(database, results)})"
        )
        ch.execute(f"DROP TABLE IF EXISTS {_table(database, REKEY_OLD)}")
    if REKEY_NEW in keys:
        ch.execute(f"DROP TABLE IF EXISTS {_table(database, REKEY_NEW)}")


# (ch, database, features, cluster layout or None): a migration step that is Python, not statements.
MigrationStep = Callable[[ClickHouse, str, Features, "ClusterLayout | None"], None]


def _no_statements(database: str, features: Features) -> list[str]:
    return []


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    render: Callable[[str, Features], list[str]]  # (database, features) -> statements, in order
    # Run after the statements; it must be safe to run again, and a no-op on a database created
    # by the current statements of the earlier migrations. It renders nothing for --print-ddl.
    step: MigrationStep | None = None

    def statements(self, database: str, features: Features) -> list[str]:
        return self.render(database, features)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "results", _results),
    Migration(2, "alerts", _alerts),
    Migration(3, "deadletters", _deadletters),
    Migration(4, "results_hourly", _results_hourly),
    Migration(5, "parked_alerts", _parked_alerts),
    Migration(6, "redlist", _redlist),
    Migration(7, "results keyed by device", _no_statements, _rekey_results),
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
    cluster: str | ClusterLayout | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> list[int]:
    """Apply the missing migrations to ``database``; returns their versions (empty: up to date).

    Safe to run again, and by two processes at once (both create the same things IF NOT EXISTS,
    a version recorded twice is read as one).

    With ``cluster`` (a cluster name of the server's ``remote_servers``, or a
    :class:`ClusterLayout`), every statement runs ON CLUSTER in the cluster layout: replicated
    ``*_local`` tables behind Distributed ones (see :func:`on_cluster`).
    """
    quote_identifier(database)
    layout = ClusterLayout(cluster) if isinstance(cluster, str) else cluster
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    features = ch.features
    if layout is not None:
        check_cluster(ch, layout)
    for statement in _laid_out(
        [f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}", schema_migrations_sql(database, features)],
        database,
        layout,
    ):
        ch.execute(statement)
    done = applied_versions(ch, database)
    applied: list[int] = []
    for migration in sorted(MIGRATIONS, key=lambda m: m.version):
        if migration.version in done:
            continue
        for statement in _laid_out(migration.statements(database, features), database, layout):
            ch.execute(statement)
        if migration.step is not None:
            migration.step(ch, database, features, layout)
        ch.insert(
            f"{database}.schema_migrations",
            SCHEMA_MIGRATIONS_COLUMNS,
            [(migration.version, migration.name, clock().astimezone(dt.UTC).replace(microsecond=0))],
        )
        log.info("ClickHouse %s: applied migration %d (%s)", database, migration.version, migration.name)
        applied.append(migration.version)
    return applied


def render_all(database: str, features: Features, *, cluster: str | ClusterLayout | None = None) -> list[str]:
    """Every statement ``migrate`` would run on an empty database (for review and tests); with
    ``cluster``, in the cluster layout."""
    out = [f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}", schema_migrations_sql(database, features)]
    for migration in MIGRATIONS:
        out.extend(migration.statements(database, features))
    if cluster is None:
        return out
    return on_cluster(out, database, ClusterLayout(cluster) if isinstance(cluster, str) else cluster)


# ---------------------------------------------------------------------------------------------
# The cluster layout
#
# On a ClickHouse cluster the same migrations are rendered again by rewriting their statements,
# so a migration is written once, in the single-server form above, and :func:`on_cluster` lays it
# out for the cluster:
#
# - a table ``t`` becomes ``t_local`` on every node, created ON CLUSTER with the Replicated form
#   of its engine (``ReplacingMergeTree(v)`` -> ``ReplicatedReplacingMergeTree('<path>',
#   '{replica}', v)``; the replicas of one shard share ``/clickhouse/tables/{shard}/<db>/t_local``),
#   plus a ``Distributed`` table ``t`` with the same columns over all shards. The pipeline keeps
#   writing to and reading ``t``: no query or insert changes between the two layouts;
# - rows are sharded by ``cityHash64`` of the table's sorting key, so the rows that
#   ReplacingMergeTree / AggregatingMergeTree must collapse (same key: a replayed result, a
#   resent alert) always land on the same shard, and FINAL / argMax on the Distributed table stay
#   exact (FINAL runs per shard);
# - a materialized view is created on every node and turns the local inserts of ``*_local``
#   tables into rows of ``*_local`` tables (a Distributed insert reaches the shard as a local
#   insert, and that is what triggers the view);
# - a plain view is created on every node over the Distributed tables (it sees the whole cluster);
# - ``schema_migrations`` is one replicated table whose replicas are all the nodes (its ZooKeeper
#   path has no ``{shard}``), so every node knows which versions were applied;
# - ``SETTINGS non_replicated_deduplication_window`` becomes ``replicated_deduplication_window``:
#   the sink's ``insert_deduplication_token`` then works on the replicated tables.
#
# The servers need ``remote_servers`` naming the cluster, the ``{shard}`` and ``{replica}`` macros
# and ClickHouse Keeper (or ZooKeeper) for ON CLUSTER and replication. README, "Running in
# production", has a config sketch.


class ClusterDDLError(ValueError):
    """A migration statement the cluster layout does not know how to rewrite."""


@dataclass(frozen=True)
class ClusterLayout:
    """Where the cluster variant of the schema lives. ``{database}`` and ``{table}`` in the paths
    are filled in here; ``{shard}`` and ``{replica}`` are the servers' macros."""

    name: str
    zookeeper_path: str = "/clickhouse/tables/{shard}/{database}/{table}"
    # Tables every node holds whole (one replica per node): schema_migrations.
    shared_zookeeper_path: str = "/clickhouse/tables/all/{database}/{table}"
    replica: str = "{replica}"
    local_suffix: str = "_local"

    def __post_init__(self) -> None:
        quote_identifier(self.name)  # a plain identifier, as in remote_servers
        for path in (self.zookeeper_path, self.shared_zookeeper_path):
            if "{table}" not in path or "'" in path or "\\" in path:
                raise ValueError(f"bad ZooKeeper path template {path!r}: it needs {{table}} and no quotes")
        if "{shard}" not in self.zookeeper_path:
            raise ValueError(f"ZooKeeper path template {self.zookeeper_path!r} needs {{shard}}")
        if not _IDENT_SUFFIX.match(self.local_suffix):
            raise ValueError(f"bad local table suffix {self.local_suffix!r}")

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {quote_identifier(self.name)}"

    def path(self, database: str, table: str, *, shared: bool = False) -> str:
        template = self.shared_zookeeper_path if shared else self.zookeeper_path
        return template.replace("{database}", database).replace("{table}", table)


_IDENT_SUFFIX = re.compile(r"^_[A-Za-z0-9_]+$")

# Tables every node holds whole rather than a shard of.
SHARED_TABLES: frozenset[str] = frozenset({"schema_migrations"})

_NAME = r"`(?P<db>\w+)`\.`(?P<name>\w+)`"
_CREATE_DATABASE = re.compile(r"^CREATE DATABASE IF NOT EXISTS `(?P<db>\w+)`$")
_CREATE_TABLE = re.compile(
    rf"^CREATE TABLE IF NOT EXISTS {_NAME}\n(?P<body>\(\n.*?\n\))\nENGINE = (?P<engine>\w*MergeTree)\((?P<rest>.*)$",
    re.DOTALL,
)
_CREATE_MV = re.compile(rf"^CREATE MATERIALIZED VIEW IF NOT EXISTS {_NAME}(?P<rest>\nTO .*)$", re.DOTALL)
_CREATE_VIEW = re.compile(rf"^CREATE VIEW IF NOT EXISTS {_NAME}(?P<rest>\nAS .*)$", re.DOTALL)
_ALTER_TABLE = re.compile(rf"^ALTER TABLE {_NAME}(?P<rest>\s.*)$", re.DOTALL)
_COLUMN_ALTER = re.compile(r"^\s*(ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN\b")
_ORDER_BY = re.compile(r"^ORDER BY (?P<key>.+)$", re.MULTILINE)


def _split_engine_args(rest: str) -> tuple[str, str]:
    """``'a, b)\\nPARTITION BY ...'`` -> (``'a, b'``, ``'\\nPARTITION BY ...'``): the engine's
    arguments up to its closing parenthesis, and what follows."""
    depth, quoted = 0, False
    for i, ch in enumerate(rest):
        if ch == "'" and (i == 0 or rest[i - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return rest[:i].strip(), rest[i + 1 :]
            depth -= 1
    raise ClusterDDLError(f"unbalanced engine arguments: {rest[:80]!r}")


# Tables sharded by less than their whole sorting key (a prefix of it, so the rows that collapse
# together still land together). results: by result_id, as before it was keyed by device, so the
# rebuild of a cluster's results_local (README) keeps every row on its shard.
SHARDING_KEYS: dict[str, str] = {"results": "cityHash64(result_id)"}


def sharding_key(table_tail: str, table: str | None = None) -> str:
    """``cityHash64`` of the sorting key found in the text after a table's engine (or the
    :data:`SHARDING_KEYS` entry of ``table``)."""
    if table in SHARDING_KEYS:
        return SHARDING_KEYS[table]
    found = _ORDER_BY.search(table_tail)
    if not found:
        raise ClusterDDLError("a sharded table needs an ORDER BY to derive its sharding key")
    key = found.group("key").strip()
    if key.startswith("(") and key.endswith(")"):
        key = key[1:-1].strip()
    return "rand()" if key in ("", "tuple()") else f"cityHash64({key})"


def created_tables(database: str = DEFAULT_DATABASE) -> frozenset[str]:
    """Names of the tables (not views) the migrations create: in the cluster layout each of
    these, except :data:`SHARED_TABLES`, is a ``*_local`` table behind a Distributed one."""
    names = set()
    for statement in render_all(database, Features()):
        found = _CREATE_TABLE.match(statement)
        if found:
            names.add(found.group("name"))
    return frozenset(names)


def on_cluster(statements: list[str], database: str, layout: ClusterLayout) -> list[str]:
    """``statements`` (single-server DDL of this module, for ``database``) in the cluster layout.

    Raises :class:`ClusterDDLError` for a statement form it does not know: teach this function
    the form rather than writing a migration twice.
    """
    sharded = created_tables(database) - SHARED_TABLES
    local = {name: name + layout.local_suffix for name in sharded}

    def qualified(name: str) -> str:
        return f"{quote_identifier(database)}.{quote_identifier(name)}"

    def to_local(sql: str) -> str:
        for name in sorted(local, key=len, reverse=True):
            sql = sql.replace(qualified(name), qualified(local[name]))
        return sql

    out: list[str] = []
    for statement in statements:
        if m := _CREATE_DATABASE.match(statement):
            out.append(statement + layout.on_cluster)
        elif m := _CREATE_TABLE.match(statement):
            db, name, body, engine = m.group("db", "name", "body", "engine")
            args, tail = _split_engine_args(m.group("rest"))
            tail = tail.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
            shared = name in SHARED_TABLES
            target = name if shared else local.setdefault(name, name + layout.local_suffix)
            replicated_args = ", ".join(
                a for a in (f"'{layout.path(db, target, shared=shared)}'", f"'{layout.replica}'", args) if a
            )
            out.append(
                f"CREATE TABLE IF NOT EXISTS {qualified(target)}{layout.on_cluster}\n{body}\n"
                f"ENGINE = Replicated{engine}({replicated_args}){tail}"
            )
            if not shared:
                out.append(
                    f"CREATE TABLE IF NOT EXISTS {qualified(name)}{layout.on_cluster}\n{body}\n"
                    f"ENGINE = Distributed('{layout.name}', '{db}', '{target}', {sharding_key(tail, name)})"
                )
        elif m := _CREATE_MV.match(statement):
            out.append(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {qualified(m.group('name'))}{layout.on_cluster}"
                f"{to_local(m.group('rest'))}"
            )
        elif m := _CREATE_VIEW.match(statement):
            out.append(f"CREATE VIEW IF NOT EXISTS {qualified(m.group('name'))}{layout.on_cluster}{m.group('rest')}")
        elif m := _ALTER_TABLE.match(statement):
            name, rest = m.group("name", "rest")
            if name in local:
                out.append(f"ALTER TABLE {qualified(local[name])}{layout.on_cluster}{rest}")
                if _COLUMN_ALTER.match(rest):  # the Distributed table has the same columns
                    out.append(f"ALTER TABLE {qualified(name)}{layout.on_cluster}{rest}")
            else:
                out.append(f"ALTER TABLE {qualified(name)}{layout.on_cluster}{rest}")
        else:
            first = statement.splitlines()[0] if statement else ""
            raise ClusterDDLError(
                f"cannot lay out for a ClickHouse cluster: {first[:120]!r}; sinks.ddl.on_cluster knows "
                f"CREATE DATABASE/TABLE (a *MergeTree engine)/VIEW/MATERIALIZED VIEW ... TO and ALTER TABLE"
            )
    return out


def _laid_out(statements: list[str], database: str, layout: ClusterLayout | None) -> list[str]:
    return statements if layout is None else on_cluster(statements, database, layout)


def check_cluster(ch: ClickHouse, layout: ClusterLayout) -> None:
    """That the server knows the cluster (``system.clusters``), with a message saying what to do."""
    res = ch.query("SELECT count() FROM system.clusters WHERE cluster = %(name)s", {"name": layout.name})
    if not res.scalar():
        known = ch.query("SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster")
        names = ", ".join(str(r[0]) for r in known.rows) or "none"
        raise ClickHouseError(
            f"ClickHouse cluster {layout.name!r} is not defined on this server (known: {names}); define it "
            f"in remote_servers, or unset FOODRISK_CLICKHOUSE_CLUSTER for a single server"
        )
