"""`foodrisk votes import` against real ClickHouse (chdb and Debian's 18.16 server): rows stored with
their ranks, a period imported again replaced (citizen_votes_latest), unknown categories listed and
refused unless --allow-unknown, the command line end to end on the server."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.localstack.clickhouse_server import ClickHouseServer
from pipeline.settings import Settings
from pipeline.votes_cmd import run_votes_import
from sinks.clickhouse import ClickHouse
from sinks.ddl import migrate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)


class _Kept:
    """The test's connection, handed to the command (which closes what it opens)."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch

    def __call__(self, settings: Settings) -> ClickHouse:
        ch = self.ch

        class NoClose:
            def __getattr__(self, name: str) -> object:
                return getattr(ch, name)

            def close(self) -> None:
                pass

        return NoClose()  # type: ignore[return-value]  # duck-typed ClickHouse for the test


def run(ch: ClickHouse, path: Path, *, allow_unknown: bool = False, now: dt.datetime = T) -> tuple[int, str, str]:
    settings = Settings(clickhouse_url="clickhouse://default:@127.0.0.1:9000", clickhouse_database=ch.database)
    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(file=path, allow_unknown=allow_unknown, dry_run=False)
    code = run_votes_import(args, settings, open_writer=_Kept(ch), now=now, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def latest(ch: ClickHouse, period: str) -> list[tuple[object, ...]]:
    return ch.query(
        "SELECT category, label, votes, rank FROM citizen_votes_latest WHERE period = %(p)s ORDER BY rank",
        {"p": period},
    ).rows


def test_import_stores_ranked_categories_and_a_reimport_replaces_the_period(ch: ClickHouse, tmp_path: Path) -> None:
    migrate(ch, ch.database)
    first = tmp_path / "nov.csv"
    rows = "category,votes,period\n豇豆,1200,2026-11\n菜心,900,2026-11\n大白菜,30,2026-10\n"
    first.write_text(rows, encoding="utf-8")
    code, out, err = run(ch, first)
    assert code == 0, err
    assert "2026-11 priority categories: 1. cowpea (1200), 2. choy_sum (900)" in out
    assert [r[0] for r in latest(ch, "2026-11")] == ["cowpea", "choy_sum"]
    again = tmp_path / "nov2.csv"
    again.write_text("category,votes,period\n菜心,50,2026-11\n", encoding="utf-8")
    code, _, err = run(ch, again)  # the same second: moved past the stored import
    assert code == 0, err
    assert latest(ch, "2026-11") == [("choy_sum", "菜心", 50, 1)]
    assert [r[0] for r in latest(ch, "2026-10")] == ["chinese_cabbage"]  # another period stays
    times = ch.query("SELECT DISTINCT imported_at FROM citizen_votes ORDER BY imported_at").rows
    assert len(times) == 2  # both imports kept; the view reads the latest per period


def test_unknown_categories_are_listed_and_refused_unless_allowed(ch: ClickHouse, tmp_path: Path) -> None:
    migrate(ch, ch.database)
    path = tmp_path / "v.csv"
    path.write_text("category,votes,period\n豇豆,10,2026-11\n火星土豆,99,2026-11\n", encoding="utf-8")
    code, _, err = run(ch, path)
    assert code == 1
    assert f"{path}:3: unknown_category" in err and "火星土豆" in err and "nothing imported" in err
    assert latest(ch, "2026-11") == []
    code, out, err = run(ch, path, allow_unknown=True)
    assert code == 0 and "火星土豆" in err and "1 unknown left out" in out
    assert latest(ch, "2026-11") == [("cowpea", "豇豆", 10, 1)]


def test_command_line_on_the_server(ch_server: ClickHouse, clickhouse_server: ClickHouseServer, tmp_path: Path) -> None:
    migrate(ch_server, ch_server.database)
    path = tmp_path / "v.csv"
    path.write_text("类别,票数,月份\n菜心,7,2026年11月\n未知食品,1,2026-11\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOODRISK_")}
    env["FOODRISK_CLICKHOUSE_URL"] = f"clickhouse://default:@{clickhouse_server.host}:{clickhouse_server.tcp_port}"
    env["FOODRISK_CLICKHOUSE_DATABASE"] = ch_server.database
    cmd = [sys.executable, "-m", "pipeline.cli", "votes", "import", str(path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False)
    assert res.returncode == 1 and ":3: unknown_category" in res.stderr
    res = subprocess.run([*cmd, "--allow-unknown"], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert latest(ch_server, "2026-11") == [("choy_sum", "菜心", 7, 1)]
