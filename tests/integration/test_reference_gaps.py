"""`foodrisk reference gaps` against real ClickHouse (chdb and Debian's 18.16 server): the unknown
labels of unclassified results, by field, most frequent first, each result counted once; a clear
message when there are none; the command line end to end on the server."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.gaps import GAP_COLUMNS, gaps_query, parse_since, run_gaps
from pipeline.localstack.clickhouse_server import ClickHouseServer
from pipeline.query.guard import guard_select
from pipeline.settings import Settings
from sinks.clickhouse import ClickHouse
from sinks.ddl import RESULTS_COLUMNS, migrate
from tests.integration.test_clickhouse import T0, result_row

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def unclassified(
    i: int, field: str, label: str, *, site: str, device: str, minutes: int, **over: Any
) -> tuple[Any, ...]:
    labels: dict[str, Any] = {"commodity": label} if field == "commodity" else {"analyte": label}
    return result_row(
        i, verdict="unclassified", rule="unknown_food" if field == "commodity" else "unknown_analyte",
        limit_mg_kg=None, confidence=None, edition=None, basis="not in the reference data", site_id=site,
        device_id=device, sampled_at=T0 + dt.timedelta(minutes=minutes), **labels, **over,
    )


def seed(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    rows = [
        unclassified(1, "commodity", "上海青", site="m-1", device="d-1", minutes=0),
        unclassified(2, "commodity", "上海青", site="m-2", device="d-2", minutes=30),
        unclassified(3, "commodity", "上海青", site="m-2", device="d-3", minutes=90),
        unclassified(4, "analyte", "农药残留", site="m-1", device="d-1", minutes=10),
        unclassified(5, "analyte", "农药残留", site="m-1", device="d-1", minutes=2 * 24 * 60),
        unclassified(6, "commodity", "dragon_fruit_x", site="m-3", device="d-4", minutes=3 * 24 * 60),
        result_row(7, verdict="no_limit"),  # a known food with nothing in force: not a gap
        result_row(8),
    ]
    ch.insert(f"{ch.database}.results", RESULTS_COLUMNS, rows)
    # The same results stored again (a device resending, a replay): each still counts once.
    ch.insert(f"{ch.database}.results", RESULTS_COLUMNS, rows[:3])


def run(ch: ClickHouse, since: dt.datetime | None = None, fmt: str = "json") -> tuple[int, str]:
    def select(settings: Settings, sql: str, params: dict[str, str], max_rows: int) -> Any:
        res = ch.query(guard_select(sql, params, database=ch.database, max_rows=max_rows))
        return list(res.columns), [list(r) for r in res.rows], False

    out = io.StringIO()
    settings = Settings(clickhouse_url="clickhouse://default:@127.0.0.1:9000", clickhouse_database=ch.database)
    code = run_gaps(argparse.Namespace(since=since, format=fmt), settings, select, out)
    return code, out.getvalue()


def test_gaps_list_each_unknown_label_once_most_frequent_first(ch: ClickHouse) -> None:
    seed(ch)
    code, text = run(ch)
    assert code == 0
    rows = [json.loads(line) for line in text.splitlines()]
    assert [tuple(r) for r in rows] == [GAP_COLUMNS] * 3
    assert [(r["field"], r["label"], r["results"], r["sites"], r["devices"]) for r in rows] == [
        ("commodity", "上海青", 3, 2, 3),
        ("analyte", "农药残留", 2, 1, 1),
        ("commodity", "dragon_fruit_x", 1, 1, 1),
    ]
    first = rows[0]
    assert first["first_seen"].startswith("2024-05-01T08:00") and first["last_seen"].startswith("2024-05-01T09:30")

    code, text = run(ch, since=parse_since("2024-05-02"))
    assert [json.loads(line)["label"] for line in text.splitlines()] == ["dragon_fruit_x", "农药残留"]  # latest first
    assert [json.loads(line)["results"] for line in text.splitlines()] == [1, 1]

    code, table = run(ch, fmt="table")
    assert code == 0 and "上海青" in table and "3 unknown label(s), 6 unclassified result(s)" in table


def test_no_gaps_says_so(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    ch.insert(f"{ch.database}.results", RESULTS_COLUMNS, [result_row(1), result_row(2, verdict="no_limit")])
    code, text = run(ch, fmt="table")
    assert code == 0
    assert text.startswith("No unknown labels seen: every commodity and analyte screened is in the reference data")
    code, text = run(ch, since=parse_since("2024-05-01T16:00:00+08:00"), fmt="table")
    assert "No unknown labels seen since 2024-05-01 08:00 UTC" in text


def test_since_takes_a_date_or_a_zoned_time() -> None:
    assert parse_since("2026-11-28") == dt.datetime(2026, 11, 28)  # noqa: DTZ001 - naive UTC
    assert parse_since("2026-11-28T08:00:00+08:00") == dt.datetime(2026, 11, 28)  # noqa: DTZ001
    for bad in ("2026-11-28T08:00:00", "yesterday"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_since(bad)
    sql, params = gaps_query("foodrisk", None)
    assert "FINAL" in sql and "verdict = 'unclassified'" in sql and params == {}


def test_command_line_on_the_server(ch_server: ClickHouse, clickhouse_server: ClickHouseServer) -> None:
    seed(ch_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOODRISK_")}
    env["FOODRISK_CLICKHOUSE_URL"] = (
        f"clickhouse://default:@{clickhouse_server.host}:{clickhouse_server.tcp_port}/{ch_server.database}"
    )
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "reference", "gaps", "--format", "csv"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == ",".join(GAP_COLUMNS)
    assert lines[1].startswith("commodity,上海青,3,") and len(lines) == 4
