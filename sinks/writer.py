"""Async ClickHouse writes for the agents: off the event loop, retried while the server is away.

A transient failure (server down, connection reset, timeout) is waited out with capped, jittered
backoff and no attempt limit: the stream stops pulling (backpressure) and no offset moves. A
permanent failure (bad SQL, bad data) raises, the agent crashes, and the worker restarts from its
last commit; the idempotent tables make that replay safe.

Every attempt of one insert carries the same ``insert_deduplication_token`` (STYLE 4a): an insert
that reached the server but whose answer was lost (a timeout, a reset connection) is resent and
dropped there, not stored twice. The token is the caller's (e.g. ``table:topic/partition:first-last``)
or one made per insert; servers without the setting (18.16) get the insert without it (the backends
leave it out), and the ReplacingMergeTree tables keep such a replay harmless (STYLE 4b).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from sinks.clickhouse import DEDUP_TOKEN_SETTING, ClickHouse
from sinks.errors import ClickHouseSinkError
from sinks.retry import RetryPolicy, retry_async

log = logging.getLogger(__name__)


class WriteObserver(Protocol):
    def flushed(self, table: str, rows: int, seconds: float) -> None: ...
    def failed(self, table: str, exc: BaseException, transient: bool) -> None: ...


class _NullObserver:
    def flushed(self, table: str, rows: int, seconds: float) -> None:
        pass

    def failed(self, table: str, exc: BaseException, transient: bool) -> None:
        pass


class ClickHouseWriter:
    """Inserts batches into ``database.table`` through one ClickHouse client, one call at a time."""

    def __init__(
        self,
        clickhouse: ClickHouse,
        *,
        database: str,
        retry_cap_s: float = 10.0,
        observer: WriteObserver | None = None,
    ) -> None:
        self._ch = clickhouse
        self._database = database
        self._policy = RetryPolicy(base_s=0.2, cap_s=retry_cap_s, max_attempts=None, deadline_s=None)
        self._observer: WriteObserver = observer or _NullObserver()
        # One thread: the clients are blocking and not meant for concurrent calls.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.ready = True

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, token: str | None = None
    ) -> None:
        """Insert ``rows`` into ``table``, retried while the server is away; every attempt carries
        ``token`` (default: one made for this call) as the insert deduplication token."""
        if not rows:
            return
        loop = asyncio.get_running_loop()
        target = f"{self._database}.{table}"
        started = time.perf_counter()
        settings = {DEDUP_TOKEN_SETTING: token if token is not None else f"{table}:{uuid.uuid4().hex}"}

        def send() -> int:
            return self._ch.insert(target, columns, rows, settings=settings)

        async def attempt() -> int:
            return await loop.run_in_executor(self._executor, send)

        def on_retry(n: int, exc: Exception, delay: float) -> None:
            self.ready = False
            self._observer.failed(table, exc, True)
            log.warning(
                "ClickHouse unavailable for %s (%s: %s); attempt %d, retrying in %.1fs",
                target, type(exc).__name__, exc, n, delay,
            )

        try:
            await retry_async(attempt, self._policy, on_retry=on_retry)
        except Exception as exc:
            self.ready = False
            self._observer.failed(table, exc, False)
            raise ClickHouseSinkError(f"insert into {target} failed for good: {exc}", table=table) from exc
        self.ready = True
        elapsed = time.perf_counter() - started
        self._observer.flushed(table, len(rows), elapsed)
        log.debug("flushed %d rows into %s in %.3fs", len(rows), target, elapsed)

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._ch.query, sql, params)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
