"""The early-warning agent: screened batches -> detectors (agents/early) -> alerts and the red list.

It consumes the internal one-partition topic ``screened_topic`` (the screening agent publishes one
message per batch), so every table here is consistent in one worker. State lives in Faust tables
(changelog-backed, restored on restart), one table key per detector key, values compact JSON held
as their encoded bytes (the tables' value codec is raw: the store holds what the changelog holds,
and the engine decodes a value when it reads it: ``common.Stored``). Per batch: run the pure
engine step, publish its alerts and wait for the broker, insert red-list rows, then write each
changed table key once (``_write``: the table's store, and its changelog records in produce
batches, awaited), take the step into the engine's memory (schedule and seen index), and only then
ack. A crash before the table writes
replays the batch and publishes the same alerts again (same ids: the alerts table collapses them);
a crash after them finds the records in ``seen`` and publishes nothing twice. Any failure crashes
the worker (``CrashingSupervisor``): the memory is built again from the restored tables.

At its first batch the agent brings stored state of an earlier version to the per-key layout
(``engine.upgrade``) and builds the engine's memory by one pass over the tables.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from faust.types import AgentT, AppT, StreamT, TopicT
from mode import CrashingSupervisor

from agents.early.common import JSON, EarlyParams, Stored, utc
from agents.early.engine import TABLES, EngineMemory, encode, step, stored, upgrade
from agents.early.offender import RedListEntry
from agents.faust_internals import aiokafka_producer
from agents.metrics import Metrics
from agents.screened import Screened, decode_batch
from agents.screening import publish
from agents.streams import event_batches, manual_ack
from sinks.ddl import REDLIST_COLUMNS
from sinks.writer import ClickHouseWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EarlyWarningConfig:
    """What the early-warning agent needs, as plain values (the shell builds it from its settings:
    ``pipeline.app.early_warning_config``)."""

    screened_topic: str  # the internal one-partition topic of screened batches
    params: EarlyParams  # the detectors' parameters
    max_rows: int  # the batch size of the results stream; a batch of screened batches is 1/100 of it
    max_age_s: float


def redlist_row(e: RedListEntry, version: int) -> tuple[Any, ...]:
    values: Mapping[str, Any] = {
        "vendor_id": e.vendor_id,
        "listed": 1 if e.listed else 0,
        "listed_at": utc(e.listed_at).replace(tzinfo=None),
        "changed_at": utc(e.changed_at).replace(tzinfo=None),
        "findings": e.findings,
        "clean_run": e.clean_run,
        "site_id": e.site_id,
        "district": e.district,
        "alert_id": e.alert_id,
        "evidence": list(e.evidence),
        "version": version,
    }
    return tuple(values[c] for c in REDLIST_COLUMNS)


CHANGELOG_CONFIG: Final[Mapping[str, str]] = {
    # Every changed key is one changelog record, and Kafka compacts only closed segments: with the
    # default 1 GiB segments nothing of a table's changelog was ever compacted in a 30-day national
    # soak (955,044 records for ~40,000 live keys, 97 s to rebuild after kill -9). Smaller segments
    # that roll at least every 15 minutes, and a cleaner that starts at 20 % dirty, keep the
    # changelog near the live state, so a restart reads about what the tables hold. Applied when
    # Faust creates the topics; for topics that exist, `kafka-configs --alter` (README).
    "segment.bytes": str(16 * 1024 * 1024),
    "segment.ms": str(15 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
}


def register_early_warning(
    app: AppT,
    *,
    screened_topic: TopicT,
    alerts_topic: TopicT,
    writer: ClickHouseWriter,
    params: EarlyParams,
    max_rows: int,
    max_age_s: float,
    metrics: Metrics,
) -> AgentT[Any]:
    tables = {
        name: app.Table(
            f"early-{name}",
            default=None,
            partitions=1,
            key_type=str,  # JSON keys: Faust's json codec (orjson, compact)
            value_type=bytes,  # values as encoded JSON, held as bytes (raw codec; ``engine.stored``)
            use_partitioner=True,  # one partition: no need for the current event's partition
            extra_topic_configs=CHANGELOG_CONFIG,
        )
        for name in TABLES
    }
    for name in TABLES:  # every series from the start: a rate() over a new series misses its first count
        metrics.early_changelog_writes.labels(name)
        metrics.early_changelog_bytes.labels(name)

    @app.agent(screened_topic, name="early_warning", supervisor_strategy=CrashingSupervisor)
    async def early_warning(stream: StreamT[bytes]) -> None:
        s = manual_ack(stream)
        memory: EngineMemory | None = None  # built at the first batch (after the tables' recovery)
        async for events in event_batches(s, max(1, max_rows // 100), max_age_s):
            records: list[Screened] = []
            for e in events:
                m = e.message
                try:
                    records.extend(decode_batch(m.value or b""))
                except ValueError as exc:
                    log.warning("screened topic %s[%s]@%s: %s; skipped", m.topic, m.partition, m.offset, exc)
            held = {name: _held(table) for name, table in tables.items()}
            if memory is None:
                writes = upgrade(held)
                if writes:
                    _log_upgrade(Stored(held["meta"]).get("layout"), writes)
                    await _write(app, tables, writes, metrics)
                memory = EngineMemory.build(held, params)
            out = step(held, records, params, memory)
            await publish(alerts_topic, [(a.alert_id.encode(), a.to_json()) for a in out.alerts])
            if out.redlist:
                base = int(time.time() * 1_000_000)
                rows = [redlist_row(e, base + i) for i, e in enumerate(out.redlist)]
                await writer.insert("redlist", REDLIST_COLUMNS, rows)
            await _write(app, tables, out.updates, metrics)
            memory.apply(out)  # (a failure above crashes the worker: the memory is never half applied)
            for e in events:
                await s.ack(e)
            metrics.early_records.labels("fresh").inc(out.fresh)
            metrics.early_records.labels("duplicate").inc(out.duplicates)
            metrics.early_records.labels("late").inc(len(records) - out.fresh - out.duplicates)
            for name, table in tables.items():
                metrics.early_table_keys.labels(name).set(len(table))
            for a in out.alerts:
                log.info("ALERT %s %s %s: %s", a.classification, a.kind, a.status, a.summary_en)

    return early_warning


def _held(table: Any) -> Mapping[str, Any]:
    """What a table holds, to read by key: the in-memory store's own dict when it has one (Faust's
    memory store), else the store. Reading the table itself would run Faust's sensors and its
    default handling on every look-up; the agent writes through the store (``_write``)."""
    store = table.data
    inner = getattr(store, "data", None)
    return inner if isinstance(inner, dict) else store


async def _write(
    app: AppT, tables: Mapping[str, Any], updates: Mapping[str, Mapping[str, JSON]], metrics: Metrics
) -> None:
    """Write each key of ``updates`` (table -> key -> value, None = delete) once: into the table's
    store, and as a changelog record, then wait until the broker has every record.

    The records go to each table's changelog topic (one partition) in produce batches built here
    (aiokafka's ``create_batch`` / ``send_batch``), keys encoded as Faust's json codec encodes them,
    values as the bytes the store holds (``engine.stored``: compact JSON), so Faust's recovery reads
    them as its own. Changelogs written by the json value codec before hold the same bytes. Not
    ``table[key] = value``: that sends each key as a message of its own through Faust's producer
    buffer, which cost more than the step itself once every changed key is a record (a step writes
    thousands). A failure part-way crashes the worker
    (``CrashingSupervisor``): the tables come back from their changelogs."""
    producer = aiokafka_producer(app)
    sent = []
    for name, ups in updates.items():
        if not ups:
            continue
        table = tables[name]
        store = table.data  # the table's in-memory store (what table[key] reads)
        topic = table.changelog_topic.get_topic_name()
        batch = producer.create_batch()
        n = size = 0
        for key, value in ups.items():
            if value is None:
                if key not in store:
                    continue
                del store[key]
                v = None
            else:
                v = store[key] = stored(value)
            k = encode(key)
            n += 1
            size += len(k) + (len(v) if v is not None else 0)
            if batch.append(key=k, value=v, timestamp=None) is None:  # full: send it, start the next
                sent.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                batch.append(key=k, value=v, timestamp=None)  # (the first record always fits)
        if n:
            sent.append(await producer.send_batch(batch, topic, partition=0))
            metrics.early_changelog_writes.labels(name).inc(n)
            metrics.early_changelog_bytes.labels(name).inc(size)
    if sent:
        await asyncio.gather(*sent)


def _log_upgrade(layout: Any, writes: Mapping[str, Mapping[str, JSON]]) -> None:
    was = f"{layout['shards']} shards" if isinstance(layout, dict) and "shards" in layout else "no layout recorded"
    n = sum(len(w) for name, w in writes.items() if name != "meta")
    if n:
        log.warning("early-warning tables: stored state (%s) brought to one key per detector key: %d writes", was, n)


def screened_topic_of(app: AppT, name: str) -> TopicT:
    """The internal topic of screened batches (the screening agent writes it, early warning reads it)."""
    return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=1)


def install_early_warning(
    app: AppT, config: EarlyWarningConfig, *, alerts_topic: TopicT, writer: ClickHouseWriter, metrics: Metrics
) -> TopicT:
    """Register the early-warning agent; returns the screened topic, which the screening agent
    publishes to (``register_screening(..., screened_topic=...)``)."""
    topic = screened_topic_of(app, config.screened_topic)
    register_early_warning(
        app,
        screened_topic=topic,
        alerts_topic=alerts_topic,
        writer=writer,
        params=config.params,
        max_rows=config.max_rows,
        max_age_s=config.max_age_s,
        metrics=metrics,
    )
    return topic
