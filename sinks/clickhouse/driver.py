"""The backend for a real ClickHouse server: clickhouse-driver's native protocol (DriverBackend)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver import errors as driver_errors

from sinks.clickhouse.base import DEFAULT_DATABASE, DropUnsupportedSettings, Features, QueryResult, Version
from sinks.clickhouse.sql import bind, check_settings, column_list, quote_identifier, quote_table
from sinks.errors import TRANSIENT_CODES, ClickHouseError, ClickHouseUnavailable
from sinks.retry import is_transient


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
            settings=check_settings(settings),
        )
        self._lock = threading.RLock()
        self._version: Version | None = None
        self._database_ready = False
        self._drop_unsupported = DropUnsupportedSettings()

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
        statement = f"INSERT INTO {quote_table(table, self._database)} ({column_list(columns)}) VALUES"
        if not rows:
            return 0
        wanted = check_settings(settings)
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
