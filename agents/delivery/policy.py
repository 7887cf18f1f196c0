"""The delivery decisions, pure: how long to retry, when to split a refused batch, what to park and keep.

A batch is retried while its target is unreachable or answers 5xx/401/403/404 (a fixable
configuration), until the give-up horizon; a batch refused as a whole (HTTP 400/413/422) is split
and sent alert by alert, so only the alert that is itself refused is set aside; what is left is
parked (a row in ClickHouse ``parked_alerts``, built by :func:`parked_values`). The loop that
carries these decisions out is :class:`agents.delivery.deliverer.Deliverer`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from agents.records import naive_utc
from schemas.alert import Alert
from sinks.errors import DeliverySinkError
from sinks.presentation import severity_for

UNAVAILABLE = "unavailable"  # not taken by the give-up horizon
REJECTED = "rejected"  # refused by the target (the alert itself)
BACKOFF_BASE_S = 0.5  # the first retry's delay (at most the cap)
MIN_ATTEMPT_WINDOW_S = 1.0  # a split batch still gets this long for its alerts


class Item(NamedTuple):
    """One alert as read from the topic."""

    alert: Alert
    raw: bytes
    topic: str
    partition: int
    offset: int


class Parked(NamedTuple):
    item: Item
    reason: str  # unavailable | rejected
    error: str
    attempts: int
    first_attempt_at: datetime


class DeliveryInterrupted(Exception):
    """The worker is stopping or rebalancing while a batch waits for its target.

    Faust waits, at shutdown and at each rebalance, until every message handed to an agent is
    acked (``Consumer.wait_empty``); a delivery retrying for up to the give-up horizon would hold
    both for that long. So the batch is released instead: its messages leave the consumer's
    ``unacked`` set without an ack, their offsets are not committed, and the alerts are read again
    after the restart (or by the partition's owner after the rebalance, from the committed offset).
    """


def failure_reason(exc: DeliverySinkError) -> str:
    """``unavailable`` (worth retrying) or ``rejected`` (the payload was refused)."""
    return UNAVAILABLE if exc.retriable else REJECTED


def backoff_base_s(retry_cap_s: float) -> float:
    return min(BACKOFF_BASE_S, retry_cap_s)


def attempt_window_s(deadline: float, now: float) -> float:
    """How long an attempt may retry: until the batch's deadline, but at least
    :data:`MIN_ATTEMPT_WINDOW_S` (the alerts of a split batch each get a try)."""
    return max(deadline - now, MIN_ATTEMPT_WINDOW_S)


def after_failure(
    items: list[Item], exc: DeliverySinkError, attempts: int, first_attempt_at: datetime
) -> list[Parked] | None:
    """The retries of ``items`` ended with ``exc``: the alerts to park, or None to split the batch
    and send its alerts one by one (a batch of several refused as a whole)."""
    if exc.retriable:
        return [Parked(i, UNAVAILABLE, str(exc), attempts, first_attempt_at) for i in items]
    if len(items) == 1:
        return [Parked(items[0], REJECTED, str(exc), attempts, first_attempt_at)]
    return None


def keep_firing(p: Parked) -> bool:
    """Whether Alertmanager's re-post timer keeps a parked alert: yes when it was only unavailable
    (it reaches Alertmanager once that is back), no when it was refused."""
    return p.reason != REJECTED


def parked_values(target: str, p: Parked, *, parked_at: datetime) -> dict[str, Any]:
    """The ``parked_alerts`` row of ``p``, by column name."""
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
