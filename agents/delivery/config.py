"""What the delivery agents are given: the targets, horizons and limits, as plain values."""

from __future__ import annotations

from dataclasses import dataclass

from sinks.presentation import Links

TARGET_ALERTMANAGER = "alertmanager"
TARGET_WEBHOOK = "webhook"
FIRING_TTL_PERIODS = 4  # a firing alert's endsAt is this many re-post periods ahead
ALERTMANAGER_MAX_ALERTS = 500  # alerts per POST
WEBHOOK_MAX_ALERTS = 100
LOAD_RETRY_S = 5.0  # a failed rebuild from ClickHouse is tried again this soon


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
