"""A result is (device_id, result_id): one device can never replace or hide another device's result.

On both backends (chdb 26.x and Debian's 18.16 server): rows written through the project's row
builder and writer, the hourly roll-up, and migration 7 (the rebuild of a ``results`` table created
keyed by result_id alone), including a crash at every step of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from agents.records import result_values
from schemas.result import Result
from schemas.rules import screen
from sinks.clickhouse import ClickHouse, Features, QueryResult
from sinks.ddl import (
    HOURLY_MV,
    MIGRATIONS,
    REKEY_NEW,
    REKEY_OLD,
    RESULT_KEY_SQL,
    RESULTS_COLUMNS,
    SCHEMA_MIGRATIONS_COLUMNS,
    migrate,
    render_all,
    sorting_keys,
)
from sinks.writer import ClickHouseWriter
from tests.unit.test_schemas_rules import REF, make

pytestmark = pytest.mark.integration

INGESTED = dt.datetime(2026, 6, 16, 2, 0, tzinfo=dt.UTC)
NEW_KEY = "result_id,device_id"


def _result(device: str, result_id: str, value: float) -> Result:
    return make("carbofuran", "cowpea", value=value, loq=0.005).model_copy(
        update={"device_id": device, "result_id": result_id}
    )


def _row(result: Result, offset: int, ingested: dt.datetime = INGESTED) -> tuple[Any, ...]:
    values = result_values(
        result, screen(result, REF), src_topic="foodrisk.results", src_partition=0, src_offset=offset,
        ingested_at=ingested,
    )
    return tuple(values[c] for c in RESULTS_COLUMNS)


def _write(ch: ClickHouse, rows: list[tuple[Any, ...]]) -> None:
    writer = ClickHouseWriter(ch, database=ch.database)
    try:
        asyncio.run(writer.insert("results", RESULTS_COLUMNS, rows))
    finally:
        writer.close()


def _final(ch: ClickHouse, result_id: str) -> list[tuple[Any, ...]]:
    return ch.query(
        "SELECT device_id, verdict, value_mg_kg FROM results FINAL WHERE result_id = %(id)s ORDER BY device_id",
        {"id": result_id},
    ).rows


def _hourly_tests(ch: ClickHouse) -> dict[str, int]:
    rows = ch.query("SELECT analyte, sum(tests) FROM results_hourly_v GROUP BY analyte").rows
    return {str(a): int(n) for a, n in rows}


# --- (a) two devices, one result_id ----------------------------------------------------------------------


def test_another_device_cannot_replace_a_banned_finding(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    banned = _result("lab-B", "lab-B-2026-000777", 0.5)
    forged = _result("lab-A", "lab-B-2026-000777", 0.0)
    assert screen(banned, REF).verdict == "banned" and screen(forged, REF).verdict == "compliant"
    _write(ch, [_row(banned, 1)])
    _write(ch, [_row(forged, 2, INGESTED + dt.timedelta(minutes=5))])  # later: it would have won
    ch.execute(f"OPTIMIZE TABLE `{ch.database}`.`results` FINAL")  # a merge must not collapse them either
    assert _final(ch, "lab-B-2026-000777") == [("lab-A", "compliant", 0.0), ("lab-B", "banned", 0.5)]
    # the same device resending its result still replaces it (idempotent, latest ingested_at)
    _write(ch, [_row(banned, 3, INGESTED + dt.timedelta(minutes=9))])
    assert _final(ch, "lab-B-2026-000777") == [("lab-A", "compliant", 0.0), ("lab-B", "banned", 0.5)]
    assert ch.query("SELECT count() FROM results FINAL").scalar() == 2
    assert ch.query("SELECT max(src_offset) FROM results FINAL WHERE device_id = 'lab-B'").scalar() == 3


def test_hourly_counts_results_per_device(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    one = _result("lab-B", "r-1", 0.5)
    _write(ch, [_row(one, 1), _row(_result("lab-A", "r-1", 0.5), 2)])  # two devices, one id: 2
    _write(ch, [_row(one, 3), _row(one, 4)])  # the same device again: still 2
    rows = ch.query("SELECT tests, banned FROM results_hourly_v").rows
    assert [(int(t), int(b)) for t, b in rows] == [(2, 2)]
    # ids that a bare separator would confuse stay apart: (a, b:c) and (a:b, c)
    tricky = [_row(_result("a", "b:c", 0.0), 5), _row(_result("a:b", "c", 0.0), 6)]
    _write(ch, tricky)
    assert sum(int(r[0]) for r in ch.query("SELECT tests FROM results_hourly_v").rows) == 4
    assert ch.query(f"SELECT {RESULT_KEY_SQL} FROM results FINAL WHERE device_id = 'lab-B'").scalar() == "5:lab-B:r-1"


# --- (b) migration 7 on a database created keyed by result_id ---------------------------------------------


def _old_schema(database: str, features: Features) -> list[str]:
    """The DDL of migrations 1-6 as they were before results were keyed by device."""
    out = []
    for statement in render_all(database, features):
        statement = statement.replace("ORDER BY (result_id, device_id)", "ORDER BY result_id")
        out.append(statement.replace(RESULT_KEY_SQL, "result_id"))
    return out


def _old_database(ch: ClickHouse, n: int) -> list[tuple[Any, ...]]:
    """An old-key database with ``n`` results (some resent) fed through the old view."""
    for statement in _old_schema(ch.database, ch.features):
        ch.execute(statement)
    ch.insert(
        f"{ch.database}.schema_migrations", SCHEMA_MIGRATIONS_COLUMNS,
        [(m.version, m.name, INGESTED.replace(tzinfo=None)) for m in MIGRATIONS if m.version < 7],
    )
    assert sorting_keys(ch, ch.database, ("results",)) == {"results": "result_id"}
    rows = [_row(_result(f"dev-{i % 3}", f"r-{i:05d}", 0.5 if i % 10 == 0 else 0.0), i) for i in range(n)]
    _write(ch, rows)
    _write(ch, rows[:5])  # resent: the same rows again
    return rows


def _all_rows(ch: ClickHouse, table: str = "results") -> list[tuple[Any, ...]]:
    """The distinct rows (a background merge may collapse a resent copy at any time)."""
    cols = ", ".join(f"`{c}`" for c in RESULTS_COLUMNS)
    return sorted(set(ch.query(f"SELECT {cols} FROM `{ch.database}`.`{table}`").rows), key=repr)


def _tables(ch: ClickHouse) -> set[str]:
    return {str(r[0]) for r in ch.query("SELECT name FROM system.tables WHERE database = %(db)s",
                                        {"db": ch.database}).rows}


def _check_migrated(ch: ClickHouse, before: list[tuple[Any, ...]], hourly_before: dict[str, int]) -> None:
    assert _all_rows(ch) == before  # every row kept, as it was
    assert sorting_keys(ch, ch.database, ("results",)) == {"results": NEW_KEY}
    assert REKEY_NEW not in _tables(ch) and REKEY_OLD not in _tables(ch) and HOURLY_MV in _tables(ch)
    assert _hourly_tests(ch) == hourly_before  # the copy fed nothing
    # the view still feeds, from the new table: another device's result with a known id counts
    _write(ch, [_row(_result("dev-new", "r-00000", 0.5), 10_000)])
    assert _hourly_tests(ch) == {"carbofuran": hourly_before["carbofuran"] + 1}
    assert _final(ch, "r-00000") == [("dev-0", "banned", 0.5), ("dev-new", "banned", 0.5)]


def test_migration_7_rebuilds_an_old_key_table(ch: ClickHouse) -> None:
    _old_database(ch, 300)
    before = _all_rows(ch)
    hourly = _hourly_tests(ch)
    assert hourly == {"carbofuran": 300}
    assert migrate(ch, ch.database) == [7, 8, 9]
    _check_migrated(ch, before, hourly)
    after = _all_rows(ch)
    assert migrate(ch, ch.database) == []  # recorded: nothing runs
    (seven,) = [m for m in MIGRATIONS if m.version == 7]
    assert seven.step is not None
    seven.step(ch, ch.database, ch.features, None)  # and the step itself is a no-op now
    assert _all_rows(ch) == after


class _CrashAt:
    """A ClickHouse that fails its ``n``-th statement (execute) of migration 7, as a crash would.
    (The old databases here have migration 8's column already: migration 1 of this version made it.)"""

    def __init__(self, inner: ClickHouse, n: int) -> None:
        self._inner, self._n, self.count = inner, n, 0

    @property
    def database(self) -> str:
        return self._inner.database

    @property
    def server_version(self) -> tuple[int, int, int]:
        return self._inner.server_version

    @property
    def features(self) -> Features:
        return self._inner.features

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        later = (f"CREATE TABLE IF NOT EXISTS `{self.database}`.`sampling_plans`",
                 f"CREATE TABLE IF NOT EXISTS `{self.database}`.`citizen_votes`", "CREATE VIEW IF NOT EXISTS")
        if not sql.startswith(("CREATE DATABASE", f"CREATE TABLE IF NOT EXISTS `{self.database}`.`schema_migrations`",
                               "ALTER TABLE", *later)):  # migrations 8's and 9's, after 7: counted are 7's statements
            self.count += 1
            if self.count == self._n:
                raise RuntimeError(f"crash before statement {self._n}: {sql[:60]}")
        self._inner.execute(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        return self._inner.query(sql, params)

    def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        return self._inner.insert(table, columns, rows, settings=settings)

    def close(self) -> None:
        pass


def test_migration_7_finishes_after_a_crash_at_any_step(ch: ClickHouse) -> None:
    statements = 8  # in the rebuild of an old-key table: a crash before each, then a clean run
    for n in range(1, statements + 2):
        ch.execute(f"DROP DATABASE IF EXISTS `{ch.database}`")
        _old_database(ch, 40)
        before, hourly = _all_rows(ch), _hourly_tests(ch)
        crashing = _CrashAt(ch, n)
        if n <= statements:
            with pytest.raises(RuntimeError, match=f"crash before statement {n}"):
                migrate(crashing, ch.database)
            assert migrate(ch, ch.database) == [7, 8, 9]
        else:
            assert migrate(crashing, ch.database) == [7, 8, 9]
            assert crashing.count == statements
        _check_migrated(ch, before, hourly)


def test_migration_7_finishes_a_rename_cut_in_the_middle(ch: ClickHouse) -> None:
    # 18.16 renames one pair after the other: results already moved away, the new table not yet in
    _old_database(ch, 20)
    before, hourly = _all_rows(ch), _hourly_tests(ch)
    ch.execute(f"DROP TABLE `{ch.database}`.`{HOURLY_MV}`")
    for statement in render_all(ch.database, ch.features)[2:3]:  # results, new key, under the new name
        ch.execute(statement.replace("`results`", f"`{REKEY_NEW}`"))
    cols = ", ".join(f"`{c}`" for c in RESULTS_COLUMNS)
    ch.execute(f"INSERT INTO `{ch.database}`.`{REKEY_NEW}` ({cols}) SELECT {cols} FROM `{ch.database}`.`results`")
    ch.execute(f"RENAME TABLE `{ch.database}`.`results` TO `{ch.database}`.`{REKEY_OLD}`")
    assert migrate(ch, ch.database) == [7, 8, 9]
    _check_migrated(ch, before, hourly)


def test_migration_7_keeps_rows_written_to_the_old_table_during_the_rebuild(ch: ClickHouse) -> None:
    # a writer of the previous version inserted after the copy, before the rename: its row is in the
    # old table only; the last step copies it over (through the view, which never saw it)
    _old_database(ch, 20)
    ch.execute(f"DROP TABLE `{ch.database}`.`{HOURLY_MV}`")
    for statement in render_all(ch.database, ch.features)[2:3]:
        ch.execute(statement.replace("`results`", f"`{REKEY_NEW}`"))
    cols = ", ".join(f"`{c}`" for c in RESULTS_COLUMNS)
    ch.execute(f"INSERT INTO `{ch.database}`.`{REKEY_NEW}` ({cols}) SELECT {cols} FROM `{ch.database}`.`results`")
    late = _row(_result("dev-late", "r-late", 0.5), 777)
    _write(ch, [late])
    ch.execute(
        f"RENAME TABLE `{ch.database}`.`results` TO `{ch.database}`.`{REKEY_OLD}`, "
        f"`{ch.database}`.`{REKEY_NEW}` TO `{ch.database}`.`results`"
    )
    hourly = _hourly_tests(ch)
    assert migrate(ch, ch.database) == [7, 8, 9]
    assert _final(ch, "r-late") == [("dev-late", "banned", 0.5)]
    assert _hourly_tests(ch) == {"carbofuran": hourly["carbofuran"] + 1}
    assert REKEY_OLD not in _tables(ch)
