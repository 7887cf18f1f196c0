"""End to end: results topic -> screening worker -> ClickHouse and the alerts topic.

A real broker (Apache Kafka), a real worker process, and ClickHouse on both backends (chdb inside the
worker; Debian's clickhouse-server 18.16). Producers: kafka-python and confluent-kafka (librdkafka).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.localstack.kafka import KafkaBroker
from pipeline.settings import Settings
from pipeline.topics import group_lag
from schemas.alert import SINGLE_RESULT_KINDS
from tests.integration.factories import mixed_batch, produce
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration




def produce_confluent(bootstrap: str, topic: str, values: list[bytes]) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    p = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}
    )
    errors: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for i, v in enumerate(values):
        p.produce(topic, key=f"dev-{i % 5}".encode(), value=v, on_delivery=delivered)
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors


def read_topic(bootstrap: str, topic: str, *, settle_s: float = 2.0) -> list[tuple[bytes, bytes]]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        parts = c.partitions_for_topic(topic) or set()
        c.assign([TopicPartition(topic, p) for p in parts])
        out: list[tuple[bytes, bytes]] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            batch = c.poll(timeout_ms=300)
            for records in batch.values():
                out.extend((r.key, r.value) for r in records)
                quiet_since = time.monotonic()
        return out
    finally:
        c.close()


def wait_drained(broker: KafkaBroker, topic: str, group: str, timeout_s: float = 60) -> None:
    """Until the worker's group committed everything in ``topic`` (commits follow the writes)."""
    settings = Settings(broker_url=broker.url)
    deadline = time.monotonic() + timeout_s
    while (left := group_lag(settings, [broker.bootstrap], group, topic)) != 0:
        assert time.monotonic() < deadline, f"{left} messages not committed after {timeout_s}s"
        time.sleep(0.3)


@pytest.fixture(params=["chdb", "server"])
def clickhouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "chdb":
        return f"chdb://{tmp_path / 'chdb'}"
    server = request.getfixturevalue("clickhouse_server")
    return f"clickhouse://default:@127.0.0.1:{server.tcp_port}"


@pytest.fixture
def topics(unique: str) -> dict[str, str]:
    return {k: f"e2e.{k}.{unique}" for k in ("results", "alerts", "deadletter")}


@pytest.fixture
def worker(
    broker: KafkaBroker, clickhouse_url: str, topics: dict[str, str], unique: str, tmp_path: Path
) -> Iterator[WorkerProcess]:
    w = WorkerProcess(
        tmp_path / "worker", broker_url=broker.url, clickhouse_url=clickhouse_url, app_id=f"e2e-{unique}",
        topics=topics, FOODRISK_CLICKHOUSE_DATABASE=f"e2e_{unique}",
    )
    w.start()
    yield w
    w.stop()


def test_valid_and_invalid_results_end_to_end_and_replay(
    broker: KafkaBroker, worker: WorkerProcess, topics: dict[str, str], unique: str
) -> None:
    db = f"e2e_{unique}"
    valid_a, invalid_a, expected_a = mixed_batch(f"kp{unique}", 150)
    valid_b, invalid_b, expected_b = mixed_batch(f"rd{unique}", 100)
    produce(broker.bootstrap, topics["results"], valid_a + invalid_a)
    produce_confluent(broker.bootstrap, topics["results"], valid_b + invalid_b)
    n, m = len(valid_a) + len(valid_b), len(invalid_a) + len(invalid_b)
    expected = {**expected_a, **expected_b}

    worker.wait_for(f"SELECT count() FROM {db}.results FINAL", n)
    worker.wait_for(f"SELECT count() FROM {db}.deadletters FINAL", m)
    single = f"kind IN {SINGLE_RESULT_KINDS}"  # the early-warning agent adds pattern alerts of its own
    worker.wait_for(f"SELECT uniqExact(alert_id) FROM {db}.alerts FINAL WHERE {single}", len(expected))

    # Every dead letter carries its reasons and the original bytes.
    rows = worker.query(f"SELECT payload, errors, error_kind FROM {db}.deadletters FINAL ORDER BY src_offset")
    assert all(r[1] and r[2] == "invalid_result" for r in rows)
    assert any(r[0] == "not json at all" for r in rows)

    # Alerts on the topic: the expected kinds, keyed by alert id.
    messages = read_topic(broker.bootstrap, topics["alerts"])
    alerts = [orjson.loads(v) for _, v in messages]
    kinds = {rid: a["kind"] for a in alerts for rid in a["evidence"] if a["kind"] in SINGLE_RESULT_KINDS}
    assert kinds == expected
    assert all(k == a["alert_id"].encode() for (k, _), a in zip(messages, alerts, strict=True))

    # Verdicts and their basis are stored.
    banned = worker.query(
        f"SELECT verdict, rule, basis FROM {db}.results FINAL WHERE analyte = 'carbofuran' LIMIT 1"
    )
    assert banned[0][0] == "banned"
    assert banned[0][2]

    # Replay: the same input again changes nothing that is counted.
    produce(broker.bootstrap, topics["results"], valid_a + invalid_a + valid_b + invalid_b)
    worker.wait_for(f"SELECT count() FROM {db}.deadletters FINAL", 2 * m)  # new offsets, new dead letters
    wait_drained(broker, topics["results"], f"e2e-{unique}")
    assert worker.scalar(f"SELECT count() FROM {db}.results FINAL") == n
    assert worker.scalar(f"SELECT uniqExact(alert_id) FROM {db}.alerts FINAL WHERE {single}") == len(expected)
    assert worker.scalar(f"SELECT count() FROM {db}.alerts FINAL WHERE {single}") == len(expected)
    # Pattern alerts may update (same id, status firing/resolved) but are never stored twice per status.
    assert worker.scalar(f"SELECT count() - uniqExact(alert_id, status) FROM {db}.alerts FINAL") == 0
    hourly = worker.scalar(f"SELECT sum(tests) FROM {db}.results_hourly_v")
    assert hourly == n


def test_clickhouse_outage_mid_stream_loses_nothing(
    broker: KafkaBroker, clickhouse_server: Any, tmp_path: Path, unique: str
) -> None:
    """Debian's ClickHouse server stopped for 20 s while results flow: every row arrives after it
    returns, the worker reports not-ready meanwhile, and the committed offsets wait for the writes."""
    topics = {k: f"outage.{k}.{unique}" for k in ("results", "alerts", "deadletter")}
    db = f"outage_{unique}"
    w = WorkerProcess(
        tmp_path / "worker", broker_url=broker.url,
        clickhouse_url=f"clickhouse://default:@127.0.0.1:{clickhouse_server.tcp_port}",
        app_id=f"outage-{unique}", topics=topics, FOODRISK_CLICKHOUSE_DATABASE=db,
    ).start()
    group = f"outage-{unique}"
    try:
        first, _, _ = mixed_batch(f"o1{unique}", 200)
        second, _, _ = mixed_batch(f"o2{unique}", 200)
        third, _, _ = mixed_batch(f"o3{unique}", 200)
        produce(broker.bootstrap, topics["results"], first)
        w.wait_for(f"SELECT count() FROM {db}.results FINAL", 200)

        clickhouse_server.stop()
        stopped = time.monotonic()
        produce(broker.bootstrap, topics["results"], second)
        time.sleep(3)
        settings = Settings(broker_url=broker.url)
        assert group_lag(settings, [broker.bootstrap], group, topics["results"]) == 200  # held back
        ready = _http_status(w.port, "/readyz")
        assert ready == 503
        produce(broker.bootstrap, topics["results"], third)
        time.sleep(max(0.0, 20 - (time.monotonic() - stopped)))
        assert w.proc.running, w.log_tail()
        clickhouse_server.start()

        w.wait_for(f"SELECT count() FROM {db}.results FINAL", 600, timeout_s=120)
        wait_drained(broker, topics["results"], group)
        assert w.scalar(f"SELECT count() FROM {db}.results FINAL") == 600
        assert _http_status(w.port, "/readyz") == 200
        assert "retrying" in w.log_tail(200_000)
    finally:
        if not clickhouse_server.running:
            clickhouse_server.start()
        w.stop()


def _http_status(port: int, path: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=15) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_query_command_asks_the_worker_then_opens_chdb_itself(
    broker: KafkaBroker, topics: dict[str, str], unique: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    chdb_url = f"chdb://{tmp_path / 'chdb'}"
    db = f"q_{unique}"
    w = WorkerProcess(tmp_path / "worker", broker_url=broker.url, clickhouse_url=chdb_url, app_id=f"q-{unique}",
                      topics=topics, FOODRISK_CLICKHOUSE_DATABASE=db).start()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("FOODRISK_")}
    # The worker's data dir: the command finds the local analyst token the worker wrote there.
    env.update(FOODRISK_CLICKHOUSE_URL=chdb_url, FOODRISK_CLICKHOUSE_DATABASE=db,
               FOODRISK_QUERY_PORT=str(w.query_port), FOODRISK_DATA_DIR=str(tmp_path / "worker"))

    def query(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", "query", *args], capture_output=True,
                              text=True, env={**env, **more}, timeout=120, check=False)

    try:
        valid, _, _ = mixed_batch(f"q{unique}", 30)
        produce(broker.bootstrap, topics["results"], valid)
        w.wait_for(f"SELECT count() FROM {db}.results FINAL", 30)
        res = query(f"SELECT verdict, count() AS n FROM {db}.results FINAL GROUP BY verdict ORDER BY verdict",
                    "--format", "csv")
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[0] == "verdict,n"
        assert sum(int(x.split(",")[1]) for x in lines[1:]) == 30
        bound = query(f"SELECT count() FROM {db}.results FINAL WHERE commodity = %(c)s", "--param", "c=cowpea")
        assert bound.returncode == 0 and bound.stdout.splitlines()[-1].strip() == "30", bound.stderr
        refused = query(f"DROP TABLE {db}.results")
        assert refused.returncode == 2 and "only SELECT" in refused.stderr
        # Neither FOODRISK_ANALYST_TOKEN nor a local token file: one line saying what to do.
        lost = query("SELECT 1", FOODRISK_DATA_DIR=str(tmp_path / "elsewhere"))
        assert lost.returncode == 2, lost
        assert lost.stderr.strip().count("\n") == 0 and "FOODRISK_ANALYST_TOKEN" in lost.stderr, lost.stderr
        # The token in the environment works from anywhere.
        token = w.analyst_token
        anywhere = query("SELECT 7", FOODRISK_DATA_DIR=str(tmp_path / "elsewhere"), FOODRISK_ANALYST_TOKEN=token)
        assert anywhere.returncode == 0 and anywhere.stdout.splitlines()[-1].strip() == "7", anywhere.stderr
    finally:
        w.stop()
    # No worker now: the command opens the chdb database itself.
    direct = query(f"SELECT count() FROM {db}.results FINAL", "--format", "json")
    assert direct.returncode == 0, direct.stderr
    assert orjson.loads(direct.stdout.splitlines()[0]) == {"count()": 30}
