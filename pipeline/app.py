"""The one Faust app: built from Settings, with its topics, agents, web views and the query port.

The shell reads Settings here, once, and hands each agent a small frozen config of plain values
(``screening_config``, ``early_warning_config``, ``delivery_config``) and the metrics object: no
agent imports ``pipeline``."""

from __future__ import annotations

import logging

import faust
from faust.types import TopicT
from prometheus_client import CollectorRegistry

from agents import metrics as metrics_mod
from agents.archive import register_archivers
from agents.delivery import DeliveryConfig, register_delivery
from agents.early.common import EarlyParams
from agents.early_agent import EarlyWarningConfig, install_early_warning, screened_topic_of
from agents.faust_internals import configure_transport
from agents.screening import CurrentReference, ScreeningConfig, register_screening
from pipeline.faust_config import faust_options
from pipeline.ingest.views import register_ingest_views
from pipeline.lag import register_lag_monitor
from pipeline.query.server import register_query_server
from pipeline.refdata import configured_reference, load_configured_reference, register_reference_watch
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.web import only_our_paths, register_views
from schemas.reference import Reference
from sinks.alertmanager import parse_urls
from sinks.clickhouse import ClickHouse
from sinks.presentation import Links
from sinks.writer import ClickHouseWriter

log = logging.getLogger(__name__)


def build_runtime(
    settings: Settings,
    bootstrap: list[str],
    clickhouse: ClickHouse,
    *,
    reference: Reference | None = None,
) -> Runtime:
    """The Faust app with every agent registered; the caller runs it (see pipeline.worker).

    ``reference``: the reference files (the configured cut-offs are applied here); default those
    of FOODRISK_REFERENCE_DIR, else the packaged data. A new edition written there later is put in
    force by a timer (pipeline/refdata.py) for the screening agent.
    """
    reference = (
        load_configured_reference(settings) if reference is None else configured_reference(settings, reference)
    )
    current_reference = CurrentReference(reference)
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
            app, early_warning_config(settings, reference), alerts_topic=alerts_topic, writer=writer, metrics=metrics
        )
    else:
        screened_topic = screened_topic_of(app, settings.screened_topic)
    if "screen" in agents:
        register_screening(
            app,
            results_topic=results_topic,
            alerts_topic=alerts_topic,
            deadletter_topic=deadletter_topic,
            writer=writer,
            config=screening_config(settings, reference),
            metrics=metrics,
            screened_topic=screened_topic,
            current=current_reference,
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
    register_reference_watch(app, settings, current_reference, metrics)  # README "Reference editions"
    runtime = Runtime(
        settings=settings,
        app=app,
        clickhouse=clickhouse,
        writer=writer,
        reference=reference,
        current_reference=current_reference,
        registry=registry,
        metrics=metrics,
        results_topic=results_topic,
        alerts_topic=alerts_topic,
        deadletter_topic=deadletter_topic,
    )
    register_views(runtime)
    register_ingest_views(runtime)  # POST /v1/results, /openapi.json, /docs (README "Ingest")
    register_query_server(runtime)  # POST /v1/query on its own port (README "Analysts")
    return runtime


# -- the agents' configs: Settings read once, handed on as plain values --------------------------


def screening_config(settings: Settings, reference: Reference) -> ScreeningConfig:
    return ScreeningConfig(
        reference=reference,
        watch_fraction=settings.watch_fraction,
        max_rows=settings.sink_max_rows,
        max_age_s=settings.sink_max_age_s,
        max_batch_items=settings.max_batch_items,
        batches_in_flight=settings.sink_batches_in_flight,
    )


def early_warning_config(settings: Settings, reference: Reference) -> EarlyWarningConfig:
    """The early-warning agent's config from the ``ew_*`` settings; the enzyme-prone foods (quick
    tests prone to false positives) come from the reference."""
    prone = frozenset(f.code for f in reference.foods if f.enzyme_false_positive)
    if settings.ew_table_shards is not None:
        log.warning("FOODRISK_EW_TABLE_SHARDS is deprecated and ignored: the early-warning tables hold one key per "
                    "detector key")
    params = EarlyParams(
        grace_s=int(settings.ew_grace_s),
        surge_window_h=settings.ew_surge_window_h,
        surge_step_h=settings.ew_surge_step_h,
        surge_min_n=settings.ew_surge_min_n,
        surge_min_positives=settings.ew_surge_min_positives,
        surge_alpha=settings.ew_surge_alpha,
        baseline_quick=settings.ew_baseline_quick,
        baseline_lab=settings.ew_baseline_lab,
        baseline_enzyme_prone=settings.ew_baseline_enzyme_prone,
        enzyme_prone=prone,
        cusum_shift=settings.ew_cusum_shift,
        cusum_h=settings.ew_cusum_h,
        offender_n=settings.ew_offender_n,
        offender_days=settings.ew_offender_days,
        offender_clean_k=settings.ew_offender_clean_k,
        cluster_window_h=settings.ew_cluster_window_h,
        cluster_min_sites=settings.ew_cluster_min_sites,
        unconfirmed_h=settings.ew_unconfirmed_h,
        silent_min_h=settings.ew_silent_min_h,
        silent_min_peer_results=settings.ew_silent_min_peer_results,
        drift_alpha=settings.ew_drift_alpha,
        drift_min_positives=settings.ew_drift_min_positives,
    )
    return EarlyWarningConfig(
        screened_topic=settings.screened_topic,
        params=params,
        max_rows=settings.sink_max_rows,
        max_age_s=settings.ew_batch_max_age_s,
    )


def delivery_config(settings: Settings) -> DeliveryConfig:
    """The delivery agents' config (Alertmanager, webhook)."""
    secret = settings.webhook_secret.get_secret_value().encode() if settings.webhook_secret else None
    return DeliveryConfig(
        alertmanager_urls=parse_urls(settings.alertmanager_url) if settings.alertmanager_url else (),
        webhook_url=settings.webhook_url,
        webhook_secret=secret,
        links=Links(grafana_url=settings.grafana_url, runbook_url=settings.runbook_url),
        resend_s=settings.alertmanager_resend_s,
        active_s=settings.alertmanager_active_s,
        alertmanager_give_up_s=settings.alertmanager_give_up_s,
        webhook_give_up_s=settings.webhook_give_up_s,
        timeout_s=settings.delivery_timeout_s,
        retry_cap_s=settings.sink_retry_cap_s,
        max_rows=settings.sink_max_rows,
        max_age_s=settings.sink_max_age_s,
        database=settings.database,
    )
