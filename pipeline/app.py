"""The one Faust app: built from Settings, with its topics, agents, web views and the query port."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust
from faust.types import TopicT
from prometheus_client import CollectorRegistry

from agents.archive import register_archivers
from agents.delivery import delivery_config, register_delivery
from agents.early_agent import install_early_warning, screened_topic_of
from agents.screening import ScreeningConfig, register_screening
from pipeline import metrics as metrics_mod
from pipeline.faust_config import configure_transport, faust_options
from pipeline.lag import register_lag_monitor
from pipeline.refdata import configured_reference
from pipeline.settings import Settings
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


def build_runtime(
    settings: Settings,
    bootstrap: list[str],
    clickhouse: ClickHouse,
    *,
    reference: Reference | None = None,
) -> Runtime:
    """The Faust app with every agent registered; the caller runs it (see pipeline.worker)."""
    reference = configured_reference(settings, reference or default_reference())
    from pipeline.web import only_our_paths

    options = faust_options(settings, bootstrap)
    options["web_application_options"] = {"middlewares": [only_our_paths()]}  # the device port serves ours only
    app = faust.App(settings.app_id, **options)
    configure_transport(app)
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
        database=settings.database,
        retry_cap_s=settings.sink_retry_cap_s,
        observer=metrics_mod.SinkObserver(metrics),
    )
    agents = settings.agent_set  # FOODRISK_AGENTS: every agent, or a chosen few (README "Scaling out")
    if "early" in agents:  # early warning (README "Early warning")
        screened_topic = install_early_warning(
            app, settings, reference=reference, alerts_topic=alerts_topic, writer=writer, metrics=metrics
        )
    else:
        screened_topic = screened_topic_of(app, settings)
    if "screen" in agents:
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
                max_batch_items=settings.max_batch_items,
                batches_in_flight=settings.sink_batches_in_flight,
            ),
            metrics=metrics,
            screened_topic=screened_topic,
        )
    if "archive" in agents:
        register_archivers(
            app,
            alerts_topic=alerts_topic,
            deadletter_topic=deadletter_topic,
            writer=writer,
            max_rows=settings.sink_max_rows,
            max_age_s=settings.sink_max_age_s,
            metrics=metrics,
        )
    if "deliver" in agents and (settings.alertmanager_url or settings.webhook_url):  # README "Alert delivery"
        register_delivery(
            app, alerts_topic=alerts_topic, writer=writer, config=delivery_config(settings), metrics=metrics
        )
    register_lag_monitor(app, metrics, interval_s=settings.metrics_lag_interval_s,
                         stall_s=settings.consumer_stall_s)
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
    from pipeline.ingest import register_ingest_views
    from pipeline.query_server import register_query_server
    from pipeline.web import register_views

    register_views(runtime)
    register_ingest_views(runtime)  # POST /v1/results, /openapi.json, /docs (README "Ingest")
    register_query_server(runtime)  # POST /v1/query on its own port (README "Analysts")
    return runtime
