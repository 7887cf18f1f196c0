"""The bench's peer: foodrisk's screening job on quix-streams, what a user would pick instead of Faust.

Run as a process (the bench starts it beside the same broker and messages as the foodrisk row)::

    python -m tests.bench.quix_peer --broker HOST:PORT --topic RESULTS --alerts ALERTS \
        --deadletter DEADLETTER [--screened SCREENED] --clickhouse chdb://PATH --database DB \
        --group GROUP --expect N --out FILE

The job is the screening agent's (agents/screening.py), written the quix-streams way:

* a StreamingDataFrame over the results topic (raw bytes in); each message is validated and
  screened by foodrisk's pure function (``agents.batch.screen_batch`` on that one message: the
  same parse_result / screen / row / alert / dead-letter code the worker runs);
* the message's alerts and dead letters go to their topics through quix's own producer
  (``to_topic`` with the topic chosen per value);
* the result rows go to ClickHouse through a quix ``BatchingSink`` (one insert per partition per
  checkpoint, with an insert deduplication token as the worker's writer uses); with ``--screened``
  the sink also publishes the checkpoint's screened records, 500 a message, as foodrisk's
  screening agent does for its early-warning worker, and waits for their acknowledgement.

Commit after the write: at each checkpoint (``--commit-interval``, 1 s like Faust's commit interval
in foodrisk) quix flushes the sinks first (``write`` returns only once ClickHouse stored the rows and
the broker acknowledged the screened records), then flushes its producer (every alert and dead
letter acknowledged), then commits the offsets; a failed write aborts the checkpoint, so nothing
is committed past a row that was not stored. A transient ClickHouse failure raises quix's
``SinkBackpressureError``: the batch is dropped, the partitions are paused and read again from
the last commit.

When the rows of ``--expect`` messages are stored, it writes a JSON line of figures to ``--out``
(first and last write times, rows in the first write, messages) and keeps running until stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from quixstreams import Application, message_context
from quixstreams.models.serializers import Serializer
from quixstreams.models.topics import Topic
from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch

from agents.batch import Incoming, screen_batch
from agents.screened import Screened, encode_batch
from agents.screening import SCREENED_PER_MESSAGE
from pipeline.app import screening_config
from pipeline.settings import Settings
from schemas.reference import default_reference
from schemas.sums import SumBook
from sinks.clickhouse import DEDUP_TOKEN_SETTING, ClickHouse, connect_clickhouse
from sinks.ddl import RESULTS_COLUMNS, migrate
from sinks.errors import ClickHouseUnavailable
from tests.bench.direct_screen import Progress, arguments

log = logging.getLogger("quix_peer")

ALERT, DEADLETTER = 0, 1


class Screened1(NamedTuple):
    """One message, screened: its result rows, its compact records, and what it sends (topic, key, value)."""

    rows: list[tuple[Any, ...]]
    screened: list[Screened]
    sends: list[tuple[int, bytes | None, bytes]]


class Payload(Serializer):
    """The value of a (topic, key, value) send, as it is."""

    def __call__(self, value: tuple[int, bytes | None, bytes], ctx: Any) -> bytes:
        return value[2]


class ResultRows(BatchingSink):
    """The ``results`` rows of each checkpoint into ClickHouse (and the screened records, when asked)."""

    def __init__(self, ch: ClickHouse, database: str, progress: Progress, screened: Any | None = None,
                 screened_topic: str = "") -> None:
        super().__init__()
        self.ch, self.target, self.progress = ch, f"{database}.results", progress
        self.screened, self.screened_topic = screened, screened_topic

    def write(self, batch: SinkBatch) -> None:
        rows: list[tuple[Any, ...]] = []
        records: list[Screened] = []
        for item in batch:
            rows += item.value.rows
            records += item.value.screened
        token = f"results:{batch.topic}/{batch.partition}:{batch.start_offset}-{batch.size}"
        try:
            if rows:
                self.ch.insert(self.target, RESULTS_COLUMNS, rows, settings={DEDUP_TOKEN_SETTING: token})
        except ClickHouseUnavailable as exc:
            log.warning("ClickHouse unavailable (%s); the checkpoint is read again", exc)
            raise SinkBackpressureError(retry_after=1.0) from exc
        if self.screened is not None and records:
            for i in range(0, len(records), SCREENED_PER_MESSAGE):
                self.screened.produce(self.screened_topic, encode_batch(records[i:i + SCREENED_PER_MESSAGE]))
            if self.screened.flush(60):
                raise SinkBackpressureError(retry_after=1.0)
        self.progress.stored(batch.size)


def screen_one(reference_config: Any, sums: SumBook) -> Any:
    """The per-message step: foodrisk's pure screening of one message."""
    config = reference_config

    def step(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> Screened1:
        ctx = message_context()
        msg = Incoming(ctx.topic, ctx.partition, ctx.offset, timestamp / 1000.0 if timestamp else None, key, value)
        out = screen_batch([msg], reference=config.reference, columns=RESULTS_COLUMNS,
                           watch_fraction=config.watch_fraction, max_batch_items=config.max_batch_items,
                           now=datetime.now(UTC), sums=sums)
        sends: list[tuple[int, bytes | None, bytes]] = [(ALERT, a.alert_id.encode(), a.to_json()) for a in out.alerts]
        sends += [(DEADLETTER, d.key, d.envelope) for d in out.dead_letters]
        return Screened1(out.result_rows, out.screened, sends)

    return step


def main(argv: Sequence[str] | None = None) -> None:
    args = arguments("quix_peer", __doc__ or "", argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    ch = connect_clickhouse(args.clickhouse, database=args.database)
    migrate(ch, args.database)
    config = screening_config(Settings(), default_reference())
    # Like foodrisk's producers: acks=all, idempotent, a 5 ms linger.
    producer_config = {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
    app = Application(
        broker_address=args.broker, consumer_group=args.group, auto_offset_reset="earliest",
        commit_interval=args.commit_interval, use_changelog_topics=False, auto_create_topics=False,
        state_dir=args.state_dir or str(args.out.parent / f"quix-state-{args.group}"),
        producer_extra_config=producer_config, loglevel="INFO",
    )
    results = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    produced: list[Topic] = [app.topic(name, key_serializer="bytes", value_serializer=Payload())
                             for name in (args.alerts, args.deadletter)]
    screened_producer = None
    if args.screened:
        from confluent_kafka import Producer

        screened_producer = Producer({"bootstrap.servers": args.broker, **producer_config})
    rows = ResultRows(ch, args.database, Progress(args.expect, args.out), screened_producer, args.screened)

    sdf = app.dataframe(results)
    sdf = sdf.apply(screen_one(config, SumBook()), metadata=True)
    sends = sdf.apply(lambda s: s.sends, expand=True)
    sends.to_topic(lambda value, key, ts, headers: produced[value[0]], key=lambda value: value[1])
    sdf.sink(rows)
    try:
        app.run()
    finally:
        ch.close()


if __name__ == "__main__":
    main()
