"""The screening agent: results topic -> verdicts -> ClickHouse `results`, alerts and dead letters.

Per batch (``noack_take``): screen every message (pure), publish dead letters and alerts and wait
for the broker to acknowledge them, insert the result rows (retrying while ClickHouse is away),
and only then acknowledge the batch's events so that Faust may commit their offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faust.types import AgentT, AppT, EventT, StreamT, TopicT
from mode import CrashingSupervisor

from agents.batch import Incoming, screen_batch
from agents.screened import encode_batch
from agents.streams import event_batches, manual_ack
from pipeline.metrics import DEADLETTER_REASONS, Metrics, bounded, observe_alert_latency
from schemas.reference import Reference
from sinks.ddl import RESULTS_COLUMNS
from sinks.writer import ClickHouseWriter

log = logging.getLogger(__name__)

_SAMPLED_AT = RESULTS_COLUMNS.index("sampled_at")


@dataclass(frozen=True)
class ScreeningConfig:
    reference: Reference
    watch_fraction: float
    max_rows: int
    max_age_s: float
    max_batch_items: int = 1000


# A screened record is ~450 bytes (at most ~1.5 KB with 128-character ids): 500 a message stay under
# Kafka's 1 MB default message limit even then.
SCREENED_PER_MESSAGE = 500


def incoming(event: EventT[Any]) -> Incoming:
    m = event.message
    return Incoming(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value)


async def publish(topic: TopicT, messages: list[tuple[bytes | None, bytes]]) -> None:
    """Send and wait until the broker acknowledged every message (acks per producer settings)."""
    if not messages:
        return
    pending = [await topic.send(key=k, value=v, force=True) for k, v in messages]
    await asyncio.gather(*pending)


async def publish_at(topic: TopicT, messages: list[tuple[bytes | None, bytes]]) -> float:
    """``publish``, then the time (epoch seconds) when the broker had acknowledged everything."""
    await publish(topic, messages)
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
) -> AgentT[Any]:
    @app.agent(results_topic, name="screen_results", supervisor_strategy=CrashingSupervisor)
    async def screen_results(stream: StreamT[bytes]) -> None:
        s = manual_ack(stream)
        async for events in event_batches(s, config.max_rows, config.max_age_s):
            items = [incoming(e) for e in events]
            metrics.results_consumed.inc(len(items))
            screened_at = clock()
            outcome = screen_batch(
                items,
                reference=config.reference,
                columns=RESULTS_COLUMNS,
                watch_fraction=config.watch_fraction,
                max_batch_items=config.max_batch_items,
                now=screened_at,
            )
            screened: list[tuple[bytes | None, bytes]] = []
            if screened_topic is not None:  # early warning: the batch's records, in order, in messages of
                sc = outcome.screened  # at most SCREENED_PER_MESSAGE (batch-form input is big)
                screened = [(None, encode_batch(sc[i:i + SCREENED_PER_MESSAGE]))
                            for i in range(0, len(sc), SCREENED_PER_MESSAGE)]
            # Every write of the batch at once; the acks below wait for all of them.
            alerts_published_at, *_ = await asyncio.gather(
                publish_at(alerts_topic, [(a.alert_id.encode(), a.to_json()) for a in outcome.alerts]),
                publish(deadletter_topic, [(d.key, d.envelope) for d in outcome.dead_letters]),
                writer.insert("results", RESULTS_COLUMNS, outcome.result_rows),
                publish(screened_topic, screened) if screened_topic is not None else asyncio.sleep(0),
            )
            for e in events:
                await s.ack(e)
            # Bookkeeping after the acks: nothing below can lose data.
            metrics.results_accepted.inc(len(outcome.result_rows))
            for d in outcome.dead_letters:
                metrics.deadlettered.labels(bounded(d.reason, DEADLETTER_REASONS)).inc()
            for verdict, method in outcome.verdicts:
                metrics.verdicts.labels(verdict, method).inc()
            for a, source_ts in zip(outcome.alerts, outcome.alert_sources, strict=True):  # counted when archived
                observe_alert_latency(metrics, a, source_timestamp=source_ts, now=alerts_published_at)
            now = time.time()
            for it in items:
                if it.timestamp:
                    metrics.screen_latency_seconds.observe(max(0.0, now - it.timestamp))
            for row in outcome.result_rows:  # sampled_at: naive UTC, whole seconds (agents/records.py)
                age = (screened_at - row[_SAMPLED_AT].replace(tzinfo=UTC)).total_seconds()
                metrics.sampled_to_screened_seconds.observe(max(0.0, age))
            if outcome.alerts:
                for a in outcome.alerts:
                    log.info("ALERT %s %s: %s", a.classification, a.kind, a.summary_en)

    return screen_results
