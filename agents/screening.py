"""The screening agent: results topic -> verdicts -> ClickHouse `results`, alerts and dead letters.

Per batch (``noack_take``: ``max_rows`` or ``max_age_s``): screen every message (pure) and hand its
alerts, dead letters and screened records to the producer at once. The result rows of consecutive
batches are gathered into one insert (``insert_max_rows`` or ``insert_max_age_s``; retried while
ClickHouse is away); once the broker acknowledged every message of the group's batches and the
insert returned, their events are acknowledged so that Faust may commit their offsets. The waiting
runs in the background while the next batches are read and screened (at most ``batches_in_flight``
groups); the consumer commits an offset only when every offset before it was acknowledged too
(agents/faust_internals.py), whatever order groups finish in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from faust.types import AgentT, AppT, EventT, StreamT, TopicT
from mode import CrashingSupervisor

from agents.batch import BatchOutcome, Incoming, screen_batch
from agents.metrics import DEADLETTER_REASONS, Metrics, bounded, count_unclassified, observe_alert_latency
from agents.screened import encode_batch
from agents.streams import event_batches, manual_ack
from schemas.reference import Reference
from schemas.sums import SumBook
from sinks.ddl import RESULTS_COLUMNS
from sinks.writer import ClickHouseWriter

log = logging.getLogger(__name__)


class CurrentReference:
    """The reference data in force. The shell (pipeline/refdata.py) replaces ``reference`` whole, on
    the event loop, when a new edition has been loaded and checked; the agent reads it once at the
    start of each batch, so a batch is screened with one edition from its first result to its last."""

    __slots__ = ("reference",)

    def __init__(self, reference: Reference) -> None:
        self.reference = reference


@dataclass(frozen=True)
class ScreeningConfig:
    reference: Reference
    watch_fraction: float
    max_rows: int
    max_age_s: float
    max_batch_items: int = 1000
    batches_in_flight: int = 2  # insert groups whose writes may be outstanding at once
    # The result rows of consecutive batches go to ClickHouse in one insert, at most this long after
    # the group's first batch or at this many rows: an insert per 0.1 s batch cost chdb 45-60 us of CPU
    # per result (its insert threads and merges of small parts), one a second ~10 us. Alerts, dead letters
    # and screened records are sent as each batch is screened, so this delays only the rows and the
    # commit, never an alert.
    insert_max_rows: int = 10_000
    insert_max_age_s: float = 1.0


class ScreenedBatch(NamedTuple):
    """A screened batch waiting for its group's insert: its events (acked after it), what it sent."""

    events: list[EventT[Any]]
    items: list[Incoming]
    outcome: BatchOutcome
    screened_at: datetime
    alerts: list[Awaitable[Any]]
    sends: list[Awaitable[Any]]


# A screened record is ~450 bytes (at most ~1.5 KB with 128-character ids): 500 a message stay under
# Kafka's 1 MB default message limit even then.
SCREENED_PER_MESSAGE = 500


def incoming(event: EventT[Any]) -> Incoming:
    m = event.message
    return Incoming(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value)


async def enqueue(topic: TopicT, messages: list[tuple[bytes | None, bytes]]) -> list[Awaitable[Any]]:
    """Hand ``messages`` to the producer, in order; returns one future per message, done when the
    broker acknowledged it (acks per producer settings)."""
    return [await topic.send(key=k, value=v, force=True) for k, v in messages]


async def publish(topic: TopicT, messages: list[tuple[bytes | None, bytes]]) -> None:
    """Send and wait until the broker acknowledged every message."""
    if messages:
        await asyncio.gather(*await enqueue(topic, messages))


async def acked_at(pending: list[Awaitable[Any]]) -> float:
    """Wait for ``pending`` sends; the time (epoch seconds) when the broker had acknowledged them all."""
    if pending:
        await asyncio.gather(*pending)
    return time.time()


def register_screening(
    app: AppT,
    *,
    results_topic: TopicT,
    alerts_topic: TopicT,
    deadletter_topic: TopicT,
    writer: ClickHouseWriter,
    config: ScreeningConfig,
    screened_topic: TopicT | None = None,
    metrics: Metrics,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    current: CurrentReference | None = None,
) -> AgentT[Any]:
    """The screening agent. ``current``: the reference in force, which the shell may swap while the
    worker runs (default: ``config.reference`` for good)."""
    in_force = current if current is not None else CurrentReference(config.reference)

    @app.agent(results_topic, name="screen_results", supervisor_strategy=CrashingSupervisor)
    async def screen_results(stream: StreamT[bytes]) -> None:
        s = manual_ack(stream)
        loop = asyncio.get_running_loop()
        in_flight: deque[asyncio.Task[None]] = deque()
        sums = SumBook()  # parts of residue sums of this worker's partitions (schemas/sums.py)
        group: list[ScreenedBatch] = []  # screened batches whose rows are not handed to ClickHouse yet
        rows_in_group = 0
        closer: asyncio.TimerHandle | None = None

        def close_group() -> None:
            """Hand the group's rows to ClickHouse in one insert (in the background)."""
            nonlocal group, rows_in_group, closer
            if closer is not None:
                closer.cancel()
                closer = None
            if group:
                in_flight.append(asyncio.ensure_future(finish(s, group)))
                group, rows_in_group = [], 0

        try:
            async for events in event_batches(s, config.max_rows, config.max_age_s):
                items = [incoming(e) for e in events]
                metrics.results_consumed.inc(len(items))
                screened_at = clock()
                outcome = screen_batch(
                    items,
                    reference=in_force.reference,  # one edition for the whole batch
                    columns=RESULTS_COLUMNS,
                    watch_fraction=config.watch_fraction,
                    max_batch_items=config.max_batch_items,
                    now=screened_at,
                    sums=sums,
                )
                # The batch's messages go to the producer now, in batch order (alerts first: they are
                # what someone waits for); waiting for the broker and ClickHouse, and the acks, run in
                # the background so that the next batch is read and screened meanwhile.
                alerts = await enqueue(alerts_topic, [(a.alert_id.encode(), a.to_json()) for a in outcome.alerts])
                sends = await enqueue(deadletter_topic, [(d.key, d.envelope) for d in outcome.dead_letters])
                if screened_topic is not None:  # early warning: the batch's records, in order, in messages of
                    sc = outcome.screened  # at most SCREENED_PER_MESSAGE (batch-form input is big)
                    sends += await enqueue(screened_topic, [(None, encode_batch(sc[i:i + SCREENED_PER_MESSAGE]))
                                                            for i in range(0, len(sc), SCREENED_PER_MESSAGE)])
                # The rows wait for the group's insert: at most insert_max_age_s after the group's first
                # batch, or at insert_max_rows (fewer, bigger inserts: ClickHouse's own cost per result).
                group.append(ScreenedBatch(events, items, outcome, screened_at, alerts, sends))
                rows_in_group += len(outcome.result_rows)
                if rows_in_group >= config.insert_max_rows:
                    close_group()
                elif closer is None:
                    closer = loop.call_later(config.insert_max_age_s, close_group)
                while in_flight and (in_flight[0].done() or len(in_flight) >= config.batches_in_flight):
                    await in_flight.popleft()  # a failed write ends the agent here (the supervisor crashes)
        finally:
            if closer is not None:
                closer.cancel()
            for task in in_flight:
                task.cancel()  # their events were not acked: they are read again (and the group's too)

    async def finish(s: Any, batches: list[ScreenedBatch]) -> None:
        """Insert the rows of ``batches`` in one call and wait until every send of theirs was
        acknowledged; then ack their events (Faust may commit them)."""
        rows = [row for b in batches for row in b.outcome.result_rows]
        published_at = await asyncio.gather(
            *(acked_at(b.alerts) for b in batches),
            writer.insert("results", RESULTS_COLUMNS, rows),
            *(send for b in batches for send in b.sends),
        )
        for b in batches:
            for e in b.events:
                await s.ack(e)
        # Bookkeeping after the acks: nothing below can lose data.
        for b, alerts_published_at in zip(batches, published_at, strict=False):
            account(b, alerts_published_at)

    def account(b: ScreenedBatch, alerts_published_at: float) -> None:
        outcome = b.outcome
        metrics.results_accepted.inc(len(outcome.result_rows))
        for d in outcome.dead_letters:
            metrics.deadlettered.labels(bounded(d.reason, DEADLETTER_REASONS)).inc()
        for (verdict, method), n in Counter(outcome.verdicts).items():  # one labelled child per pair, not per result
            metrics.verdicts.labels(verdict, method).inc(n)
        count_unclassified(metrics, outcome.unclassified)
        for a, source_ts in zip(outcome.alerts, outcome.alert_sources, strict=True):  # counted when archived
            observe_alert_latency(metrics, a, source_timestamp=source_ts, now=alerts_published_at)
        now = time.time()
        for it in b.items:
            if it.timestamp:
                metrics.screen_latency_seconds.observe(max(0.0, now - it.timestamp))
        screened_ts = b.screened_at.timestamp()
        for r in outcome.screened:  # one per stored row; sampled_at in whole epoch seconds
            metrics.sampled_to_screened_seconds.observe(max(0.0, screened_ts - r.sampled_at))
        if outcome.alerts:  # one log record per batch: a record per alert cost ~4% of the worker's loop
            log.info("%s", "\n".join(f"ALERT {a.classification} {a.kind}: {a.summary_en}" for a in outcome.alerts))

    return screen_results
