"""The simulated fleet's public types: its configuration, the messages it hands out, and what it
says about its sites, devices and incidents; the time constants every part of the simulator shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final, NamedTuple

CST: Final = timezone(timedelta(hours=8))
"""China Standard Time (no daylight saving since 1991); every time the fleet writes carries +08:00."""

DEFAULT_RATE_PER_SIM_HOUR: Final = 2000.0
"""Mean results per simulated hour over a day (about 48,000 a day; the 06:00 hour gets ~5,400)."""

TAG_INVALID: Final = "invalid"
TAG_CONFIRMATION: Final = "confirmation"
TAG_COWPEA_CARBOFURAN: Final = "incident:cowpea_carbofuran"
TAG_FAULTY_DEVICE: Final = "incident:faulty_device"
TAG_REPEAT_OFFENDER: Final = "incident:repeat_offender"
TAG_CLENBUTEROL_PORK: Final = "incident:clenbuterol_pork"

LOCAL_OFFSET_S: Final = 8 * 3600
HOUR: Final = 3600
DAY: Final = 86400
MIN: Final = 60


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    """How the fleet behaves. Keyword-only; ``start`` is required and must be timezone-aware."""

    seed: int = 7
    start: datetime
    speed: float = 60.0
    rate_per_sim_hour: float = DEFAULT_RATE_PER_SIM_HOUR
    invalid_fraction: float = 0.001
    incidents: bool = True

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("FleetConfig.start must be timezone-aware")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError("FleetConfig.speed must be a positive number")
        if not (math.isfinite(self.rate_per_sim_hour) and self.rate_per_sim_hour > 0):
            raise ValueError("FleetConfig.rate_per_sim_hour must be a positive number")
        if not 0.0 <= self.invalid_fraction <= 1.0:
            raise ValueError("FleetConfig.invalid_fraction must be within [0, 1]")


class SimMessage(NamedTuple):
    """One message for the results topic."""

    key: bytes
    """Partition key: the device_id, utf-8."""
    value: bytes
    """orjson of a wire-format v1 result, or malformed bytes when ``tag == "invalid"``."""
    event_time: datetime
    """The result's ``tested_at`` (whole seconds, +08:00)."""
    tag: str | None
    """``None`` for ordinary traffic, ``"invalid"``, ``"confirmation"`` or an ``"incident:..."`` tag."""


class SiteInfo(NamedTuple):
    id: str
    type: str
    """farmers_market | supermarket | ecommerce_warehouse | wholesale_market | testing_centre"""
    district: str
    name: str


class DeviceInfo(NamedTuple):
    device_id: str
    site: SiteInfo
    kind: str
    """quick_pesticide (enzyme_inhibition + colloidal_gold), quick_xrf, or lab_<method>."""
    methods: tuple[str, ...]


class IncidentInfo(NamedTuple):
    """An injected incident, for the shell to print and for tests to check."""

    tag: str
    description: str
    starts_at: datetime
    ends_at: datetime
    """Event time of the incident's last message."""
    site_ids: tuple[str, ...]
    districts: tuple[str, ...]
    supplier_id: str | None
    device_id: str | None
    vendor_id: str | None
    messages: int
    """How many messages the incident injected (on the faulty device, ordinary readings in its window
    carry the tag too and are not counted here)."""
