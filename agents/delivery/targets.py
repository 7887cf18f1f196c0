"""The two targets: Alertmanager (with its firing alerts kept current) and the signed webhook.

Alertmanager accepts a batch when at least one of its URLs (an HA pair) accepted it. Members of
an HA pair share silences and notification logs, not alerts; the re-post timer sends every
firing alert to every URL, which brings a member that was away up to date within one period.

Keeping Alertmanager current (:meth:`AlertmanagerDelivery.keep_current`, one task per worker):
firing alerts are posted with ``endsAt = now + 4 x FOODRISK_ALERTMANAGER_RESEND_S`` and re-posted
every ``FOODRISK_ALERTMANAGER_RESEND_S`` seconds, so they stay active for as long as foodrisk says,
and end by themselves within four periods when it stops (or when the worker is gone). A resolved
alert is posted once with its ``endsAt`` and leaves the re-post set. The set
(:class:`agents.delivery.firing.FiringAlerts`) follows the worker's partitions of the alerts topic
and is rebuilt from ClickHouse ``alerts`` after a start or a rebalance (the query:
``sinks/alert_queries.py``). A firing alert with no update for ``FOODRISK_ALERTMANAGER_ACTIVE_S``
(default a day) leaves the set: single-result alerts never resolve, and Alertmanager would
otherwise repeat them forever. A parked firing alert stays in the set, so it reaches Alertmanager
once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agents.delivery.config import (
    ALERTMANAGER_MAX_ALERTS,
    LOAD_RETRY_S,
    TARGET_ALERTMANAGER,
    TARGET_WEBHOOK,
    WEBHOOK_MAX_ALERTS,
    DeliveryConfig,
)
from agents.delivery.deliverer import Deliverer
from agents.delivery.firing import FiringAlerts
from agents.delivery.policy import Item, Parked, failure_reason, keep_firing
from schemas.alert import Alert
from sinks.alert_queries import alert_from_row, aware, latest_alerts_sql
from sinks.alertmanager import AlertmanagerSink, to_alertmanager
from sinks.errors import AlertmanagerSinkError, DeliverySinkError
from sinks.webhook import WebhookSink, webhook_body

log = logging.getLogger(__name__)


class AlertmanagerDelivery(Deliverer[AlertmanagerSink]):
    target = TARGET_ALERTMANAGER

    def __init__(self, sink: AlertmanagerSink, **kw: Any) -> None:
        super().__init__(sink, **kw)
        self.firing = FiringAlerts(active_s=self.config.active_s)
        self._wake = asyncio.Event()
        self._repost_failing = False  # log a failing re-post once, not every period

    def give_up_s(self, config: DeliveryConfig) -> float:
        return config.alertmanager_give_up_s

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
            if keep_firing(p):  # (if firing) the re-post timer delivers it once Alertmanager is back
                self.firing.observe(p.item.alert, p.item.partition, now)
            else:
                self.firing.forget(p.item.alert.alert_id)
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
        sql = latest_alerts_sql(self.config.database, load.partitions)
        try:
            res = await self._writer.query(sql, {"since": datetime.fromtimestamp(load.since, UTC)})
        except Exception as exc:  # noqa: BLE001 - ClickHouse away: keep the partitions pending, try again
            self.firing.abort_load(load)
            log.warning("alertmanager: cannot rebuild the firing alerts from ClickHouse (%s); retrying", exc)
            return False
        rows = []
        for r in res.dicts():
            try:
                alert = alert_from_row(r)
            except ValueError as exc:
                log.warning("alertmanager: alert %s in ClickHouse cannot be read back (%s); skipped",
                            r["alert_id"], exc)
                continue
            rows.append((alert, int(r["src_partition"]), aware(r["ingested_at"]).timestamp()))
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
                self._metrics.delivery_failures.labels(self.target, failure_reason(exc)).inc()
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


class WebhookDelivery(Deliverer[WebhookSink]):
    target = TARGET_WEBHOOK

    def give_up_s(self, config: DeliveryConfig) -> float:
        return config.webhook_give_up_s

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
