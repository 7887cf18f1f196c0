"""Faust app options per broker flavor (kept apart from the agents so small apps can reuse them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust

from pipeline.settings import BrokerFlavor, Settings


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
        "datadir": str(datadir),
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


def _idempotent_producer_class() -> type:
    from faust.transport.drivers.aiokafka import Producer

    class IdempotentProducer(Producer):
        """faust's aiokafka producer with the idempotent producer always on (faust enables it only
        inside transactions): a retried send after a lost acknowledgement is not written twice."""

        def _settings_extra(self) -> Mapping[str, Any]:
            return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    return IdempotentProducer


def configure_producer(app: faust.App, settings: Settings) -> None:
    """Real Kafka (flavor kafka): every producer of ``app`` is idempotent with acks=all, batching
    normally. The embedded broker (flavor tansu) keeps faust's producer (one record per batch)."""
    if settings.flavor is BrokerFlavor.KAFKA:
        # Per app (this transport instance), not faust's class attribute for every app.
        app.transport.Producer = _idempotent_producer_class()  # type: ignore[misc]
