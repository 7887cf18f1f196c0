"""The embedded broker: kafka-python and a small Faust agent against a real Apache Kafka process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from pipeline.localstack.kafka import KafkaBroker
from pipeline.localstack.process import free_port, port_open
from pipeline.settings import Settings
from pipeline.topics import BrokerUnavailable, ensure_topics

pytestmark = pytest.mark.integration


def consume(
    bootstrap: str, topic: str, group: str, n: int, timeout_s: float = 60, alive: subprocess.Popen[bytes] | None = None
) -> list[tuple[bytes, bytes]]:
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      session_timeout_ms=6000, heartbeat_interval_ms=1000, consumer_timeout_ms=1000)
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            if alive is not None and alive.poll() is not None:
                break
            got.extend((m.key, m.value) for m in c)
        c.commit()
    finally:
        c.close()
    return got


def test_kafka_python_produce_consume_commit_resume(broker: KafkaBroker, unique: str) -> None:
    settings = Settings(broker_url=broker.url)
    topic = f"t.kp.{unique}"
    assert ensure_topics(settings, [broker.bootstrap], [topic], partitions=3) == [topic]
    assert ensure_topics(settings, [broker.bootstrap], [topic], partitions=3) == []  # idempotent
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(50):
        p.send(topic, key=f"k{i % 7}".encode(), value=f"v{i}".encode())
    p.flush()
    first = consume(broker.bootstrap, topic, f"g-{unique}", 50)
    assert sorted(v for _, v in first) == sorted(f"v{i}".encode() for i in range(50))
    for i in range(50, 60):
        p.send(topic, key=b"k", value=f"v{i}".encode())
    p.flush()
    p.close()
    # The same group resumes after its committed offsets: only the new messages.
    second = consume(broker.bootstrap, topic, f"g-{unique}", 10)
    assert sorted(v for _, v in second) == sorted(f"v{i}".encode() for i in range(50, 60))


def test_small_faust_agent_round_trip(broker: KafkaBroker, unique: str, repo_root: Path, tmp_path: Path) -> None:
    src, dst = f"t.in.{unique}", f"t.out.{unique}"
    settings = Settings(broker_url=broker.url)
    ensure_topics(settings, [broker.bootstrap], [src, dst], partitions=2)
    log = (tmp_path / "faust.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(repo_root / "tests/integration/faust_echo.py"), broker.bootstrap, src, dst,
         f"echo-{unique}", str(free_port()), str(tmp_path / "data")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=repo_root,
    )
    try:
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        for i in range(20):
            p.send(src, key=str(i).encode(), value=f"hello {i}".encode())
        p.flush()
        p.close()
        out = consume(broker.bootstrap, dst, f"g-{unique}", 20, timeout_s=90, alive=proc)
        assert sorted(v for _, v in out) == sorted(f"HELLO {i}".encode() for i in range(20)), (
            (tmp_path / "faust.log").read_text()[-3000:]
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_broker_stop_leaves_no_process(tmp_path: Path) -> None:
    b = KafkaBroker(tmp_path).start()
    pid = b.pid
    assert pid is not None and port_open(b.host, b.port)
    b.stop()
    assert not _alive(pid)
    assert not port_open(b.host, b.port)


def test_unreachable_broker_fails_fast_with_a_clear_message() -> None:
    settings = Settings(broker_url=f"kafka://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"unreachable.*FOODRISK_BROKER_URL"):
        ensure_topics(settings, settings.bootstrap_servers(), timeout_s=2)
    assert time.monotonic() - started < 15


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
