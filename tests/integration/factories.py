"""Wire-format v1 results for the integration tests (valid ones and deliberately broken ones)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

SAMPLED = datetime.fromisoformat("2026-11-20T07:30:00+08:00")


def result(
    result_id: str,
    *,
    commodity: str = "cowpea",
    analyte: str = "ache_inhibition",
    method: str = "enzyme_inhibition",
    value: float | None = 12.0,
    unit: str | None = "%",
    qualitative: str | None = None,
    district: str = "Tianhe",
    site_id: str = "gz-th-m01",
    supplier_id: str | None = "sup-001",
    sampled_at: datetime = SAMPLED,
    **extra: Any,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "result_id": result_id,
        "sample_id": f"s-{result_id}",
        "device_id": "dev-01",
        "site": {"id": site_id, "type": "farmers_market", "district": district, "name": "Test market"},
        "vendor_id": "stall-07",
        "supplier_id": supplier_id,
        "origin": "460000",
        "commodity": commodity,
        "analyte": analyte,
        "method": method,
        "sampled_at": sampled_at.isoformat(),
        "tested_at": (sampled_at + timedelta(minutes=20)).isoformat(),
    }
    if qualitative is not None:
        d["qualitative"] = qualitative
    else:
        d["value"], d["unit"] = value, unit
    d.update(extra)
    return d


def encode(d: dict[str, Any]) -> bytes:
    return orjson.dumps(d)


def mixed_batch(prefix: str, n_valid: int) -> tuple[list[bytes], list[bytes], dict[str, str]]:
    """``n_valid`` valid results (with a known set of alert-raising ones) and a fixed set of invalid
    messages. Returns (valid, invalid, expected alert kind per result id)."""
    valid: list[bytes] = []
    expected: dict[str, str] = {}
    for i in range(n_valid):
        rid = f"{prefix}-{i:05d}"
        k = i % 50
        if k == 1:  # a lab finds carbofuran (banned) in cowpea
            d = result(rid, analyte="carbofuran", method="lc_msms", value=0.08, unit="mg/kg", loq=0.005)
            expected[rid] = "banned_pesticide"
        elif k == 2:  # a quick-test positive
            d = result(rid, value=63.0)
            expected[rid] = "quick_test_positive"
        elif k == 3:  # cadmium over the legume-vegetable limit, by ICP-MS, reported in µg/kg
            d = result(rid, analyte="cadmium", method="icp_ms", value=350.0, unit="ug/kg")
            expected[rid] = "contaminant_exceedance"
        else:
            d = result(rid, value=float(k % 30))
        valid.append(encode(d))
    invalid = [
        b"not json at all",
        b"",
        b"123",
        encode(result(f"{prefix}-bad-nan", value=None, unit="%")),  # neither value nor qualitative
        encode({k: v for k, v in result(f"{prefix}-bad-noid").items() if k != "result_id"}),
        encode(result(f"{prefix}-bad-unit", unit="furlongs")),
        encode(result(f"{prefix}-bad-neg", value=-3.0)),
        b'{"result_id": "x", "value": NaN}',
    ]
    return valid, invalid, expected

NOW_FOR_FACTORIES = SAMPLED + timedelta(days=1)


def produce(bootstrap: str, topic: str, values: list[bytes], *, devices: int = 5) -> None:
    """Publish ``values`` with kafka-python, one record per batch (the embedded broker's quirk),
    keyed by ``devices`` rotating device ids, and wait for every acknowledgement."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, v in enumerate(values):
        p.send(topic, key=f"dev-{i % devices}".encode(), value=v)
    p.flush()
    p.close()
