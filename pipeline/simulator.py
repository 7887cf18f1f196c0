"""A simulated fleet of quick-test devices and lab instruments in Guangzhou.

Pure generation: no Kafka, no clock reads, no I/O. A :class:`Fleet` is built from a seed and a start
time and hands out wire-format v1 results (``schemas/``, issue 3) in event-time order, one batch per
call of :meth:`Fleet.next_batch`. The shell (``pipeline/simulate_cmd.py``) maps real time to event
time and publishes the batches.

What the fleet looks like (everything derived from the seed, so a seed always gives the same fleet):

* Guangzhou's 11 districts; farmers' markets (most sites, with stalls), supermarkets, fresh-food
  e-commerce warehouses, two wholesale markets and three testing centres (the labs).
* Quick tests: enzyme inhibition on vegetables (``ache_inhibition`` in %, positive at >= 50, a watch
  band of 40-50), colloidal-gold strips for single pesticides (qualitative) and XRF for heavy metals
  (mg/kg). About 0.1-0.2% of quick tests are positive (docs/domain.md §3: 0.03-0.3%).
* Lab results (LC-MS/MS, GC-MS/MS, ICP-MS, AAS, AFS): one line per analyte of a routine sample, most
  not detected (value 0.0 with ``lod`` set), a long right tail, 1-3% of lines non-compliant. One
  testing centre's MS instruments report in ug/kg.
* About 70% of quick-test positives are followed, 2-10 simulated hours later, by a lab result on the
  same sample with ``confirms`` set (tag ``"confirmation"``); the rest are never confirmed.
* A share ``invalid_fraction`` of messages is deliberately malformed (tag ``"invalid"``).
* Incidents (``incidents=True``), all starting in the first simulated hour, see :meth:`Fleet.incidents`:
  ``incident:cowpea_carbofuran`` (one Hainan supplier's cowpea lot with carbofuran in seven markets
  in seven districts, confirmed by LC-MS/MS within the hour), ``incident:faulty_device`` (an enzyme
  reader whose readings drift upwards for three hours) and ``incident:repeat_offender`` (one stall
  with a non-compliant result every day for six days).

The volume follows market hours (most results 05:00-11:00 local time, few at night);
``rate_per_sim_hour`` is the mean over a whole day, so the 06:00-07:00 hour carries about 2.7 times
as many results and the night hours a tenth.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from typing import Any, Final, NamedTuple

import orjson

__all__ = [
    "BANNED_ON_VEGETABLES",
    "CST",
    "DEFAULT_RATE_PER_SIM_HOUR",
    "DISTRICTS",
    "TAG_CONFIRMATION",
    "TAG_COWPEA_CARBOFURAN",
    "TAG_FAULTY_DEVICE",
    "TAG_INVALID",
    "TAG_REPEAT_OFFENDER",
    "VEGETABLES",
    "DeviceInfo",
    "Fleet",
    "FleetConfig",
    "IncidentInfo",
    "SimMessage",
    "SiteInfo",
    "sim_limit_mg_kg",
]

CST: Final = timezone(timedelta(hours=8))
"""China Standard Time (no daylight saving since 1991); every time the fleet writes carries +08:00."""

DEFAULT_RATE_PER_SIM_HOUR: Final = 2000.0
"""Mean results per simulated hour over a day (about 48,000 a day; the 06:00 hour gets ~5,400)."""

TAG_INVALID: Final = "invalid"
TAG_CONFIRMATION: Final = "confirmation"
TAG_COWPEA_CARBOFURAN: Final = "incident:cowpea_carbofuran"
TAG_FAULTY_DEVICE: Final = "incident:faulty_device"
TAG_REPEAT_OFFENDER: Final = "incident:repeat_offender"

_LOCAL_OFFSET_S: Final = 8 * 3600
_HOUR: Final = 3600
_DAY: Final = 86400
_MIN: Final = 60

# --------------------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Reference knowledge the generator needs (its own view, for shaping rates; the screening reference
# data lives in schemas/reference and is the authority)
# --------------------------------------------------------------------------------------------------

DISTRICTS: Final[tuple[tuple[str, str, str, float], ...]] = (
    # English name, Chinese name, code used in ids, weight (roughly population, millions)
    ("Yuexiu", "越秀", "YX", 1.0),
    ("Liwan", "荔湾", "LW", 1.1),
    ("Haizhu", "海珠", "HZ", 1.8),
    ("Tianhe", "天河", "TH", 2.2),
    ("Baiyun", "白云", "BY", 3.7),
    ("Huangpu", "黄埔", "HP", 1.2),
    ("Panyu", "番禺", "PY", 2.8),
    ("Huadu", "花都", "HD", 1.6),
    ("Nansha", "南沙", "NS", 0.9),
    ("Conghua", "从化", "CH", 0.7),
    ("Zengcheng", "增城", "ZC", 1.5),
)

VEGETABLES: Final = frozenset({"cowpea", "leek", "celery", "ginger", "radish", "pepper", "chinese_cabbage", "spinach"})

BANNED_ON_VEGETABLES: Final = frozenset(
    {"carbofuran", "omethoate", "methamidophos", "phorate", "isofenphos_methyl", "isocarbophos", "chlorpyrifos"}
)
"""Pesticides whose mere detection (>= LOQ) on a vegetable is a violation (docs/domain.md §2)."""

_CATEGORY: Final[dict[str, str]] = {
    **dict.fromkeys(VEGETABLES, "veg"),
    "banana": "fruit",
    "rice": "grain",
    "pork": "meat",
    "fish": "fish",
    "predatory_fish": "fish",
}

_ZH_NAME: Final[dict[str, str]] = {"cowpea": "豇豆", "leek": "韭菜"}

_VEG_PESTICIDE_LIMITS: Final[dict[str, float]] = {
    "carbofuran": 0.02,
    "omethoate": 0.02,
    "methamidophos": 0.05,
    "isocarbophos": 0.05,
    "fenthion": 0.05,
    "phorate": 0.01,
    "isofenphos_methyl": 0.01,
    "chlorpyrifos": 0.05,
}
_PESTICIDE_LIMITS: Final[dict[tuple[str, str], float]] = {
    ("cyromazine", "cowpea"): 0.5,
    ("lambda_cyhalothrin", "cowpea"): 0.2,
    ("emamectin_benzoate", "cowpea"): 0.015,
    ("clothianidin", "cowpea"): 0.01,
    ("clothianidin", "ginger"): 0.2,
    ("thiamethoxam", "ginger"): 0.3,
    ("thiamethoxam", "radish"): 0.3,
    ("acetamiprid", "pepper"): 0.2,
    ("chlorpyrifos", "celery"): 0.05,
    ("procymidone", "leek"): 0.2,
    ("phorate", "leek"): 0.01,
    ("isofenphos_methyl", "cowpea"): 0.01,
    ("imidacloprid", "banana"): 0.05,
}
_CONTAMINANT_GROUP: Final[dict[str, str]] = {
    "cowpea": "legume",
    "chinese_cabbage": "brassica",
    "spinach": "leafy",
    "celery": "leafy",
    "leek": "veg",
    "ginger": "veg",
    "radish": "veg",
    "pepper": "veg",
    "rice": "rice",
    "pork": "meat",
    "fish": "fish",
    "predatory_fish": "predatory_fish",
}
_VEG_METALS: Final = {"mercury": 0.01, "arsenic": 0.5, "chromium": 0.5}
_CONTAMINANT_LIMITS: Final[dict[str, dict[str, float]]] = {
    "veg": {"lead": 0.1, "cadmium": 0.05, **_VEG_METALS},
    "brassica": {"lead": 0.2, "cadmium": 0.05, **_VEG_METALS},
    "leafy": {"lead": 0.3, "cadmium": 0.2, **_VEG_METALS},
    "legume": {"lead": 0.2, "cadmium": 0.1, **_VEG_METALS},
    "rice": {"lead": 0.2, "cadmium": 0.2, "mercury": 0.02, "inorganic_arsenic": 0.2, "chromium": 1.0},
    "meat": {"lead": 0.2, "cadmium": 0.1, "mercury": 0.05, "chromium": 1.0},
    "fish": {"lead": 0.5, "cadmium": 0.1, "methylmercury": 0.5, "inorganic_arsenic": 0.1, "chromium": 2.0},
    "predatory_fish": {
        "lead": 0.5,
        "cadmium": 0.1,
        "methylmercury": 1.0,
        "inorganic_arsenic": 0.1,
        "chromium": 2.0,
    },
}
_METALS: Final = frozenset({"lead", "cadmium", "mercury", "methylmercury", "arsenic", "inorganic_arsenic", "chromium"})


def sim_limit_mg_kg(analyte: str, commodity: str) -> float | None:
    """The limit (mg/kg) the simulator shapes its values against, or None if it has none.

    For a pesticide in :data:`BANNED_ON_VEGETABLES` on a vegetable, detection at or above the LOQ
    is the violation, whatever this limit says.
    """
    if analyte in _METALS:
        return _CONTAMINANT_LIMITS[_CONTAMINANT_GROUP[commodity]].get(analyte)
    limit = _PESTICIDE_LIMITS.get((analyte, commodity))
    if limit is None and commodity in VEGETABLES:
        limit = _VEG_PESTICIDE_LIMITS.get(analyte)
    return limit


_LC_ANALYTES: Final = frozenset(
    {
        "carbofuran",
        "cyromazine",
        "emamectin_benzoate",
        "clothianidin",
        "thiamethoxam",
        "acetamiprid",
        "imidacloprid",
        "methamidophos",
        "omethoate",
    }
)
"""Pesticides a lab runs on LC-MS/MS; the others go to GC-MS/MS."""

_ENZYME_DETECTABLE: Final = (
    "carbofuran",
    "omethoate",
    "methamidophos",
    "chlorpyrifos",
    "phorate",
    "isocarbophos",
    "isofenphos_methyl",
    "fenthion",
)
"""Organophosphates and carbamates: what an enzyme-inhibition positive is followed up for."""

_PESTICIDE_PANELS: Final[dict[str, tuple[str, ...]]] = {
    "cowpea": (
        "carbofuran",
        "cyromazine",
        "lambda_cyhalothrin",
        "emamectin_benzoate",
        "clothianidin",
        "isofenphos_methyl",
        "omethoate",
        "methamidophos",
        "isocarbophos",
        "fenthion",
    ),
    "leek": ("procymidone", "phorate", "chlorpyrifos", "omethoate", "methamidophos", "isocarbophos", "fenthion"),
    "celery": ("chlorpyrifos", "omethoate", "methamidophos", "fenthion", "phorate"),
    "ginger": ("clothianidin", "thiamethoxam", "omethoate", "fenthion"),
    "radish": ("thiamethoxam", "omethoate", "isocarbophos", "fenthion"),
    "pepper": ("acetamiprid", "omethoate", "methamidophos", "fenthion"),
    "chinese_cabbage": ("omethoate", "methamidophos", "isocarbophos", "fenthion", "chlorpyrifos"),
    "spinach": ("omethoate", "methamidophos", "fenthion", "chlorpyrifos"),
    "banana": ("imidacloprid",),
}
_METAL_PANELS: Final[dict[str, tuple[str, ...]]] = {
    "veg": ("lead", "cadmium", "mercury", "arsenic", "chromium"),
    "rice": ("lead", "cadmium", "inorganic_arsenic", "mercury", "chromium"),
    "pork": ("lead", "cadmium", "mercury", "chromium"),
    "fish": ("lead", "cadmium", "methylmercury", "inorganic_arsenic", "chromium"),
    "predatory_fish": ("methylmercury", "lead", "cadmium"),
}

# Quick-test mixes --------------------------------------------------------------------------------

_ENZYME_SHARE: Final = 0.78  # of a pesticide analyser's tests; the rest are colloidal-gold strips
_ENZYME_COMMODITIES: Final[tuple[tuple[str, float], ...]] = (
    ("chinese_cabbage", 18),
    ("cowpea", 16),
    ("spinach", 14),
    ("pepper", 10),
    ("celery", 9),
    ("leek", 9),
    ("radish", 7),
    ("ginger", 5),
)
_ENZYME_FALSE_POSITIVE_PRONE: Final = frozenset({"leek", "celery", "ginger", "radish"})
_ENZYME_P_POSITIVE_PRONE: Final = 0.0035
_ENZYME_P_POSITIVE: Final = 0.0006
_ENZYME_P_WATCH: Final = 0.006
_GOLD_PAIRS: Final[tuple[tuple[str, str, float], ...]] = (
    ("cowpea", "carbofuran", 6),
    ("cowpea", "isofenphos_methyl", 3),
    ("cowpea", "clothianidin", 3),
    ("leek", "phorate", 3),
    ("leek", "procymidone", 2),
    ("celery", "chlorpyrifos", 3),
    ("banana", "imidacloprid", 4),
    ("pepper", "acetamiprid", 3),
    ("ginger", "thiamethoxam", 2),
    ("ginger", "clothianidin", 2),
    ("chinese_cabbage", "omethoate", 3),
    ("spinach", "omethoate", 2),
)
_GOLD_P_POSITIVE: Final = 0.001
_GOLD_P_INVALID: Final = 0.002  # the strip's control line failed: a valid result saying "invalid"
_XRF_PAIRS: Final[tuple[tuple[str, str, float], ...]] = (
    ("rice", "cadmium", 6),
    ("rice", "lead", 4),
    ("rice", "chromium", 1),
    ("chinese_cabbage", "lead", 2),
    ("chinese_cabbage", "cadmium", 1),
    ("spinach", "cadmium", 2),
    ("spinach", "lead", 2),
    ("celery", "cadmium", 1),
    ("leek", "lead", 1),
    ("cowpea", "cadmium", 1),
)
_XRF_LOD: Final[dict[str, float]] = {"cadmium": 0.03, "lead": 0.05, "chromium": 0.2}
_XRF_P_EXCEED: Final = 0.001
_XRF_P_DETECT: Final = 0.35

# Lab mixes ---------------------------------------------------------------------------------------

_P_LAB_SAMPLE: Final = 0.03  # share of arrivals that are a routine lab sample (2-5 result lines)
_LAB_COMMODITIES: Final[tuple[tuple[str, float], ...]] = (
    ("cowpea", 16),
    ("leek", 10),
    ("chinese_cabbage", 10),
    ("rice", 10),
    ("celery", 8),
    ("spinach", 8),
    ("pepper", 7),
    ("pork", 6),
    ("fish", 6),
    ("ginger", 5),
    ("radish", 5),
    ("banana", 5),
    ("predatory_fish", 3),
)
_LAB_VEG_METAL_SHARE: Final = 0.1
_LAB_P_EXCEED: Final = 0.03
_LAB_P_DETECT: Final = 0.30
_LAB_P_BANNED_DETECT: Final = 0.006
_LAB_P_BANNED_TRACE: Final = 0.01
_LAB_METAL_P_EXCEED: Final = 0.02
_LAB_METAL_P_DETECT: Final = 0.55
_METAL_LOD_LOQ: Final[dict[tuple[str, str], tuple[float, float]]] = {
    ("lead", "icp_ms"): (0.005, 0.02),
    ("cadmium", "icp_ms"): (0.002, 0.005),
    ("chromium", "icp_ms"): (0.02, 0.05),
    ("arsenic", "icp_ms"): (0.005, 0.01),
    ("inorganic_arsenic", "icp_ms"): (0.01, 0.03),
    ("methylmercury", "icp_ms"): (0.005, 0.015),
    ("mercury", "icp_ms"): (0.002, 0.005),
    ("lead", "aas"): (0.01, 0.03),
    ("cadmium", "aas"): (0.003, 0.01),
    ("mercury", "afs"): (0.001, 0.003),
    ("arsenic", "afs"): (0.01, 0.03),
}

_CONFIRM_SHARE: Final = 0.7
_CONFIRM_DELAY_S: Final = (2 * _HOUR, 10 * _HOUR)

# Origins (province-level region codes) by commodity ----------------------------------------------

_ORIGINS: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "cowpea": (("460000", 5), ("440000", 3), ("450000", 2)),
    "leek": (("440000", 6), ("370000", 2)),
    "celery": (("440000", 5), ("530000", 2)),
    "ginger": (("530000", 3), ("370000", 3), ("440000", 2)),
    "radish": (("440000", 4), ("530000", 2)),
    "pepper": (("460000", 3), ("530000", 3), ("450000", 2)),
    "chinese_cabbage": (("440000", 5), ("530000", 3), ("130000", 1)),
    "spinach": (("440000", 5), ("530000", 2)),
    "banana": (("440000", 3), ("460000", 2), ("530000", 2), ("450000", 2)),
    "rice": (("440000", 3), ("430000", 3), ("360000", 2), ("230000", 1)),
    "pork": (("440000", 4), ("430000", 2), ("450000", 2)),
    "fish": (("440000", 6),),
    "predatory_fish": (("440000", 3), ("350000", 2), ("460000", 1)),
}

# Market hours: relative weight per local hour (normalised to a daily mean of 1 below).
_HOURLY_WEIGHTS: Final[tuple[float, ...]] = (
    0.15, 0.1, 0.1, 0.15, 0.4, 1.4, 2.6, 3.0, 2.8, 2.4, 1.9, 1.4,
    0.8, 0.6, 0.7, 0.8, 0.9, 0.9, 0.7, 0.5, 0.35, 0.25, 0.2, 0.15,
)  # fmt: skip

_MARKET_WORDS: Final = (
    "东风", "新港", "龙口", "棠下", "石牌", "沙河", "江南", "环市", "南村", "大石", "市桥", "新塘",
    "荔城", "街口", "狮岭", "金沙", "黄阁", "横沥", "太和", "人和", "同和", "赤岗", "昌岗", "芳村",
    "西华", "宝岗", "员村", "车陂", "鱼珠", "大沙", "钟村", "洛浦", "新华", "秀全", "温泉", "石滩",
)  # fmt: skip
_SUPERMARKET_BRANDS: Final = ("FreshWay", "Huimin Mart", "Everyday Supermarket", "GreenBasket")
_WAREHOUSE_BRANDS: Final = ("QuickFresh", "DailyGreens", "FarmBox")

_GARBAGE: Final = (
    b"\xff\xfe\x00\x01\x9c",
    b"ERR 503 sensor timeout",
    b"[]",
    b"null",
    b"42",
    b"result_id;value\r\n",
    b'{"result_id": "',
    b"\x00\x00\x00\x00\x00\x00\x00\x00",
)
_NAN_MARK: Final = "__NaN__"

_QUICK_PESTICIDE: Final = "quick_pesticide"
_QUICK_XRF: Final = "quick_xrf"

# --------------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------------


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


class _Supplier:
    __slots__ = ("commodities", "id", "origin", "sites")

    def __init__(self, supplier_id: str, origin: str, commodities: set[str]) -> None:
        self.id = supplier_id
        self.origin = origin
        self.commodities = commodities
        self.sites: set[str] = set()


class _Site:
    __slots__ = ("district", "id", "info", "sample_seq", "stalls", "suppliers", "type", "weight", "wire")

    def __init__(self, site_id: str, site_type: str, district: str, name: str, weight: float) -> None:
        self.id = site_id
        self.type = site_type
        self.district = district
        self.info = SiteInfo(site_id, site_type, district, name)
        self.wire: dict[str, str] = {"id": site_id, "type": site_type, "district": district, "name": name}
        self.weight = weight
        self.sample_seq = 0
        self.stalls: dict[str, list[str]] = {}
        self.suppliers: dict[str, list[_Supplier]] = {}


class _Device:
    __slots__ = ("id", "info", "key", "kind", "seq", "site", "ugkg", "weight", "zh")

    def __init__(self, device_id: str, site: _Site, kind: str, methods: tuple[str, ...], weight: float) -> None:
        self.id = device_id
        self.key = device_id.encode()
        self.site = site
        self.kind = kind
        self.info = DeviceInfo(device_id, site.info, kind, methods)
        self.weight = weight
        self.seq = 0
        self.zh = False  # older firmware: reports 豇豆 / 韭菜 instead of the codes
        self.ugkg = False  # reports in ug/kg


class _Sample(NamedTuple):
    sample_id: str
    vendor_id: str | None
    supplier: _Supplier
    commodity: str


def _sig(value: float) -> float:
    """Round to four significant digits (what an instrument prints)."""
    return float(f"{value:.4g}")


def _pesticide_lod_loq(limit: float) -> tuple[float, float]:
    return (0.003, 0.01) if limit >= 0.02 else (0.002, 0.005)


_DAY_CACHE: dict[int, str] = {}


def _iso(ts: int) -> str:
    """ISO 8601 local time with +08:00 for POSIX seconds ``ts`` (faster than datetime.isoformat)."""
    day, sod = divmod(ts + _LOCAL_OFFSET_S, _DAY)
    prefix = _DAY_CACHE.get(day)
    if prefix is None:
        prefix = (date(1970, 1, 1) + timedelta(days=day)).isoformat()
        if len(_DAY_CACHE) > 4096:
            _DAY_CACHE.clear()
        _DAY_CACHE[day] = prefix
    hour, rest = divmod(sod, _HOUR)
    minute, second = divmod(rest, _MIN)
    return f"{prefix}T{hour:02d}:{minute:02d}:{second:02d}+08:00"


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, CST)


def _quantity(
    rng: random.Random,
    *,
    limit: float,
    lod: float,
    loq: float | None,
    p_exceed: float,
    p_detect: float,
    banned: bool,
) -> float:
    """A concentration in mg/kg: non-compliant, detected below the limit, or not detected (0.0).

    Non-compliant means above ``limit``, or for a banned pesticide at or above the LOQ. Detected
    values below the limit are skewed low (log scale); non-compliant ones have a long right tail.
    """
    u = rng.random()
    if u < p_exceed:
        if banned:
            return _sig((loq or lod) * (1.2 + rng.lognormvariate(0.7, 0.9)))
        return _sig(limit * (1.05 + rng.lognormvariate(-0.8, 0.9)))
    if u < p_exceed + p_detect:
        if banned:
            return _sig(rng.uniform(lod, 0.95 * (loq or lod)))
        high = 0.95 * limit
        if high <= lod:
            return 0.0
        return _sig(lod * (high / lod) ** (rng.random() ** 1.6))
    return 0.0


class _World:
    """Sites, stalls, suppliers and devices, all drawn from one RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.sites: list[_Site] = []
        self.devices: list[_Device] = []
        self.suppliers: list[_Supplier] = []
        self.centres: list[_Site] = []
        self._build_sites(rng)
        self._build_suppliers(rng)
        self._build_devices(rng)

    def _build_sites(self, rng: random.Random) -> None:
        words = list(_MARKET_WORDS)
        for name, zh, code, weight in DISTRICTS:
            rng.shuffle(words)
            for n in range(max(2, round(weight * 2.6))):
                site = _Site(f"FM-{code}-{n + 1:02d}", "farmers_market", name, f"{zh}区{words[n]}肉菜市场", 1.0)
                self._add_stalls(rng, site, veg=rng.randint(4, 9))
                self.sites.append(site)
            for n in range(max(1, round(weight * 0.8))):
                brand = rng.choice(_SUPERMARKET_BRANDS)
                site = _Site(f"SM-{code}-{n + 1:02d}", "supermarket", name, f"{brand} {name} {n + 1}", 0.7)
                self.sites.append(site)
        for n, code in enumerate(("BY", "PY", "HP", "TH", "ZC")):
            district = self._district(code)
            brand = _WAREHOUSE_BRANDS[n % len(_WAREHOUSE_BRANDS)]
            site = _Site(f"EW-{code}-01", "ecommerce_warehouse", district, f"{brand} {district} DC", 1.4)
            self.sites.append(site)
        for code, label in (("BY", "江南果菜批发市场"), ("HZ", "海珠农产品批发市场")):
            site = _Site(f"WM-{code}-01", "wholesale_market", self._district(code), label, 2.0)
            self._add_stalls(rng, site, veg=rng.randint(8, 12))
            self.sites.append(site)
        for code in ("TH", "BY", "PY"):
            district = self._district(code)
            zh = next(z for d, z, c, _ in DISTRICTS if c == code)
            site = _Site(f"TC-{code}-01", "testing_centre", district, f"广州市食品检验中心({zh})", 0.0)
            self.centres.append(site)
            self.sites.append(site)

    @staticmethod
    def _district(code: str) -> str:
        return next(d for d, _, c, _ in DISTRICTS if c == code)

    @staticmethod
    def _add_stalls(rng: random.Random, site: _Site, *, veg: int) -> None:
        counts = {"veg": veg, "fruit": rng.randint(1, 2), "meat": rng.randint(1, 2), "fish": 1, "grain": 1}
        n = 0
        for category, count in counts.items():
            stalls = []
            for _ in range(count):
                n += 1
                stalls.append(f"{site.id}-S{n:02d}")
            site.stalls[category] = stalls

    def _build_suppliers(self, rng: random.Random) -> None:
        markets = [s for s in self.sites if s.type != "testing_centre"]
        commodities = list(_ORIGINS)
        primaries = commodities + rng.choices(commodities, k=30)
        for i, primary in enumerate(primaries):
            regions, weights = zip(*_ORIGINS[primary], strict=True)
            # the first cowpea supplier is a Hainan one: the winter cowpea trade (and incident a)
            origin = "460000" if i == 0 else rng.choices(regions, weights=weights)[0]
            carried = {primary}
            for other in commodities:
                same_kind = _CATEGORY[other] == _CATEGORY[primary]
                if other != primary and same_kind and origin in dict(_ORIGINS[other]) and rng.random() < 0.4:
                    carried.add(other)
            supplier = _Supplier(f"SUP-{origin}-{i + 1:03d}", origin, carried)
            for site in rng.sample(markets, rng.randint(4, 10)):
                supplier.sites.add(site.id)
            self.suppliers.append(supplier)
        by_id = {s.id: s for s in markets}
        for supplier in self.suppliers:
            for site_id in sorted(supplier.sites):
                for commodity in supplier.commodities:
                    by_id[site_id].suppliers.setdefault(commodity, []).append(supplier)
        for site in markets:
            for commodity in commodities:
                if commodity not in site.suppliers:
                    supplier = rng.choice([s for s in self.suppliers if commodity in s.commodities])
                    supplier.sites.add(site.id)
                    site.suppliers[commodity] = [supplier]

    def _build_devices(self, rng: random.Random) -> None:
        for site in self.sites:
            n_pest, p_xrf = {
                "farmers_market": (1 if rng.random() < 0.6 else 2, 0.3),
                "supermarket": (1, 0.2),
                "ecommerce_warehouse": (2, 1.0),
                "wholesale_market": (3, 1.0),
                "testing_centre": (0, 0.0),
            }[site.type]
            n = 0
            for _ in range(n_pest):
                n += 1
                methods = ("enzyme_inhibition", "colloidal_gold")
                self.devices.append(_Device(f"{site.id}-D{n}", site, _QUICK_PESTICIDE, methods, site.weight))
            if rng.random() < p_xrf:
                n += 1
                self.devices.append(_Device(f"{site.id}-D{n}", site, _QUICK_XRF, ("xrf",), 0.5 * site.weight))
        for i, centre in enumerate(self.centres):
            lab_methods = ["lc_msms", "gc_msms", "icp_ms"] + [["afs"], ["aas", "afs"], ["aas"]][i % 3]
            for n, method in enumerate(lab_methods, start=1):
                device = _Device(f"{centre.id}-D{n}", centre, f"lab_{method}", (method,), 0.0)
                device.ugkg = i == 1 and method in ("lc_msms", "gc_msms")
                self.devices.append(device)
        pesticide_fm = [d for d in self.devices if d.kind == _QUICK_PESTICIDE and d.site.type == "farmers_market"]
        for device in rng.sample(pesticide_fm, 3):
            device.zh = True


# --------------------------------------------------------------------------------------------------
# The fleet
# --------------------------------------------------------------------------------------------------

_Item = tuple[int, int, SimMessage]


class Fleet:
    """The simulated devices. Deterministic for a seed, whatever the sequence of ``until`` values."""

    def __init__(self, config: FleetConfig) -> None:
        self._cfg = config
        seed = config.seed
        self._rng = random.Random(f"foodrisk-fleet:{seed}:traffic")  # noqa: S311 - simulation, not security
        world = _World(random.Random(f"foodrisk-fleet:{seed}:world"))  # noqa: S311 - same
        self._world = world
        self._invalid = config.invalid_fraction
        self._start_ts = math.ceil(config.start.timestamp())
        self._n = 0  # creation counter: breaks event-time ties deterministically
        self._pending: list[_Item] = []  # future messages (confirmations, incidents), a heap
        self._incidents: list[IncidentInfo] = []
        self._faulty: tuple[_Device, int, int] | None = None

        quick = [d for d in world.devices if d.kind in (_QUICK_PESTICIDE, _QUICK_XRF)]
        self._quick = quick
        self._quick_cum = _cumulative([d.weight for d in quick])
        self._centres = world.centres
        self._lab_device: dict[tuple[str, str], _Device] = {}
        for device in world.devices:
            if device.kind.startswith("lab_"):
                self._lab_device[(device.site.id, device.info.methods[0])] = device
        samplers = [s for s in world.sites if s.type != "testing_centre"]
        self._lab_sites = samplers
        self._lab_sites_cum = _cumulative([s.weight for s in samplers])

        self._enz_commodities = [c for c, _ in _ENZYME_COMMODITIES]
        self._enz_cum = _cumulative([w for _, w in _ENZYME_COMMODITIES])
        self._gold = [(c, a) for c, a, _ in _GOLD_PAIRS]
        self._gold_cum = _cumulative([w for _, _, w in _GOLD_PAIRS])
        self._xrf = [(c, a) for c, a, _ in _XRF_PAIRS]
        self._xrf_cum = _cumulative([w for _, _, w in _XRF_PAIRS])
        self._lab_commodities = [c for c, _ in _LAB_COMMODITIES]
        self._lab_cum = _cumulative([w for _, w in _LAB_COMMODITIES])

        # arrivals per second, by local hour, so that results (not arrivals) match the configured rate
        lines = (1.0 - _P_LAB_SAMPLE) + _P_LAB_SAMPLE * self._mean_lab_lines()
        mean_weight = sum(_HOURLY_WEIGHTS) / len(_HOURLY_WEIGHTS)
        per_s = config.rate_per_sim_hour / _HOUR / lines
        self._hourly_rate = [per_s * w / mean_weight for w in _HOURLY_WEIGHTS]

        if config.incidents:
            _Incidents(self, random.Random(f"foodrisk-fleet:{seed}:incidents")).inject()  # noqa: S311 - same
        self._next_arrival = self._draw_next(float(self._start_ts))

    # ---- public ------------------------------------------------------------------------------

    @property
    def config(self) -> FleetConfig:
        return self._cfg

    def devices(self) -> list[DeviceInfo]:
        """Every device: quick-test devices in markets, lab instruments in testing centres."""
        return [d.info for d in self._world.devices]

    def incidents(self) -> list[IncidentInfo]:
        """The injected incidents (empty with ``incidents=False``)."""
        return list(self._incidents)

    def next_batch(self, until: datetime) -> list[SimMessage]:
        """Every message not handed out yet whose event time is before ``until``, in event-time order."""
        if until.tzinfo is None or until.utcoffset() is None:
            raise ValueError("until must be timezone-aware")
        bound = math.ceil(until.timestamp())  # event times are whole seconds
        out: list[_Item] = []
        while self._next_arrival < bound:
            self._arrival(int(self._next_arrival), out)
            self._next_arrival = self._draw_next(self._next_arrival)
        pending = self._pending
        while pending and pending[0][0] < bound:
            out.append(heapq.heappop(pending))
        out.sort()
        return [item[2] for item in out]

    # ---- arrivals ----------------------------------------------------------------------------

    def _draw_next(self, after: float) -> float:
        """The next arrival of a Poisson process whose rate is constant within each hour."""
        rng = self._rng
        rates = self._hourly_rate
        t = after
        while True:
            hour_start = (int(t) // _HOUR) * _HOUR
            seg_end = hour_start + _HOUR
            rate = rates[((hour_start + _LOCAL_OFFSET_S) // _HOUR) % 24]
            t_next = t + rng.expovariate(rate)
            if t_next < seg_end:
                return t_next
            t = float(seg_end)

    def _mean_lab_lines(self) -> float:
        total = sum(w for _, w in _LAB_COMMODITIES)
        mean = 0.0
        for commodity, weight in _LAB_COMMODITIES:
            expected = 0.0
            for panel, share in self._panels(commodity):
                expected += share * sum(min(len(panel), k) for k in range(2, 6)) / 4
            mean += weight / total * expected
        return mean

    @staticmethod
    def _panels(commodity: str) -> list[tuple[tuple[str, ...], float]]:
        if commodity in VEGETABLES:
            return [
                (_PESTICIDE_PANELS[commodity], 1 - _LAB_VEG_METAL_SHARE),
                (_METAL_PANELS["veg"], _LAB_VEG_METAL_SHARE),
            ]
        if commodity in _PESTICIDE_PANELS:
            return [(_PESTICIDE_PANELS[commodity], 1.0)]
        return [(_METAL_PANELS[commodity], 1.0)]

    def _arrival(self, ts: int, out: list[_Item]) -> None:
        if self._rng.random() < _P_LAB_SAMPLE:
            self._lab_sample(ts, out)
        else:
            self._quick_test(ts, out)

    def _emit(self, out: list[_Item], ts: int, device: _Device, value: bytes, tag: str | None) -> None:
        n = self._n = self._n + 1
        out.append((ts, n, SimMessage(device.key, value, datetime.fromtimestamp(ts, CST), tag)))

    def _schedule(self, ts: int, device: _Device, wire: dict[str, Any], tag: str | None) -> None:
        self._n += 1
        msg = SimMessage(device.key, orjson.dumps(wire), _dt(ts), tag)
        heapq.heappush(self._pending, (ts, self._n, msg))

    def _sample(
        self,
        rng: random.Random,
        site: _Site,
        commodity: str,
        vendor_id: str | None = None,
        supplier: _Supplier | None = None,
    ) -> _Sample:
        site.sample_seq += 1
        if vendor_id is None:
            stalls = site.stalls.get(_CATEGORY[commodity])
            vendor_id = stalls[int(rng.random() * len(stalls))] if stalls else None
        if supplier is None:
            suppliers = site.suppliers[commodity]
            supplier = suppliers[int(rng.random() * len(suppliers))]
        return _Sample(f"{site.id}-SMP{site.sample_seq:07d}", vendor_id, supplier, commodity)

    def _wire(
        self, device: _Device, sample: _Sample, analyte: str, method: str, sampled: int, tested: int
    ) -> dict[str, Any]:
        device.seq += 1
        commodity = sample.commodity
        if device.zh:
            commodity = _ZH_NAME.get(commodity, commodity)
        wire: dict[str, Any] = {
            "result_id": f"{device.id}-{device.seq:08d}",
            "sample_id": sample.sample_id,
            "device_id": device.id,
            "site": device.site.wire,
            "supplier_id": sample.supplier.id,
            "origin": sample.supplier.origin,
            "commodity": commodity,
            "analyte": analyte,
            "method": method,
            "sampled_at": _iso(sampled),
            "tested_at": _iso(tested),
        }
        if sample.vendor_id is not None:
            wire["vendor_id"] = sample.vendor_id
        return wire

    def _finish(
        self, rng: random.Random, out: list[_Item], ts: int, device: _Device, wire: dict[str, Any], tag: str | None
    ) -> bool:
        """Emit ``wire`` (or, for the invalid share, a corrupted form of it). True if emitted valid."""
        if rng.random() < self._invalid:
            self._emit(out, ts, device, _corrupt(rng, wire, ts), TAG_INVALID)
            return False
        self._emit(out, ts, device, orjson.dumps(wire), tag)
        return True

    def _quick_test(self, ts: int, out: list[_Item]) -> None:
        rng = self._rng
        device = self._quick[bisect_right(self._quick_cum, rng.random() * self._quick_cum[-1])]
        sampled = ts - 3 * _MIN - int(rng.random() * 17 * _MIN)  # a quick test takes 3-20 minutes
        tag: str | None = None
        if device.kind == _QUICK_XRF:
            commodity, analyte = self._xrf[bisect_right(self._xrf_cum, rng.random() * self._xrf_cum[-1])]
            sample = self._sample(rng, device.site, commodity)
            wire = self._wire(device, sample, analyte, "xrf", sampled, ts)
            limit = sim_limit_mg_kg(analyte, commodity) or 1.0
            lod = _XRF_LOD[analyte]
            p_detect = 0.6 if commodity == "rice" and analyte == "cadmium" else _XRF_P_DETECT
            value = _quantity(
                rng, limit=limit, lod=lod, loq=None, p_exceed=_XRF_P_EXCEED, p_detect=p_detect, banned=False
            )
            wire["value"] = value
            wire["unit"] = "mg/kg"
            wire["lod"] = lod
            positive = value > limit
        elif rng.random() < _ENZYME_SHARE:
            analyte = "ache_inhibition"
            commodity = self._enz_commodities[bisect_right(self._enz_cum, rng.random() * self._enz_cum[-1])]
            sample = self._sample(rng, device.site, commodity)
            wire = self._wire(device, sample, analyte, "enzyme_inhibition", sampled, ts)
            faulty = self._faulty
            if faulty is not None and device is faulty[0] and faulty[1] <= ts < faulty[2]:
                value = _drifted_inhibition(rng, ts - faulty[1])
                tag = TAG_FAULTY_DEVICE
            else:
                value = _inhibition(rng, commodity)
            wire["value"] = value
            wire["unit"] = "%"
            positive = value >= 50.0
        else:
            commodity, analyte = self._gold[bisect_right(self._gold_cum, rng.random() * self._gold_cum[-1])]
            sample = self._sample(rng, device.site, commodity)
            wire = self._wire(device, sample, analyte, "colloidal_gold", sampled, ts)
            u = rng.random()
            qualitative = (
                "positive"
                if u < _GOLD_P_POSITIVE
                else "invalid"
                if u < _GOLD_P_POSITIVE + _GOLD_P_INVALID
                else "negative"
            )
            wire["qualitative"] = qualitative
            positive = qualitative == "positive"
        if self._finish(rng, out, ts, device, wire, tag) and positive and rng.random() < _CONFIRM_SHARE:
            delay = rng.randint(*_CONFIRM_DELAY_S)
            p_confirmed = 0.0 if tag == TAG_FAULTY_DEVICE else None
            self._confirmation(rng, wire, sample, sampled, ts + delay, tag or TAG_CONFIRMATION, p_confirmed)

    def _centre_near(self, rng: random.Random, district: str) -> _Site:
        for centre in self._centres:
            if centre.district == district:
                return centre
        return rng.choice(self._centres)

    def _instrument(self, rng: random.Random, centre: _Site, analyte: str) -> _Device:
        if analyte not in _METALS:
            method = "lc_msms" if analyte in _LC_ANALYTES else "gc_msms"
        elif analyte in ("lead", "cadmium") and (centre.id, "aas") in self._lab_device and rng.random() < 0.3:
            method = "aas"
        elif analyte in ("mercury", "arsenic") and (centre.id, "afs") in self._lab_device:
            method = "afs"
        else:
            method = "icp_ms"
        return self._lab_device[(centre.id, method)]

    def _lab_wire(
        self,
        device: _Device,
        sample: _Sample,
        analyte: str,
        sampled: int,
        tested: int,
        value: float,
        lod: float,
        loq: float,
    ) -> dict[str, Any]:
        wire = self._wire(device, sample, analyte, device.info.methods[0], sampled, tested)
        if device.ugkg:
            wire["value"] = _sig(value * 1000.0)
            wire["unit"] = "ug/kg"
            wire["lod"] = _sig(lod * 1000.0)
            wire["loq"] = _sig(loq * 1000.0)
        else:
            wire["value"] = value
            wire["unit"] = "mg/kg"
            wire["lod"] = lod
            wire["loq"] = loq
        return wire

    @staticmethod
    def _lod_loq(analyte: str, commodity: str, method: str) -> tuple[float, float, float]:
        limit = sim_limit_mg_kg(analyte, commodity) or 1.0
        if analyte in _METALS:
            lod, loq = _METAL_LOD_LOQ[(analyte, method)]
        else:
            lod, loq = _pesticide_lod_loq(limit)
        return limit, lod, loq

    def _lab_sample(self, ts: int, out: list[_Item]) -> None:
        rng = self._rng
        site = self._lab_sites[bisect_right(self._lab_sites_cum, rng.random() * self._lab_sites_cum[-1])]
        commodity = self._lab_commodities[bisect_right(self._lab_cum, rng.random() * self._lab_cum[-1])]
        panels = self._panels(commodity)
        panel = panels[0][0] if len(panels) == 1 or rng.random() >= _LAB_VEG_METAL_SHARE else panels[1][0]
        analytes = rng.sample(panel, min(len(panel), rng.randint(2, 5)))
        centre = rng.choice(self._centres)
        sample = self._sample(rng, site, commodity)
        sampled = ts - rng.randint(3 * _HOUR, 30 * _HOUR)
        for analyte in analytes:
            device = self._instrument(rng, centre, analyte)
            limit, lod, loq = self._lod_loq(analyte, commodity, device.info.methods[0])
            if analyte in _METALS:
                p_exceed, p_detect, banned = _LAB_METAL_P_EXCEED, _LAB_METAL_P_DETECT, False
            elif commodity in VEGETABLES and analyte in BANNED_ON_VEGETABLES:
                p_exceed, p_detect, banned = _LAB_P_BANNED_DETECT, _LAB_P_BANNED_TRACE, True
            else:
                p_exceed, p_detect, banned = _LAB_P_EXCEED, _LAB_P_DETECT, False
            value = _quantity(rng, limit=limit, lod=lod, loq=loq, p_exceed=p_exceed, p_detect=p_detect, banned=banned)
            wire = self._lab_wire(device, sample, analyte, sampled, ts, value, lod, loq)
            self._finish(rng, out, ts, device, wire, None)

    def _confirmation(
        self,
        rng: random.Random,
        positive: dict[str, Any],
        sample: _Sample,
        sampled: int,
        tested: int,
        tag: str,
        p_confirmed: float | None = None,
        value_mg_kg: float | None = None,
        centre: _Site | None = None,
        analyte: str | None = None,
    ) -> dict[str, Any]:
        """Schedule the lab result that follows up the quick-test ``positive`` (same sample)."""
        commodity = sample.commodity
        method = positive["method"]
        if method == "enzyme_inhibition":
            if analyte is None:
                panel = _PESTICIDE_PANELS.get(commodity, ())
                analyte = rng.choice([a for a in _ENZYME_DETECTABLE if a in panel] or ["omethoate"])
            if p_confirmed is None:
                p_confirmed = 0.15 if commodity in _ENZYME_FALSE_POSITIVE_PRONE else 0.4
        else:
            analyte = analyte or positive["analyte"]
            if p_confirmed is None:
                p_confirmed = 0.5 if method == "colloidal_gold" else 0.6
        if centre is None:
            centre = self._centre_near(rng, positive["site"]["district"])
        device = self._instrument(rng, centre, analyte)
        limit, lod, loq = self._lod_loq(analyte, commodity, device.info.methods[0])
        banned = commodity in VEGETABLES and analyte in BANNED_ON_VEGETABLES
        if value_mg_kg is None:
            confirmed = rng.random() < p_confirmed
            value_mg_kg = _quantity(
                rng,
                limit=limit,
                lod=lod,
                loq=loq,
                p_exceed=1.0 if confirmed else 0.0,
                p_detect=0.0 if confirmed else 0.25,
                banned=banned,
            )
        wire = self._lab_wire(device, sample, analyte, sampled, tested, value_mg_kg, lod, loq)
        wire["confirms"] = positive["result_id"]
        self._schedule(tested, device, wire, tag)
        return wire


def _inhibition(rng: random.Random, commodity: str) -> float:
    """Enzyme-inhibition reading in %: mostly 0-30, a watch band 40-50, rare positives >= 50."""
    p_positive = _ENZYME_P_POSITIVE_PRONE if commodity in _ENZYME_FALSE_POSITIVE_PRONE else _ENZYME_P_POSITIVE
    u = rng.random()
    if u < p_positive:
        return round(rng.uniform(50.0, 92.0), 1)
    if u < p_positive + _ENZYME_P_WATCH:
        return round(rng.uniform(40.0, 49.9), 1)
    return round(min(abs(rng.gauss(13.0, 6.5)), 39.5), 1)


_DRIFT_RAMP_S: Final = 40 * _MIN
_DRIFT_MAX: Final = 60.0


def _drifted_inhibition(rng: random.Random, since_fault: int) -> float:
    """A faulty reader: the baseline plus an offset ramping to +60 points over 40 minutes."""
    drift = _DRIFT_MAX * min(1.0, since_fault / _DRIFT_RAMP_S)
    value = abs(rng.gauss(13.0, 6.5)) + drift + rng.gauss(0.0, 3.0)
    return round(min(99.9, max(0.0, value)), 1)


def _corrupt(rng: random.Random, wire: dict[str, Any], tested: int) -> bytes:
    """A malformed message derived from ``wire``: each variant breaks a rule of wire format v1."""
    kind = rng.randrange(10)
    if kind == 0:  # truncated in transit
        raw = orjson.dumps(wire)
        return raw[: rng.randrange(1, len(raw) - 1)]
    if kind == 1:  # not a JSON object at all
        return rng.choice(_GARBAGE)
    bad = dict(wire)
    if kind == 2:
        del bad["result_id"]
    elif kind == 3:  # negative value
        bad.pop("qualitative", None)
        bad["value"] = -round(abs(float(bad.get("value", 0.0))) + 0.5, 3)
        bad.setdefault("unit", "mg/kg")
    elif kind == 4:  # NaN (not JSON; some device firmwares write it anyway)
        bad.pop("qualitative", None)
        bad["value"] = _NAN_MARK
        bad.setdefault("unit", "mg/kg")
        return orjson.dumps(bad).replace(f'"{_NAN_MARK}"'.encode(), b"NaN")
    elif kind == 5:  # sampled after tested
        bad["sampled_at"] = _iso(tested + 2 * _HOUR)
    elif kind == 6:  # unknown unit
        bad.pop("qualitative", None)
        bad.setdefault("value", 12.0)
        bad["unit"] = "cps"
    elif kind == 7:  # neither value nor qualitative
        for key in ("value", "unit", "qualitative", "lod", "loq"):
            bad.pop(key, None)
    elif kind == 8:  # absurdly long string
        bad["sample_id"] = "X" * 5000
    else:  # unparseable time
        bad["tested_at"] = "yesterday morning"
    return orjson.dumps(bad)


class _Incidents:
    """Builds the injected incidents into the fleet's pending queue (own RNG, so traffic is unchanged)."""

    def __init__(self, fleet: Fleet, rng: random.Random) -> None:
        self._fleet = fleet
        self._rng = rng
        self._start = fleet._start_ts
        world = fleet._world
        self._markets = [s for s in world.sites if s.type == "farmers_market"]
        self._pesticide: dict[str, list[_Device]] = {}
        for device in world.devices:
            if device.kind == _QUICK_PESTICIDE:
                self._pesticide.setdefault(device.site.id, []).append(device)
        self._suppliers = world.suppliers
        self._used: set[str] = set()

    def inject(self) -> None:
        self._cowpea_carbofuran()
        self._faulty_device()
        self._repeat_offender()

    # a tiny tracker of what each incident emitted
    def _info(
        self,
        tag: str,
        description: str,
        times: list[int],
        sites: list[_Site],
        *,
        supplier: _Supplier | None = None,
        device: _Device | None = None,
        vendor_id: str | None = None,
        starts: int | None = None,
    ) -> None:
        districts = tuple(dict.fromkeys(s.district for s in sites))
        info = IncidentInfo(
            tag=tag,
            description=description,
            starts_at=_dt(min(times) if starts is None else starts),
            ends_at=_dt(max(times)),
            site_ids=tuple(s.id for s in sites),
            districts=districts,
            supplier_id=supplier.id if supplier else None,
            device_id=device.id if device else None,
            vendor_id=vendor_id,
            messages=len(times),
        )
        self._fleet._incidents.append(info)

    def _quick(
        self,
        device: _Device,
        sample: _Sample,
        analyte: str,
        method: str,
        sampled: int,
        tested: int,
        tag: str,
        result: float | str,
    ) -> dict[str, Any]:
        fleet = self._fleet
        wire = fleet._wire(device, sample, analyte, method, sampled, tested)
        if isinstance(result, str):
            wire["qualitative"] = result
        else:
            wire["value"] = result
            wire["unit"] = "%"
        fleet._schedule(tested, device, wire, tag)
        return wire

    def _cowpea_carbofuran(self) -> None:
        """(a) One Hainan supplier's cowpea lot with carbofuran, sold in seven markets in seven districts."""
        rng, fleet, start = self._rng, self._fleet, self._start
        tag = TAG_COWPEA_CARBOFURAN
        supplier = rng.choice([s for s in self._suppliers if "cowpea" in s.commodities and s.origin == "460000"])
        by_district: dict[str, list[_Site]] = {}
        for site in self._markets:
            by_district.setdefault(site.district, []).append(site)
        districts = rng.sample(sorted(by_district), 7)
        markets = [rng.choice(by_district[d]) for d in districts]
        times: list[int] = []
        centres = fleet._centres
        n_positive = 0
        for i, market in enumerate(markets):
            self._used.add(market.id)
            if supplier not in market.suppliers["cowpea"]:
                market.suppliers["cowpea"].append(supplier)  # the supplier now sells there too
                supplier.sites.add(market.id)
            wave2 = i >= 5
            t = start + (140 * _MIN + (i - 5) * 15 * _MIN if wave2 else 5 * _MIN + i * 6 * _MIN)
            device = rng.choice(self._pesticide[market.id])
            stalls = rng.sample(market.stalls["veg"], 2)
            tests: list[tuple[str, str, float | str, str]] = [
                ("ache_inhibition", "enzyme_inhibition", round(rng.uniform(62.0, 93.0), 1), stalls[0]),
                ("carbofuran", "colloidal_gold", "positive", stalls[1]),
            ]
            if i == 2:  # a reading in the watch band (enzyme tests miss some: docs/domain.md §3)
                tests.append(("ache_inhibition", "enzyme_inhibition", round(rng.uniform(41.0, 48.0), 1), stalls[0]))
            for analyte, method, result, stall in tests:
                tested = t + rng.randint(0, 6 * _MIN)
                sampled = tested - rng.randint(8 * _MIN, 15 * _MIN)
                sample = fleet._sample(rng, market, "cowpea", vendor_id=stall, supplier=supplier)
                wire = self._quick(device, sample, analyte, method, sampled, tested, tag, result)
                times.append(tested)
                if result in ("positive",) or (isinstance(result, float) and result >= 50.0):
                    n_positive += 1
                    if i == 4 and method == "enzyme_inhibition":
                        continue  # never confirmed: for the unconfirmed-positive detector
                    lab_t = tested + rng.randint(25 * _MIN, 50 * _MIN)
                    value = round(rng.uniform(0.05, 0.4), 3)
                    fleet._confirmation(
                        rng,
                        wire,
                        sample,
                        sampled,
                        lab_t,
                        tag,
                        value_mg_kg=value,
                        centre=centres[n_positive % 2],
                        analyte="carbofuran",
                    )
                    times.append(lab_t)
        self._info(
            tag,
            f"cowpea from {supplier.id} (origin {supplier.origin}) carrying carbofuran 0.05-0.4 mg/kg, "
            f"quick-test positives in {len(markets)} markets, confirmed by LC-MS/MS",
            times,
            markets,
            supplier=supplier,
        )

    def _faulty_device(self) -> None:
        """(b) An enzyme reader whose readings drift upwards for three hours (its peers stay normal)."""
        rng, fleet, start = self._rng, self._fleet, self._start
        tag = TAG_FAULTY_DEVICE
        candidates = [s for s in self._markets if len(self._pesticide[s.id]) >= 2 and s.id not in self._used]
        site = rng.choice(candidates)
        self._used.add(site.id)
        device = self._pesticide[site.id][0]
        w0, w1 = start + 15 * _MIN, start + 3 * _HOUR
        fleet._faulty = (device, w0, w1)  # baseline readings on it drift too
        times: list[int] = []
        t = w0 + rng.randint(_MIN, 5 * _MIN)
        commodities = [c for c, _ in _ENZYME_COMMODITIES]
        weights = [w for _, w in _ENZYME_COMMODITIES]
        while t < w1:
            commodity = rng.choices(commodities, weights=weights)[0]
            sample = fleet._sample(rng, site, commodity)
            sampled = t - rng.randint(5 * _MIN, 15 * _MIN)
            value = _drifted_inhibition(rng, t - w0)
            wire = self._quick(device, sample, "ache_inhibition", "enzyme_inhibition", sampled, t, tag, value)
            times.append(t)
            if value >= 50.0 and rng.random() < _CONFIRM_SHARE:
                lab_t = t + rng.randint(*_CONFIRM_DELAY_S)
                fleet._confirmation(rng, wire, sample, sampled, lab_t, tag, p_confirmed=0.0)
                times.append(lab_t)
            t += rng.randint(150, 330)
        self._info(
            tag,
            f"enzyme reader {device.id} drifts upwards from +15 min for 2 h 45 min "
            "(positives from about +40 min; lab follow-ups find nothing)",
            times,
            [site],
            device=device,
            starts=w0,
        )

    def _repeat_offender(self) -> None:
        """(c) One stall with a non-compliant leek result every day for six days."""
        rng, fleet, start = self._rng, self._fleet, self._start
        tag = TAG_REPEAT_OFFENDER
        site = rng.choice([s for s in self._markets if s.id not in self._used])
        self._used.add(site.id)
        stall = rng.choice(site.stalls["veg"])
        supplier = site.suppliers["leek"][0]
        device = rng.choice(self._pesticide[site.id])
        centre = fleet._centre_near(rng, site.district)
        times: list[int] = []
        for day in range(6):
            t = start + day * _DAY + 30 * _MIN + rng.randint(0, 20 * _MIN)
            sample = fleet._sample(rng, site, "leek", vendor_id=stall)
            sampled = t - rng.randint(8 * _MIN, 15 * _MIN)
            if day % 2 == 0:  # a phorate strip positive, confirmed by GC-MS/MS (banned pesticide)
                wire = self._quick(device, sample, "phorate", "colloidal_gold", sampled, t, tag, "positive")
                lab_t = t + (rng.randint(40 * _MIN, 55 * _MIN) if day == 0 else rng.randint(3 * _HOUR, 6 * _HOUR))
                value = round(rng.uniform(0.02, 0.09), 3)
                fleet._confirmation(rng, wire, sample, sampled, lab_t, tag, value_mg_kg=value, centre=centre)
                times += [t, lab_t]
            else:  # a routine lab sample of the stall's leek with procymidone over its 0.2 mg/kg MRL
                lab_device = fleet._instrument(rng, centre, "procymidone")
                lab_t = t + rng.randint(4 * _HOUR, 6 * _HOUR)
                value = round(rng.uniform(0.3, 0.9), 3)
                wire = fleet._lab_wire(lab_device, sample, "procymidone", sampled, lab_t, value, 0.003, 0.01)
                fleet._schedule(lab_t, lab_device, wire, tag)
                times.append(lab_t)
        self._info(
            tag,
            f"stall {stall} sells non-compliant leek every day for six days "
            "(phorate strip positives confirmed by GC-MS/MS; procymidone over its MRL)",
            times,
            [site],
            supplier=supplier,
            vendor_id=stall,
        )
