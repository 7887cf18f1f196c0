"""Topic set-up and broker reachability, with kafka-python's admin client."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.settings import Settings, kafka_python_security_options

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The configured broker did not answer in time."""


def admin_client(settings: Settings, bootstrap: list[str], *, timeout_s: float = 10.0) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    # A plain TCP probe first: kafka-python's own bootstrap retries for ~30 s before it gives up.
    while not any(_tcp_open(b) for b in bootstrap):
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(
                f"broker {','.join(bootstrap)} unreachable after {timeout_s:.0f}s (connection refused or timed out); "
                "check FOODRISK_BROKER_URL"
            )
        time.sleep(0.3)
    while time.monotonic() < deadline:
        try:
            return KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id=f"{settings.app_id}-admin",
                request_timeout_ms=max(1000, int(timeout_s * 1000)),
                **kafka_python_security_options(settings),
            )
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.3)
    raise BrokerUnavailable(
        f"broker {','.join(bootstrap)} unreachable after {timeout_s:.0f}s ({type(last).__name__}: {last}); "
        "check FOODRISK_BROKER_URL"
    )


def _tcp_open(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def topic_configs(settings: Settings) -> dict[str, str]:
    """Broker-side configs of the topics foodrisk creates: min.insync.replicas, so that with
    acks=all a write is acknowledged only once that many replicas have it (with replication 3 and
    min.insync 2, one broker may be down and nothing acknowledged is lost)."""
    return {"min.insync.replicas": str(settings.min_insync_replicas)}


def ensure_topics(
    settings: Settings,
    bootstrap: list[str],
    names: Iterable[str] | None = None,
    *,
    partitions: int | None = None,
    timeout_s: float = 10.0,
) -> list[str]:
    """Create the pipeline's topics if missing; returns the names created."""
    wanted = list(names or (settings.results_topic, settings.alerts_topic, settings.deadletter_topic))
    # The early-warning agent's input always has exactly one partition (README "Early warning").
    single = {settings.screened_topic} if names is None else set()
    wanted += sorted(single)
    admin = admin_client(settings, bootstrap, timeout_s=timeout_s)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                n, 1 if n in single else partitions or settings.topic_partitions, settings.topic_replication,
                topic_configs=topic_configs(settings),
            )
            for n in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
            admin.create_topics(new)
        log.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        admin.close()


def group_lag(settings: Settings, bootstrap: list[str], group: str, topic: str) -> int | None:
    """Messages of ``topic`` past the committed offsets of ``group`` (None when unknown).

    Reads the group's commits without joining it (no subscription, no auto-commit).
    """
    from kafka import KafkaConsumer, TopicPartition

    if not any(_tcp_open(b) for b in bootstrap):
        return None
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        **kafka_python_security_options(settings),
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = consumer.end_offsets(tps)
        return int(sum(max(0, ends[tp] - (consumer.committed(tp) or 0)) for tp in tps))
    except KafkaError:
        return None
    finally:
        consumer.close()
