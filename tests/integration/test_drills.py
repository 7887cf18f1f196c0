"""Reduced versions of every reliability drill (the full ones: `make drills`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.localstack.process import StartupError
from tests.conftest import unavailable
from tests.drills.analyst import drill_hostile_analyst_queries
from tests.drills.cluster import drill_clickhouse_cluster, drill_kafka_ha
from tests.drills.core import (
    DrillRow,
    Stack,
    drill_broker_restart,
    drill_clickhouse_outage,
    drill_hostile_input,
    drill_secrets_not_logged,
    drill_two_workers_one_dies,
    drill_worker_crash,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("drills"))
    try:
        s.start()
    except StartupError as exc:
        s.stop()
        unavailable(str(exc))
    yield s
    s.stop()


def check(row: DrillRow) -> None:
    print(row)
    assert row.lost == 0, row
    assert row.duplicated == 0, row
    assert row.stored > 0 and row.deadlettered > 0, row
    assert row.extra["unexpected_alerts"] == 0, row


def test_worker_crash(stack: Stack, tmp_path: Path) -> None:
    check(drill_worker_crash(stack, tmp_path, n=2_000, kills=2))


def test_two_workers_one_dies(stack: Stack, tmp_path: Path) -> None:
    check(drill_two_workers_one_dies(stack, tmp_path, n=1_500))


def test_clickhouse_outage(stack: Stack, tmp_path: Path) -> None:
    check(drill_clickhouse_outage(stack, tmp_path, n=1_500, outage_s=10))


def test_broker_restart(stack: Stack, tmp_path: Path) -> None:
    row = drill_broker_restart(stack, tmp_path, n=3_000, down_s=3)
    check(row)
    assert row.extra["extra_deadletters"] == 0, row  # nothing valid dead-lettered
    assert row.extra["same_worker"], row  # the worker rode it out, never restarted
    assert row.recovery_s is not None, row
    print(f"broker restart: first new row {row.recovery_s:.1f}s after the kill, broker ready in "
          f"{row.extra['broker_ready_s']:.1f}s, all committed after {row.extra['drained_s']:.1f}s")


def test_hostile_input(stack: Stack, tmp_path: Path) -> None:
    row = drill_hostile_input(stack, tmp_path, n=2_000, huge_every=1_000)
    check(row)
    assert row.extra["restarted"] is False
    assert row.extra["verbatim"] > 0  # injection-looking strings are data, stored as given
    assert row.extra["tables"] >= 4  # and no table went away


def test_secrets_never_logged(tmp_path: Path) -> None:
    try:
        row = drill_secrets_not_logged(tmp_path)
    except StartupError as exc:
        unavailable(str(exc))
        raise
    check(row)
    assert row.extra["log_bytes"] > 1000  # the log was really written (debug level)
    assert row.extra["leaks"] == 0


def test_hostile_analyst_queries(stack: Stack, tmp_path: Path) -> None:
    """No hostile query escapes (the latency ratio is a figure of `make drills`, not asserted here)."""
    row = drill_hostile_analyst_queries(stack, tmp_path, rounds=1, samples=10)
    print(row)
    assert row.extra["escapes"] == [], row
    assert row.lost == 0 and row.stored == 20, row
    assert row.inputs >= 44, row  # every kind tried at least once
    assert set(row.extra["statuses"]) <= {200, 400, 413, 429}, row  # never a server error
    assert all(400 in statuses or 429 in statuses for kind, statuses in row.extra["by_kind"].items()
               if "file" in kind or "system" in kind), row


def _drill_or_unavailable(run: Callable[[], DrillRow]) -> DrillRow:
    try:
        return run()
    except StartupError as exc:
        unavailable(str(exc))
        raise


def test_kafka_three_brokers_leader_killed_then_two_lost(tmp_path: Path) -> None:
    """Three KRaft brokers, topics of replication 3 / min.insync 2, two workers: the leader of the
    most results partitions killed mid-stream and restarted, then two brokers lost while a batch
    is sent (`make drills` runs it at full size)."""
    row = _drill_or_unavailable(lambda: drill_kafka_ha(tmp_path, n=3_000, rate=500, down_s=3, outage_s=5,
                                                       n_outage=300))
    x = row.extra
    logs = x.pop("worker_logs")
    print(row)
    assert row.lost == 0 and row.duplicated == 0, logs
    check(row)
    assert x["replicas"] == 3 and x["min_insync"] == "2", x  # as foodrisk created the topics
    assert x["refused"] == 0, x["errors"]  # no write refused: the producer's retries covered the loss
    assert x["leaders_moved_s"] is not None, x  # every partition led by a live broker again
    assert x["acked_while_down"] == 0 and x["refused_while_down"] == 0, x  # writes waited ...
    assert x["outage_acked"] == x["outage_sent"] >= 300, x  # ... and every one was acknowledged once one was back
    assert x["extra_deadletters"] == 0, x


def test_clickhouse_two_shards_two_replicas_replica_killed(tmp_path: Path) -> None:
    """`foodrisk migrate` lays the schema out ON CLUSTER on a real 2 x 2 cluster of 18.16; two
    workers write through the Distributed tables while a replica is killed and restarted."""
    row = _drill_or_unavailable(lambda: drill_clickhouse_cluster(tmp_path, n=2_000, rate=500, down_s=3))
    x = row.extra
    print(row)
    check(row)
    for replica, tables in x["layout"].items():  # the cluster DDL ran on every node
        assert tables["results_local"] == "ReplicatedReplacingMergeTree", (replica, tables)
        assert tables["results"] == "Distributed", (replica, tables)
        assert tables["results_hourly_local"] == "ReplicatedAggregatingMergeTree", (replica, tables)
        assert tables["schema_migrations"] == "ReplicatedMergeTree", (replica, tables)
        assert tables["results_hourly_mv"] == "MaterializedView", (replica, tables)
    assert x["missing"] == 0 and x["overlap"] == 0 and x["dup_final"] == 0, x
    assert x["same_within_shard"], x
    assert all(r["readonly"] == 0 and r["queue"] == 0 for r in x["replicas"].values()), x
    assert x["hourly_mismatches"] == 0 and x["hourly_rows"] > 0, x
    assert x["boards"] > 20 and x["boards_differ"] == [], x
