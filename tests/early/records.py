"""Screened records for the early-warning tests (pure: no broker, no ClickHouse)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
