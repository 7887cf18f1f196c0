"""ClickHouse: one small interface (:class:`ClickHouse`), two backends, the schema and its migrations.

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

The rooms: ``base`` (the interface, QueryResult, Features), ``sql`` (literals, binding, quoted
names), ``driver`` and ``chdb`` (the backends), ``arrow`` (chdb's type conversions), ``connect``
(URLs); ``schema`` (each table's columns, the one definition, and its DDL), ``migrations``
(versioned migrations and the runner), ``cluster`` (the ON CLUSTER layout). The names below are
re-exported so that ``from sinks.clickhouse import X`` keeps working.
"""

from sinks.clickhouse.base import (
    DEDUP_TOKEN_SETTING,
    DEFAULT_DATABASE,
    ClickHouse,
    Features,
    QueryResult,
    Version,
    parse_version,
)
from sinks.clickhouse.chdb import ChdbBackend
from sinks.clickhouse.connect import connect_clickhouse
from sinks.clickhouse.driver import DriverBackend
from sinks.clickhouse.sql import bind, literal, quote_identifier, quote_string, quote_table
from sinks.redact import redact_url

__all__ = [
    "DEDUP_TOKEN_SETTING",
    "DEFAULT_DATABASE",
    "ChdbBackend",
    "ClickHouse",
    "DriverBackend",
    "Features",
    "QueryResult",
    "Version",
    "bind",
    "connect_clickhouse",
    "literal",
    "parse_version",
    "quote_identifier",
    "quote_string",
    "quote_table",
    "redact_url",
]
