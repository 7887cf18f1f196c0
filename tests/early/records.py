"""Screened records and tables for the early-warning tests (pure: no broker, no ClickHouse)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from agents.early.common import JSON
from agents.screened import Screened

T0 = int(datetime.fromisoformat("2026-11-20T07:00:00+08:00").timestamp())
HOUR = 3600


def rec(result_id: str, t: int = T0, **kw: Any) -> Screened:
    """One screened record; defaults: a compliant enzyme test of cowpea at a Tianhe market."""
    base = Screened(
        result_id=result_id,
        sample_id=f"s-{result_id}",
        sampled_at=t,
        tested_at=t + 600,
        device_id="dev-1",
        site_id="m-01",
        site_type="farmers_market",
        district="Tianhe",
        vendor_id="stall-1",
        supplier_id="sup-1",
        origin="460000",
        commodity="cowpea",
        analyte="ache_inhibition",
        method="enzyme_inhibition",
        quick=True,
        verdict="compliant",
        value_mg_kg=None,
        percent=12.0,
        ratio=0.24,
        confirms=None,
    )
    return base._replace(**kw)


def lab(result_id: str, t: int = T0, **kw: Any) -> Screened:
    kw.setdefault("method", "lc_msms")
    kw.setdefault("analyte", "carbofuran")
    kw.setdefault("device_id", "lab-1")
    kw.setdefault("site_id", "tc-01")
    kw.setdefault("site_type", "testing_centre")
    return rec(result_id, t, quick=False, percent=None, **kw)


class NoScan(Mapping[str, JSON]):
    """A table that may be read by key but not iterated: what a detector given its due keys, and the
    engine with its memory, may do with their state (a scan fails the test)."""

    def __init__(self, data: Mapping[str, JSON]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> JSON:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("a table was scanned although its keys come from a schedule")

    def __len__(self) -> int:
        return len(self._data)
