"""``connect_clickhouse(url)``: the backend for a ``chdb://`` or ``clickhouse(s)://`` URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from sinks.clickhouse.base import DEFAULT_DATABASE, ClickHouse
from sinks.clickhouse.chdb import ChdbBackend
from sinks.clickhouse.driver import DriverBackend
from sinks.clickhouse.sql import IDENTIFIER
from sinks.redact import redact_url


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
    if not IDENTIFIER.match(db):
        raise ValueError(f"bad ClickHouse database name {db!r} (from {redact_url(url)!r}): letters, digits, _")
