"""The pipeline's own metrics: bounded labels, alert bookkeeping, and the lag arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from prometheus_client import CollectorRegistry, generate_latest

from agents.metrics import DEADLETTER_REASONS, OTHER, Metrics, bounded, count_alert, create, observe_alert_latency
from pipeline.lag import MAX_REREADS, LagReporter, PartitionLag, Progress, partition_lags, stalled_partitions
from schemas.alert import Alert, AlertStatus, Classification, Risk


class TP(NamedTuple):  # the shape of faust's TP
    topic: str
    partition: int


def fresh() -> tuple[CollectorRegistry, Metrics]:
    registry = CollectorRegistry()
    return registry, create(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def alert(status: AlertStatus = AlertStatus.firing) -> Alert:
    return Alert(
        alert_id="a1", kind="banned_pesticide", classification=Classification.alert, risk=Risk.serious,
        status=status, summary_en="x", summary_zh="x", starts_at=datetime(2026, 11, 20, tzinfo=UTC),
    )


def test_dead_letter_reasons_are_a_closed_set() -> None:
    assert bounded("value", DEADLETTER_REASONS) == "value"
    assert bounded("malformed", DEADLETTER_REASONS) == "malformed"
    assert bounded("site", DEADLETTER_REASONS) == "site"
    assert bounded("a-field-a-sender-made-up", DEADLETTER_REASONS) == OTHER


def test_alerts_counted_raised_and_resolved_apart_and_timed_when_firing() -> None:
    registry, m = fresh()
    for a in (alert(), alert(), alert(AlertStatus.resolved)):
        count_alert(m, a)
    observe_alert_latency(m, alert(), source_timestamp=100.0, now=102.5)
    observe_alert_latency(m, alert(), source_timestamp=None, now=103.0)  # unknown source time: not timed
    observe_alert_latency(m, alert(AlertStatus.resolved), source_timestamp=100.0, now=200.0)
    kind = {"kind": "banned_pesticide"}
    assert value(registry, "foodrisk_alerts_raised_total", **kind) == 2
    assert value(registry, "foodrisk_alerts_resolved_total", **kind) == 1
    assert value(registry, "foodrisk_result_to_alert_seconds_count", **kind) == 1
    assert value(registry, "foodrisk_result_to_alert_seconds_sum", **kind) == 2.5


def test_registry_starts_ready_with_version_and_process_metrics() -> None:
    registry, _ = fresh()
    text = generate_latest(registry).decode()
    assert value(registry, "foodrisk_clickhouse_ready") == 1
    assert 'foodrisk_build_info{version="' in text
    assert "foodrisk_process_resident_memory_bytes" in text
    assert all(
        line.startswith(("foodrisk_", "# HELP foodrisk_", "# TYPE foodrisk_")) for line in text.splitlines() if line
    )


def test_lag_is_end_minus_committed_never_negative() -> None:
    a0, a1, b0 = TP("r", 0), TP("r", 1), TP("x", 0)
    lags = partition_lags({a1: 50, a0: 10, b0: 7}, {a0: 4, a1: None, b0: 9}, {a1: 20})
    assert lags == [
        PartitionLag("r", 0, 10, 4, 6),
        PartitionLag("r", 1, 50, 20, 30),  # never committed: from the earliest offset
        PartitionLag("x", 0, 7, 9, 0),  # committed past a stale end offset
    ]
    assert partition_lags({a0: 5}, {}, {}) == [PartitionLag("r", 0, 5, 0, 5)]


def test_a_revoked_partition_leaves_this_workers_gauges() -> None:
    registry, m = fresh()
    reporter = LagReporter(app=None, metrics=m)
    reporter.publish([PartitionLag("r", 0, 10, 4, 6), PartitionLag("r", 1, 3, 3, 0)])
    assert value(registry, "foodrisk_consumer_lag_messages", topic="r", partition="0") == 6
    assert value(registry, "foodrisk_consumer_end_offset", topic="r", partition="0") == 10
    reporter.publish([PartitionLag("r", 1, 8, 3, 5)])
    assert value(registry, "foodrisk_consumer_lag_messages", topic="r", partition="0") is None
    assert value(registry, "foodrisk_consumer_committed_offset", topic="r", partition="0") is None
    assert value(registry, "foodrisk_consumer_lag_messages", topic="r", partition="1") == 5


def test_a_partition_stuck_with_nothing_in_flight_is_read_again_once_per_stall() -> None:
    stuck, moving = PartitionLag("a", 0, 22, 4, 18), PartitionLag("a", 1, 30, 20, 10)
    done = PartitionLag("a", 2, 5, 5, 0)
    progress, stalled = stalled_partitions([stuck, moving, done], {}, set(), now=0.0, stall_s=30)
    assert stalled == []  # first sight starts every clock
    moved = moving._replace(committed=30, lag=0)
    progress, stalled = stalled_partitions([stuck, moved, done], progress, {("a", 1)}, now=31.0, stall_s=30)
    assert stalled == [stuck]  # the topic moves on partition 1 while partition 0 has nothing in flight
    progress, stalled = stalled_partitions([stuck, moved, done], progress, set(), now=40.0, stall_s=30)
    assert stalled == []  # its clock restarted when it was sought back
    _, stalled = stalled_partitions([stuck, moved, done], progress, set(), now=62.0, stall_s=30)
    assert stalled == [stuck]  # idle topic, still stuck: read again
    _, off = stalled_partitions([stuck], {("a", 0): Progress(4, 0.0)}, set(), now=100.0, stall_s=0)
    assert off == []  # 0 turns it off
    _, given_up = stalled_partitions([stuck], {("a", 0): Progress(4, 0.0, MAX_REREADS)}, set(), now=100.0, stall_s=30)
    assert given_up == []  # held by something reading again cannot fix (a transaction marker, say)


def test_an_agent_waiting_out_an_outage_is_not_stalled() -> None:
    """The topic holds messages in flight and moves nowhere: the agent is waiting, not stuck."""
    held, queued = PartitionLag("r", 0, 100, 10, 90), PartitionLag("r", 1, 100, 10, 90)
    progress, _ = stalled_partitions([held, queued], {}, {("r", 0)}, now=0.0, stall_s=30)
    _, stalled = stalled_partitions([held, queued], progress, {("r", 0)}, now=300.0, stall_s=30)
    assert stalled == []


def test_a_partition_that_just_received_work_is_not_stalled() -> None:
    """The stall clock starts when messages arrive, not when the commit last moved: a partition idle
    (no lag) for longer than the stall time that then receives a backlog is working, not stuck. (A
    scale-out run read two partitions again 1 s after their first messages arrived, their commit
    having sat at 0 for the 10 s the group took to form.)"""
    idle = PartitionLag("r", 4, 0, 0, 0)
    progress, stalled = stalled_partitions([idle], {}, set(), now=0.0, stall_s=10)
    progress, stalled = stalled_partitions([idle], progress, set(), now=9.0, stall_s=10)
    assert stalled == []
    arrived = PartitionLag("r", 4, 100, 0, 100)
    progress, stalled = stalled_partitions([arrived], progress, set(), now=10.5, stall_s=10)
    assert stalled == []  # 1.5 s of waiting work, though the commit has not moved for 10.5 s
    progress, stalled = stalled_partitions([arrived], progress, set(), now=18.0, stall_s=10)
    assert stalled == []
    progress, stalled = stalled_partitions([arrived], progress, set(), now=19.5, stall_s=10)
    assert stalled == [arrived]  # 10.5 s with work waiting and nothing moving: read it again
