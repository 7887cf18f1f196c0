"""Read-only analyst queries: the guard every `foodrisk query` and every query-port request goes through.

The guard parses the analyst's SQL with sqlglot (ClickHouse dialect), accepts one SELECT over
tables of one database that calls allow-listed functions only, binds the parameters into the
parsed statement and regenerates the SQL that runs from it: the analyst's text never reaches
ClickHouse, so comments, quoting tricks and placeholders inside strings cannot change what runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import itertools
import math
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.dialects.clickhouse import ClickHouse as _ClickHouseDialect
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, TokenError
from sqlglot.generators.clickhouse import ClickHouseGenerator
from sqlglot.parsers.clickhouse import ClickHouseParser
from sqlglot.tokenizer_core import Token, TokenType

from pipeline.query.functions import FUNCTIONS_AS_IDENTIFIERS, function_allowed
from sinks.clickhouse.sql import CONTROL_ESCAPES

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_SECONDS = 30
MAX_SQL_CHARS = 100_000
MiB = 1024 * 1024


class QueryRejected(ValueError):
    """The statement is not a single read-only SELECT the guard accepts."""


@dataclass(frozen=True)
class QueryLimits:
    """The limits every guarded query runs under (ClickHouse settings of the same names; each
    exists on Debian's 18.16 and on modern servers). ``max_result_rows`` defaults to the row
    limit + 1. Overflows throw; ``readonly = 1`` always."""

    max_execution_time: int = DEFAULT_MAX_SECONDS  # seconds
    max_memory_usage: int = 512 * MiB
    max_result_bytes: int = 64 * MiB
    max_result_rows: int | None = None
    max_rows_to_read: int = 500_000_000
    max_threads: int | None = None  # None: the server's default (its cores)

    def connection_settings(self) -> dict[str, int | str]:
        """The limits that do not depend on the request, as settings of a connection (for a server
        that ignores some of them in a query's own SETTINGS clause: Debian's 18.16). Not
        ``readonly``: a read-only connection could not take the SETTINGS clause every guarded query
        carries."""
        return {name: value for name, value in self.settings(0) if name not in ("readonly", "max_result_rows")}

    def settings(self, max_rows: int) -> list[tuple[str, int | str]]:
        result_rows = self.max_result_rows if self.max_result_rows is not None else max_rows + 1
        return [
            ("readonly", 1),
            ("max_execution_time", int(self.max_execution_time)),
            ("timeout_overflow_mode", "throw"),
            ("max_memory_usage", int(self.max_memory_usage)),
            ("max_result_rows", int(result_rows)),
            ("max_result_bytes", int(self.max_result_bytes)),
            ("result_overflow_mode", "throw"),
            ("max_rows_to_read", int(self.max_rows_to_read)),
            ("read_overflow_mode", "throw"),
            *([("max_threads", int(self.max_threads))] if self.max_threads is not None else []),
        ]



# --------------------------------------------------------------------------------------------
# The dialect: ClickHouse as sqlglot reads it, but every function call stays a call by its own
# name (no translation to sqlglot's typed functions, which regenerate under other names, some
# missing on 18.16), and strings and quoted identifiers are written with backslash escapes,
# which every ClickHouse version reads the same way (18.16 knows no doubled-quote escapes).

_SQL_ESCAPES = str.maketrans(CONTROL_ESCAPES)
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quoted(text: str, quote: str) -> str:
    return quote + text.translate(_SQL_ESCAPES).replace(quote, "\\" + quote) + quote


class _Dialect(_ClickHouseDialect):
    class Parser(ClickHouseParser):
        FUNCTIONS: ClassVar[dict[str, Any]] = {}
        FUNCTION_PARSERS: ClassVar[dict[str, Any]] = {
            k: v for k, v in ClickHouseParser.FUNCTION_PARSERS.items() if k in ("CAST", "EXTRACT")
        }
        NO_PAREN_FUNCTION_PARSERS: ClassVar[dict[str, Any]] = {
            k: v for k, v in ClickHouseParser.NO_PAREN_FUNCTION_PARSERS.items() if k == "CASE"
        }
        NO_PAREN_FUNCTIONS: ClassVar[dict[Any, Any]] = {}

    class Generator(ClickHouseGenerator):
        def literal_sql(self, expression: exp.Literal) -> str:
            if expression.is_string:
                return _quoted(str(expression.this), "'")
            return super().literal_sql(expression)

        def identifier_sql(self, expression: exp.Identifier) -> str:
            text = expression.name
            if not expression.quoted and _PLAIN_NAME.match(text) and text.lower() not in self.RESERVED_KEYWORDS:
                return text
            return _quoted(text, "`")


_DIALECT = _Dialect()


def _parse(sql: str) -> list[exp.Expr | None]:
    try:
        return _DIALECT.parse(sql)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" (line {first.get('line')}, column {first.get('col')})" if first.get("line") else ""
        reason = str(first.get("description") or exc).splitlines()[0]
        raise QueryRejected(f"cannot parse the query: {reason}{where}") from None
    except (TokenError, SqlglotError) as exc:
        raise QueryRejected(f"cannot parse the query: {str(exc).splitlines()[0]}") from None


# --------------------------------------------------------------------------------------------
# Placeholders: ClickHouse's {name:Type} is parsed as such; %(name)s (the README's and the
# drivers' syntax) is turned into one, token by token, so only a placeholder written as code
# counts (the same characters inside a string or a comment stay text).

_PYFORMAT_KIND = "String"


def _pyformat_to_placeholders(sql: str) -> tuple[str, dict[str, str]]:
    """``sql`` with each ``%(name)s`` outside strings and comments replaced by a
    ``{marker:String}`` placeholder; the markers' original names."""
    try:
        tokens = _DIALECT.tokenize(sql)
    except (TokenError, SqlglotError) as exc:
        raise QueryRejected(f"cannot parse the query: {str(exc).splitlines()[0]}") from None
    nonce = secrets.token_hex(4)
    names: dict[str, str] = {}
    pieces: list[str] = []
    done = 0
    i = 0
    while i < len(tokens):
        window = tokens[i : i + 5]
        if _is_pyformat(sql, window):
            marker = f"_pyformat_{nonce}_{len(names)}"
            names[marker] = window[2].text
            pieces += [sql[done : window[0].start], f"{{{marker}:{_PYFORMAT_KIND}}}"]
            done = window[4].end + 1
            i += 5
        else:
            i += 1
    pieces.append(sql[done:])
    return "".join(pieces), names


def _is_pyformat(sql: str, window: Sequence[Token]) -> bool:
    if len(window) < 5:
        return False
    kinds = [t.token_type for t in window]
    if kinds[0] != TokenType.MOD or kinds[1] != TokenType.L_PAREN or kinds[3] != TokenType.R_PAREN:
        return False
    if sql[window[4].start : window[4].end + 1] != "s" or not _PLAIN_NAME.match(window[2].text):
        return False
    # Written without spaces: "% (a) s" is an expression, not a placeholder.
    return all(a.end + 1 == b.start for a, b in itertools.pairwise(window))


def _bind(tree: exp.Expr, params: Mapping[str, Any], pyformat: Mapping[str, str]) -> None:
    """Replace every placeholder of ``tree`` by the literal of its parameter."""
    used: set[str] = set()
    missing: list[str] = []
    for node in list(tree.find_all(exp.Placeholder)):
        marker = node.name
        kind = node.args.get("kind")
        if not marker or marker == "?" or not isinstance(kind, exp.DataType):
            raise QueryRejected("placeholders are written {name:Type} or %(name)s")
        name = pyformat.get(marker, marker)
        if name not in params:
            missing.append(name)
            continue
        used.add(name)
        value = params[name]
        in_list = isinstance(node.parent, exp.In) and node.arg_key == "field"
        literal = _literal(value, in_list=in_list and marker in pyformat)
        node.replace(literal if marker in pyformat else exp.Cast(this=literal, to=kind.copy()))
    if missing:
        raise QueryRejected(f"no value for parameter(s): {', '.join(sorted(set(missing)))}")
    unused = sorted(set(params) - used)
    if unused:
        raise QueryRejected(f"parameter(s) not used by the query: {', '.join(unused)}")


def _literal(value: Any, *, in_list: bool = False) -> exp.Expr:
    """``value`` as a literal node that means the same on 18.16 and on modern ClickHouse
    (datetimes as ``toDateTime('...', 'UTC')``, whole seconds, naive ones taken as UTC).
    ``in_list``: a list, tuple or set is written ``(a, b)``, for ``x IN %(xs)s``."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):  # before int: bool is an int
        return exp.Literal.number(int(value))
    if isinstance(value, enum.Enum):
        return _literal(value.value, in_list=in_list)
    if isinstance(value, int):
        return exp.Literal.number(str(value))
    if isinstance(value, float):
        if math.isfinite(value):
            return exp.Literal.number(repr(value))
        return exp.Anonymous(this="toFloat64", expressions=[exp.Literal.string(str(value))])
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise QueryRejected(f"cannot bind the Decimal {value}")
        return exp.Literal.number(str(value))
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, bytes):
        return exp.Literal.string(value.decode("utf-8", "replace"))
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        return exp.Anonymous(this="toDateTime", expressions=[exp.Literal.string(text), exp.Literal.string("UTC")])
    if isinstance(value, date):
        return exp.Anonymous(this="toDate", expressions=[exp.Literal.string(value.isoformat())])
    if isinstance(value, uuid.UUID):
        return exp.Anonymous(this="toUUID", expressions=[exp.Literal.string(str(value))])
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else list(value)
        nodes = [_literal(v) for v in items]
        if in_list or not isinstance(value, list):
            return exp.Tuple(expressions=nodes)
        return exp.Array(expressions=nodes)
    raise QueryRejected(f"cannot bind a {type(value).__name__} as a ClickHouse literal")


# --------------------------------------------------------------------------------------------
# What a guarded statement may contain: these syntax nodes, functions by allow-listed name, and
# tables of one database. Anything else (another statement kind, SETTINGS, FORMAT, INTO, a table
# function, a parameter left unbound, syntax this list does not name) is rejected.

_SYNTAX: tuple[type[exp.Expr], ...] = (
    # statements and clauses
    exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.With, exp.CTE, exp.From,
    exp.Join, exp.Where, exp.PreWhere, exp.Group, exp.Having, exp.Order, exp.Ordered, exp.Limit,
    exp.Offset, exp.Distinct, exp.Final, exp.TableSample, exp.Window, exp.WindowSpec, exp.Qualify,
    exp.Table, exp.TableAlias, exp.Alias, exp.Aliases, exp.Column, exp.Identifier, exp.Star, exp.Dot,
    exp.Cube, exp.Rollup, exp.GroupingSets, exp.Tuple, exp.Paren, exp.Lambda, exp.Bracket,
    exp.WithFill, exp.Interval, exp.Var, exp.DataType, exp.DataTypeParam, exp.ColumnDef,
    exp.Literal, exp.Null, exp.Boolean, exp.Exists, exp.Any, exp.All,
    # operators
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.Not, exp.And, exp.Or, exp.Xor,
    exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.Is, exp.In, exp.Between,
    exp.Like, exp.ILike, exp.DPipe, exp.BitwiseAnd, exp.BitwiseOr, exp.BitwiseXor, exp.BitwiseNot,
    exp.IntDiv,
    # calls (checked by name below)
    exp.Anonymous, exp.AnonymousAggFunc, exp.CombinedAggFunc, exp.ParameterizedAgg,
    exp.CombinedParameterizedAgg, exp.Cast, exp.CastToStrType, exp.Extract, exp.Case, exp.If,
    exp.Array,
)  # fmt: skip
_CALLS_BY_NAME = (
    exp.Anonymous, exp.AnonymousAggFunc, exp.CombinedAggFunc, exp.ParameterizedAgg, exp.CombinedParameterizedAgg,
)  # fmt: skip
_CALL_NAMES: dict[type[exp.Expr], str] = {exp.Cast: "cast", exp.CastToStrType: "cast", exp.Extract: "extract"}


def _call_name(node: exp.Expr) -> str | None:
    """The ClickHouse name of the function ``node`` calls; None for syntax that calls none (the
    other typed nodes of ``_SYNTAX``: AND, CASE, "c ? a : b", [a, b]...)."""
    if isinstance(node, _CALLS_BY_NAME):
        return node.name
    return _CALL_NAMES.get(type(node))


def _check(tree: exp.Expr, database: str) -> None:
    if not isinstance(tree, exp.Select | exp.SetOperation):
        kind = tree.key.upper() if isinstance(tree, exp.Expr) else "?"
        raise QueryRejected(f"only SELECT queries are allowed here, not {kind}")
    for node in tree.walk():
        if isinstance(node, exp.Placeholder | exp.Parameter):
            raise QueryRejected(f"unbound parameter {node.sql(dialect=_DIALECT)}")
        if isinstance(node, exp.Query):
            for clause in ("settings", "format", "into"):
                if node.args.get(clause):
                    raise QueryRejected(f"FORMAT, SETTINGS and INTO are set by foodrisk, not in the query ({clause})")
        if not isinstance(node, _SYNTAX):
            raise QueryRejected(f"not allowed in a guarded query: {node.key.upper()} ({_snippet(node)})")
        called = _call_name(node)
        if called is not None and not function_allowed(called):
            raise QueryRejected(f"function {called}() is not allowed in analyst queries")
        if isinstance(node, exp.Table):
            _check_table(node, database)
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in FUNCTIONS_AS_IDENTIFIERS:
            raise QueryRejected(f"{node.name} is also a server function: qualify the column (t.{node.name})")
        if isinstance(node, exp.In) and isinstance(node.args.get("field"), exp.Column | exp.Table):
            raise QueryRejected("IN <table> is not allowed: write IN (SELECT ... FROM <table>)")


def _check_table(table: exp.Table, database: str) -> None:
    if not isinstance(table.this, exp.Identifier):
        raise QueryRejected(f"table functions are not allowed: {_snippet(table)}")
    if table.catalog or (table.db and table.db != database):
        raise QueryRejected(f"only tables of the {database} database can be queried, not {_snippet(table)}")


def _snippet(node: exp.Expr) -> str:
    try:
        text = node.sql(dialect=_DIALECT)
    except SqlglotError:
        text = node.key
    return text if len(text) <= 60 else text[:57] + "..."


def _regenerate(tree: exp.Expr) -> str:
    try:
        return tree.sql(dialect=_DIALECT, comments=False, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise QueryRejected(f"cannot write the query back: {str(exc).splitlines()[0]}") from None


def guard_select(
    sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    database: str = "foodrisk",
    max_rows: int = DEFAULT_MAX_ROWS,
    limits: QueryLimits = QueryLimits(),
) -> str:
    """The SQL to run for the analyst's ``sql``, with ``params`` bound: one SELECT over tables of
    ``database`` (unqualified names are the connection's current database, which callers keep
    equal to ``database``), allow-listed functions only, regenerated from the parsed statement,
    wrapped in a row limit of ``max_rows + 1`` (one more, to tell a truncated answer) and the
    settings of ``limits``. Run it with no further parameters. Raises :class:`QueryRejected`
    with a one-line reason."""
    if params is not None and not isinstance(params, Mapping):
        raise QueryRejected("params must be an object of name: value")
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRejected(f"query longer than {MAX_SQL_CHARS} characters")
    if not sql.strip():
        raise QueryRejected("empty query")
    if max_rows < 0:
        raise QueryRejected("max_rows must be >= 0")
    _reject_into_outfile(sql)
    text, pyformat = _pyformat_to_placeholders(sql)
    statements = [s for s in _parse(text) if s is not None]
    if not statements:
        raise QueryRejected("empty query")
    if len(statements) > 1:
        raise QueryRejected("one statement only")
    tree = statements[0]
    while isinstance(tree, exp.Subquery) and not tree.args.get("alias"):
        tree = tree.this  # "(SELECT ...)"
    _bind(tree, params or {}, pyformat)
    _check(tree, database)
    body = _regenerate(tree)
    # What runs is what was checked: the regenerated text reads back to the same statement.
    again = [s for s in _parse(body) if s is not None]
    if len(again) != 1:
        raise QueryRejected("the query does not read back as one statement")
    _check(again[0], database)
    if _regenerate(again[0]) != body:
        raise QueryRejected("the query does not read back to the same statement")
    settings = ", ".join(
        f"{name} = {_quoted(value, chr(39)) if isinstance(value, str) else value}"
        for name, value in limits.settings(max_rows)
    )
    return f"SELECT * FROM (\n{body}\n) LIMIT {int(max_rows) + 1} SETTINGS {settings}"  # noqa: S608 - checked above


def _reject_into_outfile(sql: str) -> None:
    with contextlib.suppress(TokenError, SqlglotError):
        tokens = _DIALECT.tokenize(sql)
        for a, b in itertools.pairwise(tokens):
            if a.token_type == TokenType.INTO and b.text.upper() == "OUTFILE":
                raise QueryRejected("FORMAT, SETTINGS and INTO OUTFILE are set by foodrisk, not by the query")


