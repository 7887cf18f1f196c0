"""`foodrisk rescreen`: stored results screened again with another edition, compared with what is
stored, read from ClickHouse as `foodrisk query` reads (chdb opened by the command itself, and
Debian's 18.16 server over clickhouse://); nothing is written."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.records import result_values
from pipeline.cli import main
from pipeline.query.client import SelectReader
from pipeline.rescreen_cmd import parse_when, run_rescreen
from pipeline.settings import Settings
from schemas.reference import default_reference, load_reference
from schemas.rescreen import Change
from schemas.result import parse_result
from schemas.rules import screen
from sinks.clickhouse import ChdbBackend, ClickHouse, DriverBackend
from sinks.ddl import RESULTS_COLUMNS, migrate
from sinks.writer import ClickHouseWriter
from tests.integration.conftest import fresh_database_name
from tests.integration.factories import SAMPLED, result
from tests.integration.test_reference_reload import NOW, pick_limit
from tests.reference_copy import copy_reference, set_limit

pytestmark = pytest.mark.integration


def _store(ch: ClickHouse, messages: list[dict[str, Any]]) -> None:
    ref = default_reference()
    rows = []
    for i, m in enumerate(messages):
        r = parse_result(orjson.dumps(m), reference=ref, now=NOW)
        values = result_values(r, screen(r, ref), src_topic="t", src_partition=0, src_offset=i,
                               ingested_at=NOW, reference_edition=ref.edition)
        rows.append(tuple(values[c] for c in RESULTS_COLUMNS))
    writer = ClickHouseWriter(ch, database=ch.database)
    try:
        asyncio.run(writer.insert("results", RESULTS_COLUMNS, rows))
    finally:
        writer.close()


@pytest.fixture(params=["chdb", "server"])
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    db = fresh_database_name()
    ch: ClickHouse
    if request.param == "chdb":
        path = request.getfixturevalue("chdb_path")
        ch, url = ChdbBackend(path, database=db), f"chdb://{path}"
    else:
        server = request.getfixturevalue("clickhouse_server")
        ch, url = DriverBackend(server.host, server.tcp_port, database=db), f"clickhouse://default:@{server.host}:{server.tcp_port}"
    migrate(ch, db)
    yield ch, Settings(clickhouse_url=url, clickhouse_database=db, data_dir=tmp_path / "data", query_port=0)
    ch.execute(f"DROP DATABASE IF EXISTS `{db}`")
    ch.close()


def test_rescreen_counts_what_a_lowered_limit_changes(stored: Any, tmp_path: Path, capsys: Any) -> None:
    ch, settings = stored
    ref = default_reference()
    analyte, food, limit = pick_limit(ref)
    n_low, n_mid, n_other = 300, 200, 100
    def lab(prefix: str, i: int, share: float, offset: timedelta) -> dict[str, Any]:
        return result(f"{prefix}-{i:04d}", analyte=analyte, commodity=food, method="lc_msms",
                      value=share * limit.limit_mg_kg, unit="mg/kg", loq=0.01 * limit.limit_mg_kg,
                      sampled_at=SAMPLED + offset)

    # 0.05 x the limit: compliant before and after it is lowered to 0.2 x; 0.4 x: compliant, then exceeds
    messages = [lab("low", i, 0.05, timedelta(minutes=i)) for i in range(n_low)]
    messages += [lab("mid", i, 0.4, timedelta(minutes=i, seconds=30)) for i in range(n_mid)]
    # enzyme screens: untouched by the limit
    messages += [result(f"enz-{i:04d}", value=10.0, sampled_at=SAMPLED + timedelta(hours=1, minutes=i))
                 for i in range(n_other)]
    messages.append(result("before", value=80.0, sampled_at=SAMPLED - timedelta(days=3)))  # before --since
    _store(ch, messages)
    before = ch.query("SELECT count(), sum(cityHash64(verdict, reference_edition)) FROM results FINAL").rows

    directory = copy_reference(tmp_path / "lowered")
    set_limit(directory, limit, 0.2 * limit.limit_mg_kg)
    new_edition = load_reference(directory).edition

    out, err = io.StringIO(), io.StringIO()
    reader = SelectReader(settings)
    started = time.monotonic()
    try:
        tally = run_rescreen(
            settings, reader, directory=directory, since=parse_when(SAMPLED.date().isoformat(), "--since"),
            until=SAMPLED + timedelta(days=2), fmt="json", out=out, err=err, now=NOW, page_rows=128,
        )
    finally:
        reader.close()
    elapsed = time.monotonic() - started
    n = n_low + n_mid + n_other
    with capsys.disabled():
        print(f"\nrescreen: {n} results in {elapsed:.2f} s = {n / elapsed:,.0f} results/s (pages of 128)")
    assert tally.results == n  # the result sampled before --since is not read; each other one once
    total = tally.total()
    assert total[Change.newly_exceeding] == n_mid
    assert total[Change.limit_changed] == n_low  # still compliant, against the lowered limit
    assert total[Change.unchanged] == n_other
    assert total[Change.newly_compliant] == total[Change.other_change] == 0
    assert tally.transitions == {("compliant", "exceeds"): n_mid}
    assert tally.stored_editions == {ref.edition: n}
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [
        {"commodity": food, "analyte": analyte, "results": n_low + n_mid, "newly_exceeding": n_mid,
         "newly_compliant": 0, "other_change": 0, "limit_changed": n_low, "unchanged": 0},
        {"commodity": "TOTAL", "analyte": "", "results": n, "newly_exceeding": n_mid, "newly_compliant": 0,
         "other_change": 0, "limit_changed": n_low, "unchanged": n_other},
    ]
    assert new_edition in err.getvalue() and "compliant -> exceeds: 200" in err.getvalue()
    assert err.getvalue().count("results read") == -(-n // 128)  # progress per page
    # history is not rewritten
    assert ch.query("SELECT count(), sum(cityHash64(verdict, reference_edition)) FROM results FINAL").rows == before

    # the command line, as an operator runs it (table by default)
    env = {"FOODRISK_CLICKHOUSE_URL": settings.clickhouse_url, "FOODRISK_CLICKHOUSE_DATABASE": settings.database,
           "FOODRISK_DATA_DIR": str(settings.data_dir), "FOODRISK_QUERY_PORT": "0"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        capsys.readouterr()
        code = main(["rescreen", "--edition", str(directory), "--since", SAMPLED.date().isoformat(),
                     "--format", "csv"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.splitlines()[-1] == f"TOTAL,,{n},{n_mid},0,0,{n_low},{n_other}"
