"""Pure conversions between stream messages and ClickHouse rows (no faust, no I/O).

Rows are built as mappings and laid out in the column order the DDL exports, so a column added
to a table is one change in ``sinks/ddl.py`` plus one key here.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson

from schemas.alert import Alert
from schemas.result import Result
from schemas.verdict import Verdict

DEADLETTER_SCHEMA_VERSION = 1
MAX_PAYLOAD_CHARS = 65_536
MAX_ENVELOPE_PAYLOAD_BYTES = 65_536


def as_row(values: Mapping[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
    """The values in column order; a missing column is a programming error and raises KeyError."""
    return _getter(tuple(columns))(values)  # type: ignore[no-any-return]  # itemgetter is untyped here


@functools.lru_cache(maxsize=32)
def _getter(columns: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any]:
    get = itemgetter(*columns)
    if len(columns) == 1:
        return lambda values: (get(values),)
    return get


def _naive_utc(ts: datetime) -> datetime:
    # ClickHouse DateTime('UTC') columns take naive UTC datetimes through both backends.
    return ts.astimezone(UTC).replace(tzinfo=None, microsecond=0)


def result_values(
    result: Result,
    verdict: Verdict,
    *,
    src_topic: str,
    src_partition: int,
    src_offset: int,
    ingested_at: datetime,
) -> dict[str, Any]:
    site = result.site
    return {
        "result_id": result.result_id,
        "schema_version": result.schema_version,
        "sample_id": result.sample_id,
        "device_id": result.device_id,
        "site_id": site.id,
        "site_type": str(site.type),
        "district": site.district,
        "site_name": site.name or "",  # optional in the wire format, a plain String column
        "vendor_id": result.vendor_id,
        "supplier_id": result.supplier_id,
        "origin": result.origin,
        "commodity": result.commodity,
        "analyte": result.analyte,
        "method": str(result.method),
        "quick": 1 if result.method.is_quick else 0,
        "value_mg_kg": result.value_mg_kg,
        "percent": result.percent,
        "raw_value": result.value,
        "raw_unit": result.unit or "",
        "qualitative": str(result.qualitative) if result.qualitative is not None else None,
        "lod_mg_kg": result.lod_mg_kg,
        "loq_mg_kg": result.loq_mg_kg,
        "sampled_at": _naive_utc(result.sampled_at),
        "tested_at": _naive_utc(result.tested_at),
        "confirms": result.confirms,
        "verdict": str(verdict.verdict),
        "limit_mg_kg": verdict.limit_mg_kg,
        "ratio": verdict.ratio,
        "rule": verdict.rule,
        "edition": verdict.edition,
        "source": verdict.source,
        "confidence": verdict.confidence,
        "basis": verdict.basis,
        "src_topic": src_topic,
        "src_partition": src_partition,
        "src_offset": src_offset,
        "ingested_at": _naive_utc(ingested_at),
    }


def alert_values(alert: Alert, *, src_partition: int, src_offset: int, ingested_at: datetime) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "kind": alert.kind,
        "classification": str(alert.classification),
        "risk": str(alert.risk),
        "status": str(alert.status),
        "summary_en": alert.summary_en,
        "summary_zh": alert.summary_zh,
        "district": alert.district,
        "site_id": alert.site_id,
        "site_type": alert.site_type,
        "commodity": alert.commodity,
        "analyte": alert.analyte,
        "supplier_id": alert.supplier_id,
        "vendor_id": alert.vendor_id,
        "device_id": alert.device_id,
        "evidence": list(alert.evidence),
        "starts_at": _naive_utc(alert.starts_at),
        "ends_at": _naive_utc(alert.ends_at) if alert.ends_at else None,
        "details": orjson.dumps(alert.details, option=orjson.OPT_SORT_KEYS).decode(),
        "src_partition": src_partition,
        "src_offset": src_offset,
        "ingested_at": _naive_utc(ingested_at),
    }


def deadletter_envelope(
    *,
    payload: bytes | None,
    key: bytes | None,
    src_topic: str,
    src_partition: int,
    src_offset: int,
    src_timestamp: datetime,
    failed_at: datetime,
    error_kind: str,
    errors: Sequence[tuple[str, str]],
    src_item: int = -1,
) -> bytes:
    """The dead-letter message: the original bytes and every reason, as one JSON object.

    A message larger than ``MAX_ENVELOPE_PAYLOAD_BYTES`` keeps its first bytes, its size and its
    SHA-256 (the rest would not fit through the broker's message size limit); the source topic,
    partition and offset still point at the full original.
    """
    raw = payload or b""
    size, digest = len(raw), hashlib.sha256(raw).hexdigest()
    truncated = size > MAX_ENVELOPE_PAYLOAD_BYTES
    if truncated:
        raw = raw[:MAX_ENVELOPE_PAYLOAD_BYTES]
    try:
        text, encoding = raw.decode("utf-8", "strict" if not truncated else "ignore"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return orjson.dumps(
        {
            "schema_version": DEADLETTER_SCHEMA_VERSION,
            "src_topic": src_topic,
            "src_partition": src_partition,
            "src_offset": src_offset,
            "src_item": src_item,
            "src_timestamp": src_timestamp.astimezone(UTC).isoformat(),
            "failed_at": failed_at.astimezone(UTC).isoformat(),
            "error_kind": error_kind,
            "errors": [{"field": f, "reason": r} for f, r in errors],
            "key": key.decode("utf-8", "replace") if key is not None else None,
            "payload": text,
            "payload_encoding": encoding,
            "payload_size": size,
            "payload_sha256": digest,
            "payload_truncated": truncated,
        }
    )


def deadletter_values(envelope: bytes) -> dict[str, Any]:
    """A dead-letter envelope as a ``deadletters`` row (raises ValueError on a foreign message)."""
    try:
        d = orjson.loads(envelope)
        errors = [f"{e['field']}: {e['reason']}" for e in d["errors"]]
        payload = str(d.get("payload") or "")
        return {
            "src_topic": str(d["src_topic"]),
            "src_partition": int(d["src_partition"]),
            "src_offset": int(d["src_offset"]),
            "src_item": int(d.get("src_item", -1)),
            "received_at": _naive_utc(datetime.fromisoformat(d["src_timestamp"])),
            "failed_at": _naive_utc(datetime.fromisoformat(d["failed_at"])),
            "key": d.get("key"),
            "payload": payload[:MAX_PAYLOAD_CHARS],
            "errors": errors,
            "error_kind": str(d["error_kind"]),
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a foodrisk dead-letter envelope: {exc}") from exc


def broker_time(timestamp: float | None, fallback: datetime) -> datetime:
    """A Kafka message timestamp (seconds) as an aware datetime; ``fallback`` when absent."""
    if timestamp is None or timestamp <= 0:
        return fallback
    return datetime.fromtimestamp(timestamp, tz=UTC)
