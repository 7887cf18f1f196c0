from __future__ import annotations

from typing import Any

import pytest

from pipeline.query import QueryRejected, guard_select, render


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select count() from foodrisk.results final",
        "WITH 2 AS x SELECT x",
        "SELECT ';' AS semicolon_in_string",
        "SELECT 1 -- a comment; with a semicolon",
        "SELECT 1;",
    ],
)
def test_selects_are_wrapped_with_limits(sql: str) -> None:
    out = guard_select(sql, max_rows=10, max_seconds=5)
    assert out.startswith("SELECT * FROM (")
    assert "LIMIT 11" in out
    assert "readonly = 1" in out
    assert "max_execution_time = 5" in out


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("", "empty"),
        ("DROP TABLE foodrisk.results", "only SELECT"),
        ("INSERT INTO t VALUES (1)", "only SELECT"),
        ("SELECT 1; DROP TABLE t", "one statement"),
        ("SELECT 1 FORMAT JSON", "FORMAT"),
        ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
        ("ALTER TABLE t DELETE WHERE 1", "only SELECT"),
    ],
)
def test_anything_else_is_rejected(sql: str, why: str) -> None:
    with pytest.raises(QueryRejected, match=why):
        guard_select(sql)


def test_render_formats() -> None:
    cols = ["district", "tests"]
    rows: list[list[Any]] = [["天河 Tianhe", 3], ["Liwan", None]]
    table = render(cols, rows)
    lines = table.splitlines()
    assert lines[0].split() == ["district", "tests"]
    assert "天河 Tianhe  3" in lines[2]
    assert render(cols, rows, "csv").splitlines() == ["district,tests", "天河 Tianhe,3", "Liwan,"]
    assert render(cols, rows, "json").splitlines()[1] == '{"district":"Liwan","tests":null}'
