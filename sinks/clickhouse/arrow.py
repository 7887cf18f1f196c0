"""ClickHouse type names to Arrow types (chdb inserts) and to Python value converters (chdb query results)."""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sinks.clickhouse.sql import IDENTIFIER

if TYPE_CHECKING:
    import pyarrow as pa


def arrow_stream(table: pa.Table) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _unwrap(ch_type: str, wrapper: str) -> str | None:
    prefix = wrapper + "("
    if ch_type.startswith(prefix) and ch_type.endswith(")"):
        return ch_type[len(prefix) : -1]
    return None


def is_nullable(ch_type: str) -> bool:
    inner = _unwrap(ch_type, "LowCardinality")
    return (inner or ch_type).startswith("Nullable(")


def _split_args(args: str) -> list[str]:
    """Top-level comma-separated arguments of a type, e.g. ``Tuple(a Array(String), b UInt8)``."""
    out, depth, start, quoted = [], 0, 0, False
    for i, ch in enumerate(args):
        if ch == "'" and (i == 0 or args[i - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(args[start:i].strip())
            start = i + 1
    out.append(args[start:].strip())
    return [a for a in out if a]


def zone(name: str) -> dt.tzinfo:
    return dt.UTC if name in ("UTC", "Etc/UTC", "Zulu", "Etc/Zulu") else ZoneInfo(name)


def _type_tz(ch_type: str, default: dt.tzinfo) -> dt.tzinfo:
    named = re.search(r"'([^']+)'", ch_type)
    return zone(named.group(1)) if named else default


_INT_ARROW = {
    "UInt8": "uint8",
    "UInt16": "uint16",
    "UInt32": "uint32",
    "UInt64": "uint64",
    "Int8": "int8",
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "Float32": "float32",
    "Float64": "float64",
}


def arrow_type(ch_type: str) -> pa.DataType | None:
    """The Arrow type to build an insert column with; None lets pyarrow infer it."""
    import pyarrow as pa

    for wrapper in ("Nullable", "LowCardinality"):
        inner = _unwrap(ch_type, wrapper)
        if inner is not None:
            return arrow_type(inner)
    inner = _unwrap(ch_type, "Array")
    if inner is not None:
        item = arrow_type(inner)
        return pa.list_(item) if item is not None else None
    if ch_type in _INT_ARROW:
        return pa.type_for_alias(_INT_ARROW[ch_type])
    if ch_type == "String" or ch_type.startswith(("FixedString(", "Enum8(", "Enum16(")) or ch_type == "UUID":
        return pa.string()
    if ch_type == "Bool":
        return pa.bool_()
    if ch_type.startswith("DateTime64"):
        args = _split_args(ch_type[len("DateTime64(") : -1])
        precision = int(args[0]) if args else 3
        unit = "s" if precision == 0 else "ms" if precision <= 3 else "us" if precision <= 6 else "ns"
        return pa.timestamp(unit, tz="UTC")
    if ch_type.startswith("DateTime"):
        return pa.timestamp("s", tz="UTC")
    if ch_type in ("Date", "Date32"):
        return pa.date32()
    if ch_type.startswith("Decimal"):
        return None  # let pyarrow infer from the Decimal values; the engine casts to the column
    return None


def identity(value: Any) -> Any:
    return value


def converter(ch_type: str, default_tz: dt.tzinfo) -> Callable[[Any], Any] | None:
    """How to turn a JSONCompact value of ``ch_type`` into the Python value clickhouse-driver
    returns; None when the JSON value already is it."""
    inner = _unwrap(ch_type, "LowCardinality")
    if inner is not None:
        return converter(inner, default_tz)
    inner = _unwrap(ch_type, "Nullable")
    if inner is not None:
        conv = converter(inner, default_tz)
        return None if conv is None else _nullable(conv)
    inner = _unwrap(ch_type, "Array")
    if inner is not None:
        conv = converter(inner, default_tz)
        return None if conv is None else _array(conv)
    inner = _unwrap(ch_type, "Tuple")
    if inner is not None:
        parts = [converter(_tuple_element_type(a), default_tz) or identity for a in _split_args(inner)]
        return lambda v: tuple(f(x) for f, x in zip(parts, v, strict=False))
    inner = _unwrap(ch_type, "Map")
    if inner is not None:
        args = _split_args(inner)
        value_conv = converter(args[1], default_tz) if len(args) == 2 else None
        key_conv = converter(args[0], default_tz) if args else None
        kc, vc = key_conv or identity, value_conv or identity
        return lambda v: {kc(k): vc(x) for k, x in v.items()}
    if ch_type.startswith(("UInt64", "Int64", "UInt128", "Int128", "UInt256", "Int256")):
        return int
    if ch_type in ("Float32", "Float64", "BFloat16"):
        return float  # "nan", "inf" and "-inf" come quoted
    if ch_type.startswith("Decimal"):
        return Decimal
    if ch_type == "UUID":
        return uuid.UUID
    if ch_type in ("Date", "Date32"):
        return dt.date.fromisoformat
    if ch_type.startswith("DateTime"):
        tz = _type_tz(ch_type, default_tz)
        return lambda v: dt.datetime.fromisoformat(v).replace(tzinfo=tz)
    return None


def _nullable(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else conv(v)


def _array(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: [conv(x) for x in v]


def _tuple_element_type(arg: str) -> str:
    """``name Type`` (named tuple element) or ``Type``."""
    head, _, rest = arg.partition(" ")
    return rest.strip() if rest and IDENTIFIER.match(head) and not head[0].isupper() else arg
