"""The errors of the sinks package.

Every failure of a ClickHouse backend surfaces as a :class:`ClickHouseError`. The transient ones
(the server is away, the network dropped, the server is overloaded or shutting down) are
:class:`ClickHouseUnavailable`: wait and retry. Everything else is permanent: raise.

The classification is made once, where the client library's exception is caught
(``sinks.clickhouse``), by exception type and by ClickHouse error code, never by message text.
"""

from __future__ import annotations

# ClickHouse server error codes (src/Common/ErrorCodes.cpp; clickhouse_driver.errors.ErrorCodes)
# that say "try again later" rather than "this request is wrong".
TRANSIENT_CODES: frozenset[int] = frozenset(
    {
        32,  # ATTEMPT_TO_READ_AFTER_EOF (a shard's replica closed the connection mid-insert, insert_distributed_sync)
        95,  # CANNOT_READ_FROM_SOCKET
        96,  # CANNOT_WRITE_TO_SOCKET
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED (e.g. the server is shutting down)
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY (a replica lost its keeper session)
        244,  # UNEXPECTED_ZOOKEEPER_ERROR
        252,  # TOO_MANY_PARTS (merges lag behind inserts: back off)
        265,  # NO_AVAILABLE_REPLICA
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        289,  # REPLICA_IS_NOT_IN_QUORUM
        319,  # UNKNOWN_STATUS_OF_INSERT
        369,  # ALL_REPLICAS_ARE_STALE
        394,  # QUERY_WAS_CANCELLED
        999,  # KEEPER_EXCEPTION
    }
)


class ClickHouseError(Exception):
    """A ClickHouse call failed. ``code`` is the server's error code when there is one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ClickHouseUnavailable(ClickHouseError):
    """Transient: the server is unreachable, timed out, overloaded or shutting down. Retry."""


class ClickHouseSinkError(ClickHouseError):
    """A sink gave up on a batch (a permanent error, or retries exhausted).

    ``table`` and ``tp`` (topic, partition) say which batch, when the sink knows.
    """

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        tp: tuple[str, int] | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.table = table
        self.tp = tp


class DeliverySinkError(Exception):
    """An alert delivery (Alertmanager, webhook) failed.

    ``retriable`` says whether waiting may help (the target is down, overloaded, misconfigured
    for now) or not (the target rejected the payload itself: HTTP 400, 413, 422); ``sinks.retry``
    reads it. ``status`` is the HTTP status when there was an answer, ``url`` the target.
    """

    target = "delivery"

    def __init__(self, message: str, *, url: str, status: int | None = None, retriable: bool = True) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.retriable = retriable


class AlertmanagerSinkError(DeliverySinkError):
    """Posting to Alertmanager's API v2 failed (every configured URL, for one attempt)."""

    target = "alertmanager"


class WebhookSinkError(DeliverySinkError):
    """Posting to the signed webhook failed."""

    target = "webhook"
