"""`foodrisk import` at scale: ``python -m tests.bench.bench_import [ROWS]`` (default 1,000,000).

Generates a CSV in the wire format's own column names (with a known number of invalid rows and
duplicates), starts an embedded broker (Apache Kafka), runs ``foodrisk import --json`` as a child process,
and reports rows/s and the importer's peak RSS. Then reads the results topic back and checks that
every accepted row is in it exactly once. Exit 1 when a row is unaccounted for.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

HEADER = [
    "result_id", "sample_id", "device_id", "site_id", "site_type", "site_district", "site_name", "vendor_id",
    "supplier_id", "origin", "commodity", "analyte", "method", "value", "unit", "qualitative", "lod", "loq",
    "sampled_at", "tested_at",
]
_T0 = datetime.fromisoformat("2026-11-20T07:00:00")  # naive: Asia/Shanghai


@dataclass(frozen=True)
class Expected:
    rows: int
    accepted: int
    rejected: int
    duplicates: int


def write_csv(path: Path, rows: int, *, invalid_every: int = 1000, duplicate_every: int = 500,
              devices: int = 20, prefix: str = "b") -> Expected:
    """A CSV of ``rows`` data lines: every ``invalid_every``-th row invalid (unknown unit), every
    ``duplicate_every``-th row repeats the previous row's result_id (unless one of them is invalid)."""
    rejected = duplicates = 0
    prev_valid = False
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(rows):
            invalid = invalid_every > 0 and i % invalid_every == invalid_every - 1
            dup = duplicate_every > 0 and i % duplicate_every == duplicate_every - 1 and i > 0
            n = i - 1 if dup else i
            rid = f"{prefix}-{n:08d}"
            dev = f"dev-{i // 100 % devices:03d}"
            t = _T0 + timedelta(seconds=i % 86_400)
            quick = i % 3 != 0
            w.writerow([
                rid, f"s-{rid}", dev, f"gz-site-{i % 37:02d}", "farmers_market" if quick else "testing_centre",
                "Tianhe", "", f"stall-{i % 211}", f"sup-{i % 97}", "440000",
                "cowpea", "ache_inhibition" if quick else "chlorpyrifos",
                "enzyme_inhibition" if quick else "lc_msms",
                f"{(i % 37):.1f}" if quick else f"{(i % 20) / 1000:.3f}",
                "furlongs" if invalid else ("%" if quick else "mg/kg"),
                "", "", "" if quick else "0.005",
                t.isoformat(), (t + timedelta(minutes=20)).isoformat(),
            ])
            if invalid:
                rejected += 1
            elif dup and prev_valid:
                duplicates += 1
            prev_valid = not invalid
    return Expected(rows=rows, accepted=rows - rejected - duplicates, rejected=rejected, duplicates=duplicates)


def run_import_cli(csv_path: Path, env: dict[str, str], *extra: str, timeout_s: float = 900) -> dict[str, Any]:
    """``foodrisk import --json --quiet`` in a child process; its JSON summary."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "import", str(csv_path), "--json", "--quiet", *extra],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout_s, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"foodrisk import exited {proc.returncode}: {proc.stderr[-3000:]}")
    summary: dict[str, Any] = orjson.loads(proc.stdout.strip().splitlines()[-1])
    return summary


def count_topic_items(bootstrap: str, topic: str, *, settle_s: float = 3.0) -> tuple[int, int]:
    """(items, distinct result ids) in the batch-form messages of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                      fetch_max_bytes=64 * 1_048_576, max_partition_fetch_bytes=16 * 1_048_576)
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        c.assign(tps)
        end = c.end_offsets(tps)
        items, ids = 0, set[str]()
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s and any(c.position(tp) < end[tp] for tp in tps):
            for records in c.poll(timeout_ms=500).values():
                for r in records:
                    batch = orjson.loads(r.value)
                    batch = batch if isinstance(batch, list) else [batch]
                    items += len(batch)
                    ids.update(d["result_id"] for d in batch)
                quiet_since = time.monotonic()
        return items, len(ids)
    finally:
        c.close()


def main(argv: list[str] | None = None) -> int:
    from pipeline.localstack.kafka import KafkaBroker

    args = sys.argv[1:] if argv is None else argv
    rows = int(args[0]) if args else 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        work = Path(tmp)
        csv_path = work / "results.csv"
        t = time.monotonic()
        expected = write_csv(csv_path, rows)
        size_mib = csv_path.stat().st_size / 1_048_576
        print(f"generated {rows:,} rows ({size_mib:.0f} MiB) in {time.monotonic() - t:.1f} s")
        broker = KafkaBroker(work / "kafka").start()
        try:
            topic = "bench.import.results"
            env = {
                "FOODRISK_BROKER_URL": broker.url,
                "FOODRISK_RESULTS_TOPIC": topic, "FOODRISK_DATA_DIR": str(work / "var"),
                "FOODRISK_TOPIC_PARTITIONS": "4",
            }
            s = run_import_cli(csv_path, env)
            print(f"import: {s['rows']:,} rows in {s['seconds']:.1f} s = {s['rows_per_s']:,.0f} rows/s, "
                  f"{s['messages']} messages; peak RSS {s['peak_rss_mib']:.0f} MiB "
                  f"(duplicate filter {s['id_filter_mib']:.1f} MiB)")
            print(f"        accepted {s['accepted']:,}  rejected {s['rejected']:,}  duplicates {s['duplicates']:,}  "
                  f"not delivered {s['not_delivered']}")
            items, distinct = count_topic_items(broker.bootstrap, topic)
            print(f"topic:  {items:,} results in the topic, {distinct:,} distinct ids")
            ok = (
                s["rows"] == expected.rows and s["accepted"] == expected.accepted
                and s["rejected"] == expected.rejected and s["duplicates"] == expected.duplicates
                and s["not_delivered"] == 0 and items == distinct == expected.accepted
                and s["accepted"] + s["rejected"] + s["duplicates"] == rows
            )
            print(f"every row accounted for: {'yes' if ok else 'NO'} (expected {expected})")
            return 0 if ok else 1
        finally:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
