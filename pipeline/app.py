"""The one Faust app: built from Settings, with its topics, agents and web views."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TopicT
from prometheus_client import CollectorRegistry

from agents.archive import register_archivers
from agents.screening import ScreeningConfig, register_screening
from pipeline import metrics as metrics_mod
from pipeline.settings import BrokerFlavor, Settings
from schemas.reference import Reference, default_reference
from sinks.clickhouse import ClickHouse
from sinks.writer import ClickHouseWriter

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a running worker holds (handed to web views and tests)."""

    settings: Settings
    app: faust.App
    clickhouse: ClickHouse
    writer: ClickHouseWriter
    reference: Reference
    registry: CollectorRegistry
    metrics: metrics_mod.Metrics
    results_topic: TopicT
    alerts_topic: TopicT
    deadletter_topic: TopicT


def faust_options(settings: Settings, bootstrap: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "broker": [f"kafka://{b}" for b in bootstrap],
        "store": "memory://",
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": max(1.0, settings.session_timeout_s / 4),
        "broker_commit_interval": 1.0,
        "producer_acks": -1,
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "datadir": str(settings.data_dir / "faust"),
        "key_serializer": "raw",
        "value_serializer": "raw",
        "logging_config": None,
        "broker_credentials": _credentials(settings),
    }
    if settings.flavor is BrokerFlavor.TANSU:
        # Tansu reports a wrong high-water mark for multi-record batches: one record per batch.
        opts.update(producer_max_batch_size=1, producer_linger_ms=0)
    else:
        opts.update(producer_linger_ms=5)
    return opts


def _credentials(settings: Settings) -> Any:
    proto = settings.broker_security_protocol
    if proto == "PLAINTEXT":
        return None
    ssl_context = None
    if proto in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(settings.broker_ssl_cafile) if settings.broker_ssl_cafile else None
        )
    if proto == "SSL":
        return faust.SSLCredentials(ssl_context)
    password = settings.broker_sasl_password.get_secret_value() if settings.broker_sasl_password else ""
    mechanism = settings.broker_sasl_mechanism
    if mechanism == "PLAIN":
        return faust.SASLCredentials(
            username=settings.broker_sasl_username, password=password, ssl_context=ssl_context
        )
    return faust.SASLCredentials(
        username=settings.broker_sasl_username, password=password, ssl_context=ssl_context, mechanism=mechanism
    )


def build_runtime(
    settings: Settings,
    bootstrap: list[str],
    clickhouse: ClickHouse,
    *,
    reference: Reference | None = None,
) -> Runtime:
    """The Faust app with every agent registered; the caller runs it (see pipeline.worker)."""
    reference = reference or default_reference()
    app = faust.App(settings.app_id, **faust_options(settings, bootstrap))
    registry = CollectorRegistry()
    metrics = metrics_mod.create(registry)

    def topic(name: str) -> TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions)

    results_topic, alerts_topic, deadletter_topic = (
        topic(settings.results_topic),
        topic(settings.alerts_topic),
        topic(settings.deadletter_topic),
    )
    writer = ClickHouseWriter(
        clickhouse,
        database=settings.clickhouse_database,
        retry_cap_s=settings.sink_retry_cap_s,
        observer=metrics_mod.SinkObserver(metrics),
    )
    register_screening(
        app,
        results_topic=results_topic,
        alerts_topic=alerts_topic,
        deadletter_topic=deadletter_topic,
        writer=writer,
        config=ScreeningConfig(
            reference=reference,
            watch_fraction=settings.watch_fraction,
            max_rows=settings.sink_max_rows,
            max_age_s=settings.sink_max_age_s,
        ),
        metrics=metrics,
    )
    register_archivers(
        app,
        alerts_topic=alerts_topic,
        deadletter_topic=deadletter_topic,
        writer=writer,
        max_rows=settings.sink_max_rows,
        max_age_s=settings.sink_max_age_s,
    )
    runtime = Runtime(
        settings=settings,
        app=app,
        clickhouse=clickhouse,
        writer=writer,
        reference=reference,
        registry=registry,
        metrics=metrics,
        results_topic=results_topic,
        alerts_topic=alerts_topic,
        deadletter_topic=deadletter_topic,
    )
    from pipeline.web import register_views

    register_views(runtime)
    return runtime
