"""The versioned, idempotent migrations of the ClickHouse schema and the runner both backends use.

``migrate(ch)`` creates the database and a ``schema_migrations`` table, then applies the
migrations whose version is not recorded there, in order, recording each. Every statement is
``CREATE ... IF NOT EXISTS``, so a migration cut short by a crash is simply applied again, and
running ``migrate`` twice is a no-op. A migration that cannot be said in such statements (7, the
rebuild of ``results`` under a new sorting key) is a Python step that looks at what exists first
and picks up wherever a crash left it. The tables' columns and DDL are in
:mod:`sinks.clickhouse.schema`; the cluster layout in :mod:`sinks.clickhouse.cluster`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from sinks.clickhouse.base import DEFAULT_DATABASE, ClickHouse, Features
from sinks.clickhouse.cluster import ClusterLayout, check_cluster, created_tables_in, lay_out
from sinks.clickhouse.schema import (
    HOURLY_MV,
    RESULTS,
    RESULTS_COLUMNS,
    RESULTS_KEY,
    SCHEMA_MIGRATIONS_COLUMNS,
    alerts_ddl,
    column_type,
    deadletters_ddl,
    parked_alerts_ddl,
    plans_and_votes_ddl,
    qualified,
    redlist_ddl,
    results_ddl,
    results_hourly_ddl,
    results_table_ddl,
    schema_migrations_sql,
)
from sinks.clickhouse.sql import quote_identifier
from sinks.errors import ClickHouseError

log = logging.getLogger(__name__)

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


def table_columns(ch: ClickHouse, database: str, table: str) -> list[str]:
    """The column names of ``database.table`` (``[]`` when it does not exist), in the order
    system.columns lists them: the table's (18.16 has no ``position`` column to sort on)."""
    res = ch.query(
        "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(table)s",
        {"db": database, "table": table},
    )
    return [str(row[0]) for row in res.rows]


def _copy_columns(ch: ClickHouse, database: str, source: str) -> str:
    """The ``results`` columns that ``source`` has, quoted, for an INSERT ... SELECT into a table of
    the current layout: a table from before a later migration lacks that migration's columns
    (``reference_edition``, migration 8), which take their default in the copy."""
    have = set(table_columns(ch, database, source))
    return ", ".join(quote_identifier(c) for c in RESULTS_COLUMNS if c in have)


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
            for statement in on_cluster([results_hourly_ddl(database, features)[1]], database, layout):
                ch.execute(statement)
        return
    hourly_mv = results_hourly_ddl(database, features)[1]
    if results not in keys:
        if REKEY_NEW in keys:  # B
            ch.execute(f"RENAME TABLE {qualified(database, REKEY_NEW)} TO {qualified(database, results)}")
        elif REKEY_OLD in keys:  # C
            ch.execute(f"RENAME TABLE {qualified(database, REKEY_OLD)} TO {qualified(database, results)}")
        else:
            return  # no results table at all: nothing to rebuild
        keys = sorting_keys(ch, database, names)
    if not _same_key(keys[results], RESULTS_KEY):  # A
        rows = ch.query(f"SELECT count() FROM {qualified(database, results)}").scalar()  # noqa: S608
        log.info("ClickHouse %s: rebuilding results keyed by (%s), %s rows", database, _key_text(RESULTS_KEY), rows)
        ch.execute(f"DROP TABLE IF EXISTS {qualified(database, REKEY_NEW)}")
        ch.execute(results_table_ddl(database, REKEY_NEW, features))
        cols = _copy_columns(ch, database, results)
        ch.execute(
            f"INSERT INTO {qualified(database, REKEY_NEW)} ({cols}) SELECT {cols} FROM {qualified(database, results)}"  # noqa: S608
        )
        ch.execute(f"DROP TABLE IF EXISTS {qualified(database, HOURLY_MV)}")
        ch.execute(
            f"RENAME TABLE {qualified(database, results)} TO {qualified(database, REKEY_OLD)}, "
            f"{qualified(database, REKEY_NEW)} TO {qualified(database, results)}"
        )
        keys = sorting_keys(ch, database, names)
    # D
    if HOURLY_MV not in keys:
        ch.execute(hourly_mv)
    if REKEY_OLD in keys:
        version = "result_id, device_id, ingested_at"  # one stored version of one result
        cols = _copy_columns(ch, database, REKEY_OLD)
        ch.execute(
            f"INSERT INTO {qualified(database, results)} ({cols}) SELECT {cols} FROM {qualified(database, REKEY_OLD)} "  # noqa: S608
            f"WHERE ({version}) NOT IN (SELECT {version} FROM {qualified(database, results)})"
        )
        ch.execute(f"DROP TABLE IF EXISTS {qualified(database, REKEY_OLD)}")
    if REKEY_NEW in keys:
        ch.execute(f"DROP TABLE IF EXISTS {qualified(database, REKEY_NEW)}")


# ---------------------------------------------------------------------------------------------
# Migration 8: the reference edition of every verdict
#
# `results.reference_edition` (schema.RESULTS): ADD COLUMN, at the end. A table created by the
# current migration 1 (or rebuilt by migration 7) has it already. Servers with ADD COLUMN IF NOT
# EXISTS get that statement (it is what --print-ddl shows, and the cluster layout runs it on
# results_local and the Distributed results); then, on every server, the step looks at
# system.columns and adds the column where it is still missing (18.16 knows no IF NOT EXISTS
# there). Existing rows read '' (the type's default): screened before editions were recorded.

EDITION_COLUMN = "reference_edition"
_ALTERED = re.compile(r"^ALTER TABLE `[^`]+`\.`([^`]+)`")


def _edition_column_type() -> str:
    return dict(RESULTS)[EDITION_COLUMN]


def _add_edition_sql(database: str, features: Features, *, if_not_exists: bool) -> str:
    guard = " IF NOT EXISTS" if if_not_exists else ""
    column = f"{quote_identifier(EDITION_COLUMN)} {column_type(_edition_column_type(), features)}"
    return f"ALTER TABLE {qualified(database, 'results')} ADD COLUMN{guard} {column}"


def _edition_ddl(database: str, features: Features) -> list[str]:
    if not features.add_column_if_not_exists:
        return []  # the step adds it after looking
    return [_add_edition_sql(database, features, if_not_exists=True)]


def _add_edition_column(ch: ClickHouse, database: str, features: Features, layout: ClusterLayout | None) -> None:
    tables = ["results"] if layout is None else ["results" + layout.local_suffix, "results"]
    if all(EDITION_COLUMN in table_columns(ch, database, t) for t in tables):
        return
    for statement in _laid_out([_add_edition_sql(database, features, if_not_exists=False)], database, layout):
        found = _ALTERED.match(statement)
        if found is None or EDITION_COLUMN not in table_columns(ch, database, found.group(1)):
            ch.execute(statement)


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
    Migration(1, "results", results_ddl),
    Migration(2, "alerts", alerts_ddl),
    Migration(3, "deadletters", deadletters_ddl),
    Migration(4, "results_hourly", results_hourly_ddl),
    Migration(5, "parked_alerts", parked_alerts_ddl),
    Migration(6, "redlist", redlist_ddl),
    Migration(7, "results keyed by device", _no_statements, _rekey_results),
    Migration(8, "results reference edition", _edition_ddl, _add_edition_column),
    Migration(9, "sampling_plans and citizen_votes", plans_and_votes_ddl),
)


# ---------------------------------------------------------------------------------------------
# Applying


def applied_versions(ch: ClickHouse, database: str = DEFAULT_DATABASE) -> set[int]:
    """The versions recorded in ``database.schema_migrations`` (which must exist)."""
    table = qualified(database, "schema_migrations")  # a quoted identifier, not data
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


def created_tables(database: str = DEFAULT_DATABASE) -> frozenset[str]:
    """Names of the tables (not views) the migrations create: in the cluster layout each of
    these, except :data:`~sinks.clickhouse.cluster.SHARED_TABLES`, is a ``*_local`` table behind
    a Distributed one."""
    return created_tables_in(render_all(database, Features()))


def on_cluster(statements: list[str], database: str, layout: ClusterLayout) -> list[str]:
    """``statements`` (single-server DDL of :mod:`sinks.clickhouse.schema`, for ``database``) in the
    cluster layout, every table the migrations create sharded (see :func:`~sinks.clickhouse.cluster.lay_out`)."""
    return lay_out(statements, database, layout, created_tables(database))


def _laid_out(statements: list[str], database: str, layout: ClusterLayout | None) -> list[str]:
    return statements if layout is None else on_cluster(statements, database, layout)
