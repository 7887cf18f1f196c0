"""Pure conversions between stream messages and ClickHouse rows (no faust, no I/O).

Rows are built as mappings and laid out in the column order the DDL exports, so a column added
to a table is one change in ``sinks/ddl.py`` plus one key here. A ``results`` row, built once per
result, is a tuple straight away (``result_row``): a column added there is one name in
``RESULT_FIELDS`` plus its value at the same place in ``result_row``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final

import orjson

from schemas.alert import Alert
from schemas.codes import QUICK_METHODS
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


def naive_utc(ts: datetime) -> datetime:
    """``ts`` as naive UTC, to the second: ClickHouse DateTime('UTC') columns take naive UTC datetimes
    through both backends. (A naive ``ts`` is taken as local time, as ``astimezone`` does.)"""
    if ts.tzinfo is UTC and type(ts) is datetime and not ts.fold:
        # already UTC (every Result time is): the same value; the constructor costs a third of replace(**kw)
        return datetime(ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second)  # noqa: DTZ001 - naive UTC wanted
    return ts.astimezone(UTC).replace(tzinfo=None, microsecond=0)


RESULT_FIELDS: Final[tuple[str, ...]] = (
    "result_id",
    "schema_version",
    "sample_id",
    "device_id",
    "site_id",
    "site_type",
    "district",
    "site_name",
    "vendor_id",
    "supplier_id",
    "origin",
    "commodity",
    "analyte",
    "method",
    "quick",
    "value_mg_kg",
    "percent",
    "raw_value",
    "raw_unit",
    "qualitative",
    "lod_mg_kg",
    "loq_mg_kg",
    "sampled_at",
    "tested_at",
    "confirms",
    "verdict",
    "limit_mg_kg",
    "ratio",
    "rule",
    "edition",
    "source",
    "confidence",
    "basis",
    "src_topic",
    "src_partition",
    "src_offset",
    "ingested_at",
)
"""The names of a ``results`` row's values, in the order ``result_row`` gives them."""

RowLayout = Callable[[tuple[Any, ...]], tuple[Any, ...]]


def result_row(
    result: Result, verdict: Verdict, src_topic: str, src_partition: int, src_offset: int, ingested_at: datetime
) -> tuple[Any, ...]:
    """The ``results`` row of a screened result, its values in ``RESULT_FIELDS`` order
    (``result_row_layout`` puts them in a table's column order). ``ingested_at`` is naive UTC
    already (``naive_utc``; a batch converts it once for all its rows)."""
    # Field values straight from the models' __dict__ (a plain dict lookup, about half the cost
    # of attribute access on a pydantic model); this runs once per result.
    r, site, v = result.__dict__, result.site.__dict__, verdict.__dict__
    method, qualitative = r["method"], r["qualitative"]
    return (
        r["result_id"],
        r["schema_version"],
        r["sample_id"],
        r["device_id"],
        site["id"],
        str(site["type"]),
        site["district"],
        site["name"] or "",  # optional in the wire format, a plain String column
        r["vendor_id"],
        r["supplier_id"],
        r["origin"],
        r["commodity"],
        r["analyte"],
        str(method),
        1 if method in QUICK_METHODS else 0,
        r["value_mg_kg"],
        r["percent"],
        r["value"],
        r["unit"] or "",
        str(qualitative) if qualitative is not None else None,
        r["lod_mg_kg"],
        r["loq_mg_kg"],
        naive_utc(r["sampled_at"]),
        naive_utc(r["tested_at"]),
        r["confirms"],
        str(v["verdict"]),
        v["limit_mg_kg"],
        v["ratio"],
        v["rule"],
        v["edition"],
        v["source"],
        v["confidence"],
        v["basis"],
        src_topic,
        src_partition,
        src_offset,
        ingested_at,
    )


@functools.lru_cache(maxsize=32)
def _result_row_layout(columns: tuple[str, ...]) -> RowLayout | None:
    if columns == RESULT_FIELDS:
        return None
    position = {name: i for i, name in enumerate(RESULT_FIELDS)}
    get = itemgetter(*(position[name] for name in columns))  # KeyError: a column this module does not fill
    if len(columns) == 1:
        return lambda row: (get(row),)
    return get


def result_row_layout(columns: Sequence[str]) -> RowLayout | None:
    """How to reorder a ``result_row`` into ``columns``; None when it already is in that order.
    A column missing from ``RESULT_FIELDS`` is a programming error and raises KeyError."""
    return _result_row_layout(tuple(columns))


def result_values(
    result: Result,
    verdict: Verdict,
    *,
    src_topic: str,
    src_partition: int,
    src_offset: int,
    ingested_at: datetime,
) -> dict[str, Any]:
    """The ``results`` row as a mapping, column name -> value."""
    row = result_row(result, verdict, src_topic, src_partition, src_offset, naive_utc(ingested_at))
    return dict(zip(RESULT_FIELDS, row, strict=True))


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
        "starts_at": naive_utc(alert.starts_at),
        "ends_at": naive_utc(alert.ends_at) if alert.ends_at else None,
        "details": orjson.dumps(alert.details, option=orjson.OPT_SORT_KEYS).decode(),
        "src_partition": src_partition,
        "src_offset": src_offset,
        "ingested_at": naive_utc(ingested_at),
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
            "received_at": naive_utc(datetime.fromisoformat(d["src_timestamp"])),
            "failed_at": naive_utc(datetime.fromisoformat(d["failed_at"])),
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
