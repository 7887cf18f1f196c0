"""Migration 8 (``results.reference_edition``) on both backends, chdb 26.x and Debian's 18.16: added to
a database from before it, idempotent, cut short and run again, and after migration 7's rebuild."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from sinks.clickhouse import ClickHouse, Features
from sinks.clickhouse.migrations import EDITION_COLUMN, table_columns
from sinks.ddl import MIGRATIONS, RESULT_KEY_SQL, RESULTS_COLUMNS, SCHEMA_MIGRATIONS_COLUMNS, migrate, render_all
from tests.integration.test_clickhouse import result_row

pytestmark = pytest.mark.integration

OLD_COLUMNS = tuple(c for c in RESULTS_COLUMNS if c != EDITION_COLUMN)
RECORDED_AT = dt.datetime(2026, 6, 16, 2, 0)  # noqa: DTZ001 - naive UTC, as stored


def _before_8(database: str, features: Features, *, old_key: bool = False) -> list[str]:
    """The DDL of migrations 1-7 as it was before the edition column (``old_key``: and before 7)."""
    out = []
    for statement in render_all(database, features):
        if statement.startswith("ALTER TABLE "):
            continue  # migration 8 itself
        for type_ in ("LowCardinality(String)", "String"):
            statement = statement.replace(f",\n    `{EDITION_COLUMN}` {type_}\n)", "\n)")
        if old_key:
            statement = statement.replace("ORDER BY (result_id, device_id)", "ORDER BY result_id")
            statement = statement.replace(RESULT_KEY_SQL, "result_id")
        out.append(statement)
    return out


def _old_database(ch: ClickHouse, n: int, *, old_key: bool = False) -> list[tuple[Any, ...]]:
    for statement in _before_8(ch.database, ch.features, old_key=old_key):
        ch.execute(statement)
    last = 6 if old_key else 7
    ch.insert(f"{ch.database}.schema_migrations", SCHEMA_MIGRATIONS_COLUMNS,
              [(m.version, m.name, RECORDED_AT) for m in MIGRATIONS if m.version <= last])
    assert EDITION_COLUMN not in table_columns(ch, ch.database, "results")
    rows = [result_row(i)[: len(OLD_COLUMNS)] for i in range(n)]  # the edition is the last column
    ch.insert(f"{ch.database}.results", OLD_COLUMNS, rows)
    return sorted(rows)


def _stored(ch: ClickHouse) -> tuple[list[tuple[Any, ...]], set[str]]:
    cols = ", ".join(f"`{c}`" for c in OLD_COLUMNS)
    rows = ch.query(f"SELECT {cols}, `{EDITION_COLUMN}` FROM `{ch.database}`.`results` FINAL").rows
    return sorted(r[:-1] for r in rows), {str(r[-1]) for r in rows}


def _check(ch: ClickHouse, before: list[tuple[Any, ...]]) -> None:
    assert table_columns(ch, ch.database, "results") == list(RESULTS_COLUMNS)  # at the end, as if created
    rows, editions = _stored(ch)
    assert rows == before and editions == {""}  # existing rows read ''
    new = result_row(10_000)  # a row of the current layout, with its edition
    ch.insert(f"{ch.database}.results", RESULTS_COLUMNS, [new])
    got = ch.query(f"SELECT `{EDITION_COLUMN}` FROM `{ch.database}`.`results` FINAL WHERE result_id = %(id)s",
                   {"id": new[0]}).scalar()
    assert got == new[-1]
    tests = ch.query(f"SELECT sum(tests) FROM `{ch.database}`.`results_hourly_v`").scalar()
    assert int(tests) == len(before) + 1  # the hourly view still feeds


def test_migration_8_adds_the_column_to_an_existing_table(ch: ClickHouse) -> None:
    before = _old_database(ch, 50)
    assert migrate(ch, ch.database) == [8, 9]
    _check(ch, before)
    assert migrate(ch, ch.database) == []
    (eight,) = [m for m in MIGRATIONS if m.version == 8]
    assert eight.step is not None
    eight.step(ch, ch.database, ch.features, None)  # a no-op now
    for statement in eight.statements(ch.database, ch.features):
        ch.execute(statement)  # so is its statement (IF NOT EXISTS) where the server has one
    assert table_columns(ch, ch.database, "results") == list(RESULTS_COLUMNS)


def test_migration_8_cut_short_after_the_alter_finishes(ch: ClickHouse) -> None:
    before = _old_database(ch, 20)
    ch.execute(f"ALTER TABLE `{ch.database}`.`results` ADD COLUMN `{EDITION_COLUMN}` "
               f"{'LowCardinality(String)' if ch.features.low_cardinality else 'String'}")
    assert migrate(ch, ch.database) == [8, 9]  # the column is there, the version was not recorded
    _check(ch, before)


def test_migrations_7_then_8_on_a_database_from_before_both(ch: ClickHouse) -> None:
    before = _old_database(ch, 40, old_key=True)
    assert migrate(ch, ch.database) == [7, 8, 9]  # 7 copies the columns the old table has
    _check(ch, before)
