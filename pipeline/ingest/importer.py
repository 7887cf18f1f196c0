"""`foodrisk import FILE.csv`: a CSV or LIMS export into the results topic, in constant memory.

The file is read row by row (``csv.reader`` over the open file); each row is mapped to a wire-format
v1 result (a column mapping: the wire format's own column names by default, or a small YAML file for
a LIMS export, see ``deploy/import/lims-mapping.example.yaml``), validated with the decoder the
screening agent uses, and published in the batch form (JSON arrays of up to FOODRISK_MAX_BATCH_ITEMS
results per message). Every row ends as exactly one of: accepted, rejected (line number and reasons
in the rejects file), duplicate (its result_id was accepted on an earlier line), or, if the broker
did not acknowledge its message, not delivered (also in the rejects file).

Memory: the rows in flight (at most a few chunks) plus the duplicate filter, a table of 64-bit
hashes of the accepted result ids (:class:`IdSet`): 8 bytes a slot at most half full, so about 16 MiB
for 1,000,000 ids (a Python ``set`` of the id strings would take ~100 MiB).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import resource
import sys
import time
from array import array
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol

import orjson

from pipeline.ingest.csv_mapping import ColumnMapping, CsvImportError
from schemas.reference import Reference
from schemas.result import MAX_MESSAGE_BYTES, InvalidResult, parse_result, result_key

log = logging.getLogger(__name__)

CHUNK_BYTES: Final = 512 * 1024
MAX_IN_FLIGHT: Final = 8  # chunks sent but not yet acknowledged; more waits (backpressure)

# -- the duplicate filter --------------------------------------------------------------------------


class IdSet:
    """A set of 64-bit hashes of strings in one flat array (open addressing, at most half full).

    8 bytes a slot: ~16 MiB for 1M ids (32 MiB for a moment while it doubles). Two different ids
    share a hash with probability ~n²/2⁶⁵ (3e-8 for a million), which would count a row as a
    duplicate wrongly.
    """

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._slots = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return len(self._slots) * self._slots.itemsize

    @staticmethod
    def _hash(key: str) -> int:
        h = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
        return h or 1  # 0 marks an empty slot

    def add(self, key: str) -> bool:
        """Add ``key``; False when it was there already."""
        h = self._hash(key)
        slots, mask = self._slots, self._mask
        i = h & mask
        while True:
            v = slots[i]
            if v == 0:
                break
            if v == h:
                return False
            i = (i + 1) & mask
        slots[i] = h
        self._n += 1
        if self._n * 2 > len(slots):
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        self._mask = len(self._slots) - 1
        slots, mask = self._slots, self._mask
        for h in old:
            if h:
                i = h & mask
                while slots[i]:
                    i = (i + 1) & mask
                slots[i] = h


# -- the run ---------------------------------------------------------------------------------------


class Sent(Protocol):
    """What a publisher's send returns (kafka-python's FutureRecordMetadata has this shape)."""

    @property
    def is_done(self) -> bool: ...

    def get(self, timeout: float | None = None) -> Any: ...


class Publisher(Protocol):
    def send(self, key: bytes, value: bytes) -> Sent: ...

    def flush(self) -> None: ...


@dataclass
class ImportSummary:
    file: str
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    not_delivered: int = 0
    messages: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0
    peak_rss_mib: float = 0.0
    id_filter_mib: float = 0.0
    rejects_file: str | None = None

    @property
    def ok(self) -> bool:
        return self.rejected == 0 and self.not_delivered == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [
            f"{self.file}: {self.rows} rows in {self.seconds:.1f} s ({self.rows_per_s:,.0f} rows/s), "
            f"{self.messages} messages",
            f"  accepted       {self.accepted}",
            f"  rejected       {self.rejected}",
            f"  duplicates     {self.duplicates}  (result_id accepted on an earlier line)",
        ]
        if self.not_delivered:
            lines.append(f"  not delivered  {self.not_delivered}  (the broker did not acknowledge; re-run the import)")
        if self.rejects_file and (self.rejected or self.duplicates or self.not_delivered):
            lines.append(f"  line numbers and reasons: {self.rejects_file}")
        lines.append(f"  peak memory {self.peak_rss_mib:.0f} MiB (duplicate filter {self.id_filter_mib:.1f} MiB)")
        return "\n".join(lines)


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux: VmHWM of /proc/self/status (getrusage's ru_maxrss
    keeps the parent's high-water mark across fork and exec, so a child started by a big process
    would report the parent's); elsewhere ru_maxrss."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


class _Progress:
    def __init__(self, out: IO[str], total_bytes: int, *, every_s: float) -> None:
        self.out, self.total, self.every_s = out, total_bytes, every_s
        self.started = self.last = time.monotonic()
        self.tty = out.isatty()

    def show(self, rows: int, pos: int, s: ImportSummary, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.every_s:
            return
        self.last = now
        rate = rows / max(now - self.started, 1e-9)
        frac = min(1.0, pos / self.total) if self.total else 1.0
        bar = "#" * int(frac * 24)
        line = (f"[{bar:<24}] {frac:4.0%} {rows:>10,} rows {rate:>9,.0f} rows/s  "
                f"accepted {s.accepted:,} rejected {s.rejected:,} duplicates {s.duplicates:,}")
        if self.tty:
            self.out.write("\r" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


def run_import(
    path: Path,
    *,
    mapping: ColumnMapping,
    reference: Reference,
    publisher: Publisher | None,
    rejects_path: Path,
    max_batch_items: int,
    now: datetime | None = None,
    progress: IO[str] | None = None,
    progress_every_s: float | None = None,
) -> ImportSummary:
    """Import ``path``; ``publisher`` None validates only (a dry run)."""
    now = now or datetime.now(UTC)
    summary = ImportSummary(file=str(path), rejects_file=str(rejects_path))
    seen = IdSet()
    started = time.monotonic()
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise CsvImportError(f"cannot open {path}: {exc}") from None
    total = os.fstat(raw.fileno()).st_size
    every = progress_every_s if progress_every_s is not None else (0.5 if progress and progress.isatty() else 5.0)
    bar = _Progress(progress, total, every_s=every) if progress is not None else None
    in_flight: deque[tuple[Sent, list[int]]] = deque()
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    with raw, rejects_path.open("w", newline="", encoding="utf-8") as rej_file:
        rejects = csv.writer(rej_file)
        rejects.writerow(["line", "outcome", "result_id", "reasons"])

        def settle(block: bool) -> None:
            while in_flight and (block or in_flight[0][0].is_done or len(in_flight) > MAX_IN_FLIGHT):
                fut, lines = in_flight.popleft()
                try:
                    fut.get(timeout=120)
                except Exception as exc:  # noqa: BLE001 - any send failure: those rows were not delivered
                    summary.not_delivered += len(lines)
                    summary.accepted -= len(lines)
                    why = f"not delivered: {type(exc).__name__}: {exc}"
                    rejects.writerows([ln, "not_delivered", "", why] for ln in lines)

        chunk: list[bytes] = []
        chunk_lines: list[int] = []
        chunk_devices: set[str] = set()
        chunk_size = 2

        def flush_chunk() -> None:
            nonlocal chunk, chunk_lines, chunk_devices, chunk_size
            if not chunk:
                return
            key = next(iter(chunk_devices)) if len(chunk_devices) == 1 else "import:" + path.name
            value = b"[" + b",".join(chunk) + b"]"
            summary.messages += 1
            if publisher is not None:
                in_flight.append((publisher.send(key.encode(), value), chunk_lines))
                settle(block=False)
            chunk, chunk_lines, chunk_devices, chunk_size = [], [], set(), 2

        text = io.TextIOWrapper(raw, encoding=mapping.encoding, newline="")
        reader = csv.reader(text, delimiter=mapping.delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise CsvImportError(f"{path} is empty (expected a header line)") from None
        except UnicodeDecodeError as exc:
            raise CsvImportError(
                f"{path} is not {mapping.encoding} text ({exc}); set `encoding:` in the mapping"
            ) from None
        to_result = mapping.bind(header)
        line_no = 1
        try:
            for row in reader:
                line_no = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                summary.rows += 1
                item = to_result(row)
                try:
                    result = parse_result(item, reference=reference, now=now)
                    encoded = orjson.dumps(item)
                    if len(encoded) > MAX_MESSAGE_BYTES:
                        raise InvalidResult([])  # noqa: TRY301 - same path as any invalid row
                except InvalidResult as exc:
                    summary.rejected += 1
                    reasons = "; ".join(f"{e.field}: {e.reason}" for e in exc.errors) or "result over 64 KiB"
                    rid = item.get("result_id")
                    rejects.writerow([line_no, "rejected", rid if isinstance(rid, str) else "", reasons])
                    continue
                if not seen.add(result_key(result.device_id, result.result_id)):  # a result is (device, id)
                    summary.duplicates += 1
                    rejects.writerow([line_no, "duplicate", result.result_id, "result_id accepted on an earlier line"])
                    continue
                summary.accepted += 1
                if chunk and (len(chunk) >= max_batch_items or chunk_size + len(encoded) > CHUNK_BYTES):
                    flush_chunk()
                chunk.append(encoded)
                chunk_lines.append(line_no)
                chunk_devices.add(result.device_id)
                chunk_size += len(encoded) + 1
                if bar is not None:
                    bar.show(summary.rows, raw.tell(), summary)
        except UnicodeDecodeError as exc:
            raise CsvImportError(
                f"{path} line {line_no + 1}: not {mapping.encoding} text ({exc}); set `encoding:` in the mapping"
            ) from None
        except csv.Error as exc:
            raise CsvImportError(f"{path} line {reader.line_num}: {exc}") from None
        flush_chunk()
        if publisher is not None:
            publisher.flush()
        settle(block=True)
        if bar is not None:
            bar.show(summary.rows, total, summary, final=True)
    summary.seconds = time.monotonic() - started
    summary.rows_per_s = summary.rows / max(summary.seconds, 1e-9)
    summary.peak_rss_mib = peak_rss_mib()
    summary.id_filter_mib = seen.nbytes / 1_048_576
    return summary


class KafkaPublisher:
    """kafka-python producer for the results topic (acks=all, idempotent, batching)."""

    def __init__(self, topic: str, options: Mapping[str, Any], bootstrap: list[str]) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="foodrisk-import",
            max_request_size=4 * 1_048_576,
            **options,
        )

    def send(self, key: bytes, value: bytes) -> Sent:
        fut: Sent = self._producer.send(self.topic, key=key, value=value)
        return fut

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close(timeout=30)


def main_import(args: Any, settings: Any) -> int:
    """The `foodrisk import` command (called from pipeline.cli)."""
    from pipeline.refdata import load_configured_reference
    from pipeline.settings import SettingsError, kafka_python_producer_options
    from pipeline.topics import ensure_topics

    path = Path(args.file)
    mapping = ColumnMapping.from_yaml(Path(args.mapping)) if args.mapping else ColumnMapping.wire_format()
    rejects = Path(args.rejects) if args.rejects else path.with_name(path.name + ".rejects.csv")
    reference = load_configured_reference(settings)
    publisher: KafkaPublisher | None = None
    if not args.dry_run:
        if settings.embedded:
            raise SettingsError(
                "import publishes to a running broker: set FOODRISK_BROKER_URL=kafka://host:port (or use --dry-run)"
            )
        bootstrap = settings.bootstrap_servers()
        ensure_topics(settings, bootstrap)
        publisher = KafkaPublisher(settings.results_topic, kafka_python_producer_options(settings), bootstrap)
    try:
        summary = run_import(
            path, mapping=mapping, reference=reference, publisher=publisher, rejects_path=rejects,
            max_batch_items=settings.max_batch_items, progress=None if args.quiet else sys.stderr,
        )
    finally:
        if publisher is not None:
            publisher.close()
    if args.json:
        sys.stdout.write(orjson.dumps(summary.as_dict()).decode() + "\n")
    else:
        sys.stdout.write(summary.text() + "\n")
    return 0 if summary.ok else 1
