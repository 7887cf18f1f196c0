"""What Grafana and its ClickHouse plugin send to ClickHouse for a panel, without Grafana.

The provisioned boards (deploy/grafana/dashboards/*.json) hold SQL with Grafana variables and the
macros of the ``grafana-clickhouse-datasource`` plugin (v4). A query goes through three steps, in
this order, which :func:`expand` reproduces:

1. the plugin's frontend applies ``$__conditionalAll(condition, $var)``: ``1=1`` when the variable
   is "All" (or empty), else the condition;
2. Grafana interpolates template variables (``${name:singlequote}`` -> ``'a','b'``, ``${name}``,
   ``$name``);
3. the plugin's backend expands its macros: ``$__timeFilter(c)`` ->
   ``c >= toDateTime(FROM) AND c <= toDateTime(TO)``, ``$__fromTime`` / ``$__toTime`` ->
   ``toDateTime(N)``, ``$__interval_s`` -> the panel interval in whole seconds (at least 1), and
   ``$__timeInterval(c)`` -> ``toStartOfInterval(toDateTime(c), INTERVAL N second)``.

``$__timeInterval`` is expanded faithfully, but the boards do not use it: toStartOfInterval does not
exist on Debian's ClickHouse 18.16, one of the two backends the tests run. The boards bucket time
with ``toDateTime(intDiv(toUInt32(col), $__interval_s) * $__interval_s)``, which gives the same
epoch-aligned buckets on every server version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
PROMETHEUS_TYPE = "prometheus"
ALL = "$__all"


class ExpansionError(ValueError):
    """A query uses a macro or variable the expander does not know (the test should fail)."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    interval_s: int  # Grafana's $__interval for the panel, in seconds

    @property
    def from_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def to_s(self) -> int:
        return int(self.end.timestamp())


# ------------------------------------------------------------------------------------------------
# Dashboards


def load_dashboards(root: Path = DASHBOARDS) -> dict[str, dict[str, Any]]:
    """Every board JSON under ``root``, by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(root.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row (rows' nested panels included)."""
    for p in dashboard.get("panels", []):
        if p.get("type") == "row":
            yield from p.get("panels", [])
        else:
            yield p


def targets_of(dashboard: Mapping[str, Any], ds_type: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) of every query on a data source of type ``ds_type``."""
    for p in panels(dashboard):
        for t in p.get("targets", []):
            ds = t.get("datasource") or p.get("datasource") or {}
            if ds.get("type") == ds_type:
                yield p, t


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def constants(dashboard: Mapping[str, Any]) -> dict[str, str]:
    return {n: str(v["query"]) for n, v in variables(dashboard).items() if v.get("type") == "constant"}


# ------------------------------------------------------------------------------------------------
# Step 1: $__conditionalAll (plugin frontend)

_COND_ALL = "$__conditionalAll("


def macro_args(text: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of a macro call whose ``(`` is at ``open_paren``: split on top-level commas,
    nested parentheses and quoted strings respected. Returns (args, index after ``)``)."""
    depth = 0
    args: list[str] = []
    start = open_paren + 1
    quote: str | None = None
    i = open_paren
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append(text[start:i])
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(text[start:i])
            start = i + 1
        i += 1
    raise ExpansionError(f"unbalanced parentheses after {text[max(0, open_paren - 20):open_paren + 1]!r}")


def is_all(selection: Sequence[str] | str | None) -> bool:
    if selection is None:
        return True
    values = [selection] if isinstance(selection, str) else list(selection)
    return not values or values == [ALL] or values == [""]


def conditional_all(sql: str, selection: Mapping[str, Sequence[str] | str | None]) -> str:
    """Apply every ``$__conditionalAll(condition, $var)`` (innermost last, as the plugin does)."""
    while (at := sql.rfind(_COND_ALL)) != -1:
        args, end = macro_args(sql, at + len(_COND_ALL) - 1)
        if len(args) != 2:
            raise ExpansionError(f"$__conditionalAll takes 2 arguments, got {len(args)}: {args}")
        name = args[1].strip().lstrip("$").strip("{}")
        if name not in selection:
            raise ExpansionError(f"$__conditionalAll over an unknown variable ${name}")
        phrase = "1=1" if is_all(selection[name]) else args[0]
        sql = sql[:at] + phrase + sql[end:]
    return sql


# ------------------------------------------------------------------------------------------------
# Step 2: template variables (Grafana)

_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)\]\]")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def interpolate(sql: str, values: Mapping[str, Sequence[str] | str]) -> str:
    """Replace Grafana variables. Names starting with ``__`` (plugin macros, Grafana globals) are
    left for step 3; any other unknown name raises."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        fmt = m.group(2)
        if name.startswith("__"):
            return m.group(0)
        if name not in values:
            raise ExpansionError(f"unknown template variable ${name}")
        raw = values[name]
        vals = [raw] if isinstance(raw, str) else list(raw)
        if fmt in ("singlequote", "sqlstring"):
            return ",".join(_quote(v) for v in vals)
        if fmt is not None and fmt != "raw":
            raise ExpansionError(f"format :{fmt} of ${name} is not reproduced by this expander")
        if len(vals) != 1:
            raise ExpansionError(f"${name} has {len(vals)} values but no format: write ${{{name}:singlequote}}")
        return vals[0]

    return _VAR.sub(repl, sql)


# ------------------------------------------------------------------------------------------------
# Step 3: plugin backend macros

_MACRO = re.compile(r"\$__(\w+)\b")


def expand_macros(sql: str, tr: TimeRange) -> str:
    """The ClickHouse plugin's backend macros, as it writes them."""
    interval = max(int(tr.interval_s), 1)
    out: list[str] = []
    pos = 0
    for m in _MACRO.finditer(sql):
        if m.start() < pos:
            continue
        name = m.group(1)
        end = m.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            args, end = macro_args(sql, end)
            args = [a.strip() for a in args]
        if name == "timeFilter":
            (col,) = args
            text = f"{col} >= toDateTime({tr.from_s}) AND {col} <= toDateTime({tr.to_s})"
        elif name == "fromTime":
            text = f"toDateTime({tr.from_s})"
        elif name == "toTime":
            text = f"toDateTime({tr.to_s})"
        elif name == "interval_s":
            text = str(interval)
        elif name == "timeInterval":
            (col,) = args
            text = f"toStartOfInterval(toDateTime({col}), INTERVAL {interval} second)"
        else:
            raise ExpansionError(f"macro $__{name} is not reproduced by this expander")
        out.append(sql[pos:m.start()])
        out.append(text)
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def expand(
    sql: str,
    *,
    selection: Mapping[str, Sequence[str] | str | None],
    constants: Mapping[str, str],
    time_range: TimeRange,
) -> str:
    """The SQL the plugin would run: ``selection`` maps each multi-value variable to its chosen
    values (None or ``[ALL]``: "All")."""
    text = conditional_all(sql, selection)
    values: dict[str, Sequence[str] | str] = dict(constants)
    for name, chosen in selection.items():
        if not is_all(chosen):
            values[name] = [chosen] if isinstance(chosen, str) else list(chosen or [])
    text = interpolate(text, values)
    return expand_macros(text, time_range)


# ------------------------------------------------------------------------------------------------
# PromQL of the Pipeline board (Grafana variables and globals replaced for a plain Prometheus)


def expand_promql(expr: str, *, rate_interval: str = "1m", instance: str = ".*") -> str:
    out = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    out = out.replace("$instance", instance)
    if "$" in out.replace("{{", "").replace("}}", ""):
        raise ExpansionError(f"unexpanded variable left in {out!r}")
    return out


_PROM_KEYWORDS = {
    "sum", "rate", "increase", "max", "min", "avg", "count", "and", "or", "unless", "histogram_quantile", "delta",
    "deriv", "changes", "absent", "hour", "minute", "vector", "time", "bool", "offset",
}
_PROM_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: label matchers, strings and grouping clauses removed, the
    identifiers left that are not functions or operators."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _PROM_GROUPING.sub("", text)
    words = set(re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)", text))
    return {w for w in words if w not in _PROM_KEYWORDS}
