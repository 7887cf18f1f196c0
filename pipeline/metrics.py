"""Prometheus metrics of the pipeline itself (served on the worker's /metrics)."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "foodrisk"


class Metrics(NamedTuple):
    results_consumed: Counter
    results_accepted: Counter
    deadlettered: Counter
    verdicts: Counter
    alerts_raised: Counter
    sink_rows: Counter
    sink_batch_rows: Histogram
    sink_flush_seconds: Histogram
    sink_failures: Counter
    sink_retries: Counter
    screen_latency_seconds: Histogram
    clickhouse_ready: Gauge


def create(registry: CollectorRegistry, prefix: str = PREFIX) -> Metrics:
    """All metric objects, registered on ``registry`` (one registry per worker, fresh in tests)."""
    p = prefix
    return Metrics(
        results_consumed=Counter(f"{p}_results_consumed", "Messages read from the results topic", registry=registry),
        results_accepted=Counter(f"{p}_results_accepted", "Valid results screened and stored", registry=registry),
        deadlettered=Counter(
            f"{p}_deadlettered", "Messages sent to the dead-letter topic", ["reason"], registry=registry
        ),
        verdicts=Counter(f"{p}_verdicts", "Screening verdicts", ["verdict", "method"], registry=registry),
        alerts_raised=Counter(f"{p}_alerts_raised", "Alerts emitted", ["kind"], registry=registry),
        sink_rows=Counter(f"{p}_sink_rows", "Rows written to ClickHouse", ["table"], registry=registry),
        sink_batch_rows=Histogram(
            f"{p}_sink_batch_rows",
            "Rows per ClickHouse insert",
            ["table"],
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
            registry=registry,
        ),
        sink_flush_seconds=Histogram(
            f"{p}_sink_flush_seconds", "Time of one ClickHouse insert, retries included", ["table"], registry=registry
        ),
        sink_failures=Counter(
            f"{p}_sink_failures", "Failed ClickHouse insert attempts", ["table", "transient"], registry=registry
        ),
        sink_retries=Counter(f"{p}_sink_retries", "ClickHouse insert retries", ["table"], registry=registry),
        screen_latency_seconds=Histogram(
            f"{p}_screen_latency_seconds",
            "From the broker timestamp of a result to its batch being stored and acknowledged",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        ),
        clickhouse_ready=Gauge(f"{p}_clickhouse_ready", "1 when the last ClickHouse call succeeded", registry=registry),
    )


class SinkObserver:
    """Feeds ClickHouse write outcomes into the metrics (the sink itself knows no Prometheus)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def flushed(self, table: str, rows: int, seconds: float) -> None:
        self._m.sink_rows.labels(table).inc(rows)
        self._m.sink_batch_rows.labels(table).observe(rows)
        self._m.sink_flush_seconds.labels(table).observe(seconds)
        self._m.clickhouse_ready.set(1)

    def failed(self, table: str, exc: BaseException, transient: bool) -> None:
        self._m.sink_failures.labels(table, "true" if transient else "false").inc()
        if transient:
            self._m.sink_retries.labels(table).inc()
        self._m.clickhouse_ready.set(0)
