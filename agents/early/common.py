"""Shared pieces of the early-warning detectors: parameters, the step result, statistics, times."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import orjson

from schemas.alert import Alert

HOUR: Final = 3600
DAY: Final = 86400
CST: Final = timezone(timedelta(hours=8))
LOCAL_OFFSET_S: Final = 8 * HOUR  # days and hours of day are local (Asia/Shanghai, no DST)

JSON = Any  # a JSON-able value (dict/list/str/int/float/bool/None)


@dataclass(frozen=True)
class EarlyParams:
    """Every knob of the detectors (Settings ``ew_*`` fields; README settings table)."""

    grace_s: int = HOUR
    surge_window_h: int = 24
    surge_step_h: int = 1
    surge_min_n: int = 30
    surge_min_positives: int = 3
    surge_alpha: float = 0.01
    baseline_quick: float = 0.0015
    baseline_lab: float = 0.02
    baseline_enzyme_prone: float = 0.005
    enzyme_prone: frozenset[str] = frozenset()
    cusum_shift: float = 3.0
    cusum_h: float = 9.0
    offender_n: int = 3
    offender_days: int = 30
    offender_clean_k: int = 5
    cluster_window_h: int = 48
    cluster_min_sites: int = 2
    unconfirmed_h: float = 48.0
    unconfirmed_keep_days: int = 14
    silent_min_h: float = 2.0
    silent_min_peer_results: int = 5
    silent_alpha: float = 1e-5
    silent_history_days: int = 7
    drift_alpha: float = 1e-4
    drift_min_positives: int = 3
    drift_prior_n: int = 200

    def baseline(self, method: str, quick: bool, commodity: str) -> float:
        if not quick:
            return self.baseline_lab
        if method == "enzyme_inhibition" and commodity in self.enzyme_prone:
            return self.baseline_enzyme_prone
        return self.baseline_quick


@dataclass
class Step:
    updates: dict[str, JSON] = field(default_factory=dict)  # key -> new value, None = delete
    alerts: list[Alert] = field(default_factory=list)
    # key -> the watermark time it must next be visited without new records (None: never), for every
    # key the step visited; a visited key left out is not visited again until records touch it
    wake: dict[str, int | None] = field(default_factory=dict)


class Stored(Mapping[str, JSON]):
    """A table as the engine and its detectors read it. Each read gives a value of the reader's own,
    which it may change without changing the table: a value held encoded (bytes: the agent's tables
    hold each value as its changelog record) is decoded, a plain JSON value (tests, offline runs)
    is copied the same way (through its encoding, so a test reads what the agent would).
    Membership, length and iteration over keys decode nothing."""

    __slots__ = ("_m",)

    def __init__(self, m: Mapping[str, JSON]) -> None:
        self._m = m

    def __getitem__(self, key: str) -> JSON:
        return _read(self._m[key])

    def get(self, key: str, default: JSON = None) -> JSON:
        v = self._m.get(key)
        return default if v is None else _read(v)

    def __contains__(self, key: object) -> bool:
        return key in self._m

    def __iter__(self) -> Iterator[str]:
        return iter(self._m)

    def __len__(self) -> int:
        return len(self._m)


def _read(v: JSON) -> JSON:
    """A held value as a value of the reader's own: bytes decoded, a JSON value through its encoding."""
    return orjson.loads(v if type(v) is bytes else orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS))


def own(state: Mapping[str, JSON]) -> Stored:
    """``state`` read through ``Stored`` (as the engine hands it to a detector; a test may call a
    detector with a plain dict): every value read is the caller's own."""
    return state if isinstance(state, Stored) else Stored(state)


WakeOf = Callable[[str, JSON, "EarlyParams"], "int | None"]


def due_by_scan(state: Mapping[str, JSON], watermark: int, params: EarlyParams, wake_of: WakeOf) -> Collection[str]:
    """The keys of ``state`` due at ``watermark``, by scanning it (unit tests and offline runs; the
    engine's schedule gives a detector its due keys without a scan)."""
    out = []
    for k, v in state.items():
        t = wake_of(k, v, params)
        if t is not None and t <= watermark:
            out.append(k)
    return out


def apply(state: Mapping[str, JSON], updates: Mapping[str, JSON]) -> dict[str, JSON]:
    """``state`` with ``updates`` applied (tests and the offline simulation use plain dicts)."""
    out = dict(state)
    for k, v in updates.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact (log-space sum of the upper tail)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    total = 0.0
    mean = n * p
    for i in range(k, n + 1):
        term = math.exp(base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
        total += term
        if i > mean and term < total * 1e-15:
            break
    return min(1.0, total)


def iso(ts: int | float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def utc(ts: int | float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def local_day(ts: int | float) -> int:
    """Start of the local (CST) day holding ``ts``, as epoch seconds."""
    t = int(ts)
    return ((t + LOCAL_OFFSET_S) // DAY) * DAY - LOCAL_OFFSET_S


def local_date(ts: int | float) -> str:
    return datetime.fromtimestamp(ts, CST).date().isoformat()


def hour_start(ts: int | float) -> int:
    return (int(ts) // HOUR) * HOUR
