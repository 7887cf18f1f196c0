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
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from pipeline.metrics import Metrics

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


class LagReporter:
    """Samples the Faust consumer of ``app`` into the lag gauges of ``metrics``."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self._app = app
        self._m = metrics
        self._reported: set[tuple[str, str]] = set()

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
            # Faust keeps the group's committed offsets here (set at assignment, updated on commit);
            # there is no public accessor. A defaultdict: .get() does not insert.
            committed: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {})
            never = [tp for tp in tps if committed.get(tp) is None]
            earliest = await consumer.earliest_offsets(*never) if never else {}
            lags = partition_lags(end_offsets, committed, earliest)
        self.publish(lags)
        return lags

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


def register_lag_monitor(app: Any, metrics: Metrics, *, interval_s: float) -> LagReporter:
    """A timer on ``app`` that samples the lag every ``interval_s`` seconds (never fatal)."""
    reporter = LagReporter(app, metrics)

    async def sample_consumer_lag() -> None:
        if app.rebalancing:
            return
        try:
            await reporter.sample()
        except Exception as exc:  # noqa: BLE001 - a missed sample must never stop the worker
            log.debug("consumer lag not sampled: %s: %s", type(exc).__name__, exc)

    app.timer(interval=interval_s, name="foodrisk_consumer_lag")(sample_consumer_lag)
    return reporter
