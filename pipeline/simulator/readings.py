"""How single readings are drawn: concentrations against a limit (:func:`quantity`), enzyme
inhibition (normal and a drifting reader), malformed messages, and the time and number formats
the devices write. Pure functions of an RNG.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Any, Final

import orjson

from pipeline.simulator.catalogue import (
    ENZYME_FALSE_POSITIVE_PRONE,
    ENZYME_P_POSITIVE,
    ENZYME_P_POSITIVE_PRONE,
    ENZYME_P_WATCH,
    GARBAGE,
    NAN_MARK,
)
from pipeline.simulator.model import CST, DAY, HOUR, LOCAL_OFFSET_S, MIN


def cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))



def sig(value: float) -> float:
    """Round to four significant digits (what an instrument prints)."""
    return float(f"{value:.4g}")


def pesticide_lod_loq(limit: float) -> tuple[float, float]:
    return (0.003, 0.01) if limit >= 0.02 else (0.002, 0.005)


DAY_CACHE: dict[int, str] = {}


def iso(ts: int) -> str:
    """ISO 8601 local time with +08:00 for POSIX seconds ``ts`` (faster than datetime.isoformat)."""
    day, sod = divmod(ts + LOCAL_OFFSET_S, DAY)
    prefix = DAY_CACHE.get(day)
    if prefix is None:
        prefix = (date(1970, 1, 1) + timedelta(days=day)).isoformat()
        if len(DAY_CACHE) > 4096:
            DAY_CACHE.clear()
        DAY_CACHE[day] = prefix
    hour, rest = divmod(sod, HOUR)
    minute, second = divmod(rest, MIN)
    return f"{prefix}T{hour:02d}:{minute:02d}:{second:02d}+08:00"


def dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, CST)


def quantity(
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
            return sig((loq or lod) * (1.2 + rng.lognormvariate(0.7, 0.9)))
        return sig(limit * (1.05 + rng.lognormvariate(-0.8, 0.9)))
    if u < p_exceed + p_detect:
        if banned:
            return sig(rng.uniform(lod, 0.95 * (loq or lod)))
        high = 0.95 * limit
        if high <= lod:
            return 0.0
        return sig(lod * (high / lod) ** (rng.random() ** 1.6))
    return 0.0



def inhibition(rng: random.Random, commodity: str) -> float:
    """Enzyme-inhibition reading in %: mostly 0-30, a watch band 40-50, rare positives >= 50."""
    p_positive = ENZYME_P_POSITIVE_PRONE if commodity in ENZYME_FALSE_POSITIVE_PRONE else ENZYME_P_POSITIVE
    u = rng.random()
    if u < p_positive:
        return round(rng.uniform(50.0, 92.0), 1)
    if u < p_positive + ENZYME_P_WATCH:
        return round(rng.uniform(40.0, 49.9), 1)
    return round(min(abs(rng.gauss(13.0, 6.5)), 39.5), 1)


DRIFT_RAMP_S: Final = 40 * MIN
DRIFT_MAX: Final = 60.0


def drifted_inhibition(rng: random.Random, since_fault: int) -> float:
    """A faulty reader: the baseline plus an offset ramping to +60 points over 40 minutes."""
    drift = DRIFT_MAX * min(1.0, since_fault / DRIFT_RAMP_S)
    value = abs(rng.gauss(13.0, 6.5)) + drift + rng.gauss(0.0, 3.0)
    return round(min(99.9, max(0.0, value)), 1)


def corrupt(rng: random.Random, wire: dict[str, Any], tested: int) -> bytes:
    """A malformed message derived from ``wire``: each variant breaks a rule of wire format v1."""
    kind = rng.randrange(10)
    if kind == 0:  # truncated in transit
        raw = orjson.dumps(wire)
        return raw[: rng.randrange(1, len(raw) - 1)]
    if kind == 1:  # not a JSON object at all
        return rng.choice(GARBAGE)
    bad = dict(wire)
    if kind == 2:
        del bad["result_id"]
    elif kind == 3:  # negative value
        bad.pop("qualitative", None)
        bad["value"] = -round(abs(float(bad.get("value", 0.0))) + 0.5, 3)
        bad.setdefault("unit", "mg/kg")
    elif kind == 4:  # NaN (not JSON; some device firmwares write it anyway)
        bad.pop("qualitative", None)
        bad["value"] = NAN_MARK
        bad.setdefault("unit", "mg/kg")
        return orjson.dumps(bad).replace(f'"{NAN_MARK}"'.encode(), b"NaN")
    elif kind == 5:  # sampled after tested
        bad["sampled_at"] = iso(tested + 2 * HOUR)
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
