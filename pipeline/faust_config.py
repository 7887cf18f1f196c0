"""Faust app options from Settings (kept apart from the wiring so small apps can reuse them). The
transport classes that reach into Faust's internals are in agents/faust_internals.py."""

from __future__ import annotations

import logging
from typing import Any

import faust

from pipeline.settings import Settings

_log = logging.getLogger(__name__)


def faust_options(settings: Settings, bootstrap: list[str]) -> dict[str, Any]:
    """Options for ``faust.App``; creates the data directory Faust expects to exist."""
    datadir = (settings.data_dir / "faust").resolve()
    datadir.mkdir(parents=True, exist_ok=True)
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
        # Shutdown must not wait for unacked events: with manual acks an event sitting in a batch
        # buffer (or a delivery waiting out an outage) is never acked before the stream stops, so
        # Faust would wait its full timeout. Unacked offsets are not committed: they are read again.
        "stream_wait_empty": False,
        "producer_acks": -1,
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        # Faust's own pages answer anyone and show internals: /router/ (cluster topology), /table/
        # (table contents), / and /assignment/ (sensor counters), /graph/, /performance/. None is served.
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_metrics_enabled": False,
        "datadir": str(datadir),
        "key_serializer": "raw",
        "value_serializer": "raw",
        "logging_config": None,
        "broker_credentials": _credentials(settings),
        "producer_linger_ms": 5,
    }
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
