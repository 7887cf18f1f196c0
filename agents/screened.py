"""Compact screened records: what the screening agent hands the early-warning agent.

One message per screened batch goes to the internal topic ``screened_topic`` (one partition); its
value is a JSON array of records (``encode_batch``), one per accepted result. Pure: no faust, no I/O.
Times are whole epoch seconds (UTC), which is all the detectors need and keeps the message small.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from operator import itemgetter
from typing import Any

import orjson

from schemas.result import Result
from schemas.verdict import Verdict

NON_COMPLIANT = frozenset({"positive", "exceeds", "banned"})
"""Verdicts that count as a finding against the food (DOMAIN.md 3)."""


@dataclass(frozen=True, slots=True)
class Screened:
    result_id: str
    sample_id: str
    sampled_at: int  # epoch seconds, UTC (event time)
    tested_at: int
    device_id: str
    site_id: str
    site_type: str
    district: str
    vendor_id: str | None
    supplier_id: str | None
    origin: str | None
    commodity: str
    analyte: str
    method: str
    quick: bool
    verdict: str
    value_mg_kg: float | None
    percent: float | None
    ratio: float | None
    confirms: str | None

    @property
    def non_compliant(self) -> bool:
        return self.verdict in NON_COMPLIANT

    @property
    def judged(self) -> bool:
        """A verdict about the food (``no_limit`` says the reference data could not judge it)."""
        return self.verdict != "no_limit"


_FIELDS = tuple(f.name for f in fields(Screened))


def screened_record(result: Result, verdict: Verdict) -> Screened:
    site = result.site
    return Screened(
        result_id=result.result_id,
        sample_id=result.sample_id,
        sampled_at=int(result.sampled_at.timestamp()),
        tested_at=int(result.tested_at.timestamp()),
        device_id=result.device_id,
        site_id=site.id,
        site_type=str(site.type),
        district=site.district,
        vendor_id=result.vendor_id,
        supplier_id=result.supplier_id,
        origin=result.origin,
        commodity=result.commodity,
        analyte=result.analyte,
        method=str(result.method),
        quick=result.method.is_quick,
        verdict=str(verdict.verdict),
        value_mg_kg=result.value_mg_kg,
        percent=result.percent,
        ratio=verdict.ratio,
        confirms=result.confirms,
    )


def encode_batch(records: Iterable[Screened]) -> bytes:
    # orjson serialises dataclasses natively (field name -> value), far faster than asdict().
    return orjson.dumps(list(records))


def decode_batch(data: bytes) -> list[Screened]:
    """The records of one screened message (ValueError if it is not one)."""
    try:
        items: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a screened batch: {exc}") from exc
    if not isinstance(items, list):
        raise ValueError("not a screened batch: not a JSON array")  # noqa: TRY004 - callers catch ValueError
    try:
        return [Screened(*itemgetter(*_FIELDS)(d)) for d in items]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a screened batch: {exc}") from exc
