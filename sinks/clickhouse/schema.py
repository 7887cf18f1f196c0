"""Each ClickHouse table's columns, defined once (names, order, types), and the DDL that creates them.

Everything else derives from the specs here: the ``*_COLUMNS`` tuples the agents insert with,
``agents/records.py``'s ``results`` row builder (its values in ``RESULTS`` order), the migrations
(:mod:`sinks.clickhouse.migrations`) and the cluster layout. Those names and that order are a
contract: a column is added here, with a migration that adds it to existing tables.

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
"""

from __future__ import annotations

import re

from sinks.clickhouse.base import Features
from sinks.clickhouse.sql import quote_identifier

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
    # The reference edition the verdict was screened with (``ref-<12 hex>``, schemas.reference
    # edition_id); added by migration 8, rows stored before it hold ''. Last, so that a table
    # created whole and one migrated have their columns in the same order.
    ("reference_edition", "LowCardinality(String)"),
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


def qualified(db: str, name: str) -> str:
    return f"{quote_identifier(db)}.{quote_identifier(name)}"


def _dedup_settings(features: Features) -> str:
    if features.insert_deduplication_token:
        return f"\nSETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
    return ""


def _create_table(db: str, name: str, spec: ColumnSpec, features: Features, engine: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {qualified(db, name)}\n(\n{_columns_sql(spec, features)}\n)\nENGINE = {engine}"


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


def results_table_ddl(db: str, name: str, f: Features, key: tuple[str, ...] = RESULTS_KEY) -> str:
    return _create_table(db, name, RESULTS, f, _results_engine(key) + _dedup_settings(f))


def results_ddl(db: str, f: Features) -> list[str]:
    # The same device resending a result (or a replay) has the same key: ReplacingMergeTree keeps
    # the latest ingested_at, and reads with FINAL (or argMax) count it once.
    return [results_table_ddl(db, "results", f)]


def alerts_ddl(db: str, f: Features) -> list[str]:
    engine = "ReplacingMergeTree(ingested_at)\nPARTITION BY toYYYYMM(starts_at)\nORDER BY (alert_id, status)"
    return [_create_table(db, "alerts", ALERTS, f, engine + _dedup_settings(f))]


def deadletters_ddl(db: str, f: Features) -> list[str]:
    engine = (
        "ReplacingMergeTree(failed_at)\nPARTITION BY toYYYYMM(received_at)\n"
        "ORDER BY (src_topic, src_partition, src_offset, src_item)"
    )
    return [_create_table(db, "deadletters", DEADLETTERS, f, engine + _dedup_settings(f))]


HOURLY_MV = "results_hourly_mv"


def results_hourly_ddl(db: str, f: Features) -> list[str]:
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
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {qualified(db, HOURLY_MV)}\n"
        f"TO {qualified(db, 'results_hourly')}\nAS SELECT\n"
        f"    toStartOfHour(sampled_at) AS hour, {group_dims},\n{state_exprs}\n"
        f"FROM {qualified(db, 'results')}\nGROUP BY {dims}"
    )
    merges = []
    for name, verdict in HOURLY_COUNTS:
        fn = "uniqExactMerge" if verdict is None else "uniqExactIfMerge"
        merges.append(f"    {fn}({quote_identifier(name)}) AS {quote_identifier(name)}")
    merges.append(f"    nullIf(maxMerge(max_ratio), {_NO_RATIO}) AS max_ratio")
    merge_exprs = ",\n".join(merges)
    view = (
        f"CREATE VIEW IF NOT EXISTS {qualified(db, 'results_hourly_v')}\nAS SELECT\n    {dims},\n{merge_exprs}\n"
        f"FROM {qualified(db, 'results_hourly')}\nGROUP BY {dims}"
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


def parked_alerts_ddl(db: str, f: Features) -> list[str]:
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


def redlist_ddl(db: str, f: Features) -> list[str]:
    return [_create_table(db, "redlist", REDLIST, f, "ReplacingMergeTree(version)\nORDER BY vendor_id")]


# Daily sampling plans (`foodrisk plan`, GET /v1/plan; schemas/plan.py): one row per plan line. A
# plan is made again for the same day and district whenever asked (history moves on): every run
# keeps its own rows under its planned_at, and readers take the latest run per (plan_date,
# district), as the view sampling_plans_latest does. Replacing keeps an identical re-insert once.
SAMPLING_PLANS: ColumnSpec = (
    ("plan_date", "Date"),  # the day planned (China)
    ("district", "LowCardinality(String)"),
    ("site_id", "String"),
    ("line", "UInt32"),  # position of the line in the plan of its site
    ("commodity", "LowCardinality(String)"),
    ("method", "LowCardinality(String)"),  # method to use ('' = any)
    ("analyte", "LowCardinality(String)"),  # analyte to test ('' = what the method screens)
    ("vendor_id", "Nullable(String)"),  # set where the line targets a vendor
    ("supplier_id", "Nullable(String)"),  # set where it follows up a supplier
    ("tests", "UInt32"),  # how many samples
    # redlist | supplier_cluster | unconfirmed_positive | risk | priority | random (schemas/plan.py)
    ("reason", "LowCardinality(String)"),
    ("reason_text", "String"),
    ("score", "Float64"),  # the shrunk non-compliance estimate behind the line (0 for random)
    ("site_budget", "UInt32"),  # tests per day at the site
    ("seed", "UInt64"),
    ("planned_at", "DateTime('UTC')"),  # when this run of the plan was made: the run's id
)
SAMPLING_PLANS_COLUMNS: tuple[str, ...] = tuple(name for name, _ in SAMPLING_PLANS)

# Citizens' votes on what to test ("you pick, we test": `foodrisk votes import`). One row per food
# category of the food classification per import; an import of a period replaces the period: every
# import keeps its rows under its imported_at, and readers take the latest import per period, as
# the view citizen_votes_latest does. rank 1..10 are the period's priority categories.
CITIZEN_VOTES: ColumnSpec = (
    ("period", "String"),  # 'YYYY-MM'
    ("category", "LowCardinality(String)"),  # a food or group code of schemas/reference/foods.csv
    ("label", "String"),  # the category as the file named it (several labels of one category: joined by ' | ')
    ("votes", "UInt64"),
    ("rank", "UInt8"),  # 1 = most votes in the period (ties: by category code); 255 caps the rest
    ("imported_at", "DateTime('UTC')"),  # the import's id
)
CITIZEN_VOTES_COLUMNS: tuple[str, ...] = tuple(name for name, _ in CITIZEN_VOTES)


def _latest_view(db: str, view: str, table: str, group: tuple[str, ...], version: str) -> str:
    """A view of ``table``'s rows of the latest ``version`` per ``group``: a tuple IN over a GROUP
    BY, which 18.16 and modern servers both run. GLOBAL, because on a cluster both sides read the
    Distributed table, and a plain IN there is a "double-distributed" subquery that servers refuse
    by default (distributed_product_mode = deny); on one server GLOBAL IN is an IN."""
    cols = ", ".join(quote_identifier(c) for c in group)
    version_q = quote_identifier(version)
    latest = f"SELECT {cols}, max({version_q}) FROM {qualified(db, table)} GROUP BY {cols}"  # noqa: S608 - identifiers
    return (
        f"CREATE VIEW IF NOT EXISTS {qualified(db, view)}\nAS SELECT *\nFROM {qualified(db, table)}\n"
        f"WHERE ({cols}, {version_q}) GLOBAL IN ({latest})"
    )


def sampling_plans_ddl(db: str, f: Features) -> list[str]:
    engine = (
        "ReplacingMergeTree(planned_at)\nPARTITION BY toYYYYMM(plan_date)\n"
        "ORDER BY (plan_date, district, planned_at, site_id, line)"
    )
    return [
        _create_table(db, "sampling_plans", SAMPLING_PLANS, f, engine),
        _latest_view(db, "sampling_plans_latest", "sampling_plans", ("plan_date", "district"), "planned_at"),
    ]


def citizen_votes_ddl(db: str, f: Features) -> list[str]:
    engine = "ReplacingMergeTree(imported_at)\nORDER BY (period, imported_at, category)"
    return [
        _create_table(db, "citizen_votes", CITIZEN_VOTES, f, engine),
        _latest_view(db, "citizen_votes_latest", "citizen_votes", ("period",), "imported_at"),
    ]


def plans_and_votes_ddl(db: str, f: Features) -> list[str]:
    return [*sampling_plans_ddl(db, f), *citizen_votes_ddl(db, f)]
