"""Pure conversions between stream messages and ClickHouse rows (no faust, no I/O).

Rows are built as mappings and laid out in the column order of the table's one definition
(sinks/clickhouse/schema.py), so a column added to a table is one change there plus one key here.
A ``results`` row, built once per result, is a tuple straight away (``result_row``, compiled from
the table's column order and ``_RESULT_VALUES``): a column added there is one entry in
``_RESULT_VALUES``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import linecache
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final

import orjson

from schemas.alert import Alert
from schemas.codes import QUICK_METHODS
from schemas.result import Result
from schemas.verdict import Verdict
from sinks.clickhouse.schema import RESULTS_COLUMNS

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


RESULT_FIELDS: Final[tuple[str, ...]] = RESULTS_COLUMNS
"""The names of a ``results`` row's values, in the order ``result_row`` gives them: the table's
column order, from its one definition (``RESULTS`` in sinks/clickhouse/schema.py)."""

# What goes in each ``results`` column: a Python expression over ``r``, ``site`` and ``v`` (the
# __dict__ of the Result, its site and the Verdict; a plain dict lookup costs about half an
# attribute access on a pydantic model), ``method`` and ``qualitative`` (read once), and the
# builder's source arguments. Only the values are said here: their order is the table's, and a
# column without a value here (or a value without a column) fails at import.
_RESULT_VALUES: Final[Mapping[str, str]] = {
    "result_id": 'r["result_id"]',
    "schema_version": 'r["schema_version"]',
    "sample_id": 'r["sample_id"]',
    "device_id": 'r["device_id"]',
    "site_id": 'site["id"]',
    "site_type": 'str(site["type"])',
    "district": 'site["district"]',
    "site_name": 'site["name"] or ""',  # optional in the wire format, a plain String column
    "vendor_id": 'r["vendor_id"]',
    "supplier_id": 'r["supplier_id"]',
    "origin": 'r["origin"]',
    "commodity": 'r["commodity"]',
    "analyte": 'r["analyte"]',
    "method": "str(method)",
    "quick": "1 if method in QUICK_METHODS else 0",
    "value_mg_kg": 'r["value_mg_kg"]',
    "percent": 'r["percent"]',
    "raw_value": 'r["value"]',
    "raw_unit": 'r["unit"] or ""',
    "qualitative": "str(qualitative) if qualitative is not None else None",
    "lod_mg_kg": 'r["lod_mg_kg"]',
    "loq_mg_kg": 'r["loq_mg_kg"]',
    "sampled_at": 'naive_utc(r["sampled_at"])',
    "tested_at": 'naive_utc(r["tested_at"])',
    "confirms": 'r["confirms"]',
    "verdict": 'str(v["verdict"])',
    "limit_mg_kg": 'v["limit_mg_kg"]',
    "ratio": 'v["ratio"]',
    "rule": 'v["rule"]',
    "edition": 'v["edition"]',
    "source": 'v["source"]',
    "confidence": 'v["confidence"]',
    "basis": 'v["basis"]',
    "src_topic": "src_topic",
    "src_partition": "src_partition",
    "src_offset": "src_offset",
    "ingested_at": "ingested_at",
    "reference_edition": "reference_edition",
}

ResultRowBuilder = Callable[[Result, Verdict, str, int, int, datetime, str], tuple[Any, ...]]
RowLayout = Callable[[tuple[Any, ...]], tuple[Any, ...]]

_RESULT_ROW_DOC = """The ``results`` row of a screened result, its values in ``RESULT_FIELDS`` order (the
table's columns). ``ingested_at`` is naive UTC already (``naive_utc``; a batch converts it once for
all its rows); ``reference_edition`` is the id of the reference the verdict came from
(``Reference.edition``)."""


def compile_row_builder(columns: Sequence[str], values: Mapping[str, str]) -> ResultRowBuilder:
    """A ``result_row`` function returning one tuple literal with ``values[c]`` for each of
    ``columns``, in that order: the speed of a hand-written tuple (it runs once per result), the
    order of the table's one definition. Raises ValueError when the two name different columns.
    """
    missing = [c for c in columns if c not in values]
    extra = [c for c in values if c not in columns]
    if missing or extra or len(set(columns)) != len(columns):
        raise ValueError(f"results row values do not match the table: missing {missing}, not columns {extra}")
    items = "".join(f"        {values[c]},  # {c}\n" for c in columns)
    source = (
        "def result_row(result, verdict, src_topic, src_partition, src_offset, ingested_at, reference_edition):\n"
        "    r, site, v = result.__dict__, result.site.__dict__, verdict.__dict__\n"
        '    method, qualitative = r["method"], r["qualitative"]\n'
        f"    return (\n{items}    )\n"
    )
    filename = f"<agents.records result_row {hashlib.sha256(source.encode()).hexdigest()[:8]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # readable tracebacks
    namespace: dict[str, Any] = {"naive_utc": naive_utc, "QUICK_METHODS": QUICK_METHODS}
    # The source is made of this module's constant expressions and the table's column names (plain
    # identifiers, only in comments), never of data: the way dataclasses and namedtuple build code.
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    builder: ResultRowBuilder = namespace["result_row"]
    builder.__doc__ = _RESULT_ROW_DOC
    builder.__module__ = __name__
    return builder


result_row: Final[ResultRowBuilder] = compile_row_builder(RESULT_FIELDS, _RESULT_VALUES)


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
    reference_edition: str = "",
) -> dict[str, Any]:
    """The ``results`` row as a mapping, column name -> value."""
    row = result_row(result, verdict, src_topic, src_partition, src_offset, naive_utc(ingested_at), reference_edition)
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
