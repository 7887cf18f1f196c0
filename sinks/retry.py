"""Retry with capped exponential backoff and full jitter, bounded by attempts and by total time.

Only transient errors are retried (:func:`is_transient`); a permanent one raises at once. When the
policy gives up, the last error itself is raised, with a note saying how many attempts were made.

``RetryPolicy()`` with neither ``max_attempts`` nor ``deadline_s`` retries for as long as the error
stays transient: that is what a sink wants while ClickHouse is down (STYLE.md §3.6).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import random
import time
import urllib.error
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from clickhouse_driver import errors as driver_errors

from sinks.errors import TRANSIENT_CODES, ClickHouseError, ClickHouseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

OnRetry = Callable[[int, Exception, float], object]
"""``on_retry(attempt, error, delay_s)``: called before sleeping; ``attempt`` is the one that failed
(1-based). It may return an awaitable in :func:`retry_async`."""

RETRYABLE_HTTP_STATUSES: frozenset[int] = frozenset({408, 429, 502, 503, 504})

TRANSIENT_ERRNOS: frozenset[int] = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EAGAIN,
    }
)


def is_transient(exc: BaseException) -> bool:
    """True when waiting and trying again may help. Decided by type, error code and errno only."""
    if isinstance(exc, ClickHouseUnavailable):
        return True
    if isinstance(exc, ClickHouseError):
        return False
    retriable = getattr(exc, "retriable", None)  # aiokafka-style marker, for other sinks' errors
    if isinstance(retriable, bool):
        return retriable
    if isinstance(exc, driver_errors.Error):
        if isinstance(exc, driver_errors.NetworkError | driver_errors.SocketTimeoutError):
            return True
        return getattr(exc, "code", None) in TRANSIENT_CODES
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in RETRYABLE_HTTP_STATUSES
    if isinstance(exc, urllib.error.URLError):
        # No HTTP answer at all (refused, unreachable, DNS): look at the underlying reason.
        return not isinstance(exc.reason, BaseException) or is_transient(exc.reason)
    if isinstance(exc, ConnectionError | TimeoutError | EOFError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in TRANSIENT_ERRNOS
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter.

    The delay before retry ``n`` (1-based) is uniform in ``[0, min(cap_s, base_s * 2**(n-1))]``.
    ``max_attempts`` counts calls (1 = no retry); ``deadline_s`` bounds the total time from the
    first call: the last sleep is cut short so that one more call happens at the deadline.
    ``None`` means no bound.
    """

    base_s: float = 0.2
    cap_s: float = 10.0
    max_attempts: int | None = None
    deadline_s: float | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got base_s={self.base_s}, cap_s={self.cap_s}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 or None, got {self.max_attempts}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0 or None, got {self.deadline_s}")

    def backoff(self, attempt: int) -> float:
        """The upper bound of the delay after failed attempt ``attempt`` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 62)  # 2**62 * base already exceeds any cap
        return min(self.cap_s, self.base_s * (2.0**exponent))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A jittered delay in ``[0, backoff(attempt)]``."""
        return (rng or self.rng).uniform(0.0, self.backoff(attempt))


class _Attempts:
    """The bookkeeping shared by the sync and the async loop."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock
        self.started = clock()
        self.attempt = 0

    def next_delay(self, exc: Exception, is_retryable: Callable[[BaseException], bool]) -> float | None:
        """The delay before the next attempt, or None to give up (and re-raise ``exc``)."""
        if not is_retryable(exc):
            return None
        policy = self.policy
        elapsed = self.clock() - self.started
        if policy.max_attempts is not None and self.attempt >= policy.max_attempts:
            exc.add_note(f"gave up after {self.attempt} attempts in {elapsed:.1f}s")
            return None
        delay = policy.delay(self.attempt)
        if policy.deadline_s is not None:
            remaining = policy.deadline_s - elapsed
            if remaining <= 0:
                exc.add_note(f"gave up after {self.attempt} attempts: deadline of {policy.deadline_s}s reached")
                return None
            delay = min(delay, remaining)
        return delay


def _log_retry(attempt: int, exc: Exception, delay: float) -> None:
    log.warning("attempt %d failed (%s: %s); retrying in %.2fs", attempt, type(exc).__name__, exc, delay)


def retry_sync(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    on_retry: OnRetry | None = None,
    is_retryable: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``fn`` until it returns, retrying transient errors as ``policy`` allows."""
    state = _Attempts(policy, clock)
    while True:
        state.attempt += 1
        try:
            return fn()
        except Exception as exc:
            delay = state.next_delay(exc, is_retryable)
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(state.attempt, exc, delay)
            else:
                _log_retry(state.attempt, exc, delay)
        sleep(delay)


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: OnRetry | None = None,
    is_retryable: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Await ``fn()`` until it returns, retrying transient errors as ``policy`` allows.

    Cancellation is never retried (``CancelledError`` is not an ``Exception``).
    """
    state = _Attempts(policy, clock)
    while True:
        state.attempt += 1
        try:
            return await fn()
        except Exception as exc:
            delay = state.next_delay(exc, is_retryable)
            if delay is None:
                raise
            if on_retry is not None:
                result = on_retry(state.attempt, exc, delay)
                if inspect.isawaitable(result):
                    await result
            else:
                _log_retry(state.attempt, exc, delay)
        await sleep(delay)
