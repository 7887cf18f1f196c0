"""Prometheus metrics of the pipeline itself (served on the worker's /metrics).

Conventions (checked by ``promtool check metrics`` in tests/integration/test_prometheus.py):

- every name starts with ``foodrisk_`` and carries its unit (``_seconds``, ``_rows``, ``_messages``,
  ``_bytes``); counters are exposed with the ``_total`` suffix prometheus-client adds;
- label values come from small closed sets: verdicts, methods, alert kinds, table names, HTTP
  status codes, topic-partitions of the worker's own topics; a dead-letter reason is the name of
  the first failing top-level field of the wire format, anything else is ``other``
  (:func:`bounded`);
- one registry per worker (built by the shell, ``pipeline.app.build_runtime``, and handed to the
  agents as an argument), fresh in tests.

The README ("Observability") lists every metric; deploy/prometheus/ has the alert rules over them
and deploy/grafana/ the Pipeline board.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Final, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from schemas.alert import Alert, AlertStatus
from schemas.result import Result

PREFIX = "foodrisk"

# Work inside the worker: a screened batch, one ClickHouse insert.
LATENCY_BUCKETS_S: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# From the broker timestamp of a result to something the pipeline did with it (seconds to minutes).
PIPELINE_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
# From sampled_at (event time) to screening: a quick test takes minutes, a lab result days.
EVENT_AGE_BUCKETS_S: Final = (
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 172800.0, 345600.0, 604800.0,
)
BATCH_ROWS_BUCKETS: Final = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

OTHER: Final = "other"
# Dead-letter reasons (agents/batch.py `_reason_code`): a top-level wire-format field, or one of these.
DEADLETTER_REASONS: Final = frozenset(Result.model_fields) | {"malformed", "empty", "unknown"}
# The ``field`` of foodrisk_unclassified_results_total (agents/screened.py GAP_FIELDS).
UNCLASSIFIED_FIELDS: Final = ("commodity", "analyte")


def bounded(value: str, allowed: Iterable[str]) -> str:
    """``value`` when it is one of ``allowed``, else ``other``: keeps a label's cardinality closed."""
    return value if value in allowed else OTHER


def _version() -> str:
    try:
        return metadata.version("foodrisk")
    except metadata.PackageNotFoundError:  # running from a tree that was never installed
        return "unknown"


class Metrics(NamedTuple):
    """Every metric object of a worker. Field names are an API (agents, sinks, web views use them);
    new fields go at the end."""

    results_consumed: Counter  # foodrisk_results_consumed_total
    results_accepted: Counter  # foodrisk_results_accepted_total
    deadlettered: Counter  # foodrisk_results_deadlettered_total{reason}
    verdicts: Counter  # foodrisk_verdicts_total{verdict, method}
    alerts_raised: Counter  # foodrisk_alerts_raised_total{kind}
    sink_rows: Counter  # foodrisk_sink_rows_total{table}
    sink_batch_rows: Histogram  # foodrisk_sink_batch_rows{table}
    sink_flush_seconds: Histogram  # foodrisk_sink_flush_seconds{table}
    sink_failures: Counter  # foodrisk_sink_failures_total{table, transient}
    sink_retries: Counter  # foodrisk_sink_retries_total{table}
    screen_latency_seconds: Histogram  # foodrisk_screen_latency_seconds
    clickhouse_ready: Gauge  # foodrisk_clickhouse_ready
    # -- observability (issue 8) ---------------------------------------------------------------
    alerts_resolved: Counter  # foodrisk_alerts_resolved_total{kind}
    sampled_to_screened_seconds: Histogram  # foodrisk_sampled_to_screened_seconds
    result_to_alert_seconds: Histogram  # foodrisk_result_to_alert_seconds{kind}
    consumer_lag_messages: Gauge  # foodrisk_consumer_lag_messages{topic, partition}
    consumer_end_offset: Gauge  # foodrisk_consumer_end_offset{topic, partition}
    consumer_committed_offset: Gauge  # foodrisk_consumer_committed_offset{topic, partition}
    consumer_rereads: Counter  # foodrisk_consumer_rereads_total{topic}
    ingest_requests: Counter  # foodrisk_ingest_requests_total{status}
    build_info: Gauge  # foodrisk_build_info{version}
    # -- alert delivery (issue 7) --------------------------------------------------------------
    delivered_alerts: Counter  # foodrisk_delivered_alerts_total{target, status}
    delivery_failures: Counter  # foodrisk_delivery_failures_total{target, reason}
    parked_alerts: Counter  # foodrisk_parked_alerts_total{target, reason}
    delivery_seconds: Histogram  # foodrisk_delivery_seconds{target}
    delivery_target_up: Gauge  # foodrisk_delivery_target_up{target, url}
    alertmanager_firing_alerts: Gauge  # foodrisk_alertmanager_firing_alerts
    alertmanager_reposted_alerts: Counter  # foodrisk_alertmanager_reposted_alerts_total
    # -- HTTP ingest (issue 6; ingest_requests above) ------------------------------------------
    ingest_results: Counter  # foodrisk_ingest_results_total{outcome}
    # -- early warning -------------------------------------------------------------------------
    early_records: Counter  # foodrisk_early_records_total{outcome}
    # -- reference gaps (issue 19) ---------------------------------------------------------------
    unclassified_results: Counter  # foodrisk_unclassified_results_total{field}
    # -- reference editions --------------------------------------------------------------------
    reference_edition_info: Gauge  # foodrisk_reference_edition_info{edition}
    reference_reloads: Counter  # foodrisk_reference_reloads_total
    reference_reload_failures: Counter  # foodrisk_reference_reload_failures_total
    # -- early-warning tables (issue 21) -------------------------------------------------------
    early_changelog_writes: Counter  # foodrisk_early_changelog_writes_total{table}
    early_changelog_bytes: Counter  # foodrisk_early_changelog_bytes_total{table}
    early_table_keys: Gauge  # foodrisk_early_table_keys{table}


def create(registry: CollectorRegistry, prefix: str = PREFIX) -> Metrics:
    """All metric objects, registered on ``registry`` (one registry per worker, fresh in tests).

    Also registers the process collector (``foodrisk_process_resident_memory_bytes``,
    ``foodrisk_process_cpu_seconds_total``, ...) on the same registry.
    """
    p = prefix
    tp = ["topic", "partition"]
    m = Metrics(
        results_consumed=Counter(
            f"{p}_results_consumed", "Messages read from the results topic", registry=registry
        ),
        results_accepted=Counter(
            f"{p}_results_accepted", "Valid results screened and stored", registry=registry
        ),
        deadlettered=Counter(
            f"{p}_results_deadlettered",
            "Messages of the results topic sent to the dead-letter topic, by first failing field",
            ["reason"],
            registry=registry,
        ),
        verdicts=Counter(f"{p}_verdicts", "Screening verdicts", ["verdict", "method"], registry=registry),
        alerts_raised=Counter(
            f"{p}_alerts_raised", "Firing alert messages on the alerts topic (new or updated)", ["kind"],
            registry=registry,
        ),
        sink_rows=Counter(f"{p}_sink_rows", "Rows written to ClickHouse", ["table"], registry=registry),
        sink_batch_rows=Histogram(
            f"{p}_sink_batch_rows",
            "Rows per ClickHouse insert",
            ["table"],
            buckets=BATCH_ROWS_BUCKETS,
            registry=registry,
        ),
        sink_flush_seconds=Histogram(
            f"{p}_sink_flush_seconds",
            "Time of one ClickHouse insert, retries included",
            ["table"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        ),
        sink_failures=Counter(
            f"{p}_sink_failures", "Failed ClickHouse insert attempts", ["table", "transient"], registry=registry
        ),
        sink_retries=Counter(f"{p}_sink_retries", "ClickHouse insert retries", ["table"], registry=registry),
        screen_latency_seconds=Histogram(
            f"{p}_screen_latency_seconds",
            "From the broker timestamp of a result to its batch being stored and acknowledged",
            buckets=PIPELINE_BUCKETS_S,
            registry=registry,
        ),
        clickhouse_ready=Gauge(
            f"{p}_clickhouse_ready", "1 when the last ClickHouse insert succeeded, else 0", registry=registry
        ),
        alerts_resolved=Counter(
            f"{p}_alerts_resolved", "Resolved alert messages on the alerts topic", ["kind"], registry=registry
        ),
        sampled_to_screened_seconds=Histogram(
            f"{p}_sampled_to_screened_seconds",
            "From a result's sampled_at (event time) to its screening",
            buckets=EVENT_AGE_BUCKETS_S,
            registry=registry,
        ),
        result_to_alert_seconds=Histogram(
            f"{p}_result_to_alert_seconds",
            "From the broker timestamp of the result that raised an alert to the alert being published",
            ["kind"],
            buckets=PIPELINE_BUCKETS_S,
            registry=registry,
        ),
        consumer_lag_messages=Gauge(
            f"{p}_consumer_lag_messages",
            "Messages of an assigned partition not yet committed by this worker (end offset - committed offset)",
            tp,
            registry=registry,
        ),
        consumer_end_offset=Gauge(
            f"{p}_consumer_end_offset", "End offset (high-water mark) of an assigned partition", tp, registry=registry
        ),
        consumer_committed_offset=Gauge(
            f"{p}_consumer_committed_offset",
            "Offset this worker's group committed for an assigned partition (next message to read)",
            tp,
            registry=registry,
        ),
        consumer_rereads=Counter(
            f"{p}_consumer_rereads",
            "Stalled partitions sought back to their committed offset and read again",
            ["topic"],
            registry=registry,
        ),
        ingest_requests=Counter(
            f"{p}_ingest_requests", "POST /v1/results requests by answer status code", ["status"], registry=registry
        ),
        build_info=Gauge(
            f"{p}_build_info", "Always 1; the foodrisk version as a label", ["version"], registry=registry
        ),
        delivered_alerts=Counter(
            f"{p}_delivered_alerts",
            "Alerts a delivery target (alertmanager, webhook) accepted, by alert status",
            ["target", "status"],
            registry=registry,
        ),
        delivery_failures=Counter(
            f"{p}_delivery_failures",
            "Failed delivery attempts (unavailable: retried; rejected: the target refused the payload)",
            ["target", "reason"],
            registry=registry,
        ),
        parked_alerts=Counter(
            f"{p}_parked_alerts",
            "Alerts set aside in ClickHouse parked_alerts (not taken before the give-up horizon, or refused)",
            ["target", "reason"],
            registry=registry,
        ),
        delivery_seconds=Histogram(
            f"{p}_delivery_seconds",
            "From the first delivery attempt of a batch of alerts to the target accepting it, retries included",
            ["target"],
            buckets=PIPELINE_BUCKETS_S,
            registry=registry,
        ),
        delivery_target_up=Gauge(
            f"{p}_delivery_target_up",
            "1 when the last delivery attempt to this URL succeeded, else 0",
            ["target", "url"],
            registry=registry,
        ),
        alertmanager_firing_alerts=Gauge(
            f"{p}_alertmanager_firing_alerts",
            "Firing alerts this worker keeps current in Alertmanager (re-posted every period)",
            registry=registry,
        ),
        alertmanager_reposted_alerts=Counter(
            f"{p}_alertmanager_reposted_alerts",
            "Firing alerts re-posted to Alertmanager by the re-post timer",
            registry=registry,
        ),
        ingest_results=Counter(
            f"{p}_ingest_results",
            "Results posted over HTTP by outcome (accepted, rejected, duplicate)",
            ["outcome"],
            registry=registry,
        ),
        early_records=Counter(
            f"{p}_early_records",
            "Screened records through an early-warning step: fresh, duplicate (seen before), late (sampled "
            "before the de-duplication horizon)",
            ["outcome"],
            registry=registry,
        ),
        unclassified_results=Counter(
            f"{p}_unclassified_results",
            "Results screened unclassified: a label the reference data does not know, by field (commodity, "
            "analyte)",
            ["field"],
            registry=registry,
        ),
        reference_edition_info=Gauge(
            f"{p}_reference_edition_info",
            "Always 1, for the reference edition this worker screens with (ref-<12 hex> of its CSV files)",
            ["edition"],
            registry=registry,
        ),
        reference_reloads=Counter(
            f"{p}_reference_reloads",
            "New reference editions loaded by a running worker (FOODRISK_REFERENCE_DIR)",
            registry=registry,
        ),
        reference_reload_failures=Counter(
            f"{p}_reference_reload_failures",
            "New reference editions refused (unreadable or invalid): the edition in force stays",
            registry=registry,
        ),
        early_changelog_writes=Counter(
            f"{p}_early_changelog_writes",
            "Early-warning table writes (each one changelog record: a changed key, or a delete)",
            ["table"],
            registry=registry,
        ),
        early_changelog_bytes=Counter(
            f"{p}_early_changelog_bytes",
            "Bytes of the early-warning table writes: encoded key plus encoded value (none for a delete)",
            ["table"],
            registry=registry,
        ),
        early_table_keys=Gauge(
            f"{p}_early_table_keys",
            "Keys held by each early-warning table after the last step",
            ["table"],
            registry=registry,
        ),
    )
    for field in UNCLASSIFIED_FIELDS:  # both series from the start: a rate() over a new series misses its first count
        m.unclassified_results.labels(field)
    m.build_info.labels(_version()).set(1)
    m.clickhouse_ready.set(1)
    ProcessCollector(namespace=p, registry=registry)
    return m


def count_alert(metrics: Metrics, alert: Alert) -> None:
    """Count an alert message on the alerts topic: firing (new or updated) or resolved. Called where
    every alert passes once, whoever raised it (agents/archive.py)."""
    if alert.status is AlertStatus.resolved:
        metrics.alerts_resolved.labels(alert.kind).inc()
    else:
        metrics.alerts_raised.labels(alert.kind).inc()


def count_unclassified(metrics: Metrics, counts: Mapping[str, int]) -> None:
    """Count a batch's unclassified results by the field whose label was unknown (``commodity``,
    ``analyte``; anything else is ``other``)."""
    for field, n in counts.items():
        metrics.unclassified_results.labels(bounded(field, UNCLASSIFIED_FIELDS)).inc(n)


def observe_alert_latency(metrics: Metrics, alert: Alert, *, source_timestamp: float | None, now: float) -> None:
    """Time from the broker timestamp of the result that raised a firing alert (``source_timestamp``,
    seconds; None or 0: unknown) to the alert being published at ``now``."""
    if alert.status is AlertStatus.firing and source_timestamp:
        metrics.result_to_alert_seconds.labels(alert.kind).observe(max(0.0, now - source_timestamp))


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
