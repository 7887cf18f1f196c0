"""ClickHouse access: one small interface (:class:`ClickHouse`) and two backends.

- :class:`DriverBackend`: the native protocol through clickhouse-driver, for any real server
  (Debian's 18.16 in the tests, a modern server in production).
- :class:`ChdbBackend`: chdb, the ClickHouse engine inside this process, persistent at a path.

Both take the same ``%(name)s`` parameters, bound here, client-side, with ClickHouse escaping
(:func:`bind`), return the same Python values (``DateTime('UTC')`` as aware UTC datetimes,
``Nullable`` as None, ``Array`` as lists, ``Decimal``/``UUID``/``Date`` as such), and turn every
client failure into :class:`~sinks.errors.ClickHouseError`, transient ones into
:class:`~sinks.errors.ClickHouseUnavailable`. Calls block: from async code run them in a thread
executor. Each backend serialises its calls with a lock, so sharing one between threads is safe.

``connect_clickhouse(url)`` picks the backend from the URL: ``chdb://PATH`` or
``clickhouse://user:password@host:port/db`` (``clickhouses://`` for TLS).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import fcntl
import io
import logging
import math
import re
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import orjson
from clickhouse_driver import Client
from clickhouse_driver import errors as driver_errors

from sinks.errors import TRANSIENT_CODES, ClickHouseError, ClickHouseUnavailable
from sinks.redact import redact
from sinks.retry import is_transient

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "foodrisk"
DEDUP_TOKEN_SETTING = "insert_deduplication_token"  # noqa: S105 - a setting name, not a secret

Version = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# The interface


@dataclass(frozen=True)
class QueryResult:
    """Rows of a SELECT: ``columns`` names, ``rows`` tuples in column order, ``types`` the
    ClickHouse type names of the columns."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    types: list[str] = field(default_factory=list)

    def scalar(self) -> Any:
        """The first column of the first row (None when there is no row)."""
        return self.rows[0][0] if self.rows else None

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class Features:
    """What the server supports beyond the subset shared with Debian's 18.16 (see docs/stack.md).

    Chosen by the server's version. The thresholds are conservative: a feature is used from the
    release where it stopped being experimental, and anything older is treated like 18.16.
    """

    low_cardinality: bool = False  # LowCardinality(T) without the experimental setting
    ttl: bool = False  # column and table TTL
    datetime64: bool = False  # DateTime64(precision, tz)
    insert_deduplication_token: bool = False  # the insert setting, with non_replicated_deduplication_window

    @classmethod
    def for_version(cls, version: Version) -> Features:
        return cls(
            low_cardinality=version >= (20, 1, 0),
            ttl=version >= (20, 1, 0),
            datetime64=version >= (20, 1, 0),
            insert_deduplication_token=version >= (22, 2, 0),
        )


@runtime_checkable
class ClickHouse(Protocol):
    """The one interface the pipeline uses to talk to ClickHouse. Blocking; thread-safe."""

    @property
    def database(self) -> str:
        """The current database: unqualified table names in SQL refer to it."""
        ...

    @property
    def server_version(self) -> Version: ...

    @property
    def features(self) -> Features: ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, INSERT ... SELECT, OPTIMIZE)."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult: ...

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        """Insert ``rows`` (sequences in ``columns`` order) into ``table`` (``name`` or
        ``db.name``); returns the number of rows sent. Never inlines values in SQL text."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Client-side parameter binding, the same for both backends

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    "\b": "\\b",
    "\f": "\\f",
    "\r": "\\r",
    "\n": "\\n",
    "\t": "\\t",
    "\0": "\\0",
    "\a": "\\a",
    "\v": "\\v",
}
_ESCAPE_TABLE = str.maketrans(_ESCAPES)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain ClickHouse identifier: {name!r}")
    return f"`{name}`"


def quote_table(table: str, default_database: str | None = None) -> str:
    """``table`` or ``db.table`` as a quoted, qualified name."""
    db, dot, name = table.rpartition(".")
    if not dot:
        db = default_database or ""
    return f"{quote_identifier(db)}.{quote_identifier(name)}" if db else quote_identifier(name)


def _column_list(columns: Sequence[str]) -> str:
    if not columns:
        raise ValueError("insert needs at least one column name")
    return ", ".join(quote_identifier(c) for c in columns)


def _check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(settings or {})
    for name in out:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a ClickHouse setting name: {name!r}")
    return out


def parse_version(text: str) -> Version:
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


class _DropUnsupportedSettings:
    """Drops ``insert_deduplication_token`` where the server has no such setting (18.16), once
    logged: the sink can always pass it, the ReplacingMergeTree tables keep replays harmless."""

    def __init__(self) -> None:
        self._warned = False

    def __call__(self, settings: dict[str, Any], features: Features) -> dict[str, Any]:
        if DEDUP_TOKEN_SETTING in settings and not features.insert_deduplication_token:
            settings = {k: v for k, v in settings.items() if k != DEDUP_TOKEN_SETTING}
            if not self._warned:
                self._warned = True
                log.info("this ClickHouse has no %s: inserts go without it", DEDUP_TOKEN_SETTING)
        return settings


# --------------------------------------------------------------------------------------------
# clickhouse-driver (native protocol)


def _driver_failure(exc: Exception, where: str) -> ClickHouseError:
    """The clickhouse-driver (or socket) error ``exc`` as ours, transient or not."""
    code = getattr(exc, "code", None)
    code = code if isinstance(code, int) else None
    # Old servers append their C++ stack trace to the message: keep what a person reads.
    detail = str(exc).split("Stack trace:", 1)[0].strip().replace("\n", " ")
    text = f"ClickHouse at {where}: {type(exc).__name__}: {detail}"
    if isinstance(exc, driver_errors.NetworkError | driver_errors.SocketTimeoutError):
        return ClickHouseUnavailable(text, code=code)
    if isinstance(exc, driver_errors.Error):
        cls = ClickHouseUnavailable if code in TRANSIENT_CODES else ClickHouseError
        return cls(text, code=code)
    if is_transient(exc):  # OSError (refused, reset, broken pipe), TimeoutError, EOFError
        return ClickHouseUnavailable(text, code=code)
    return ClickHouseError(text, code=code)


class DriverBackend:
    """A real ClickHouse server through clickhouse-driver's native protocol.

    Connects lazily: construction never touches the network, so a worker can start while the
    server is down; the first call raises :class:`ClickHouseUnavailable` until it is up. On first
    contact it creates ``database`` (unless ``create_database=False``) and makes it current.

    ``types_check`` makes the driver check every inserted value's Python type (slower, clearer
    errors); without it a wrong type still fails the insert, with a less helpful message.
    """

    backend_name = "server"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        *,
        user: str = "default",
        password: str = "",
        database: str = DEFAULT_DATABASE,
        secure: bool = False,
        verify: bool = True,
        ca_certs: str | None = None,
        connect_timeout: float = 5.0,
        send_receive_timeout: float = 120.0,
        sync_request_timeout: float = 5.0,
        compression: bool | str = False,
        types_check: bool = False,
        create_database: bool = True,
        settings: Mapping[str, Any] | None = None,
        client_name: str = "foodrisk",
    ) -> None:
        quote_identifier(database)
        self.host, self.port = host, port
        self._database = database
        self._create_database = create_database
        self._types_check = types_check
        self._where = f"{host}:{port}"
        self._client = Client(
            host=host,
            port=port,
            user=user,
            password=password,
            database="default" if create_database else database,
            secure=secure,
            verify=verify,
            ca_certs=ca_certs,
            connect_timeout=connect_timeout,
            send_receive_timeout=send_receive_timeout,
            sync_request_timeout=sync_request_timeout,
            compression=compression,
            client_name=client_name,
            settings=_check_settings(settings),
        )
        self._lock = threading.RLock()
        self._version: Version | None = None
        self._database_ready = False
        self._drop_unsupported = _DropUnsupportedSettings()

    def __repr__(self) -> str:
        return f"DriverBackend({self._where}, database={self._database!r})"

    @property
    def database(self) -> str:
        return self._database

    @property
    def server_version(self) -> Version:
        with self._calling():
            return self._ready()

    @property
    def features(self) -> Features:
        return Features.for_version(self.server_version)

    @contextlib.contextmanager
    def _calling(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except ClickHouseError:
                raise
            except Exception as exc:
                err = _driver_failure(exc, self._where)
                if isinstance(err, ClickHouseUnavailable):
                    # Start from a fresh connection next time.
                    with contextlib.suppress(Exception):
                        self._client.disconnect()
                raise err from exc

    def _ready(self) -> Version:
        """Connected, with the database in place and current; the server's version."""
        if self._version is None or not self._database_ready:
            self._client.execute("SELECT 1")  # connects
            info = self._client.connection.server_info
            self._version = (int(info.version_major), int(info.version_minor), int(info.version_patch))
            if self._create_database:
                self._client.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self._database)}")
                # The driver remembers the database of a USE for every later reconnect; it takes
                # the text after USE verbatim, so no quotes (the name is a plain identifier).
                self._client.execute(f"USE {self._database}")
            self._database_ready = True
        return self._version

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        text = bind(sql, params)
        with self._calling():
            self._ready()
            self._client.execute(text)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        text = bind(sql, params)
        with self._calling():
            self._ready()
            rows, column_types = self._client.execute(text, with_column_types=True)
        return QueryResult(
            columns=[name for name, _ in column_types],
            rows=[tuple(r) for r in rows],
            types=[t for _, t in column_types],
        )

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        statement = f"INSERT INTO {quote_table(table, self._database)} ({_column_list(columns)}) VALUES"
        if not rows:
            return 0
        wanted = _check_settings(settings)
        with self._calling():
            version = self._ready()
            sent = self._client.execute(
                statement,
                rows,
                settings=self._drop_unsupported(wanted, Features.for_version(version)) or None,
                types_check=self._types_check,
            )
        return int(sent) if isinstance(sent, int) else len(rows)

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()


# --------------------------------------------------------------------------------------------
# chdb (in-process engine)

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
    # Results are read as JSONCompact and converted by type name (see _converter): keep every
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
        self._drop_unsupported = _DropUnsupportedSettings()
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
            self._tz = _zone(str(version.rows[0][1]))
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
        converters = [_converter(t, self._tz_for_default()) for t in types]
        if all(c is None for c in converters):
            rows = [tuple(r) for r in doc.get("data", [])]
        else:
            conv = [c or _identity for c in converters]
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
        column_list = _column_list(columns)
        if not rows:
            return 0
        wanted = self._drop_unsupported(_check_settings(settings), self.features)
        settings_sql = (" SETTINGS " + ", ".join(f"{k} = {literal(v)}" for k, v in wanted.items())) if wanted else ""
        with self._lock:
            arrow = self._arrow_table(table, columns, rows)
            payload = _arrow_stream(arrow)
            if self._session is None:
                raise ClickHouseError(f"{self!r} is closed")
            try:
                inserter = self._session.send_insert(
                    f"INSERT INTO {qualified} ({column_list}){settings_sql}", "ArrowStream"
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
            arrow_type = schema.field(name).type if name in schema.names else None
            try:
                array = pa.array(values, type=arrow_type)
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
                arrow_type = _arrow_type(str(ch_type))
                if arrow_type is not None:
                    fields.append(pa.field(str(col), arrow_type))
                if not _is_nullable(str(ch_type)):
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


def _arrow_stream(table: pa.Table) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


# --------------------------------------------------------------------------------------------
# ClickHouse type names -> Arrow types (inserts) and JSON value converters (query results)


def _unwrap(ch_type: str, wrapper: str) -> str | None:
    prefix = wrapper + "("
    if ch_type.startswith(prefix) and ch_type.endswith(")"):
        return ch_type[len(prefix) : -1]
    return None


def _is_nullable(ch_type: str) -> bool:
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


def _zone(name: str) -> dt.tzinfo:
    return dt.UTC if name in ("UTC", "Etc/UTC", "Zulu", "Etc/Zulu") else ZoneInfo(name)


def _type_tz(ch_type: str, default: dt.tzinfo) -> dt.tzinfo:
    zone = re.search(r"'([^']+)'", ch_type)
    return _zone(zone.group(1)) if zone else default


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


def _arrow_type(ch_type: str) -> pa.DataType | None:
    """The Arrow type to build an insert column with; None lets pyarrow infer it."""
    import pyarrow as pa

    for wrapper in ("Nullable", "LowCardinality"):
        inner = _unwrap(ch_type, wrapper)
        if inner is not None:
            return _arrow_type(inner)
    inner = _unwrap(ch_type, "Array")
    if inner is not None:
        item = _arrow_type(inner)
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


def _identity(value: Any) -> Any:
    return value


def _converter(ch_type: str, default_tz: dt.tzinfo) -> Callable[[Any], Any] | None:
    """How to turn a JSONCompact value of ``ch_type`` into the Python value clickhouse-driver
    returns; None when the JSON value already is it."""
    inner = _unwrap(ch_type, "LowCardinality")
    if inner is not None:
        return _converter(inner, default_tz)
    inner = _unwrap(ch_type, "Nullable")
    if inner is not None:
        conv = _converter(inner, default_tz)
        return None if conv is None else _nullable(conv)
    inner = _unwrap(ch_type, "Array")
    if inner is not None:
        conv = _converter(inner, default_tz)
        return None if conv is None else _array(conv)
    inner = _unwrap(ch_type, "Tuple")
    if inner is not None:
        parts = [_converter(_tuple_element_type(a), default_tz) or _identity for a in _split_args(inner)]
        return lambda v: tuple(f(x) for f, x in zip(parts, v, strict=False))
    inner = _unwrap(ch_type, "Map")
    if inner is not None:
        args = _split_args(inner)
        value_conv = _converter(args[1], default_tz) if len(args) == 2 else None
        key_conv = _converter(args[0], default_tz) if args else None
        kc, vc = key_conv or _identity, value_conv or _identity
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
    return rest.strip() if rest and _IDENTIFIER.match(head) and not head[0].isupper() else arg


# --------------------------------------------------------------------------------------------
# URLs


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (sinks/redact.py)."""
    return redact(url)


def connect_clickhouse(url: str, *, database: str | None = None, **opts: Any) -> ClickHouse:
    """A backend for ``url``:

    - ``chdb://PATH``: in-process chdb at PATH (``chdb://./var/clickhouse`` relative to the
      working directory, ``chdb:///var/lib/foodrisk`` absolute);
    - ``clickhouse://user:password@host:port/db``: a server over the native protocol (port 9000
      by default; ``clickhouses://`` for TLS, port 9440 by default). Other keyword arguments go
      to :class:`DriverBackend` (timeouts, ``types_check``, ``verify``, ...).

    The database is the one in the URL path, else ``database``, else ``foodrisk``; naming two
    different ones is an error. Raises ``ValueError`` (one line) for a URL it cannot use.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(
            f"not a ClickHouse URL: {redact_url(url)!r}; use chdb://PATH or clickhouse://user:password@host:9000/db"
        )
    if scheme == "chdb":
        path = rest.split("?", 1)[0]
        if not path:
            raise ValueError(f"chdb URL without a path: {url!r}; e.g. chdb://./var/clickhouse")
        db = database or DEFAULT_DATABASE
        _valid_database(db, url)
        return ChdbBackend(path, database=db, **opts)
    if scheme in ("clickhouse", "clickhouses"):
        secure = scheme == "clickhouses"
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in ClickHouse URL {redact_url(url)!r}: {exc}") from None
        host = parts.hostname
        if not host:
            raise ValueError(f"ClickHouse URL without a host: {redact_url(url)!r}")
        url_db = unquote(parts.path.lstrip("/")) or None
        if url_db and database and url_db != database:
            raise ValueError(
                f"ClickHouse URL {redact_url(url)!r} names database {url_db!r} but database={database!r} "
                f"was asked for: name one, or the same in both"
            )
        db = url_db or database or DEFAULT_DATABASE
        _valid_database(db, url)
        return DriverBackend(
            host,
            port or (9440 if secure else 9000),
            user=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            database=db,
            secure=secure,
            **opts,
        )
    raise ValueError(
        f"unknown ClickHouse URL scheme {scheme + '://'!r} in {redact_url(url)!r}: "
        f"use chdb://PATH or clickhouse://user:password@host:9000/db"
    )


def _valid_database(db: str, url: str) -> None:
    if not _IDENTIFIER.match(db):
        raise ValueError(f"bad ClickHouse database name {db!r} (from {redact_url(url)!r}): letters, digits, _")
