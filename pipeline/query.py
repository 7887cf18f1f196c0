"""Read-only analyst queries: the guard every `foodrisk query` goes through, and table output."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

ALLOWED_FIRST_WORDS = {"SELECT", "WITH"}
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_SECONDS = 30


class QueryRejected(ValueError):
    """The statement is not a single read-only SELECT."""


_STRING_OR_COMMENT = re.compile(
    r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*"|`[^`]*`|--[^\n]*|/\*.*?\*/""", re.DOTALL
)
_FORBIDDEN = re.compile(r"\b(FORMAT|SETTINGS|INTO\s+OUTFILE)\b", re.IGNORECASE)


def guard_select(sql: str, *, max_rows: int = DEFAULT_MAX_ROWS, max_seconds: int = DEFAULT_MAX_SECONDS) -> str:
    """The statement wrapped so that it can only read, returns at most ``max_rows + 1`` rows
    (one more than asked, to tell a truncated answer) and stops after ``max_seconds``."""
    body = sql.strip().rstrip(";").strip()
    if not body:
        raise QueryRejected("empty query")
    skeleton = _STRING_OR_COMMENT.sub(" ", body)
    if ";" in skeleton:
        raise QueryRejected("one statement only")
    first = skeleton.split(None, 1)[0].upper().lstrip("(") if skeleton.split() else ""
    if first not in ALLOWED_FIRST_WORDS:
        raise QueryRejected(f"only SELECT queries are allowed here, not {first or '?'}")
    if _FORBIDDEN.search(skeleton):
        raise QueryRejected("FORMAT, SETTINGS and INTO OUTFILE are set by foodrisk, not by the query")
    return (
        f"SELECT * FROM (\n{body}\n) LIMIT {int(max_rows) + 1} "  # noqa: S608 - the guard above
        f"SETTINGS readonly = 1, max_execution_time = {int(max_seconds)}"
    )


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table") -> str:
    if fmt == "json":
        return "\n".join(
            orjson.dumps({c: jsonable(v) for c, v in zip(columns, r, strict=True)}).decode() for r in rows
        )
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[jsonable(v) for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    cells = [[str(c) for c in columns]] + [["" if v is None else str(jsonable(v)) for v in r] for r in rows]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(columns))]

    def line(row: list[str]) -> str:
        return "  ".join(v + " " * (w - _width(v)) for v, w in zip(row, widths, strict=True)).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _width(s: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" else 1 for ch in s)


class WorkerUnreachable(ConnectionError):
    """No worker answers on the configured query port."""


def ask_worker(
    host: str, port: int, sql: str, *, token: str, params: dict[str, Any] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS, timeout_s: float = 60.0,
) -> tuple[list[str], list[list[Any]], bool]:
    """Run a read-only query through a running worker's query port (columns, rows, truncated),
    with an analyst ``token``."""
    import urllib.error
    import urllib.request

    body = orjson.dumps({"sql": sql, "params": params or {}, "max_rows": max_rows})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    req = urllib.request.Request(f"http://{host}:{port}/v1/query", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - as above
            data = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        with contextlib.suppress(orjson.JSONDecodeError):
            detail = str(orjson.loads(detail).get("error", detail))
        raise QueryRejected(detail) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise WorkerUnreachable(f"no worker at http://{host}:{port} ({exc})") from exc
    return list(data["columns"]), list(data["rows"]), bool(data.get("truncated"))
