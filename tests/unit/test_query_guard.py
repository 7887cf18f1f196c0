from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from pipeline.demo import SUMMARY_QUERIES
from pipeline.query.functions import function_allowed
from pipeline.query.guard import QueryLimits, QueryRejected, guard_select
from pipeline.query.render import render


def body(sql: str, params: dict[str, Any] | None = None, **kw: Any) -> str:
    """The regenerated statement inside the guard's wrapper."""
    out = guard_select(sql, params, **kw)
    assert out.startswith("SELECT * FROM (\n")
    return out[len("SELECT * FROM (\n") : out.rindex("\n) LIMIT ")]


# --------------------------------------------------------------------------------------------
# What analysts write is accepted, and regenerated with the same meaning

ACCEPTED = [
    "SELECT 1",
    "SELECT 1;",
    "select count() from foodrisk.results final",
    "SELECT count() FROM results FINAL",
    "SELECT * FROM `foodrisk`.redlist FINAL WHERE listed = 1 ORDER BY listed DESC, listed_at DESC, vendor_id",
    "WITH 2 AS x SELECT x",
    "WITH t AS (SELECT district, count() AS n FROM results GROUP BY district) SELECT * FROM t WHERE n > 1",
    "SELECT ';' AS semicolon_in_string",
    "SELECT 1 -- a comment; with a semicolon",
    "(SELECT 1)",
    "SELECT 1 UNION ALL SELECT 2",
    "SELECT 1 INTERSECT SELECT 1 EXCEPT SELECT 2",
    "SELECT r.district, a.kind FROM results AS r INNER JOIN alerts AS a ON r.result_id = a.result_id",
    "SELECT x FROM results GLOBAL ANY LEFT JOIN (SELECT 1 AS x) AS s USING (x)",
    "SELECT tag FROM results ARRAY JOIN tags AS tag LIMIT 2 BY district",
    "SELECT * FROM results FINAL SAMPLE 0.1 PREWHERE ratio > 1 WHERE verdict = 'banned' ORDER BY ratio DESC",
    "SELECT district FROM results WHERE vendor_id IN (SELECT vendor_id FROM redlist FINAL WHERE listed = 1)",
    "SELECT countIf(verdict = 'positive'), uniqExact(vendor_id), sumState(ratio), uniqExactIfMerge(s), "
    "quantilesTDigest(0.5, 0.9)(ratio), topK(5)(analyte), avgOrNull(ratio) FROM results",
    "SELECT if(ratio > 1, 'over', 'under'), multiIf(ratio > 2, 2, ratio > 1, 1, 0), ratio > 1 ? 1 : 0, "
    "CASE WHEN ratio > 1 THEN 'x' ELSE 'y' END FROM results",
    "SELECT arrayMap(x -> x * 2, [1, 2, 3]), arrayFilter(x -> x > 1, [1, 2]), tuple(1, 'a').2, [1, 2][1]",
    "SELECT toStartOfHour(sampled_at) AS h, toDate(sampled_at), formatDateTime(sampled_at, '%F'), "
    "dateDiff('day', sampled_at, now()), sampled_at + INTERVAL 1 DAY, EXTRACT(YEAR FROM sampled_at) FROM results",
    "SELECT CAST(ratio AS String), ratio::Float32, CAST(ratio, 'Float64'), toDecimal32(ratio, 2) FROM results",
    "SELECT district, row_number() OVER (PARTITION BY district ORDER BY ratio DESC) AS rn FROM results",
    "SELECT 1 WHERE 'a' LIKE '%a%' AND 'b' NOT ILIKE 'c' AND 1 BETWEEN 0 AND 2 AND NULL IS NULL",
    "SELECT lower(district), concat(district, '-', site_type), replaceRegexpAll(district, '\\\\s+', ' ') FROM results",
    "SELECT toStartOfInterval(sampled_at, INTERVAL 15 minute) AS t, count() FROM results GROUP BY t "
    "ORDER BY t WITH FILL",
    "SELECT user.x FROM results AS user",
    "SELECT r.user FROM results AS r",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_analyst_selects_are_accepted(sql: str) -> None:
    out = guard_select(sql, max_rows=10)
    assert out.startswith("SELECT * FROM (\n")
    assert "\n) LIMIT 11 SETTINGS readonly = 1, max_execution_time = 30, " in out


@pytest.mark.parametrize(("title", "sql"), SUMMARY_QUERIES)
def test_demo_summary_queries_are_accepted(title: str, sql: str) -> None:
    assert guard_select(sql)


def test_the_wrapper_carries_every_limit() -> None:
    out = guard_select(
        "SELECT 1",
        max_rows=5,
        limits=QueryLimits(max_execution_time=7, max_memory_usage=1000, max_result_bytes=2000, max_rows_to_read=3000),
    )
    assert out == (
        "SELECT * FROM (\nSELECT 1\n) LIMIT 6 SETTINGS readonly = 1, max_execution_time = 7, "
        "timeout_overflow_mode = 'throw', max_memory_usage = 1000, max_result_rows = 6, max_result_bytes = 2000, "
        "result_overflow_mode = 'throw', "
        "max_rows_to_read = 3000, read_overflow_mode = 'throw'"
    )


def test_function_names_are_kept_as_written() -> None:
    # sqlglot would otherwise translate them (toStartOfHour -> dateTrunc, rand -> randCanonical),
    # into names 18.16 does not have or that mean something else.
    sql = "SELECT toStartOfHour(t), toMonday(t), rand(), splitByChar(',', s), dateDiff('day', a, b), uniq(x) FROM t"
    assert body(sql) == sql


def test_comments_never_reach_the_server() -> None:
    out = guard_select("SELECT 1 /* a */ AS x -- b\n, 2 AS y # c\n, 3 AS z #! d\n")
    assert "/*" not in out and "--" not in out and "#" not in out
    assert body("SELECT 1 /* a */ AS x -- b\n, 2 AS y # c\n, 3 AS z #! d\n") == "SELECT 1 AS x, 2 AS y, 3 AS z"


# --------------------------------------------------------------------------------------------
# Everything else is rejected with one line


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("", "empty"),
        ("  -- only a comment", "empty"),
        ("DROP TABLE foodrisk.results", "only SELECT"),
        ("INSERT INTO t VALUES (1)", "only SELECT"),
        ("ALTER TABLE t DELETE WHERE 1", "only SELECT"),
        ("EXPLAIN SELECT 1", "only SELECT"),
        ("SHOW TABLES", "only SELECT"),
        ("SELECT 1; DROP TABLE t", "one statement"),
        ("SELECT 1; SELECT 2", "one statement"),
        ("SELECT 1 FORMAT JSON", "FORMAT"),
        ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT * FROM (SELECT 1 SETTINGS readonly = 0)", "SETTINGS"),
        ("SELECT 1 UNION ALL SELECT 2 SETTINGS max_execution_time = 0", "SETTINGS"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
        ("SELECT 1 FROM", "cannot parse"),
    ],
)
def test_anything_else_is_rejected(sql: str, why: str) -> None:
    with pytest.raises(QueryRejected, match=why) as caught:
        guard_select(sql)
    assert "\n" not in str(caught.value)


def test_a_hash_comment_cannot_hide_settings() -> None:
    # ClickHouse reads `#` as a comment, and so does the guard: what follows the newline is a
    # SETTINGS clause of the analyst's statement, rejected (the old guard wrapped it verbatim).
    with pytest.raises(QueryRejected, match="SETTINGS"):
        guard_select("SELECT 1 AS x # '\nSETTINGS readonly=0 -- '")
    with pytest.raises(QueryRejected, match="SETTINGS"):
        guard_select("SELECT 1 AS x #! '\nSETTINGS readonly=0 -- '")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT file('/proc/self/environ')",
        "SELECT FILE('/proc/self/environ')",
        "SELECT File('/etc/hostname')",
        "SELECT `file`('/etc/hostname')",
        'SELECT "file"(\'/etc/hostname\')',
        "SELECT url('http://example.com/', 'CSV', 'a String')",
        "SELECT dictGet('d', 'a', toUInt64(1))",
        "SELECT dictGetString('d', 'a', toUInt64(1))",
        "SELECT dictHas('d', toUInt64(1))",
        "SELECT joinGet('foodrisk.j', 'v', 1)",
        "SELECT hostName()",
        "SELECT currentUser()",
        "SELECT currentDatabase()",
        "SELECT version()",
        "SELECT getSetting('readonly')",
        "SELECT getMacro('shard')",
        "SELECT sleep(3)",
        "SELECT throwIf(1)",
        "SELECT arrayReduce('sum', [1, 2])",
        # hidden deeper: subquery, CTE, lambda, JOIN ON, WHERE, ORDER BY, window, aggregate argument
        "SELECT * FROM (SELECT file('/etc/hostname') AS f)",
        "WITH t AS (SELECT file('/etc/hostname') AS f) SELECT * FROM t",
        "WITH file('/etc/hostname') AS f SELECT f",
        "SELECT arrayMap(x -> file(x), ['/etc/hostname'])",
        "SELECT 1 FROM results AS r JOIN alerts AS a ON r.district = hostName()",
        "SELECT 1 FROM results WHERE district IN (SELECT file('/etc/hostname'))",
        "SELECT 1 FROM results ORDER BY file('/etc/hostname')",
        "SELECT count() OVER (PARTITION BY file('/etc/hostname')) FROM results",
        "SELECT countIf(file('/etc/hostname') != '') FROM results",
        "SELECT quantiles(0.5)(length(file('/etc/hostname')))",
        "SELECT 1 UNION ALL SELECT file('/etc/hostname')",
        "SELECT fileIf('/etc/hostname', 1)",
    ],
)
def test_functions_off_the_allow_list_are_rejected(sql: str) -> None:
    with pytest.raises(QueryRejected, match=r"function \S+\(\) is not allowed"):
        guard_select(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT currentUser",
        "SELECT CURRENT_USER",
        "SELECT current_database",
        "SELECT user FROM results",
        "SELECT 1 FROM results WHERE hostName != ''",
    ],
)
def test_bare_identifiers_the_server_reads_as_functions_are_rejected(sql: str) -> None:
    # Modern ClickHouse answers `SELECT currentUser` with the user name.
    with pytest.raises(QueryRejected, match="also a server function"):
        guard_select(sql)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM file('/etc/hostname', 'TSV', 'line String')", "table functions"),
        ("SELECT * FROM numbers(10)", "table functions"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "table functions"),
        ("SELECT * FROM results JOIN url('http://x/', 'CSV', 'a String') AS u ON 1", "table functions"),
        ("SELECT * FROM (SELECT * FROM s3('http://x/a.csv'))", "table functions"),
        ("SELECT * FROM cluster('default', system.one)", "table functions"),
        ("SELECT * FROM input('a String')", "table functions"),
        ("SELECT * FROM view(SELECT 1)", "table functions"),
        ("SELECT * FROM system.tables", "foodrisk database"),
        ("SELECT name FROM system.users", "foodrisk database"),
        ("SELECT * FROM information_schema.tables", "foodrisk database"),
        ("SELECT * FROM INFORMATION_SCHEMA.TABLES", "foodrisk database"),
        ("SELECT * FROM other.results", "foodrisk database"),
        ("SELECT * FROM results WHERE 1 IN (SELECT 1 FROM system.one)", "foodrisk database"),
        ("WITH t AS (SELECT * FROM system.processes) SELECT * FROM t", "foodrisk database"),
        ("SELECT * FROM results AS r JOIN system.one AS o ON 1", "foodrisk database"),
        ("SELECT 1 WHERE 1 IN system.one", "IN <table>"),
        ("SELECT 1 WHERE 1 IN results", "IN <table>"),
    ],
)
def test_tables_outside_the_database_are_rejected(sql: str, why: str) -> None:
    with pytest.raises(QueryRejected, match=why):
        guard_select(sql)


def test_the_database_is_the_one_asked_for() -> None:
    assert guard_select("SELECT * FROM foodrisk_t1.results", database="foodrisk_t1")
    with pytest.raises(QueryRejected, match="foodrisk_t1 database"):
        guard_select("SELECT * FROM foodrisk.results", database="foodrisk_t1")


@pytest.mark.parametrize(
    "name",
    ["count", "COUNT", "countIf", "uniqExactIf", "sumMergeState", "avgOrNullIf", "quantilesTDigestIf", "toStartOfHour"],
)
def test_allowed_function_names(name: str) -> None:
    assert function_allowed(name)


@pytest.mark.parametrize("name", ["file", "FILE", "fileIf", "lowerIf", "dictGetIf", "url", "remoteSecure", "s3Cluster"])
def test_refused_function_names(name: str) -> None:
    assert not function_allowed(name)


# --------------------------------------------------------------------------------------------
# Parameters: bound in the parsed statement, both syntaxes


def test_pyformat_and_clickhouse_placeholders_are_bound() -> None:
    assert body("SELECT * FROM results WHERE commodity = %(c)s LIMIT 20", {"c": "cowpea"}) == (
        "SELECT * FROM results WHERE commodity = 'cowpea' LIMIT 20"
    )
    assert body("SELECT * FROM results WHERE commodity = {c:String} AND ratio > {r:Float64}", {"c": "x", "r": 1}) == (
        "SELECT * FROM results WHERE commodity = CAST('x' AS String) AND ratio > CAST(1 AS Float64)"
    )


def test_a_placeholder_inside_a_string_stays_text() -> None:
    # The reproduced hole: %-formatting pasted the value into the quotes, and it became code.
    exploit = {"a": "AS w, file(char(47,101,116,99,47,104,111,115,116,110,97,109,101)) AS x, "}
    with pytest.raises(QueryRejected, match="not used by the query: a"):
        guard_select("SELECT '%(a)s' AS v", exploit)
    assert body("SELECT '%(a)s' AS v, '{a:String}' AS w") == "SELECT '%(a)s' AS v, '{a:String}' AS w"
    assert body("SELECT 1 AS v -- %(a)s\n") == "SELECT 1 AS v"
    # The same value bound where a placeholder is code is one string literal, nothing more.
    assert body("SELECT %(a)s AS v", exploit) == f"SELECT '{exploit['a']}' AS v"


def test_values_are_escaped_for_every_clickhouse() -> None:
    value = "x'y\\z\n\t\0\"`"
    assert body("SELECT %(a)s AS v", {"a": value}) == "SELECT 'x\\'y\\\\z\\n\\t\\0\"`' AS v"


def test_spaced_percent_is_no_placeholder() -> None:
    with pytest.raises(QueryRejected):
        guard_select("SELECT 5 % (a) s", {"a": 1})


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, "NULL"),
        (True, "1"),
        (7, "7"),
        (-7, "-7"),
        (1.5, "1.5"),
        (float("inf"), "toFloat64('inf')"),
        (Decimal("1.25"), "1.25"),
        ("a", "'a'"),
        ([1, 2], "[1, 2]"),
        (("a", "b"), "('a', 'b')"),
        (
            dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
            "toDateTime('2026-01-01 19:04:05', 'UTC')",
        ),
        (dt.date(2026, 1, 2), "toDate('2026-01-02')"),
        (uuid.UUID(int=1), "toUUID('00000000-0000-0000-0000-000000000001')"),
    ],
)
def test_python_values_become_literals(value: Any, literal: str) -> None:
    assert body("SELECT %(v)s AS v", {"v": value}) == f"SELECT {literal} AS v"


def test_a_list_after_in_is_a_tuple() -> None:
    assert body("SELECT 1 FROM alerts WHERE kind IN %(k)s", {"k": ["a", "b"]}) == (
        "SELECT 1 FROM alerts WHERE kind IN ('a', 'b')"
    )


@pytest.mark.parametrize(
    ("sql", "params", "why"),
    [
        ("SELECT %(a)s, {b:UInt8}", {"a": 1}, "no value for parameter.*: b"),
        ("SELECT 1", {"x": 1}, "not used by the query: x"),
        ("SELECT ?", None, "placeholders are written"),
        ("SELECT :x", {"x": 1}, "placeholders are written"),
        ("SELECT @x", None, "unbound parameter"),
        ("SELECT %(a)s", {"a": {"k": 1}}, "cannot bind a dict"),
    ],
)
def test_parameter_mistakes_are_named(sql: str, params: dict[str, Any] | None, why: str) -> None:
    with pytest.raises(QueryRejected, match=why):
        guard_select(sql, params)


def test_params_must_be_a_mapping() -> None:
    with pytest.raises(QueryRejected, match="params"):
        guard_select("SELECT 1", ["a"])  # type: ignore[arg-type]


def test_render_formats() -> None:
    cols = ["district", "tests"]
    rows: list[list[Any]] = [["天河 Tianhe", 3], ["Liwan", None]]
    table = render(cols, rows)
    lines = table.splitlines()
    assert lines[0].split() == ["district", "tests"]
    assert "天河 Tianhe  3" in lines[2]
    assert render(cols, rows, "csv").splitlines() == ["district,tests", "天河 Tianhe,3", "Liwan,"]
    assert render(cols, rows, "json").splitlines()[1] == '{"district":"Liwan","tests":null}'
