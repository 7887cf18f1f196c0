"""Client side of the query port: where a worker's query port is, which analyst token to send, and
the request itself (used by `foodrisk query`, `foodrisk redlist` and `foodrisk run`)."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from pipeline.ingest.tokens import read_analyst_token
from pipeline.query.guard import DEFAULT_MAX_ROWS, QueryRejected
from pipeline.settings import Settings

_ANY_ADDRESS = {"0.0.0.0", "::", ""}  # noqa: S104 - recognized, not bound


def query_address(settings: Settings) -> tuple[str, int] | None:
    """(host, port) of the worker's query port: FOODRISK_QUERY_HOST/PORT, or with port 0 the port
    the worker wrote to DATA_DIR/run/query.port; None when that file is absent (no worker)."""
    host = "127.0.0.1" if settings.query_host in _ANY_ADDRESS else settings.query_host
    if settings.query_port:
        return host, settings.query_port
    try:
        return host, int(settings.query_port_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def analyst_token(settings: Settings) -> str | None:
    """FOODRISK_ANALYST_TOKEN, else the token the local worker wrote, else None."""
    env = settings.analyst_token.get_secret_value() if settings.analyst_token is not None else None
    return read_analyst_token(env, settings.local_analyst_token_path)


def no_token_hint(settings: Settings) -> str:
    return (f"no analyst token: set FOODRISK_ANALYST_TOKEN (from `foodrisk analysts add NAME`), or run this "
            f"with the worker's FOODRISK_DATA_DIR (it writes {settings.local_analyst_token_path} at start)")


class WorkerUnreachable(ConnectionError):
    """No worker answers on the configured query port."""


def call_worker(path: str, host: str, port: int, *, token: str, body: bytes | None = None,
                timeout_s: float = 60.0) -> Any:
    """One request to a running worker's query port (POST with ``body``, else GET) with an analyst
    ``token``; the answer's JSON. A refusal (4xx/5xx) is QueryRejected with the worker's reason, no
    answer at all WorkerUnreachable."""
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=body, headers=headers,
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - loopback, our own port
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        with contextlib.suppress(orjson.JSONDecodeError):
            detail = str(orjson.loads(detail).get("error", detail))
        raise QueryRejected(detail) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise WorkerUnreachable(f"no worker at http://{host}:{port} ({exc})") from exc


def ask_worker(
    host: str, port: int, sql: str, *, token: str, params: dict[str, Any] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS, timeout_s: float = 60.0,
) -> tuple[list[str], list[list[Any]], bool]:
    """Run a read-only query through a running worker's query port (columns, rows, truncated),
    with an analyst ``token``."""
    body = orjson.dumps({"sql": sql, "params": params or {}, "max_rows": max_rows})
    data = call_worker("/v1/query", host, port, token=token, body=body, timeout_s=timeout_s)
    return list(data["columns"]), list(data["rows"]), bool(data.get("truncated"))


class SelectReader:
    """Runs guarded SELECTs the way `foodrisk query` does, for a command that asks many (``foodrisk
    rescreen`` pages through results): with chdb through the running worker's query port when one
    answers (with an analyst token), else on a connection of its own, opened once and kept; with
    clickhouse:// directly, as the URL's ClickHouse user. Close it when done."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._worker: tuple[str, int] | None = None
        self._token: str | None = None
        self._ch: Any = None
        if settings.uses_chdb:
            self._worker, self._token = query_address(settings), analyst_token(settings)

    def select(
        self, sql: str, params: dict[str, Any] | None = None, *, max_rows: int = DEFAULT_MAX_ROWS
    ) -> tuple[list[str], list[list[Any]], bool]:
        """(columns, rows, truncated); raises QueryRejected for a query the guard or ClickHouse refuses."""
        from pipeline.query.guard import guard_select
        from sinks.errors import ClickHouseError

        params = params or {}
        guard_select(sql, params, database=self._settings.database, max_rows=max_rows)  # refuse early
        if self._ch is None and self._worker is not None and self._token is not None:
            try:
                return ask_worker(*self._worker, sql, token=self._token, params=params, max_rows=max_rows)
            except WorkerUnreachable:
                self._worker = None  # no worker: open the database here from now on
        if self._ch is None:
            from pipeline.settings import SettingsError
            from sinks.clickhouse import connect_clickhouse

            try:  # no CREATE DATABASE: a read-only account (the analyst user of deploy/) may run this
                self._ch = connect_clickhouse(
                    self._settings.clickhouse_url, database=self._settings.database, create_database=False
                )
            except ClickHouseError as exc:
                if self._settings.uses_chdb and self._token is None and "in use by another process" in str(exc):
                    raise SettingsError(no_token_hint(self._settings)) from None
                raise
        try:
            res = self._ch.query(guard_select(sql, params, database=self._ch.database, max_rows=max_rows))
        except Exception as exc:
            raise QueryRejected(f"{type(exc).__name__}: {exc}") from exc
        return list(res.columns), [list(r) for r in res.rows[:max_rows]], len(res.rows) > max_rows

    def close(self) -> None:
        if self._ch is not None:
            self._ch.close()
            self._ch = None
