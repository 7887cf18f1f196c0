"""Alert delivery agents: the alerts topic -> Alertmanager (API v2) and a signed webhook.

Each target has its own agent on the alerts topic (manual acks, like the archive agent), so a
webhook outage does not hold Alertmanager deliveries back, and the reverse. Per batch:

1. post the batch's alerts, retrying with capped, jittered backoff (``sinks.retry``) while the
   target is unreachable or answers 5xx/401/403/404 (a fixable configuration), for at most the
   give-up horizon (``FOODRISK_ALERTMANAGER_GIVE_UP_S`` / ``FOODRISK_WEBHOOK_GIVE_UP_S``);
2. a batch refused as a whole (HTTP 400/413/422) is split and sent alert by alert, so only the
   alert that is itself refused is set aside;
3. alerts not taken by the horizon, and refused ones, are **parked**: a row in ClickHouse
   ``parked_alerts`` (through the ClickHouseWriter, which waits out a ClickHouse outage) plus
   ``foodrisk_parked_alerts_total{target,reason}`` and an error log line;
4. only then are the batch's events acked. Faust commits an offset once every agent on the
   topic acked it, so an alert is never committed before each target took it or it was parked;
5. a shutdown or a rebalance during the retries releases the batch unacked
   (:class:`DeliveryInterrupted`): it is delivered after the restart, not parked.

Alertmanager accepts a batch when at least one of its URLs (an HA pair) accepted it. Members of
an HA pair share silences and notification logs, not alerts; the re-post timer below sends every
firing alert to every URL, which brings a member that was away up to date within one period.

Keeping Alertmanager current (:class:`AlertmanagerDelivery.keep_current`, one task per worker):
firing alerts are posted with ``endsAt = now + 4 x FOODRISK_ALERTMANAGER_RESEND_S`` and re-posted
every ``FOODRISK_ALERTMANAGER_RESEND_S`` seconds, so they stay active for as long as foodrisk says,
and end by themselves within four periods when it stops (or when the worker is gone). A resolved
alert is posted once with its ``endsAt`` and leaves the re-post set. The set
(:class:`agents.firing.FiringAlerts`) follows the worker's partitions of the alerts topic and is
rebuilt from ClickHouse ``alerts`` after a start or a rebalance. A firing alert with no update for
``FOODRISK_ALERTMANAGER_ACTIVE_S`` (default a day) leaves the set: single-result alerts never
resolve, and Alertmanager would otherwise repeat them forever. A parked firing alert stays in the
set, so it reaches Alertmanager once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import orjson
from faust.types import TP, AgentT, AppT, EventT, StreamT, TopicT
from mode import CrashingSupervisor

from agents.faust_internals import release_unacked
from agents.firing import FiringAlerts
from agents.metrics import Metrics
from agents.records import as_row, naive_utc
from agents.streams import event_batches, manual_ack
from schemas.alert import Alert
from sinks.alertmanager import AlertmanagerSink, Links, safe_url, severity_for, to_alertmanager
from sinks.ddl import PARKED_ALERTS_COLUMNS
from sinks.errors import AlertmanagerSinkError, DeliverySinkError
from sinks.retry import RetryPolicy, retry_async
from sinks.webhook import WebhookSink, webhook_body
from sinks.writer import ClickHouseWriter

log = logging.getLogger(__name__)

TARGET_ALERTMANAGER = "alertmanager"
TARGET_WEBHOOK = "webhook"
FIRING_TTL_PERIODS = 4  # a firing alert's endsAt is this many re-post periods ahead
ALERTMANAGER_MAX_ALERTS = 500  # alerts per POST
WEBHOOK_MAX_ALERTS = 100
LOAD_RETRY_S = 5.0  # a failed rebuild from ClickHouse is tried again this soon
MIN_ATTEMPT_WINDOW_S = 1.0  # a split batch still gets this long for its alerts


@dataclass(frozen=True)
class DeliveryConfig:
    """What the delivery agents need, as plain values (the shell builds it from its settings:
    ``pipeline.app.delivery_config``)."""

    alertmanager_urls: tuple[str, ...]
    webhook_url: str | None
    webhook_secret: bytes | None
    links: Links
    resend_s: float
    active_s: float
    alertmanager_give_up_s: float
    webhook_give_up_s: float
    timeout_s: float
    retry_cap_s: float
    max_rows: int
    max_age_s: float
    database: str

    @property
    def firing_ttl_s(self) -> float:
        return FIRING_TTL_PERIODS * self.resend_s


class Item(NamedTuple):
    """One alert as read from the topic."""

    alert: Alert
    raw: bytes
    topic: str
    partition: int
    offset: int


class DeliveryInterrupted(Exception):
    """The worker is stopping or rebalancing while a batch waits for its target.

    Faust waits, at shutdown and at each rebalance, until every message handed to an agent is
    acked (``Consumer.wait_empty``); a delivery retrying for up to the give-up horizon would hold
    both for that long. So the batch is released instead: its messages leave the consumer's
    ``unacked`` set without an ack, their offsets are not committed, and the alerts are read again
    after the restart (or by the partition's owner after the rebalance, from the committed offset).
    """


class Parked(NamedTuple):
    item: Item
    reason: str  # unavailable | rejected
    error: str
    attempts: int
    first_attempt_at: datetime


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


def parked_values(target: str, p: Parked, *, parked_at: datetime) -> dict[str, Any]:
    a = p.item.alert
    return {
        "target": target,
        "alert_id": a.alert_id,
        "status": str(a.status),
        "kind": a.kind,
        "severity": severity_for(a.classification, a.risk),
        "district": a.district,
        "reason": p.reason,
        "error": p.error[:2000],
        "attempts": p.attempts,
        "first_attempt_at": naive_utc(p.first_attempt_at),
        "parked_at": naive_utc(parked_at),
        "alert": p.item.raw.decode("utf-8", "replace"),
        "src_topic": p.item.topic,
        "src_partition": p.item.partition,
        "src_offset": p.item.offset,
    }


class _Deliverer:
    """Shared by both targets: retries until the horizon, split on refusal, park what is left."""

    target: str

    def __init__(
        self,
        *,
        writer: ClickHouseWriter,
        metrics: Metrics,
        retry_cap_s: float,
        give_up_s: float,
        clock: Callable[[], datetime],
        interrupted: Callable[[], bool] = lambda: False,
    ) -> None:
        self._writer = writer
        self._metrics = metrics
        self._cap = retry_cap_s
        self._give_up_s = give_up_s
        self._clock = clock
        self._interrupted = interrupted

    def check_interrupted(self) -> None:
        if self._interrupted():
            raise DeliveryInterrupted(f"{self.target}: worker stopping or rebalancing")

    async def _sleep(self, delay: float) -> None:
        """The backoff sleep, cut short by a shutdown or a rebalance (DeliveryInterrupted)."""
        end = time.monotonic() + delay
        while True:
            self.check_interrupted()
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.25))

    async def _send(self, items: Sequence[Item]) -> None:
        raise NotImplementedError

    def _delivered(self, items: Sequence[Item]) -> None:
        """Called once the target took ``items``."""

    def _parked(self, parked: Sequence[Parked]) -> None:
        """Called once ``parked`` are stored."""

    async def deliver(self, items: Sequence[Item]) -> list[Parked]:
        """Deliver ``items`` or park them; returns the parked ones (already stored)."""
        started = time.monotonic()
        parked = await self._attempt(list(items), started + self._give_up_s)
        parked_ids = {id(p.item) for p in parked}
        delivered = [i for i in items if id(i) not in parked_ids]
        if delivered:
            self._metrics.delivery_seconds.labels(self.target).observe(time.monotonic() - started)
            for i in delivered:
                self._metrics.delivered_alerts.labels(self.target, str(i.alert.status)).inc()
            self._delivered(delivered)
        if parked:
            await self._park(parked)
            self._parked(parked)
        return parked

    async def _attempt(self, items: list[Item], deadline: float) -> list[Parked]:
        first_at = self._clock()
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            try:
                await self._send(items)
            except DeliverySinkError as exc:
                reason = "unavailable" if exc.retriable else "rejected"
                self._metrics.delivery_failures.labels(self.target, reason).inc()
                raise

        def on_retry(n: int, exc: Exception, delay: float) -> None:
            left = max(0.0, deadline - time.monotonic())
            log.warning(
                "%s: %d alert(s) not delivered, attempt %d: %s; retrying in %.1fs (parked in %.0fs if it stays so)",
                self.target, len(items), n, exc, delay, left,
            )

        window = max(deadline - time.monotonic(), MIN_ATTEMPT_WINDOW_S)
        policy = RetryPolicy(base_s=min(0.5, self._cap), cap_s=self._cap, deadline_s=window)
        try:
            await retry_async(attempt, policy, on_retry=on_retry, sleep=self._sleep)
        except DeliverySinkError as exc:
            if exc.retriable:
                return [Parked(i, "unavailable", str(exc), attempts, first_at) for i in items]
            if len(items) == 1:
                return [Parked(items[0], "rejected", str(exc), attempts, first_at)]
            log.warning("%s refused a batch of %d alerts (%s); sending them one by one", self.target, len(items), exc)
            out: list[Parked] = []
            for item in items:
                out.extend(await self._attempt([item], deadline))
            return out
        return []

    async def _park(self, parked: Sequence[Parked]) -> None:
        now = self._clock()
        rows = [as_row(parked_values(self.target, p, parked_at=now), PARKED_ALERTS_COLUMNS) for p in parked]
        await self._writer.insert("parked_alerts", PARKED_ALERTS_COLUMNS, rows)
        for p in parked:
            self._metrics.parked_alerts.labels(self.target, p.reason).inc()
            log.error(
                "%s: alert %s (%s, %s) PARKED in ClickHouse parked_alerts after %d attempt(s): %s",
                self.target, p.item.alert.alert_id, p.item.alert.kind, p.item.alert.status, p.attempts, p.error,
            )


class AlertmanagerDelivery(_Deliverer):
    target = TARGET_ALERTMANAGER

    def __init__(
        self,
        sink: AlertmanagerSink,
        *,
        writer: ClickHouseWriter,
        metrics: Metrics,
        config: DeliveryConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        interrupted: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(
            writer=writer, metrics=metrics, retry_cap_s=config.retry_cap_s,
            give_up_s=config.alertmanager_give_up_s, clock=clock, interrupted=interrupted,
        )
        self.sink = sink
        self.config = config
        self.firing = FiringAlerts(active_s=config.active_s)
        self._wake = asyncio.Event()
        self._repost_failing = False  # log a failing re-post once, not every period

    def payload(self, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
        now = self._clock()
        return [
            to_alertmanager(a, now=now, links=self.config.links, firing_ttl_s=self.config.firing_ttl_s) for a in alerts
        ]

    async def _send(self, items: Sequence[Item]) -> None:
        for start in range(0, len(items), ALERTMANAGER_MAX_ALERTS):
            chunk = items[start : start + ALERTMANAGER_MAX_ALERTS]
            await self.sink.post(self.payload([i.alert for i in chunk]))

    def _delivered(self, items: Sequence[Item]) -> None:
        now = self._clock().timestamp()
        for i in items:
            self.firing.observe(i.alert, i.partition, now)
        self._metrics.alertmanager_firing_alerts.set(len(self.firing))

    def _parked(self, parked: Sequence[Parked]) -> None:
        now = self._clock().timestamp()
        for p in parked:
            if p.reason == "rejected":
                self.firing.forget(p.item.alert.alert_id)
            else:  # kept (if firing): the re-post timer delivers it once Alertmanager is back
                self.firing.observe(p.item.alert, p.item.partition, now)
        self._metrics.alertmanager_firing_alerts.set(len(self.firing))

    # -- partitions and the re-post timer -------------------------------------------------------
    def set_assignment(self, partitions: set[int]) -> None:
        current = self.firing.assigned
        self.firing.revoke(current - partitions)
        self.firing.assign(partitions - current)
        self._wake.set()

    def revoke(self, partitions: set[int]) -> None:
        self.firing.revoke(partitions)

    async def load(self) -> bool:
        """Rebuild the firing set of newly assigned partitions from ClickHouse; False if it failed."""
        load = self.firing.start_load(self._clock().timestamp())
        if load is None:
            return True
        parts = ", ".join(str(int(p)) for p in sorted(load.partitions))
        # Only ints and the database name (validated by the shell's settings) are formatted in; `since` is bound.
        sql = (
            "SELECT alert_id, kind, classification, risk, status, summary_en, summary_zh, district, site_id, "  # noqa: S608
            "site_type, commodity, analyte, supplier_id, vendor_id, device_id, evidence, starts_at, ends_at, "
            f"details, src_partition, ingested_at FROM `{self.config.database}`.alerts "
            f"WHERE src_partition IN ({parts}) AND ingested_at >= %(since)s "
            "ORDER BY alert_id, ingested_at DESC, src_offset DESC LIMIT 1 BY alert_id"
        )
        try:
            res = await self._writer.query(sql, {"since": datetime.fromtimestamp(load.since, UTC)})
        except Exception as exc:  # noqa: BLE001 - ClickHouse away: keep the partitions pending, try again
            self.firing.abort_load(load)
            log.warning("alertmanager: cannot rebuild the firing alerts from ClickHouse (%s); retrying", exc)
            return False
        rows = []
        for r in res.dicts():
            try:
                alert = Alert(
                    alert_id=r["alert_id"], kind=r["kind"], classification=r["classification"], risk=r["risk"],
                    status=r["status"], summary_en=r["summary_en"], summary_zh=r["summary_zh"],
                    district=r["district"], site_id=r["site_id"], site_type=r["site_type"],
                    commodity=r["commodity"], analyte=r["analyte"], supplier_id=r["supplier_id"],
                    vendor_id=r["vendor_id"], device_id=r["device_id"], evidence=tuple(r["evidence"]),
                    starts_at=_aware(r["starts_at"]), ends_at=_aware(r["ends_at"]) if r["ends_at"] else None,
                    details=orjson.loads(r["details"] or "{}"),
                )
            except ValueError as exc:
                log.warning("alertmanager: alert %s in ClickHouse cannot be read back (%s); skipped",
                            r["alert_id"], exc)
                continue
            rows.append((alert, int(r["src_partition"]), _aware(r["ingested_at"]).timestamp()))
        added = self.firing.finish_load(load, rows)
        log.info(
            "alertmanager: %d firing alert(s) of partitions %s rebuilt from ClickHouse; %d kept current",
            added, parts, len(self.firing),
        )
        self._metrics.alertmanager_firing_alerts.set(len(self.firing))
        return True

    async def repost(self) -> int:
        """One tick: post every firing alert again (one attempt; the next tick is the retry)."""
        alerts = self.firing.due(self._clock().timestamp())
        self._metrics.alertmanager_firing_alerts.set(len(self.firing))
        sent = 0
        for start in range(0, len(alerts), ALERTMANAGER_MAX_ALERTS):
            chunk = alerts[start : start + ALERTMANAGER_MAX_ALERTS]
            try:
                await self.sink.post(self.payload(chunk))
            except AlertmanagerSinkError as exc:
                reason = "unavailable" if exc.retriable else "rejected"
                self._metrics.delivery_failures.labels(self.target, reason).inc()
                log.log(
                    logging.DEBUG if self._repost_failing else logging.WARNING,
                    "alertmanager: re-post of %d firing alert(s) failed: %s; trying again every %gs",
                    len(chunk), exc, self.config.resend_s,
                )
                self._repost_failing = True
                break
            sent += len(chunk)
        else:
            if self._repost_failing and alerts:
                log.info("alertmanager: re-posts work again (%d firing alert(s) sent)", sent)
            self._repost_failing = False
        self._metrics.alertmanager_reposted_alerts.inc(sent)
        return sent

    async def keep_current(self) -> None:
        """Run until cancelled: rebuild the set when partitions come, re-post every period."""
        while True:
            loaded = await self.load()
            await self.repost()
            timeout = self.config.resend_s if loaded else min(self.config.resend_s, LOAD_RETRY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake.clear()


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class WebhookDelivery(_Deliverer):
    target = TARGET_WEBHOOK

    def __init__(
        self,
        sink: WebhookSink,
        *,
        writer: ClickHouseWriter,
        metrics: Metrics,
        config: DeliveryConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        interrupted: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(
            writer=writer, metrics=metrics, retry_cap_s=config.retry_cap_s,
            give_up_s=config.webhook_give_up_s, clock=clock, interrupted=interrupted,
        )
        self.sink = sink
        self.config = config

    async def _send(self, items: Sequence[Item]) -> None:
        for start in range(0, len(items), WEBHOOK_MAX_ALERTS):
            chunk = items[start : start + WEBHOOK_MAX_ALERTS]
            delivery_id, body = webhook_body([i.alert for i in chunk], self.config.links)
            try:
                await self.sink.post(delivery_id, body, timestamp=int(self._clock().timestamp()))
            except DeliverySinkError:
                self._metrics.delivery_target_up.labels(self.target, self.sink.display_url).set(0)
                raise
            self._metrics.delivery_target_up.labels(self.target, self.sink.display_url).set(1)


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
