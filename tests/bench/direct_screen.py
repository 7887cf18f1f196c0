"""A measured layout, not the product: the screening job on a consumer that takes message batches directly.

The bench's answer to "what layout meets the single-result goal": the same job as foodrisk's
screening agent (agents/screening.py: ``screen_batch`` on a batch of messages, the rows into
ClickHouse through ``ClickHouseWriter``, alerts, dead letters and the screened records 500 a message
to their topics, offsets committed only after every write of the batch returned) on a plain aiokafka
consumer of the group, one ``getmany`` batch (up to 5,000 messages) at a time: no Faust stream, so no per-message tasks,
events, routing or acks. Run as a process with the same arguments as tests/bench/quix_peer.py.

One batch's writes run while the next batch is screened (commits in order). Left out, as a
measurement: rebalance hand-over (a batch in flight at a revocation is simply read again), metrics,
the reference watch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents.batch import Incoming, screen_batch
from agents.screened import encode_batch
from agents.screening import SCREENED_PER_MESSAGE
from pipeline.app import screening_config
from pipeline.settings import Settings
from schemas.reference import default_reference
from schemas.sums import SumBook
from sinks.clickhouse import connect_clickhouse
from sinks.ddl import RESULTS_COLUMNS, migrate
from sinks.writer import ClickHouseWriter


class Progress:
    """When the rows were stored: the figures the bench reads once ``expect`` messages are in."""

    def __init__(self, expect: int, out: Path) -> None:
        self.expect, self.out = expect, out
        self.messages = 0
        self.first_write = self.first_rows = self.first_cpu = 0.0
        self.written = False

    def stored(self, messages: int) -> None:
        now, cpu = time.time(), time.process_time()  # process CPU: every thread (librdkafka's, chdb's too)
        if not self.messages:
            self.first_write, self.first_rows, self.first_cpu = now, messages, cpu
        self.messages += messages
        if self.messages >= self.expect and not self.written:
            self.written = True
            self.out.write_text(json.dumps({"first_write": self.first_write, "first_rows": self.first_rows,
                                            "last_write": now, "messages": self.messages,
                                            "first_cpu": self.first_cpu, "last_cpu": cpu}))


def arguments(prog: str, doc: str, argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("--broker", required=True, help="bootstrap HOST:PORT")
    p.add_argument("--topic", required=True, help="the results topic")
    p.add_argument("--alerts", required=True)
    p.add_argument("--deadletter", required=True)
    p.add_argument("--screened", default="", help="publish the screened records here too (as foodrisk does)")
    p.add_argument("--clickhouse", required=True, help="chdb://PATH or clickhouse://...")
    p.add_argument("--database", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", default="")
    p.add_argument("--commit-interval", type=float, default=1.0, help="(quix peer) seconds between checkpoints")
    p.add_argument("--max-records", type=int, default=5000, help="(direct) most messages a batch takes")
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    ch = connect_clickhouse(args.clickhouse, database=args.database)
    migrate(ch, args.database)
    writer = ClickHouseWriter(ch, database=args.database)
    config = screening_config(Settings(), default_reference())
    producer = AIOKafkaProducer(bootstrap_servers=args.broker, acks="all", enable_idempotence=True, linger_ms=5)
    consumer = AIOKafkaConsumer(args.topic, bootstrap_servers=args.broker, group_id=args.group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    progress, sums = Progress(args.expect, args.out), SumBook()

    async def finish(fetched: dict[Any, list[Any]], items: list[Incoming], writes: list[Any]) -> None:
        await asyncio.gather(*writes)
        # commit after the write: the batch's rows are stored and its messages acknowledged
        await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
        progress.stored(len(items))

    pending: asyncio.Task[None] | None = None  # the previous batch's writes, while this one is screened
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=100, max_records=args.max_records)
            if not fetched:
                continue
            items = [Incoming(r.topic, r.partition, r.offset, r.timestamp / 1000.0, r.key, r.value)
                     for records in fetched.values() for r in records]
            out = screen_batch(items, reference=config.reference, columns=RESULTS_COLUMNS,
                               watch_fraction=config.watch_fraction, max_batch_items=config.max_batch_items,
                               now=datetime.now(UTC), sums=sums)
            sends: list[Any] = [await producer.send(args.alerts, key=a.alert_id.encode(), value=a.to_json())
                                for a in out.alerts]
            sends += [await producer.send(args.deadletter, key=d.key, value=d.envelope) for d in out.dead_letters]
            if args.screened:
                sc = out.screened
                sends += [await producer.send(args.screened, value=encode_batch(sc[i:i + SCREENED_PER_MESSAGE]))
                          for i in range(0, len(sc), SCREENED_PER_MESSAGE)]
            first = items[0]
            insert = writer.insert("results", RESULTS_COLUMNS, out.result_rows,
                                   token=f"results:{first.topic}/{first.partition}:{first.offset}")
            if pending is not None:
                await pending  # commits stay in order: the previous batch's first
            pending = asyncio.ensure_future(finish(fetched, items, [insert, *sends]))
    finally:
        await consumer.stop()
        await producer.stop()
        writer.close()
        ch.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = arguments("direct_screen", __doc__ or "", argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
