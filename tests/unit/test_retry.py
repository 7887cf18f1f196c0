"""sinks.retry: backoff, jitter, bounds and the transient/permanent split, on a fake clock."""

from __future__ import annotations

import asyncio
import errno
import random
import urllib.error
from email.message import Message
from typing import Any

import pytest
from clickhouse_driver import errors as driver_errors
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.errors import ClickHouseError, ClickHouseSinkError, ClickHouseUnavailable
from sinks.retry import RetryPolicy, is_transient, retry_async, retry_sync


class FakeClock:
    """Time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


class MaxRng(random.Random):
    """Always the top of the range, to see the backoff bound itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Flaky:
    """Fails with ``errors`` in turn, then returns ``value``."""

    def __init__(self, *errors: Exception, value: str = "ok") -> None:
        self.errors = list(errors)
        self.calls = 0
        self.value = value

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def unavailable() -> ClickHouseUnavailable:
    return ClickHouseUnavailable("down", code=210)


# --- the policy ---------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=0.2, cap_s=10)
    assert [policy.backoff(n) for n in range(1, 9)] == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10]
    assert policy.backoff(10_000) == 10  # no overflow


def test_full_jitter_uses_the_injected_rng() -> None:
    policy = RetryPolicy(base_s=1, cap_s=8, rng=MaxRng())
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 8]
    seeded = [RetryPolicy(rng=random.Random(7)).delay(3) for _ in range(2)]
    assert seeded[0] == seeded[1]
    assert policy.delay(3, rng=random.Random(1)) < 4  # an rng passed per call wins


@settings(deadline=None, max_examples=200)
@given(
    base=st.floats(0.001, 5),
    factor=st.floats(1, 100),
    attempt=st.integers(1, 200),
    seed=st.integers(0, 2**32),
)
def test_delay_is_within_zero_and_the_capped_backoff(base: float, factor: float, attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_s=base, cap_s=base * factor, rng=random.Random(seed))
    delay = policy.delay(attempt)
    assert 0 <= delay <= policy.backoff(attempt) <= policy.cap_s
    assert policy.backoff(attempt) <= policy.backoff(attempt + 1)


@pytest.mark.parametrize(
    "kwargs",
    [{"base_s": 0}, {"base_s": 2, "cap_s": 1}, {"max_attempts": 0}, {"deadline_s": 0}],
)
def test_bad_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# --- retry_sync -----------------------------------------------------------------------------------


def test_transient_errors_are_retried_until_success() -> None:
    clock = FakeClock()
    fn = Flaky(unavailable(), ConnectionResetError(), TimeoutError())
    seen: list[tuple[int, str, float]] = []
    policy = RetryPolicy(base_s=0.5, cap_s=10, rng=MaxRng())
    result = retry_sync(
        fn,
        policy,
        on_retry=lambda n, exc, d: seen.append((n, type(exc).__name__, d)),
        sleep=clock.sleep,
        clock=clock,
    )
    assert result == "ok" and fn.calls == 4
    assert seen == [(1, "ClickHouseUnavailable", 0.5), (2, "ConnectionResetError", 1.0), (3, "TimeoutError", 2.0)]
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_a_permanent_error_raises_at_once() -> None:
    clock = FakeClock()
    err = ClickHouseError("syntax", code=62)
    fn = Flaky(err)
    with pytest.raises(ClickHouseError) as raised:
        retry_sync(fn, RetryPolicy(), sleep=clock.sleep, clock=clock)
    assert raised.value is err and fn.calls == 1 and clock.sleeps == []


def test_max_attempts_bounds_the_calls_and_raises_the_last_error() -> None:
    clock = FakeClock()
    errors = [unavailable() for _ in range(5)]
    fn = Flaky(*errors)
    with pytest.raises(ClickHouseUnavailable) as raised:
        retry_sync(fn, RetryPolicy(max_attempts=3, rng=MaxRng()), sleep=clock.sleep, clock=clock)
    assert fn.calls == 3 and raised.value is errors[2]
    assert clock.sleeps == [0.2, 0.4]
    assert "gave up after 3 attempts" in " ".join(getattr(raised.value, "__notes__", []))


def test_the_deadline_bounds_total_time_and_the_last_sleep_is_cut_short() -> None:
    clock = FakeClock()
    fn = Flaky(*[unavailable() for _ in range(100)])
    policy = RetryPolicy(base_s=1, cap_s=4, deadline_s=10, rng=MaxRng())
    with pytest.raises(ClickHouseUnavailable) as raised:
        retry_sync(fn, policy, sleep=clock.sleep, clock=clock)
    # 1 + 2 + 4 = 7 s, then only 3 s are left: one more call at the deadline, then give up.
    assert clock.sleeps == [1, 2, 4, 3]
    assert fn.calls == 5 and clock.now - 1000.0 == pytest.approx(10)
    assert "deadline" in " ".join(getattr(raised.value, "__notes__", []))


def test_no_bounds_means_waiting_out_a_long_outage() -> None:
    clock = FakeClock()
    fn = Flaky(*[unavailable() for _ in range(200)])
    assert retry_sync(fn, RetryPolicy(base_s=0.2, cap_s=10, rng=MaxRng()), sleep=clock.sleep, clock=clock) == "ok"
    assert fn.calls == 201 and max(clock.sleeps) == 10


# --- retry_async ------------------------------------------------------------------------------------


def test_retry_async_retries_transient_and_awaits_an_async_on_retry() -> None:
    clock = FakeClock()
    fn = Flaky(unavailable(), EOFError())
    seen: list[int] = []

    async def on_retry(n: int, exc: Exception, delay: float) -> None:
        seen.append(n)

    async def call() -> str:
        return fn()

    result = asyncio.run(
        retry_async(call, RetryPolicy(rng=MaxRng()), on_retry=on_retry, sleep=clock.asleep, clock=clock)
    )
    assert result == "ok" and seen == [1, 2] and clock.sleeps == [0.2, 0.4]


def test_retry_async_raises_permanent_errors_and_never_retries_cancellation() -> None:
    clock = FakeClock()

    async def permanent() -> None:
        raise ValueError("bad row")

    with pytest.raises(ValueError):
        asyncio.run(retry_async(permanent, RetryPolicy(), sleep=clock.asleep, clock=clock))

    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retry_async(cancelled, RetryPolicy(), sleep=clock.asleep, clock=clock))
    assert calls == 1 and clock.sleeps == []


# --- is_transient ----------------------------------------------------------------------------------


class Marked(Exception):
    def __init__(self, retriable: bool) -> None:
        super().__init__("marked")
        self.retriable = retriable


def _http(status: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://am:9093/api/v2/alerts", status, "x", Message(), None)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ClickHouseUnavailable("down"), True),
        (ClickHouseError("bad sql", code=62), False),
        (ClickHouseError("code says transient but the backend classified it", code=210), False),
        (ClickHouseSinkError("gave up", table="results", tp=("foodrisk.results", 0)), False),
        (driver_errors.NetworkError("refused"), True),
        (driver_errors.SocketTimeoutError("slow"), True),
        (driver_errors.ServerException("too many parts", code=252), True),
        (driver_errors.ServerException("shutting down", code=236), True),
        (driver_errors.ServerException("syntax", code=62), False),
        (driver_errors.ServerException("unknown table", code=60), False),
        (driver_errors.TypeMismatchError("wrong type"), False),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True),
        (ConnectionResetError(), True),
        (BrokenPipeError(), True),
        (TimeoutError(), True),
        (EOFError("Unexpected EOF while reading bytes"), True),
        (OSError(errno.EHOSTUNREACH, "no route"), True),
        (OSError(errno.ENOSPC, "disk full"), False),
        (FileNotFoundError(), False),
        (_http(503), True),
        (_http(429), True),
        (_http(400), False),
        (urllib.error.URLError(ConnectionRefusedError()), True),
        (urllib.error.URLError(ValueError("bad url")), False),
        (Marked(retriable=True), True),
        (Marked(retriable=False), False),
        (ValueError("bad row"), False),
        (KeyError("column"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient
