"""The testcontainers path: the end-to-end checks on Apache Kafka and a modern ClickHouse in Docker.

Runs only with ``FOODRISK_TEST_DOCKER=1`` and a reachable Docker engine
(``FOODRISK_TEST_DOCKER=1 make test``); otherwise every test here is skipped and says why, also
under CI: the build machines have a Docker client but no engine, and what can be checked without
Docker is checked elsewhere (tests/unit/test_deploy.py, tests/unit/test_ddl_cluster.py, and the
same pipeline on the embedded broker in test_pipeline.py and test_scaleout.py).

The containers use the images of deploy/compose.yaml (read from it, so both move together), and
ClickHouse runs with the stack's own config.d and users.d files, so the writer and the read-only
analyst account are exercised on the server version production runs. The worker is a real
``foodrisk worker`` process with the one producer path: normal batching, acks=all, idempotent
producer, min.insync.replicas on the topics it creates.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from pipeline.settings import Settings
from pipeline.topics import group_lag
from sinks.clickhouse import DriverBackend
from sinks.errors import ClickHouseError
from tests.integration.factories import mixed_batch
from tests.integration.test_pipeline import read_topic
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
WRITER_PASSWORD = "tc-writer-pass"  # a throwaway container's
ANALYST_PASSWORD = "tc-analyst-pass"
KAFKA_START_SCRIPT = "/tmp/foodrisk-kafka-start.sh"  # noqa: S108 - inside the container


def docker_unavailable() -> str | None:
    """Why the Docker path cannot run here, or None when it can."""
    if os.environ.get("FOODRISK_TEST_DOCKER") != "1":
        return "FOODRISK_TEST_DOCKER is not 1 (the testcontainers path needs it and a Docker engine)"
    try:
        import docker  # type: ignore[import-untyped]  # docker-py ships no type hints

        docker.from_env(timeout=10).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine to use
        return f"FOODRISK_TEST_DOCKER=1 but no Docker engine answers ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="module", autouse=True)
def _docker() -> None:
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)  # legitimate also under CI: no engine can exist on the build machines


def compose_image(service: str) -> str:
    image = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"][service]["image"]
    assert isinstance(image, str)
    return image


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    """Apache Kafka in KRaft mode, one node; yields host:port for clients on this machine."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = (
        DockerContainer(compose_image("kafka"))
        .with_exposed_ports(9092)
        .with_envs(
            CLUSTER_ID="Zm9vZHJpc2stdGVzdC0wMQ",
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9094,CONTROLLER://0.0.0.0:9093",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
            KAFKA_LOG_DIRS="/tmp/kraft-logs",  # noqa: S108 - inside the throwaway container
        )
        # The advertised address needs the host port Docker picks at start: wait for a script
        # that sets it, then run the image's own start command.
        .with_command(["sh", "-c", f"while [ ! -f {KAFKA_START_SCRIPT} ]; do sleep 0.1; done; . {KAFKA_START_SCRIPT}"])
    )
    container.start()
    try:
        host, port = container.get_container_host_ip(), container.get_exposed_port(9092)
        script = (
            f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{host}:{port},BROKER://localhost:9094\n"
            "exec /etc/kafka/docker/run\n"
        )
        container.copy_into_container(script.encode(), KAFKA_START_SCRIPT, 0o755)
        wait_for_logs(container, "Kafka Server started", timeout=180)
        yield f"{host}:{port}"
    finally:
        container.stop()


@pytest.fixture(scope="module")
def clickhouse() -> Iterator[tuple[str, int]]:
    """The compose stack's ClickHouse image with its config.d and users.d; yields (host, native port)."""
    from docker.types import Ulimit  # type: ignore[import-untyped]  # docker-py ships no type hints
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    config = DEPLOY / "clickhouse" / "config.d" / "foodrisk.xml"
    users = DEPLOY / "clickhouse" / "users.d" / "foodrisk-users.xml"
    container = (
        DockerContainer(compose_image("clickhouse"))
        .with_exposed_ports(9000, 8123)
        .with_envs(
            CLICKHOUSE_SKIP_USER_SETUP="1",
            CLICKHOUSE_WRITER_PASSWORD=WRITER_PASSWORD,
            CLICKHOUSE_ANALYST_PASSWORD=ANALYST_PASSWORD,
        )
        .with_copy_into_container(config.read_bytes(), "/etc/clickhouse-server/config.d/foodrisk.xml")
        .with_copy_into_container(users.read_bytes(), "/etc/clickhouse-server/users.d/foodrisk-users.xml")
        .with_tmpfs_mount("/backups")
        .with_kwargs(ulimits=[Ulimit(name="nofile", soft=262144, hard=262144)])  # as in compose.yaml
    )
    container.start()
    try:
        wait_for_logs(container, "Ready for connections", timeout=180)
        host, port = container.get_container_host_ip(), container.get_exposed_port(9000)
        deadline = time.monotonic() + 60
        while True:
            probe = DriverBackend(host, port, user="foodrisk", password=WRITER_PASSWORD, database="foodrisk")
            try:
                probe.query("SELECT 1")
                break
            except ClickHouseError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
            finally:
                probe.close()
        yield host, port
    finally:
        container.stop()


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Normal batching, acks=all, idempotent: the real-Kafka producer settings."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True)
    for i, v in enumerate(values):
        p.send(topic, key=f"dev-{i % 5}".encode(), value=v)
    p.flush()
    p.close()


def test_pipeline_end_to_end_on_apache_kafka_and_modern_clickhouse(
    kafka: str, clickhouse: tuple[str, int], tmp_path: Path, unique: str
) -> None:
    host, port = clickhouse
    topics = {k: f"tc.{k}.{unique}" for k in ("results", "alerts", "deadletter")}
    db, group = "foodrisk", f"tc-{unique}"
    worker = WorkerProcess(
        tmp_path / "worker", broker_url=f"kafka://{kafka}",
        clickhouse_url=f"clickhouse://foodrisk:{WRITER_PASSWORD}@{host}:{port}/{db}",
        app_id=group, topics=topics,
        FOODRISK_TOPIC_PARTITIONS="4",
        FOODRISK_SCREENED_TOPIC=f"tc.screened.{unique}",
    ).start()
    try:
        valid, invalid, expected = mixed_batch(f"tc{unique}", 300)
        produce(kafka, topics["results"], valid + invalid)
        worker.wait_for(f"SELECT count() FROM {db}.results FINAL WHERE result_id LIKE %(p)s", len(valid),
                        timeout_s=180, p=f"tc{unique}-%")
        worker.wait_for(f"SELECT count() FROM {db}.deadletters FINAL WHERE src_topic = %(t)s", len(invalid),
                        timeout_s=120, t=topics["results"])
        alerts = [orjson.loads(v) for _, v in read_topic(kafka, topics["alerts"])]
        assert {rid: a["kind"] for a in alerts for rid in a["evidence"]} == expected

        # A replay of the same input changes nothing that is counted.
        produce(kafka, topics["results"], valid)
        settings = Settings(broker_url=f"kafka://{kafka}")
        deadline = time.monotonic() + 120
        while group_lag(settings, [kafka], group, topics["results"]) != 0:
            assert time.monotonic() < deadline, "the replay was not committed in 120 s"
            time.sleep(0.5)
        assert worker.scalar(f"SELECT count() FROM {db}.results FINAL WHERE result_id LIKE %(p)s",
                             p=f"tc{unique}-%") == len(valid)

        # The topics foodrisk created carry min.insync.replicas (replication 1 here: 1).
        admin = KafkaAdminClient(bootstrap_servers=kafka)
        try:
            described: Any = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics["results"])])
            assert "min.insync.replicas" in str(described)
        finally:
            admin.close()
    finally:
        worker.stop()


def test_the_analyst_account_reads_and_cannot_write(clickhouse: tuple[str, int]) -> None:
    host, port = clickhouse
    writer = DriverBackend(host, port, user="foodrisk", password=WRITER_PASSWORD, database="foodrisk")
    from sinks.ddl import migrate

    migrate(writer, "foodrisk")
    writer.close()
    analyst = DriverBackend(host, port, user="analyst", password=ANALYST_PASSWORD, database="foodrisk",
                            create_database=False)
    try:
        assert analyst.query("SELECT count() >= 0 FROM results").scalar() == 1
        for statement in ("INSERT INTO results (result_id) SELECT 'x'", "DROP TABLE results",
                          "CREATE TABLE t (a UInt8) ENGINE = Memory"):
            with pytest.raises(ClickHouseError):
                analyst.execute(statement)
    finally:
        analyst.close()
    with pytest.raises(ClickHouseError):
        DriverBackend(host, port, user="analyst", password="wrong", database="foodrisk",
                      create_database=False).query("SELECT 1")
