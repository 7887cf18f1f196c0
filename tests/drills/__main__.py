"""`make drills`: every drill at full size; prints the table and exits 1 if anything was lost or doubled."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.drills.analyst import drill_hostile_analyst_queries
from tests.drills.cluster import drill_clickhouse_cluster, drill_kafka_ha
from tests.drills.core import (
    DrillRow,
    Stack,
    drill_broker_restart,
    drill_clickhouse_outage,
    drill_hostile_input,
    drill_secrets_not_logged,
    drill_two_workers_one_dies,
    drill_worker_crash,
    table,
)


def main() -> int:
    p = argparse.ArgumentParser(prog="make drills", description=__doc__)
    p.add_argument("--reduced", action="store_true", help="the small sizes used inside make test")
    p.add_argument("--only", choices=["single", "cluster"], help="only the single-node drills, or only the two "
                   "cluster drills (three Kafka brokers; ClickHouse 2 shards x 2 replicas)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    full = not args.reduced
    rows: list[DrillRow] = []
    with tempfile.TemporaryDirectory(prefix="foodrisk-drills-") as tmp:
        work = Path(tmp)
        if args.only != "single":
            cluster_steps: list[Callable[[], DrillRow]] = [
                lambda: drill_kafka_ha(work / "kafkaha", n=20_000 if full else 3_000, rate=1_000 if full else 500,
                                       down_s=10 if full else 3, outage_s=15 if full else 5,
                                       n_outage=2_000 if full else 300),
                lambda: drill_clickhouse_cluster(work / "chcluster", n=20_000 if full else 2_000,
                                                 rate=1_000 if full else 500, down_s=10 if full else 3),
            ]
            for step in cluster_steps:
                started = time.monotonic()
                row = step()
                row.extra.pop("worker_logs", None)
                rows.append(row)
                print(f"{row.drill}: done in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
                print(f"  {row.note}", file=sys.stderr, flush=True)
        if args.only == "cluster":
            print(table(rows))
            return 1 if any(not r.ok or r.extra.get("refused") for r in rows) else 0
        stack = Stack(work / "stack").start()
        try:
            steps: list[Callable[[], DrillRow]] = [
                lambda: drill_worker_crash(stack, work, n=50_000 if full else 3_000, kills=5 if full else 2),
                lambda: drill_two_workers_one_dies(stack, work, n=20_000 if full else 2_000),
                lambda: drill_clickhouse_outage(stack, work, n=20_000 if full else 2_000,
                                                outage_s=30 if full else 10),
                lambda: drill_broker_restart(stack, work, n=20_000 if full else 3_000, down_s=10 if full else 3),
                lambda: drill_hostile_input(stack, work, n=10_000 if full else 2_000,
                                            huge_every=2_500 if full else 1_000),
                lambda: drill_hostile_analyst_queries(stack, work, rounds=3 if full else 1, samples=40 if full else 10),
            ]
            for step in steps:
                started = time.monotonic()
                row = step()
                rows.append(row)
                print(f"{row.drill}: done in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        finally:
            stack.stop()
        rows.append(drill_secrets_not_logged(work))
    print(table(rows))
    bad = [r for r in rows if not r.ok or r.extra.get("leaks") or r.extra.get("restarted")
           or r.extra.get("extra_deadletters") or r.extra.get("refused") or r.extra.get("boards_differ")
           or r.extra.get("same_worker") is False or r.extra.get("escapes")
           or r.extra.get("ratio", 0) > 2]  # ingest latency under hostile analyst queries within 2x of idle
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
