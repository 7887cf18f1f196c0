"""`foodrisk publish --period YYYY-MM --out DIR`: the shell. It reads the period's results from
ClickHouse as `foodrisk query` reads (guarded SELECTs: through the running worker's query port with
chdb, else the database opened here; clickhouse:// directly), hands plain rows to the pure
:mod:`pipeline.publish.tally` and :mod:`pipeline.publish.page`, and writes the files.

A period is a calendar month in China (Asia/Shanghai): ``2026-11`` is sampled_at in
[2026-11-01 00:00 +08:00, 2026-12-01 00:00 +08:00).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pipeline.publish.page import render_site
from pipeline.publish.tally import (
    CountRow,
    FollowUps,
    Names,
    Priority,
    Report,
    ResultRow,
    build_report,
    follow_ups,
)
from schemas.reference import CHINA_TZ
from schemas.votes import PRIORITY_CATEGORIES
from sinks.clickhouse import quote_identifier

Select = Callable[[str, dict[str, str], int], tuple[list[str], list[list[Any]], bool]]
MAX_ROWS = 1_000_000
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

FINDING_COLUMNS = (
    "result_id", "sample_id", "method", "quick", "verdict", "vendor_id", "site_name", "district", "site_type",
    "commodity", "analyte", "value_mg_kg", "limit_mg_kg", "basis", "sampled_at",
)


class PublishError(ValueError):
    """The period cannot be published as asked (a bad period, more groups than a page can hold)."""


def parse_period(text: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` -> [start, end) as naive UTC (the month's days in China)."""
    m = _PERIOD.match(text)
    if m is None:
        raise PublishError(f"--period {text!r}: expected a month, YYYY-MM (e.g. 2026-11)")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=CHINA_TZ)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=CHINA_TZ)
    return (start.astimezone(UTC).replace(tzinfo=None), end.astimezone(UTC).replace(tzinfo=None))


def _window(start: datetime, end: datetime) -> tuple[str, dict[str, str]]:
    where = "sampled_at >= toDateTime(%(start)s, 'UTC') AND sampled_at < toDateTime(%(end)s, 'UTC')"
    return where, {"start": start.strftime("%Y-%m-%d %H:%M:%S"), "end": end.strftime("%Y-%m-%d %H:%M:%S")}


def counts_query(database: str, start: datetime, end: datetime) -> tuple[str, dict[str, str]]:
    """The period's results counted by commodity, district, site type, quick or lab and verdict (FINAL:
    a result stored twice is one result)."""
    where, params = _window(start, end)
    table = f"{quote_identifier(database)}.results"
    sql = (  # a quoted identifier and fixed text; the times are bound parameters
        "SELECT commodity, district, site_type, quick, verdict, count() AS tests "  # noqa: S608
        f"FROM {table} FINAL WHERE {where} "
        "GROUP BY commodity, district, site_type, quick, verdict "
        "ORDER BY commodity, district, site_type, quick, verdict"
    )
    return sql, params


def findings_query(database: str, start: datetime, end: datetime) -> tuple[str, dict[str, str]]:
    """The lab results of the period judged ``exceeds`` or ``banned``: the only rows read with a vendor.
    Quick screens are left out here, and again by the pure rules."""
    where, params = _window(start, end)
    table = f"{quote_identifier(database)}.results"
    sql = (  # as above
        f"SELECT {', '.join(FINDING_COLUMNS)} FROM {table} FINAL "  # noqa: S608
        f"WHERE {where} AND quick = 0 AND verdict IN ('exceeds', 'banned') ORDER BY sampled_at, result_id"
    )
    return sql, params


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    ts = datetime.fromisoformat(str(value))
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _rows(select: Select, sql: str, params: dict[str, str], what: str) -> list[dict[str, Any]]:
    cols, rows, truncated = select(sql, params, MAX_ROWS)
    if truncated:
        raise PublishError(f"{what}: more than {MAX_ROWS:,} rows; publish a shorter period")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def read_counts(select: Select, database: str, start: datetime, end: datetime) -> list[CountRow]:
    sql, params = counts_query(database, start, end)
    return [
        CountRow(commodity=str(r["commodity"]), district=str(r["district"]), site_type=str(r["site_type"]),
                 quick=bool(int(r["quick"])), verdict=str(r["verdict"]), tests=int(r["tests"]))
        for r in _rows(select, sql, params, "counts")
    ]


def read_findings(select: Select, database: str, start: datetime, end: datetime) -> list[ResultRow]:
    sql, params = findings_query(database, start, end)
    return [
        ResultRow(
            result_id=str(r["result_id"]), sample_id=str(r["sample_id"]), method=str(r["method"]),
            quick=bool(int(r["quick"])), verdict=str(r["verdict"]),
            vendor_id=None if r["vendor_id"] is None else str(r["vendor_id"]), site_name=str(r["site_name"]),
            district=str(r["district"]), site_type=str(r["site_type"]), commodity=str(r["commodity"]),
            analyte=str(r["analyte"]), value_mg_kg=_float(r["value_mg_kg"]), limit_mg_kg=_float(r["limit_mg_kg"]),
            basis=str(r["basis"]), sampled_at=_time(r["sampled_at"]),
        )
        for r in _rows(select, sql, params, "findings")
    ]


def quick_positives_query(database: str, start: datetime, end: datetime) -> tuple[str, dict[str, str]]:
    """The ids of the period's quick positives (nothing else of them is read)."""
    where, params = _window(start, end)
    table = f"{quote_identifier(database)}.results"
    sql = (  # as above
        f"SELECT result_id FROM {table} FINAL "  # noqa: S608
        f"WHERE {where} AND quick = 1 AND verdict IN ('positive', 'exceeds', 'banned') ORDER BY result_id"
    )
    return sql, params


def lab_follow_ups_query(database: str, start: datetime) -> tuple[str, dict[str, str]]:
    """Lab results that follow up a quick test (``confirms``), sampled from the period's start on: a
    confirmation made after the month ended counts when the period is published again."""
    params = {"start": start.strftime("%Y-%m-%d %H:%M:%S")}
    table = f"{quote_identifier(database)}.results"
    sql = (  # as above
        f"SELECT confirms, verdict FROM {table} FINAL "  # noqa: S608
        "WHERE sampled_at >= toDateTime(%(start)s, 'UTC') AND quick = 0 AND confirms IS NOT NULL AND confirms != '' "
        "ORDER BY confirms, verdict"
    )
    return sql, params


def read_follow_ups(select: Select, database: str, start: datetime, end: datetime) -> FollowUps:
    sql, params = quick_positives_query(database, start, end)
    ids = [str(r["result_id"]) for r in _rows(select, sql, params, "quick positives")]
    sql, params = lab_follow_ups_query(database, start)
    labs = [(str(r["confirms"]), str(r["verdict"])) for r in _rows(select, sql, params, "lab follow-ups")]
    return follow_ups(ids, labs)


def priorities_query(database: str, period: str) -> tuple[str, dict[str, str]]:
    """The period's priority categories from the latest import of its votes (migration 9's view)."""
    view = f"{quote_identifier(database)}.citizen_votes_latest"
    sql = (  # a quoted identifier and fixed text; the period is a bound parameter
        f"SELECT category, label, votes, rank FROM {view} "  # noqa: S608
        f"WHERE period = %(period)s AND rank BETWEEN 1 AND {int(PRIORITY_CATEGORIES)} ORDER BY rank, category"
    )
    return sql, {"period": period}


def read_priorities(select: Select, database: str, period: str) -> list[Priority]:
    """The citizens' top-10 categories of the period (none when no votes were imported for it)."""
    sql, params = priorities_query(database, period)
    return [
        Priority(category=str(r["category"]), label=str(r["label"]), votes=int(r["votes"]), rank=int(r["rank"]))
        for r in _rows(select, sql, params, "votes")
    ]


def write_site(files: dict[str, str], out: Path) -> None:
    """Each file written whole (a temporary file renamed over it), so a reader never sees half a page."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(files.items()):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)


def publish(
    select: Select, *, database: str, period: str, names: Names, out: Path, generated_at: datetime,
) -> tuple[Report, list[str]]:
    """Read, build, render and write one period's site; returns the report and the file names."""
    start, end = parse_period(period)
    counts = read_counts(select, database, start, end)
    findings = read_findings(select, database, start, end)
    priorities = read_priorities(select, database, period)
    follow_up = read_follow_ups(select, database, start, end)
    report = build_report(period, counts, findings, priorities, names, follow_up=follow_up,
                          generated_at=generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    files = render_site(report)
    write_site(files, out)
    return report, sorted(files)


def summary_line(report: Report, out: Path, names: Sequence[str]) -> str:
    t = report.total
    return (f"published {report.period} to {out}: {len(names)} files; {t.tests:,} tests ({t.lab_tests:,} lab, "
            f"{t.quick_tests:,} quick), {t.lab_noncompliant:,} lab non-compliant ({len(report.findings):,} named), "
            f"{t.quick_positive:,} quick positives counted ({report.follow_ups.confirmed:,} confirmed by a lab), "
            f"{t.not_judged:,} not judged")


def print_summary(report: Report, out: Path, names: Sequence[str], stream: TextIO) -> None:
    print(summary_line(report, out, names), file=stream)
