"""The ClickHouse access layer against real engines: chdb 26.x in-process and Debian's 18.16 server."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pipeline.localstack.clickhouse_server import ClickHouseServer
from sinks.clickhouse import ChdbBackend, ClickHouse, DriverBackend, Features, connect_clickhouse
from sinks.ddl import (
    ALERTS_COLUMNS,
    DEADLETTERS_COLUMNS,
    HOURLY_VIEW_COLUMNS,
    MIGRATIONS,
    RESULTS_COLUMNS,
    migrate,
)
from sinks.errors import ClickHouseError, ClickHouseUnavailable
from sinks.retry import RetryPolicy, is_transient, retry_sync
from sinks.writer import ClickHouseWriter

pytestmark = pytest.mark.integration

T0 = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
WEIRD = 'it\'s a \\ back\\slash, "quotes", 中文 天河区, tab\tnewline\n%(x)s %s 😀'


def result_row(i: int, *, verdict: str = "compliant", ratio: float | None = None, **over: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "result_id": f"r-{i:06d}",
        "schema_version": 1,
        "sample_id": f"s-{i}",
        "device_id": f"dev-{i % 7}",
        "site_id": f"site-{i % 5}",
        "site_type": "farmers_market",
        "district": "天河",
        "site_name": "石牌农贸市场",
        "vendor_id": None,
        "supplier_id": f"sup-{i % 3}" if i % 2 else None,
        "origin": None,
        "commodity": "cowpea",
        "analyte": "isocarbophos",
        "method": "lc_msms",
        "quick": 0,
        "value_mg_kg": 0.01 * i if i % 3 else None,
        "percent": None,
        "raw_value": 0.01 * i,
        "raw_unit": "mg/kg",
        "qualitative": None,
        "lod_mg_kg": 0.005,
        "loq_mg_kg": 0.01,
        "sampled_at": T0 + dt.timedelta(minutes=i),
        "tested_at": T0 + dt.timedelta(minutes=i, seconds=30),
        "confirms": None,
        "verdict": verdict,
        "limit_mg_kg": 0.05,
        "ratio": ratio,
        "rule": "GB 2763-2021",
        "edition": "2021",
        "source": None,
        "confidence": "checked",
        "basis": "mrl",
        "src_topic": "foodrisk.results",
        "src_partition": i % 4,
        "src_offset": i,
        "ingested_at": T0 + dt.timedelta(hours=1),
        "reference_edition": "ref-0123456789ab",
    }
    unknown = set(over) - set(values)
    assert not unknown, unknown
    values.update(over)
    return tuple(values[c] for c in RESULTS_COLUMNS)


def alert_row(i: int, **over: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "alert_id": f"a-{i}",
        "kind": "banned_pesticide",
        "classification": "alert",
        "risk": "serious",
        "status": "open",
        "summary_en": "Banned pesticide in cowpea",
        "summary_zh": "豇豆检出禁用农药 '克百威'",
        "district": "天河",
        "site_id": None,
        "site_type": "supermarket",
        "commodity": "cowpea",
        "analyte": None,
        "supplier_id": "sup-1",
        "vendor_id": None,
        "device_id": "dev-1",
        "evidence": ["r-000001", "r-000002", WEIRD],
        "starts_at": T0,
        "ends_at": None,
        "details": '{"lot": "L-1", "note": "含\\"引号\\""}',
        "src_partition": 1,
        "src_offset": 10 + i,
        "ingested_at": T0,
    }
    values.update(over)
    return tuple(values[c] for c in ALERTS_COLUMNS)


def deadletter_row(i: int) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "src_topic": "foodrisk.results",
        "src_partition": 0,
        "src_offset": i,
        "src_item": -1,
        "received_at": T0,
        "failed_at": T0 + dt.timedelta(seconds=1),
        "key": None if i % 2 else f"k{i}",
        "payload": "{not json" + WEIRD,
        "errors": ["value_mg_kg: not a number", "sampled_at: missing"],
        "error_kind": "validation",
    }
    return tuple(values[c] for c in DEADLETTERS_COLUMNS)


def kind(ch: ClickHouse) -> str:
    return "chdb" if isinstance(ch, ChdbBackend) else "server"


# ---------------------------------------------------------------------------------------------


def test_migrate_creates_the_tables_and_twice_is_a_no_op(ch: ClickHouse) -> None:
    db = ch.database
    assert migrate(ch, db) == [m.version for m in MIGRATIONS]
    assert migrate(ch, db) == []
    assert migrate(ch, db) == []
    tables = {
        str(name): str(engine)
        for name, engine in ch.query("SELECT name, engine FROM system.tables WHERE database = %(db)s", {"db": db}).rows
    }
    assert tables == {
        "schema_migrations": "MergeTree",
        "results": "ReplacingMergeTree",
        "alerts": "ReplacingMergeTree",
        "deadletters": "ReplacingMergeTree",
        "results_hourly": "AggregatingMergeTree",
        "results_hourly_mv": "MaterializedView",
        "results_hourly_v": "View",
        "parked_alerts": "ReplacingMergeTree",
        "redlist": "ReplacingMergeTree",
        "sampling_plans": "ReplacingMergeTree",
        "sampling_plans_latest": "View",
        "citizen_votes": "ReplacingMergeTree",
        "citizen_votes_latest": "View",
    }
    recorded = ch.query("SELECT version, name FROM schema_migrations ORDER BY version").rows
    assert recorded == [(m.version, m.name) for m in MIGRATIONS]
    described = ch.query("DESCRIBE TABLE results")
    assert tuple(r[0] for r in described.rows) == RESULTS_COLUMNS


def test_features_follow_the_server_version(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    site_type = ch.query(
        "SELECT type FROM system.columns WHERE database = %(db)s AND table = 'results' AND name = 'site_type'",
        {"db": ch.database},
    ).scalar()
    if kind(ch) == "server":
        assert ch.server_version[:2] == (18, 16)
        assert ch.features == Features()
        assert site_type == "String"
    else:
        assert ch.server_version >= (24, 0, 0)
        assert ch.features == Features(True, True, True, True, True)
        assert site_type == "LowCardinality(String)"


def test_results_write_and_read_through_the_one_interface(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    rows = [
        result_row(i, verdict="exceeds" if i == 3 else "compliant", ratio=2.5 if i == 3 else None) for i in range(10)
    ]
    assert ch.insert(f"{ch.database}.results", RESULTS_COLUMNS, rows) == 10
    res = ch.query("SELECT * FROM results ORDER BY result_id")
    assert res.columns == list(RESULTS_COLUMNS)
    assert res.rows == rows
    assert res.dicts()[3]["ratio"] == 2.5
    assert isinstance(res.rows[0][RESULTS_COLUMNS.index("sampled_at")], dt.datetime)
    assert res.rows[0][RESULTS_COLUMNS.index("sampled_at")].utcoffset() == dt.timedelta(0)


def test_naive_datetimes_are_taken_as_utc(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    naive = T0.replace(tzinfo=None)
    ch.insert("results", RESULTS_COLUMNS, [result_row(1, sampled_at=naive, tested_at=naive)])
    got = ch.query("SELECT sampled_at, toUnixTimestamp(sampled_at) FROM results").rows[0]
    assert got == (T0, int(T0.timestamp()))


def test_results_inserted_twice_count_once_with_final(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    n = 50
    rows = [result_row(i) for i in range(n)]
    ch.insert("results", RESULTS_COLUMNS, rows)
    # The replay: same ids, later ingested_at, cut into different batches.
    replay = [result_row(i, ingested_at=T0 + dt.timedelta(hours=2)) for i in range(n)]
    ch.insert("results", RESULTS_COLUMNS, replay[:17])
    ch.insert("results", RESULTS_COLUMNS, replay[17:])
    assert ch.query("SELECT count() FROM results FINAL").scalar() == n
    assert ch.query("SELECT uniqExact(result_id) FROM results").scalar() == n
    latest = ch.query("SELECT max(ingested_at), min(ingested_at) FROM results FINAL").rows[0]
    assert latest == (T0 + dt.timedelta(hours=2), T0 + dt.timedelta(hours=2))


def test_hourly_rollup_is_not_doubled_by_a_replay(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    verdicts = {1: "positive", 2: "exceeds", 3: "exceeds", 4: "banned", 5: "watch"}
    ratios = {2: 1.5, 3: 4.0, 4: 0.7}
    rows = [result_row(i, verdict=verdicts.get(i, "compliant"), ratio=ratios.get(i)) for i in range(90)]
    rows.append(result_row(500, district="越秀", sampled_at=T0, tested_at=T0))  # a group without any ratio
    for _ in range(2):  # the replay
        ch.insert("results", RESULTS_COLUMNS, rows[:40])
        ch.insert("results", RESULTS_COLUMNS, rows[40:])
    res = ch.query("SELECT * FROM results_hourly_v ORDER BY hour, district")
    assert tuple(res.columns) == HOURLY_VIEW_COLUMNS
    got = [r for r in res.dicts() if r["district"] == "天河"]
    assert [(r["hour"], r["tests"]) for r in got] == [(T0, 60), (T0 + dt.timedelta(hours=1), 30)]
    first = got[0]
    assert (first["positives"], first["exceedances"], first["banned"], first["watch"]) == (1, 2, 1, 1)
    assert first["max_ratio"] == 4.0
    assert got[1]["max_ratio"] is None
    other = [r for r in res.dicts() if r["district"] == "越秀"]
    assert len(other) == 1 and other[0]["tests"] == 1 and other[0]["max_ratio"] is None
    total = ch.query("SELECT sum(tests) FROM results_hourly_v").scalar()
    assert total == 91


def test_alerts_and_deadletters_round_trip(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    alerts = [
        alert_row(1),
        alert_row(2, ends_at=T0 + dt.timedelta(days=2), status="resolved", evidence=[], district=None),
    ]
    ch.insert("alerts", ALERTS_COLUMNS, alerts)
    assert ch.query("SELECT * FROM alerts FINAL ORDER BY alert_id").rows == alerts
    dead = [deadletter_row(i) for i in range(3)]
    ch.insert("deadletters", DEADLETTERS_COLUMNS, dead)
    ch.insert("deadletters", DEADLETTERS_COLUMNS, dead)  # replayed
    assert ch.query("SELECT * FROM deadletters FINAL ORDER BY src_offset").rows == dead
    assert ch.query("SELECT count() FROM deadletters FINAL").scalar() == 3


def test_params_are_bound_safely(ch: ClickHouse) -> None:
    ch.execute(
        "CREATE TABLE t (id UInt32, s String, ts DateTime('UTC'), tags Array(String)) ENGINE = MergeTree() ORDER BY id"
    )
    ch.insert(
        "t", ["id", "s", "ts", "tags"], [(1, WEIRD, T0, [WEIRD, ""]), (2, "plain", T0 + dt.timedelta(hours=1), [])]
    )
    assert ch.query("SELECT id FROM t WHERE s = %(s)s", {"s": WEIRD}).rows == [(1,)]
    assert ch.query("SELECT %(s)s AS echo", {"s": WEIRD}).rows == [(WEIRD,)]
    assert ch.query("SELECT count() FROM t WHERE s = %(s)s", {"s": "x' OR 1 = 1 OR 'a' = 'a"}).scalar() == 0
    assert ch.query("SELECT count() FROM t WHERE s = %(s)s", {"s": "\\' OR 1 = 1 --"}).scalar() == 0
    assert ch.query("SELECT id FROM t WHERE id IN %(ids)s ORDER BY id", {"ids": (2, 3)}).rows == [(2,)]
    assert ch.query("SELECT id FROM t WHERE ts >= %(t)s", {"t": T0 + dt.timedelta(minutes=30)}).rows == [(2,)]
    naive = (T0 + dt.timedelta(minutes=30)).replace(tzinfo=None)
    assert ch.query("SELECT id FROM t WHERE ts >= %(t)s", {"t": naive}).rows == [(2,)]
    assert ch.query("SELECT has(tags, %(s)s) FROM t WHERE id = 1", {"s": WEIRD}).scalar() == 1
    assert ch.query("SELECT %(n)s IS NULL, %(b)s, %(f)s", {"n": None, "b": True, "f": 0.1}).rows == [(1, 1, 0.1)]
    # Without params the text is left alone: a literal % needs no doubling.
    assert ch.query("SELECT count() FROM t WHERE s LIKE 'pla%'").scalar() == 1


def test_errors_that_will_not_heal_are_permanent(ch: ClickHouse) -> None:
    with pytest.raises(ClickHouseError) as syntax:
        ch.execute("CREATE TABLEE nonsense")
    assert not isinstance(syntax.value, ClickHouseUnavailable)
    assert not is_transient(syntax.value)
    assert syntax.value.code == 62  # SYNTAX_ERROR
    with pytest.raises(ClickHouseError) as missing:
        ch.query("SELECT * FROM no_such_table")
    assert not is_transient(missing.value)
    migrate(ch, ch.database)
    bad = list(result_row(1))
    bad[RESULTS_COLUMNS.index("site_type")] = None  # not Nullable
    with pytest.raises(ClickHouseError) as data:
        ch.insert("results", RESULTS_COLUMNS, [tuple(bad)])
    assert not is_transient(data.value)
    assert ch.query("SELECT count() FROM results").scalar() == 0


def test_dedup_token_where_supported(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    rows = [result_row(i) for i in range(5)]
    token = {"insert_deduplication_token": "results:foodrisk.results/0:0-4"}
    ch.insert("results", RESULTS_COLUMNS, rows, settings=token)
    ch.insert("results", RESULTS_COLUMNS, rows, settings=token)
    raw = ch.query("SELECT count() FROM results").scalar()
    # Modern engines drop the resent block; 18.16 has no such setting (the backend leaves it out)
    # and keeps both copies, which FINAL reads as one.
    assert raw == (5 if ch.features.insert_deduplication_token else 10)
    assert ch.query("SELECT count() FROM results FINAL").scalar() == 5


def test_writer_sends_a_token_a_replay_with_it_adds_no_row_another_token_does(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    if isinstance(ch, ChdbBackend):
        assert ch.features.insert_deduplication_token  # chdb is modern: the token is sent and honoured
    writer = ClickHouseWriter(ch, database=ch.database)
    rows = [result_row(i) for i in range(5)]

    async def go() -> None:
        await writer.insert("results", RESULTS_COLUMNS, rows, token="results:foodrisk.results/0:0-4")
        await writer.insert("results", RESULTS_COLUMNS, rows, token="results:foodrisk.results/0:0-4")  # replayed
        assert ch.query("SELECT count() FROM results").scalar() == (5 if ch.features.insert_deduplication_token else 10)
        await writer.insert("results", RESULTS_COLUMNS, rows, token="results:foodrisk.results/0:5-9")
        await writer.insert("results", RESULTS_COLUMNS, rows)  # a token of its own

    try:
        asyncio.run(go())
    finally:
        writer.close()
    assert ch.query("SELECT count() FROM results").scalar() == (15 if ch.features.insert_deduplication_token else 20)
    assert ch.query("SELECT count() FROM results FINAL").scalar() == 5


class _AnswerLostOnce:
    """``ch`` whose first insert is stored but answered with a lost connection, as after a timeout."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.settings_seen: list[dict[str, Any]] = []

    def insert(self, table: str, columns: Any, rows: Any, *, settings: Any = None) -> int:
        self.settings_seen.append(dict(settings or {}))
        sent = self.ch.insert(table, columns, rows, settings=settings)
        if len(self.settings_seen) == 1:
            raise ClickHouseUnavailable("connection reset after the insert was written")
        return sent


def test_writer_retry_of_an_insert_already_stored_adds_no_row(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    flaky = _AnswerLostOnce(ch)
    writer = ClickHouseWriter(flaky, database=ch.database)  # type: ignore[arg-type]  # insert is all it uses
    try:
        asyncio.run(writer.insert("results", RESULTS_COLUMNS, [result_row(i) for i in range(5)]))
    finally:
        writer.close()
    first, second = flaky.settings_seen
    assert first == second and first["insert_deduplication_token"].startswith("results:")  # one token, every attempt
    assert ch.query("SELECT count() FROM results").scalar() == (5 if ch.features.insert_deduplication_token else 10)
    assert ch.query("SELECT count() FROM results FINAL").scalar() == 5


def test_calls_from_many_threads(ch: ClickHouse) -> None:
    migrate(ch, ch.database)

    def work(k: int) -> int:
        ch.insert("results", RESULTS_COLUMNS, [result_row(k * 100 + i) for i in range(20)])
        return int(ch.query("SELECT count() FROM results").scalar())

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(work, range(12)))
    assert ch.query("SELECT count() FROM results FINAL").scalar() == 240


def test_unknown_url_scheme_is_one_clear_line() -> None:
    with pytest.raises(ValueError, match="unknown ClickHouse URL scheme") as err:
        connect_clickhouse("postgres://user:s3cret@db:5432/x")
    message = str(err.value)
    assert "\n" not in message and "s3cret" not in message
    assert "chdb://PATH" in message and "clickhouse://" in message
    with pytest.raises(ValueError, match="without a path"):
        connect_clickhouse("chdb://")
    with pytest.raises(ValueError, match="not a ClickHouse URL"):
        connect_clickhouse("localhost:9000")


def test_server_url_is_parsed(clickhouse_server: ClickHouseServer) -> None:
    ch = connect_clickhouse(clickhouse_server.url)
    try:
        assert isinstance(ch, DriverBackend)
        assert ch.database == "foodrisk"
        assert ch.query("SELECT currentDatabase()").scalar() == "foodrisk"
    finally:
        ch.close()
    with pytest.raises(ValueError, match="names database 'foodrisk' but database='other'"):
        connect_clickhouse(clickhouse_server.url, database="other")
    url = f"clickhouse://default@{clickhouse_server.host}:{clickhouse_server.tcp_port}"
    ch = connect_clickhouse(url, database="foodrisk_urltest")
    try:
        assert ch.query("SELECT currentDatabase()").scalar() == "foodrisk_urltest"
        ch.execute("DROP DATABASE foodrisk_urltest")
    finally:
        ch.close()


def test_chdb_url_and_a_second_process_on_the_same_path(chdb_path: Path) -> None:
    ch = connect_clickhouse(f"chdb://{chdb_path}", database="foodrisk_lock")
    try:
        assert isinstance(ch, ChdbBackend) and ch.path == chdb_path.resolve()
        code = (
            "import sys\n"
            "from sinks.clickhouse import connect_clickhouse\n"
            "from sinks.errors import ClickHouseError\n"
            "try:\n"
            f"    connect_clickhouse('chdb://{chdb_path}')\n"
            "except ClickHouseError as exc:\n"
            "    print(exc)\n"
            "    sys.exit(3)\n"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
        assert other.returncode == 3, other.stderr
        assert "in use by another process" in other.stdout and "foodrisk worker" in other.stdout
        ch.execute("DROP DATABASE foodrisk_lock")
    finally:
        ch.close()


def test_server_stop_is_transient_and_writes_work_after_restart(
    clickhouse_server: ClickHouseServer, ch_server: ClickHouse
) -> None:
    migrate(ch_server, ch_server.database)
    ch_server.insert("results", RESULTS_COLUMNS, [result_row(0)])
    clickhouse_server.stop()
    try:
        with pytest.raises(ClickHouseUnavailable) as down:
            ch_server.insert("results", RESULTS_COLUMNS, [result_row(1)])
        assert is_transient(down.value)
        with pytest.raises(ClickHouseUnavailable):
            ch_server.query("SELECT 1")

        # The sink's way: retry until the server is back (here after ~1.5 s).
        restarter = threading.Timer(1.5, clickhouse_server.start)
        restarter.start()
        attempts: list[int] = []
        started = time.monotonic()
        retry_sync(
            lambda: ch_server.insert("results", RESULTS_COLUMNS, [result_row(1)]),
            RetryPolicy(base_s=0.1, cap_s=0.5, deadline_s=30),
            on_retry=lambda n, exc, delay: attempts.append(n),
        )
        restarter.join()
        assert attempts and time.monotonic() - started >= 1.0
    finally:
        if not clickhouse_server.running:
            clickhouse_server.start()
    ch_server.insert("results", RESULTS_COLUMNS, [result_row(2)])
    assert ch_server.query("SELECT count() FROM results FINAL").scalar() == 3


@pytest.mark.slow
def test_insert_throughput_100k_results(ch: ClickHouse, capsys: pytest.CaptureFixture[str]) -> None:
    migrate(ch, ch.database)
    n = 100_000
    rows = [result_row(i, verdict="positive" if i % 97 == 0 else "compliant") for i in range(n)]
    ch.insert("results", RESULTS_COLUMNS, rows[:100])  # warm-up (connection, schema cache)
    started = time.perf_counter()
    assert ch.insert("results", RESULTS_COLUMNS, rows) == n
    elapsed = time.perf_counter() - started
    assert ch.query("SELECT count() FROM results FINAL").scalar() == n
    with capsys.disabled():
        print(f"\n[{kind(ch)}] {n} rows x {len(RESULTS_COLUMNS)} columns in {elapsed:.2f}s = {n / elapsed:,.0f} rows/s")
