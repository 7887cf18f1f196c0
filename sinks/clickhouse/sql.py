"""SQL text on the client side: literals, ``%(name)s`` binding and quoted names, the same for both backends."""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

CONTROL_ESCAPES = {  # the backslash escapes every ClickHouse version reads the same way (not quotes)
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\r": "\\r",
    "\n": "\\n",
    "\t": "\\t",
    "\0": "\\0",
    "\a": "\\a",
    "\v": "\\v",
}
_ESCAPE_TABLE = str.maketrans({**CONTROL_ESCAPES, "'": "\\'"})
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_string(value: str) -> str:
    return "'" + value.translate(_ESCAPE_TABLE) + "'"


def literal(value: Any) -> str:
    """``value`` as a ClickHouse SQL literal that means the same on 18.16 and modern servers.

    Datetimes become ``toDateTime('...', 'UTC')`` (naive ones are taken as UTC; fractions of a
    second are dropped), so the meaning does not depend on the server's time zone.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):  # before int: bool is an int
        return "1" if value else "0"
    if isinstance(value, enum.Enum):
        return literal(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, bytes):
        return quote_string(value.decode("utf-8", "replace"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        # Whole seconds, like DateTime itself (and 18.16 has no DateTime64).
        return f"toDateTime('{value.strftime('%Y-%m-%d %H:%M:%S')}', 'UTC')"
    if isinstance(value, dt.date):
        return f"toDate('{value.isoformat()}')"
    if isinstance(value, uuid.UUID):
        return f"toUUID('{value}')"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, set | frozenset):
        return "(" + ", ".join(literal(v) for v in sorted(value, key=repr)) + ")"
    raise TypeError(f"cannot bind a {type(value).__name__} as a ClickHouse literal")


def bind(sql: str, params: Mapping[str, Any] | None) -> str:
    """``sql`` with its ``%(name)s`` placeholders replaced by literals.

    Without params the text is returned as is; with params, a literal ``%`` is written ``%%``
    (Python %-formatting, as clickhouse-driver does). A tuple or set renders as ``(a, b)``, for
    ``IN %(xs)s``; a list as an array ``[a, b]``.
    """
    if not params:
        return sql
    return sql % {key: literal(value) for key, value in params.items()}


def quote_identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(f"not a plain ClickHouse identifier: {name!r}")
    return f"`{name}`"


def quote_table(table: str, default_database: str | None = None) -> str:
    """``table`` or ``db.table`` as a quoted, qualified name."""
    db, dot, name = table.rpartition(".")
    if not dot:
        db = default_database or ""
    return f"{quote_identifier(db)}.{quote_identifier(name)}" if db else quote_identifier(name)


def column_list(columns: Sequence[str]) -> str:
    if not columns:
        raise ValueError("insert needs at least one column name")
    return ", ".join(quote_identifier(c) for c in columns)


def check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(settings or {})
    for name in out:
        if not IDENTIFIER.match(name):
            raise ValueError(f"not a ClickHouse setting name: {name!r}")
    return out
