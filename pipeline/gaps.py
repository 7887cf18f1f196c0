"""`foodrisk reference gaps`: the labels the reference data did not know, as ClickHouse saw them.

A result whose commodity or analyte label is not in the reference data is stored with verdict
``unclassified`` and rule ``unknown_food`` (the commodity label) or ``unknown_analyte`` (the analyte
label). This lists each such label once: which field, the label, how many results, first and last
``sampled_at`` (UTC), and at how many sites and from how many devices, most frequent first. The data
steward adds each as an alias of a food or analyte, or adds the food (schemas/reference/).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TextIO

from pipeline.settings import Settings
from sinks.clickhouse import quote_identifier

GAP_COLUMNS = ("field", "label", "results", "first_seen", "last_seen", "sites", "devices")
MAX_ROWS = 10_000

Select = Callable[[Settings, str, dict[str, str], int], tuple[list[str], list[list[object]], bool]]


def parse_since(text: str) -> datetime:
    """``YYYY-MM-DD`` (00:00 UTC that day) or an ISO time with a zone, as naive UTC."""
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day)  # noqa: DTZ001 - naive UTC, as ClickHouse takes it
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected YYYY-MM-DD or an ISO time with a zone") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: a time needs a zone, e.g. 2026-11-28T08:00:00+08:00")
    return ts.astimezone(UTC).replace(tzinfo=None)


def gaps_query(database: str, since: datetime | None) -> tuple[str, dict[str, str]]:
    """The SELECT (guarded like every `foodrisk query`) and its parameters."""
    table = f"{quote_identifier(database)}.results"
    where = "verdict = 'unclassified'"
    params: dict[str, str] = {}
    if since is not None:
        where += " AND sampled_at >= toDateTime(%(since)s, 'UTC')"
        params["since"] = since.strftime("%Y-%m-%d %H:%M:%S")
    # FINAL: a result stored twice (a resend, a replay) is one result.
    sql = (  # a quoted identifier and fixed text; the date is a bound parameter
        "SELECT field, label, count() AS results, min(sampled_at) AS first_seen, max(sampled_at) AS last_seen, "  # noqa: S608
        "uniqExact(site_id) AS sites, uniqExact(device_id) AS devices "
        "FROM (SELECT if(rule = 'unknown_analyte', 'analyte', 'commodity') AS field, "
        "if(rule = 'unknown_analyte', analyte, commodity) AS label, sampled_at, site_id, device_id "
        f"FROM {table} FINAL WHERE {where}) "
        "GROUP BY field, label ORDER BY results DESC, last_seen DESC, field, label"
    )
    return sql, params


def run_gaps(args: argparse.Namespace, settings: Settings, select: Select, out: TextIO = sys.stdout) -> int:
    """Print the gaps (table, csv or json lines); with none, say so. Exit 0 either way."""
    from pipeline.query.render import render

    sql, params = gaps_query(settings.database, args.since)
    cols, rows, truncated = select(settings, sql, params, MAX_ROWS)
    since = f" since {args.since:%Y-%m-%d %H:%M} UTC" if args.since is not None else ""
    if not rows:
        message = (f"No unknown labels seen{since}: every commodity and analyte screened is in the reference data "
                   "(no result is unclassified).")
        if args.format == "table":
            print(message, file=out)
        else:  # csv keeps its header, json lines stay empty; the message goes beside the data
            if args.format == "csv":
                print(render(cols, rows, "csv"), file=out)
            print(message, file=sys.stderr)  # noqa: T201
        return 0
    print(render(cols, rows, args.format), file=out)
    if args.format == "table":
        n = sum(int(str(r[2])) for r in rows)
        print(f"\n{len(rows)} unknown label(s), {n} unclassified result(s){since}. Add each as an alias of a food "
              "(schemas/reference/foods.csv) or an analyte, or add the food; then `make reference`.", file=out)
    if truncated:
        print(f"(first {MAX_ROWS} labels shown)", file=sys.stderr)  # noqa: T201
    return 0
