"""The delivery agents' Faust wiring: one agent per configured target on the alerts topic, acks, partitions.

Per batch: decode the alerts, hand them to the target (``agents/delivery/targets.py``), and ack the
batch's events only once every alert was taken or parked. Faust commits an offset once every agent
on the topic acked it, so an alert is never committed before each target took it or it was parked.
A shutdown or a rebalance during the retries releases the batch unacked
(:class:`~agents.delivery.policy.DeliveryInterrupted`): it is delivered after the restart, not parked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from faust.types import TP, AgentT, AppT, EventT, StreamT, TopicT
from mode import CrashingSupervisor

from agents.delivery.config import TARGET_ALERTMANAGER, DeliveryConfig
from agents.delivery.policy import DeliveryInterrupted, Item
from agents.delivery.targets import AlertmanagerDelivery, WebhookDelivery
from agents.faust_internals import release_unacked
from agents.metrics import Metrics
from agents.streams import event_batches, manual_ack
from schemas.alert import Alert
from sinks.alertmanager import AlertmanagerSink
from sinks.errors import AlertmanagerSinkError
from sinks.http import safe_url
from sinks.webhook import WebhookSink
from sinks.writer import ClickHouseWriter

log = logging.getLogger(__name__)


def decode(events: Sequence[EventT[Any]]) -> list[Item]:
    """The alerts among ``events``; a foreign message is logged and skipped (only foodrisk writes the topic)."""
    items: list[Item] = []
    for e in events:
        m = e.message
        raw = m.value or b""
        try:
            alert = Alert.from_json(raw)
        except ValueError:
            log.warning("alerts topic %s[%s]@%s: not an alert, not delivered", m.topic, m.partition, m.offset)
            continue
        items.append(Item(alert, raw, m.topic, m.partition, m.offset))
    return items


def _partitions(tps: set[TP], topic: str) -> set[int]:
    return {tp.partition for tp in tps if tp.topic == topic}


def _agent(
    app: AppT, topic: TopicT, name: str, config: DeliveryConfig, deliver: Callable[[list[Item]], Awaitable[Any]]
) -> AgentT[Any]:
    async def handle(events: list[EventT[Any]]) -> bool:
        """True once every alert of ``events`` was taken or parked; False if interrupted."""
        items = decode(events)
        if not items:
            return True
        try:
            await deliver(items)
        except DeliveryInterrupted as exc:
            # released, not acked: the offsets stay uncommitted (see DeliveryInterrupted)
            release_unacked(app, (e.message for e in events))
            log.warning("%s; %d alert(s) not acknowledged: read and delivered again after the restart or rebalance",
                        exc, len(items))
            return False
        return True

    @app.agent(topic, name=name, supervisor_strategy=CrashingSupervisor)
    async def deliver_alerts(stream: StreamT[bytes]) -> None:
        s = manual_ack(stream)
        async for events in event_batches(s, config.max_rows, config.max_age_s):
            if await handle(events):
                for e in events:
                    await s.ack(e)

    return deliver_alerts


def register_delivery(
    app: AppT,
    *,
    alerts_topic: TopicT,
    writer: ClickHouseWriter,
    config: DeliveryConfig,
    metrics: Metrics,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[AgentT[Any]]:
    """Register the delivery agents for the configured targets (none configured: none)."""
    agents: list[AgentT[Any]] = []
    closers: list[Callable[[], Awaitable[None]]] = []

    def interrupted() -> bool:
        return bool(app.should_stop or app.rebalancing)

    am: AlertmanagerDelivery | None = None
    if config.alertmanager_urls:

        def observe_attempt(url: str, err: AlertmanagerSinkError | None) -> None:
            metrics.delivery_target_up.labels(TARGET_ALERTMANAGER, safe_url(url)).set(0 if err else 1)

        am_sink = AlertmanagerSink(config.alertmanager_urls, timeout_s=config.timeout_s, observer=observe_attempt)
        am = AlertmanagerDelivery(
            am_sink, writer=writer, metrics=metrics, config=config, clock=clock, interrupted=interrupted
        )
        agents.append(_agent(app, alerts_topic, "deliver_to_alertmanager", config, am.deliver))
        closers.append(am_sink.close)
        topic_name = alerts_topic.get_topic_name()
        am_delivery = am

        # faust sends (app, partitions): assigned is the whole new assignment, revoked what left.
        async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
            am_delivery.set_assignment(_partitions(set(args[0]), topic_name))

        async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
            am_delivery.revoke(_partitions(set(args[0]), topic_name))

        # cast: mode types a handler's first argument as the signal's value type, faust sends the app
        app.on_partitions_assigned.connect(cast(Any, on_assigned))
        app.on_partitions_revoked.connect(cast(Any, on_revoked))
        log.info(
            "alert delivery: Alertmanager %s (re-post every %gs, give up after %gs)",
            ", ".join(safe_url(u) for u in config.alertmanager_urls), config.resend_s, config.alertmanager_give_up_s,
        )
    if config.webhook_url:
        if not config.webhook_secret:
            raise ValueError("a webhook needs a secret (FOODRISK_WEBHOOK_SECRET)")
        wh_sink = WebhookSink(config.webhook_url, config.webhook_secret, timeout_s=config.timeout_s)
        wh = WebhookDelivery(
            wh_sink, writer=writer, metrics=metrics, config=config, clock=clock, interrupted=interrupted
        )
        agents.append(_agent(app, alerts_topic, "deliver_to_webhook", config, wh.deliver))
        closers.append(wh_sink.close)
        log.info("alert delivery: webhook %s (give up after %gs)", wh_sink.display_url, config.webhook_give_up_s)
    if not agents:
        return agents

    @app.task
    async def keep_alertmanager_current() -> None:
        try:
            if am is not None:
                await am.keep_current()
            else:
                await asyncio.Event().wait()  # only here to close the sinks at shutdown
        finally:
            for close in closers:
                with contextlib.suppress(Exception):
                    await close()

    return agents
