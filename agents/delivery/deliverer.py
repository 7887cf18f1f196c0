"""The delivery loop both targets share: retry until the horizon, split a refused batch, park what is left."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

from agents.delivery.config import DeliveryConfig
from agents.delivery.policy import (
    DeliveryInterrupted,
    Item,
    Parked,
    after_failure,
    attempt_window_s,
    backoff_base_s,
    failure_reason,
    parked_values,
)
from agents.metrics import Metrics
from agents.records import as_row
from sinks.ddl import PARKED_ALERTS_COLUMNS
from sinks.errors import DeliverySinkError
from sinks.retry import RetryPolicy, retry_async
from sinks.writer import ClickHouseWriter

log = logging.getLogger(__name__)


Sink = TypeVar("Sink")


class Deliverer(Generic[Sink]):
    """Shared by both targets: retries until the horizon, split on refusal, park what is left.
    A target (``agents/delivery/targets.py``) says how to send, its horizon and what to do after."""

    target: str

    def __init__(
        self,
        sink: Sink,
        *,
        writer: ClickHouseWriter,
        metrics: Metrics,
        config: DeliveryConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        interrupted: Callable[[], bool] = lambda: False,
    ) -> None:
        self.sink = sink
        self.config = config
        self._writer = writer
        self._metrics = metrics
        self._cap = config.retry_cap_s
        self._give_up_s = self.give_up_s(config)
        self._clock = clock
        self._interrupted = interrupted

    def give_up_s(self, config: DeliveryConfig) -> float:
        """The target's give-up horizon (seconds from a batch's first attempt to parking)."""
        raise NotImplementedError

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
                self._metrics.delivery_failures.labels(self.target, failure_reason(exc)).inc()
                raise

        def on_retry(n: int, exc: Exception, delay: float) -> None:
            left = max(0.0, deadline - time.monotonic())
            log.warning(
                "%s: %d alert(s) not delivered, attempt %d: %s; retrying in %.1fs (parked in %.0fs if it stays so)",
                self.target, len(items), n, exc, delay, left,
            )

        window = attempt_window_s(deadline, time.monotonic())
        policy = RetryPolicy(base_s=backoff_base_s(self._cap), cap_s=self._cap, deadline_s=window)
        try:
            await retry_async(attempt, policy, on_retry=on_retry, sleep=self._sleep)
        except DeliverySinkError as exc:
            parked = after_failure(items, exc, attempts, first_at)
            if parked is not None:
                return parked
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
