"""Consumer lag per partition, sampled by a timer in every worker (``foodrisk_consumer_lag_messages``).

Every ``interval_s`` a worker asks the broker for the end offset (high-water mark) of each
partition assigned to it, takes the offset its group has committed for that partition (Faust's
consumer keeps it: it is read from the broker at assignment and updated at each commit), and sets

    lag = end offset - committed offset

for the topics its agents read. A partition never committed counts from its earliest offset. A
partition that moved to another worker is removed from this worker's gauges, so summing over
workers counts each partition once (up to one interval around a rebalance: boards use ``max by
(topic, partition)``).

Committed, not read: a message read but not yet stored and acknowledged is still lag, which is
what an operator wants to see while ClickHouse is away and the agents hold their offsets.

Stalled partitions. Around a rebalance Faust can drop a message it already fetched (it skips
messages of the previous generation, or read while its flow control was paused) without fetching it
again: nothing is lost (the offset is never committed) but the partition stays stuck until the
worker restarts. At each sample the reporter looks for partitions with lag whose committed offset
has not moved for ``stall_s`` seconds while none of their messages is in flight, and whose topic is
either idle or moving on other partitions (so an agent waiting out an outage is left alone). Such a
partition is sought back to its committed offset and read again (the agents' writes are
idempotent), counted in ``foodrisk_consumer_rereads_total`` and logged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from agents.faust_internals import committed_offsets, in_flight_partitions
from agents.metrics import Metrics

log = logging.getLogger(__name__)


class PartitionLag(NamedTuple):
    topic: str
    partition: int
    end: int
    committed: int
    lag: int


def partition_lags(
    end_offsets: Mapping[Any, int],
    committed: Mapping[Any, int | None],
    earliest: Mapping[Any, int],
) -> list[PartitionLag]:
    """Lag of each partition in ``end_offsets`` (keys are Faust ``TP``s: ``.topic``, ``.partition``).

    Pure. The committed offset falls back to the earliest offset, then to 0; lag is never negative
    (a committed offset past a stale end offset reads as 0).
    """
    out = []
    for tp, end in sorted(end_offsets.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
        done = committed.get(tp)
        if done is None:
            done = earliest.get(tp, 0)
        out.append(PartitionLag(tp.topic, int(tp.partition), int(end), int(done), max(0, int(end) - int(done))))
    return out


MAX_REREADS = 3  # per committed offset: past that the commit is held by something reading cannot fix


class Progress(NamedTuple):
    committed: int
    since: float  # when the committed offset last moved (or was first seen)
    rereads: int = 0  # times read again from this committed offset
    clear_at: float = float("-inf")  # when it was last seen with nothing waiting (no lag)


def stalled_partitions(
    lags: Iterable[PartitionLag],
    progress: Mapping[tuple[str, int], Progress],
    in_flight: set[tuple[str, int]],
    now: float,
    stall_s: float,
) -> tuple[dict[tuple[str, int], Progress], list[PartitionLag]]:
    """The progress record after this sample, and the partitions to read again. Pure.

    A partition is stalled when it has had lag for ``stall_s`` and its committed offset has not
    moved in that time (the clock starts when work arrives: a partition idle for an hour that just
    received messages is not stalled), none of its messages is in flight, and its topic has
    nothing in flight at all or has moved on another partition within ``stall_s`` (an agent blocked
    on an outage holds messages in flight and moves nothing: it is waiting, not stuck). A stalled
    partition's clock restarts; it is read again at most ``MAX_REREADS`` times from one committed
    offset (then its lag shows it).
    """
    lags = list(lags)
    new: dict[tuple[str, int], Progress] = {}
    for p in lags:
        key = (p.topic, p.partition)
        old = progress.get(key)
        if old is None or old.committed != p.committed:
            new[key] = Progress(p.committed, now, 0, now if p.lag <= 0 else float("-inf"))
        elif p.lag <= 0:
            new[key] = old._replace(clear_at=now)
        else:
            new[key] = old
    busy = {topic for topic, _ in in_flight}
    before = dict(new)  # a partition read again below does not count as moving for its neighbours
    stalled: list[PartitionLag] = []
    if stall_s <= 0:
        return new, stalled
    for p in lags:
        key = (p.topic, p.partition)
        waiting_since = max(new[key].since, new[key].clear_at)
        if p.lag <= 0 or now - waiting_since < stall_s or key in in_flight:
            continue
        moving = any(k[0] == p.topic and k != key and now - v.since < stall_s for k, v in before.items())
        if (p.topic not in busy or moving) and new[key].rereads < MAX_REREADS:
            stalled.append(p)
            new[key] = Progress(p.committed, now, new[key].rereads + 1, new[key].clear_at)
    return new, stalled


class LagReporter:
    """Samples the Faust consumer of ``app`` into the lag gauges of ``metrics``."""

    def __init__(self, app: Any, metrics: Metrics, *, stall_s: float = 0.0) -> None:
        self._app = app
        self._m = metrics
        self._stall_s = stall_s
        self._reported: set[tuple[str, str]] = set()
        self._progress: dict[tuple[str, int], Progress] = {}

    def topics(self) -> set[str]:
        """The topics the app's agents read (results, alerts, dead letters, and any later agent's)."""
        names: set[str] = set()
        for agent in self._app.agents.values():
            names.update(agent.get_topic_names())
        return names

    async def sample(self) -> list[PartitionLag]:
        consumer = self._app.consumer
        wanted = self.topics()
        tps = sorted((tp for tp in consumer.assignment() if tp.topic in wanted), key=lambda t: (t.topic, t.partition))
        lags: list[PartitionLag] = []
        if tps:
            end_offsets = await consumer.highwaters(*tps)
            committed = committed_offsets(consumer)
            never = [tp for tp in tps if committed.get(tp) is None]
            earliest = await consumer.earliest_offsets(*never) if never else {}
            lags = partition_lags(end_offsets, committed, earliest)
        self.publish(lags)
        await self.reread_stalled(consumer, tps, lags)
        return lags

    async def reread_stalled(self, consumer: Any, tps: list[Any], lags: list[PartitionLag]) -> None:
        if self._stall_s <= 0:
            return
        in_flight = in_flight_partitions(consumer)
        self._progress, stalled = stalled_partitions(lags, self._progress, in_flight, time.monotonic(),
                                                     self._stall_s)
        by_key = {(tp.topic, int(tp.partition)): tp for tp in tps}
        for p in stalled:
            log.warning("partition %s[%d] has not moved from offset %d for %.0f s with %d messages waiting and "
                        "none in flight: reading it again from %d (attempt %d of %d)", p.topic, p.partition,
                        p.committed, self._stall_s, p.lag, p.committed,
                        self._progress[(p.topic, p.partition)].rereads, MAX_REREADS)
            self._m.consumer_rereads.labels(p.topic).inc()
            await consumer.seek(by_key[(p.topic, p.partition)], p.committed)

    def publish(self, lags: Iterable[PartitionLag]) -> None:
        now: set[tuple[str, str]] = set()
        for p in lags:
            key = (p.topic, str(p.partition))
            now.add(key)
            self._m.consumer_end_offset.labels(*key).set(p.end)
            self._m.consumer_committed_offset.labels(*key).set(p.committed)
            self._m.consumer_lag_messages.labels(*key).set(p.lag)
        for key in self._reported - now:  # revoked: another worker reports it now
            for gauge in (self._m.consumer_end_offset, self._m.consumer_committed_offset,
                          self._m.consumer_lag_messages):
                with contextlib.suppress(KeyError):
                    gauge.remove(*key)
        self._reported = now


def register_lag_monitor(app: Any, metrics: Metrics, *, interval_s: float, stall_s: float = 0.0) -> LagReporter:
    """A timer on ``app`` that samples the lag every ``interval_s`` seconds and reads stalled
    partitions again after ``stall_s`` (0: never); never fatal."""
    reporter = LagReporter(app, metrics, stall_s=stall_s)

    async def sample_consumer_lag() -> None:
        if app.rebalancing:
            return
        try:
            await reporter.sample()
        except Exception as exc:  # noqa: BLE001 - a missed sample must never stop the worker
            log.debug("consumer lag not sampled: %s: %s", type(exc).__name__, exc)

    app.timer(interval=interval_s, name="foodrisk_consumer_lag")(sample_consumer_lag)
    return reporter
