"""The backend for chdb, the ClickHouse engine inside this process, persistent at a path (ChdbBackend)."""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from sinks.clickhouse.arrow import arrow_stream, arrow_type, converter, identity, is_nullable, zone
from sinks.clickhouse.base import (
    DEFAULT_DATABASE,
    DropUnsupportedSettings,
    Features,
    QueryResult,
    Version,
    parse_version,
)
from sinks.clickhouse.sql import bind, check_settings, column_list, literal, quote_identifier, quote_table
from sinks.errors import ClickHouseError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

_CHDB_LOCK = threading.Lock()
_CHDB_OPEN: dict[Path, int] = {}  # path -> sessions open in this process


def _lock_holder(path: Path) -> str | None:
    """If another process holds the chdb/ClickHouse data dir at ``path``, who (from its status
    file); None when it is free. ClickHouse holds an exclusive flock on ``path/status``."""
    status = path / "status"
    try:
        fd = status.open("rb")
    except FileNotFoundError:
        return None
    with fd:
        try:
            fcntl.flock(fd.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = fd.read(200).decode("utf-8", "replace")
            pid = re.search(r"PID:\s*(\d+)", text)
            return f"pid {pid.group(1)}" if pid else "another process"
        fcntl.flock(fd.fileno(), fcntl.LOCK_UN)
    return None


def _held_error(path: Path, holder: str) -> ClickHouseError:
    return ClickHouseError(
        f"the chdb database at {path} is in use by another process ({holder}), most likely a running "
        f"foodrisk worker: chdb lets one process open a path. Stop that process, point this one at "
        f"another path, or ask the running worker (foodrisk query goes through its HTTP port)"
    )


_CHDB_SESSION_SETTINGS = {
    # Results are read as JSONCompact and converted by type name (see converter): keep every
    # value exact and typed as text where JSON numbers would lose it.
    "output_format_json_quote_64bit_integers": 1,
    "output_format_json_quote_decimals": 1,
    "output_format_json_quote_denormals": 1,
    "output_format_json_named_tuples_as_objects": 0,
    "output_format_json_validate_utf8": 1,
}


def _chdb_failure(exc: Exception, what: str) -> ClickHouseError:
    # chdb reports engine errors as RuntimeError (ChdbError) carrying the engine's text only. The
    # in-process engine has no network to lose, so none of them is treated as transient.
    text = str(exc).strip()
    match = re.match(r"^(?:.*?)Code: (\d+)\.", text, re.DOTALL)
    return ClickHouseError(f"chdb {what}: {text}", code=int(match.group(1)) if match else None)


class ChdbBackend:
    """chdb's in-process ClickHouse engine, persistent at ``path``.

    chdb opens one path per process (any number of sessions on it) and one process per path
    (the next gets "Cannot lock file"); both cases raise a :class:`ClickHouseError` that says so.
    Each backend has its own session, so its own current database.
    """

    backend_name = "chdb"

    def __init__(self, path: str | Path, *, database: str = DEFAULT_DATABASE, create_database: bool = True) -> None:
        quote_identifier(database)
        self._path = Path(path).expanduser().resolve()
        self._database = database
        self._lock = threading.RLock()
        self._schemas: dict[tuple[str, str], tuple[pa.Schema, frozenset[str]]] = {}
        self._drop_unsupported = DropUnsupportedSettings()
        self._session: Any = self._open_session()
        # Released exactly once: by close(), or when the backend is collected, or at exit.
        self._release = weakref.finalize(self, _release_chdb_session, self._path, self._session)
        try:
            for name, value in _CHDB_SESSION_SETTINGS.items():
                self._run(f"SET {name} = {literal(value)}")
            quoted = quote_identifier(database)
            if create_database:
                self._run(f"CREATE DATABASE IF NOT EXISTS {quoted}")
            self._run(f"USE {quoted}")
            version = self._query_raw("SELECT version(), timezone()")
            self._version = parse_version(str(version.rows[0][0]))
            self._tz = zone(str(version.rows[0][1]))
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"ChdbBackend({str(self._path)!r}, database={self._database!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def database(self) -> str:
        return self._database

    @property
    def server_version(self) -> Version:
        return self._version

    @property
    def features(self) -> Features:
        return Features.for_version(self._version)

    def _open_session(self) -> Any:
        from chdb import session as chdb_session

        path = self._path
        with _CHDB_LOCK:
            if _CHDB_OPEN and path not in _CHDB_OPEN:
                other = next(iter(_CHDB_OPEN))
                raise ClickHouseError(
                    f"chdb opens one path per process: {other} is open here, so {path} cannot be; "
                    f"close every ChdbBackend on {other} first"
                )
            if path not in _CHDB_OPEN:
                path.mkdir(parents=True, exist_ok=True)
                holder = _lock_holder(path)
                if holder is not None:
                    raise _held_error(path, holder)
            try:
                sess = chdb_session.Session(str(path))  # type: ignore[no-untyped-call]  # chdb has no annotations
            except RuntimeError as exc:
                holder = _lock_holder(path) if path not in _CHDB_OPEN else None
                if holder is not None:
                    raise _held_error(path, holder) from exc
                raise _chdb_failure(exc, f"cannot open {path}") from exc
            _CHDB_OPEN[path] = _CHDB_OPEN.get(path, 0) + 1
        return sess

    def _run(self, sql: str) -> Any:
        if self._session is None:
            raise ClickHouseError(f"{self!r} is closed")
        try:
            return self._session.query(sql, "JSONCompact")
        except RuntimeError as exc:
            self._discard_residue()
            raise _chdb_failure(exc, "query failed") from exc

    def _discard_residue(self) -> None:
        """After a failed call, empty the connection's result buffer.

        chdb (4.4) does not clear the output a query wrote before it failed (a timed-out
        SELECT has written its JSON header, even its statistics): the next call's result starts
        with it, and a JSON reader sees two documents. A throwaway query takes that residue with
        its own result; it is repeated until a result comes back clean.
        """
        for _ in range(3):
            try:
                raw = self._session.query("SELECT 1", "TSV").bytes()
            except RuntimeError:
                continue
            if raw == b"1\n":
                return
        log.warning("chdb: the result buffer still holds output of a failed query")

    def _query_raw(self, sql: str) -> QueryResult:
        res = self._run(sql)
        raw = res.bytes()
        if not raw:
            return QueryResult(columns=[], rows=[], types=[])
        doc = orjson.loads(raw)
        meta = doc.get("meta", [])
        columns = [str(m["name"]) for m in meta]
        types = [str(m["type"]) for m in meta]
        converters = [converter(t, self._tz_for_default()) for t in types]
        if all(c is None for c in converters):
            rows = [tuple(r) for r in doc.get("data", [])]
        else:
            conv = [c or identity for c in converters]
            rows = [tuple(f(v) for f, v in zip(conv, r, strict=True)) for r in doc.get("data", [])]
        return QueryResult(columns=columns, rows=rows, types=types)

    def _tz_for_default(self) -> dt.tzinfo:
        return getattr(self, "_tz", dt.UTC)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        text = bind(sql, params)
        with self._lock:
            self._schemas.clear()  # DDL may have changed a table we cached
            self._run(text)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        text = bind(sql, params)
        with self._lock:
            return self._query_raw(text)

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        qualified = quote_table(table, self._database)
        columns_sql = column_list(columns)
        if not rows:
            return 0
        wanted = self._drop_unsupported(check_settings(settings), self.features)
        settings_sql = (" SETTINGS " + ", ".join(f"{k} = {literal(v)}" for k, v in wanted.items())) if wanted else ""
        with self._lock:
            arrow = self._arrow_table(table, columns, rows)
            payload = arrow_stream(arrow)
            if self._session is None:
                raise ClickHouseError(f"{self!r} is closed")
            try:
                inserter = self._session.send_insert(
                    f"INSERT INTO {qualified} ({columns_sql}){settings_sql}", "ArrowStream"
                )
                with inserter:
                    inserter.append(payload)
                    inserter.finish()
            except RuntimeError as exc:
                self._discard_residue()
                raise _chdb_failure(exc, f"insert into {table} failed") from exc
        return len(rows)

    def _arrow_table(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
        import pyarrow as pa

        schema, required = self._table_schema(table)
        width = len(columns)
        for i, row in enumerate(rows):
            if len(row) != width:
                raise ClickHouseError(f"{table}: row {i} has {len(row)} values for {width} columns")
        transposed = list(zip(*rows, strict=True))
        arrays = []
        for name, values in zip(columns, transposed, strict=True):
            field_type = schema.field(name).type if name in schema.names else None
            try:
                array = pa.array(values, type=field_type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                raise ClickHouseError(f"{table}: column {name}: {type(exc).__name__}: {exc}") from exc
            if array.null_count and name in required:
                # The engine would store a default ('' or 0); the driver refuses: refuse here too.
                raise ClickHouseError(f"{table}: column {name} is not Nullable but got None", code=53)
            arrays.append(array)
        return pa.Table.from_arrays(arrays, names=list(columns))

    def _table_schema(self, table: str) -> tuple[pa.Schema, frozenset[str]]:
        """The Arrow schema to build inserts with and the columns that are not Nullable, from
        ``system.columns`` once per table (again after any ``execute``)."""
        import pyarrow as pa

        db, dot, name = table.rpartition(".")
        key = (db if dot else self._database, name)
        cached = self._schemas.get(key)
        if cached is None:
            res = self._query_raw(
                bind(
                    "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                    {"db": key[0], "t": key[1]},
                )
            )
            if not res.rows:
                raise ClickHouseError(f"chdb: table {key[0]}.{key[1]} does not exist", code=60)
            fields = []
            required = set()
            for col, ch_type in res.rows:
                field_type = arrow_type(str(ch_type))
                if field_type is not None:
                    fields.append(pa.field(str(col), field_type))
                if not is_nullable(str(ch_type)):
                    required.add(str(col))
            cached = (pa.schema(fields), frozenset(required))
            self._schemas[key] = cached
        return cached

    def close(self) -> None:
        with self._lock:
            self._session = None
            self._release()


def _release_chdb_session(path: Path, sess: Any) -> None:
    with _CHDB_LOCK:
        try:
            sess.close()
        finally:
            left = _CHDB_OPEN.get(path, 1) - 1
            if left > 0:
                _CHDB_OPEN[path] = left
            else:
                _CHDB_OPEN.pop(path, None)
