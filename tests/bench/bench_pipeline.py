"""Pipeline benchmarks on the embedded stack, each figure beside a baseline measured in the same run.

Run through `make bench` (tests/bench/__main__.py). Sizes scale with --scale (1.0 = the issue's sizes).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from agents.batch import Incoming, screen_batch
from agents.records import as_row, result_values
from agents.screened import encode_batch
from agents.screening import SCREENED_PER_MESSAGE
from pipeline.localstack.clickhouse_server import ClickHouseServer
from pipeline.localstack.kafka import KafkaBroker
from pipeline.localstack.process import free_port
from pipeline.query.client import WorkerUnreachable
from pipeline.settings import Settings
from pipeline.topics import ensure_topics
from schemas.reference import default_reference
from schemas.result import parse_result
from schemas.rules import screen
from sinks.clickhouse import ChdbBackend, ClickHouse, DriverBackend
from sinks.ddl import RESULTS_COLUMNS, migrate
from sinks.writer import ClickHouseWriter
from tests.bench.bench_screen import generate_messages
from tests.integration.workers import WorkerProcess

PARTITIONS = 4
ROOT = Path(__file__).resolve().parents[2]
FAUST_FETCH_WAIT_MS = 1500  # the fetch wait faust gives the worker's consumer (fixed in faust)


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""


def now_utc() -> datetime:
    return datetime.now(UTC)


def fresh_messages(n: int, *, seed: int, violations_every: int = 0) -> list[bytes]:
    """``n`` wire-format results sampled recently (so no future/old checks bite), unique ids per seed."""
    out = []
    base = now_utc() - timedelta(hours=6)
    for i, m in enumerate(generate_messages(n, seed=seed)):
        m["result_id"] = f"b{seed}-{i:07d}"
        m["sampled_at"] = (base + timedelta(seconds=i % 3600)).isoformat()
        m["tested_at"] = (base + timedelta(seconds=i % 3600 + 600)).isoformat()
        if violations_every and i % violations_every == 0:
            m.update(commodity="cowpea", analyte="carbofuran", method="lc_msms", value=0.08, unit="mg/kg", loq=0.005)
            m.pop("qualitative", None)
        out.append(orjson.dumps(m))
    return out


def produce(bootstrap: str, topic: str, values: list[bytes], *, keys: list[bytes] | None = None) -> float:
    """Pre-produce with librdkafka (acks=all, idempotent, batching); returns messages/s."""
    import confluent_kafka

    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                  "queue.buffering.max.messages": 1_000_000,
                                  "message.max.bytes": 16 * 1024 * 1024})
    failed: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(err)

    started = time.perf_counter()
    for i, v in enumerate(values):
        key = keys[i] if keys else f"dev-{i % 97}".encode()
        while True:
            try:
                p.produce(topic, key=key, value=v, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(120) or failed:
        raise RuntimeError(f"pre-produce failed: {failed[:3]}")
    return len(values) / (time.perf_counter() - started)


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def latency_figures(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """p50 / p99 of (sent_at, latency) pairs, and the p99 of the first and the last third by send time
    (the embedded broker's delivery slows while it holds more data)."""
    pairs = sorted(pairs)
    third = max(1, len(pairs) // 3)
    every, first, last = (sorted(lat for _, lat in part) for part in (pairs, pairs[:third], pairs[-third:]))
    return {"p50": percentile(every, 0.50), "p99": percentile(every, 0.99),
            "p99_first": percentile(first, 0.99), "p99_last": percentile(last, 0.99), "n": len(every)}


class HopTimer(threading.Thread):
    """A bare aiokafka consumer (no group, the worker's fetch wait) reading a topic from its end: when
    each result arrived, by result id. Under the latency load with no worker, it times the broker's
    own hop (beside a worker it slowed the worker, so the two runs are separate)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, fetch_wait_ms: int) -> None:
        super().__init__(name="hop-timer", daemon=True)
        self.bootstrap, self.topic, self.partitions, self.fetch_wait_ms = bootstrap, topic, partitions, fetch_wait_ms
        self.arrived: dict[str, float] = {}
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._consume())
        except Exception as exc:  # noqa: BLE001 - reported by the bench, which then fails
            self.error = exc
            self.ready.set()

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=self.fetch_wait_ms)
        await c.start()
        try:
            parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            c.assign(parts)
            await c.seek_to_end(*parts)
            self.ready.set()
            while not self.done.is_set():
                batch = await c.getmany(timeout_ms=200)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        self.arrived[orjson.loads(r.value)["result_id"]] = now
        finally:
            await c.stop()


class Bench:
    def __init__(self, workdir: Path, scale: float, log: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.scale = scale
        self.log = log
        self.broker = KafkaBroker(workdir / "kafka")
        self.brokers = 1
        self.server = ClickHouseServer(workdir / "clickhouse")
        self.rows: list[Row] = []
        self.n_single = max(2_000, int(200_000 * scale))

    def __enter__(self) -> Bench:
        self.broker.start()
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.broker.stop()
        self.server.stop()

    @property
    def settings(self) -> Settings:
        return Settings(broker_url=self.broker.url)

    def topic(self, name: str, partitions: int = PARTITIONS) -> str:
        ensure_topics(self.settings, [self.broker.bootstrap], [name], partitions=partitions)
        return name

    # -- ceilings ---------------------------------------------------------------------------------
    def aiokafka_ceiling(self, topic: str, n: int) -> float:
        from aiokafka import AIOKafkaConsumer

        async def run() -> float:
            c = AIOKafkaConsumer(topic, bootstrap_servers=self.broker.bootstrap, group_id=f"bare-aio-{topic}",
                                 auto_offset_reset="earliest", enable_auto_commit=False)
            await c.start()
            count, first = 0, 0.0
            try:
                while count < n:
                    batch = await c.getmany(timeout_ms=1000, max_records=5000)
                    for records in batch.values():
                        if not first and records:
                            first = time.perf_counter()
                        for r in records:
                            orjson.loads(r.value)
                        count += len(records)
            finally:
                await c.stop()
            return n / (time.perf_counter() - first)

        return asyncio.run(run())

    def faust_ceiling(self, topic: str, n: int) -> float:
        out = self.workdir / f"faust-count-{topic}.txt"
        app_id = f"bare-faust-{topic}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.faust_count", self.broker.bootstrap, topic, app_id,
             str(free_port()), str(self.workdir / app_id), str(n), str(out)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 900
            while not out.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bare faust agent did not finish")
                time.sleep(0.3)
            first, last, count = out.read_text().split()
            return int(count) / (float(last) - float(first))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    # -- the worker -------------------------------------------------------------------------------
    def worker(self, tag: str, topics: dict[str, str], clickhouse_url: str, db: str, *, group: str = "",
               **env: str) -> WorkerProcess:
        """A worker of the group ``bench-<results topic><group>``."""
        return WorkerProcess(self.workdir / tag, broker_url=self.broker.url, clickhouse_url=clickhouse_url,
                             app_id=f"bench-{topics['results']}{group}", topics=topics,
                             FOODRISK_CLICKHOUSE_DATABASE=db, FOODRISK_TOPIC_PARTITIONS=str(PARTITIONS), **env)

    def fresh_broker(self) -> None:
        """Start each phase on an empty embedded broker (a second or two), so that no phase reads
        beside the earlier phases' data. (Tansu, the broker used until issue 17, slowed as it held
        more: 4,390/s fresh against 2,080/s beside ~1M messages.)"""
        self.broker.stop()
        self.brokers += 1
        self.broker = KafkaBroker(self.workdir / f"kafka-{self.brokers}")
        self.broker.start()

    def topics(self, name: str) -> dict[str, str]:
        t = {k: f"bench.{name}.{k}" for k in ("results", "alerts", "deadletter")}
        for v in t.values():
            self.topic(v)
        return t

    def drain_rate(
        self, workers: list[WorkerProcess], db: str, expect: int, *, timeout_s: float = 1200, early: bool = True,
        done: Callable[[WorkerProcess], float] | None = None,
    ) -> dict[str, float]:
        """Items/s from the first result stored (or item done) to the last item done, and the peak RSS
        (MiB). Done: a result stored in ClickHouse (the first worker is asked) and, where a worker runs
        early warning (``early``), through its step too (``foodrisk_early_records_total`` summed over
        the workers); or what ``done`` reads from the first worker."""
        w = workers[0]

        def progress() -> tuple[float, float]:
            """(items begun, items done): the clock starts at the first stored result."""
            if done is not None:
                n = done(w)
                return n, n
            stored = float(w.scalar(f"SELECT count() FROM {db}.results"))
            if not early:
                return stored, stored
            return stored, min(stored, sum(x.metric("foodrisk_early_records_total") for x in workers))

        first = last = idle = 0.0  # idle: the last poll that found nothing begun
        at_first = cpu_first = 0.0  # items done (and the workers' CPU seconds) at the first poll that found some begun
        deadline = time.monotonic() + timeout_s
        count = 0
        while time.monotonic() < deadline:
            try:
                begun, finished = progress()
            except (WorkerUnreachable, OSError) as exc:
                raise RuntimeError(f"the worker stopped answering ({exc}); log:\n{w.log_tail()}") from exc
            count = int(finished)
            t = time.perf_counter()
            if not begun:
                idle = t
            elif not first:
                first, at_first = t, finished
                cpu_first = sum(cpu_seconds(x.proc.pid) for x in workers)
            if count >= expect:
                last = t
                cpu_last = sum(cpu_seconds(x.proc.pid) for x in workers)
                break
            time.sleep(0.25)
        if not last:
            raise RuntimeError(f"only {count} of {expect} done; log:\n{w.log_tail()}")
        if last == first and idle:  # all done within one poll (small runs): it began after the idle poll
            first, at_first = idle, 0.0
        rss = max(peak_rss_mib(x.proc.pid) for x in workers)
        # steady: the items done after the first poll over the time after it (what the quix peer's
        # figure counts too: no item done before the clock started is counted)
        steady = (expect - at_first) / max(1e-6, last - first) if at_first < expect else 0.0
        # CPU per item (every thread of the workers): what contention on a shared machine moves least
        cpu_us = (cpu_last - cpu_first) / (expect - at_first) * 1e6 if at_first < expect and cpu_first else 0.0
        return {"rate": expect / max(1e-6, last - first), "rss_mib": rss, "seconds": last - first,
                "steady": steady, "cpu_us": cpu_us}

    def pipeline_single(self, values: list[bytes], agents: str = "", tag: str = "") -> dict[str, float]:
        """``agents``: the worker's FOODRISK_AGENTS (default: all of them); ``tag``: to tell repeated runs
        apart (each its own chdb)."""
        return self.one_worker(f"single{agents.split(',')[0]}{tag}", values, len(values), agents)

    def pipeline_bulk(self, values: list[bytes], batch: int = 500, agents: str = "") -> dict[str, float]:
        chunks = [b"[" + b",".join(values[i:i + batch]) + b"]" for i in range(0, len(values), batch)]
        return self.one_worker(f"bulk{agents.split(',')[0]}", chunks, len(values), agents)

    def one_worker(self, name: str, messages: list[bytes], expect: int, agents: str) -> dict[str, float]:
        """``messages`` pre-produced on an empty broker, drained by one worker into its own chdb."""
        self.fresh_broker()
        t = self.topics(name)
        produce(self.broker.bootstrap, t["results"], messages)
        db = f"bench_{name}"
        env = {"FOODRISK_AGENTS": agents} if agents else {}
        w = self.worker(name, t, f"chdb://{self.workdir / f'chdb-{name}'}", db, **env).start()
        try:
            return self.drain_rate([w], db, expect, early=not agents or "early" in agents.split(","))
        finally:
            w.stop()

    def quix_peer(self, values: list[bytes], *, tag: str = "quix",
                  module: str = "tests.bench.quix_peer") -> dict[str, float]:
        """The quix-streams peer (tests/bench/quix_peer.py) on ``values`` pre-produced on an empty broker
        as for the foodrisk row: the same job (rows into its own chdb, alerts, dead letters, the
        screened records), committing after the write. Its figure: the messages stored after its
        first write over the time from that write to the last (the steady rate, as ``drain_rate``'s)."""
        self.fresh_broker()
        t = self.topics(tag)
        screened = self.topic(f"bench.{tag}.screened", partitions=1)
        produce(self.broker.bootstrap, t["results"], values)
        out = self.workdir / f"{tag}-figures.json"
        out.unlink(missing_ok=True)
        log_path = self.workdir / f"{tag}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, "--broker", self.broker.bootstrap,
                 "--topic", t["results"], "--alerts", t["alerts"], "--deadletter", t["deadletter"],
                 "--screened", screened, "--clickhouse", f"chdb://{self.workdir / f'chdb-{tag}'}",
                 "--database", f"bench_{tag}", "--group", f"bench-{t['results']}", "--expect", str(len(values)),
                 "--out", str(out)],
                cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 900
            while not out.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{module} did not finish; log:\n{tail}")
                time.sleep(0.2)
            time.sleep(0.1)  # written in one call; let it land
            f = orjson.loads(out.read_text())
            rss = peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        seconds = max(1e-6, f["last_write"] - f["first_write"])
        after_first = max(1.0, f["messages"] - f["first_rows"])
        return {"steady": (f["messages"] - f["first_rows"]) / seconds, "rate": f["messages"] / seconds,
                "seconds": seconds, "rss_mib": rss, "cpu_us": (f["last_cpu"] - f["first_cpu"]) / after_first * 1e6}

    def early_alone(self, values: list[bytes]) -> dict[str, float]:
        """An early-warning worker alone (FOODRISK_AGENTS=early) on pre-produced screened records,
        in messages of SCREENED_PER_MESSAGE as the screening agent writes them; done when every
        record went through a detector step (foodrisk_early_records_total)."""
        self.fresh_broker()
        t = self.topics("early")
        t["screened"] = self.topic("bench.early.screened", partitions=1)
        ref = default_reference()
        records = []
        for i in range(0, len(values), 500):
            items = [Incoming(t["results"], 0, i + k, time.time(), None, v) for k, v in enumerate(values[i:i + 500])]
            records.extend(screen_batch(items, reference=ref, columns=RESULTS_COLUMNS, watch_fraction=0.8,
                                        now=now_utc()).screened)
        messages = [encode_batch(records[i:i + SCREENED_PER_MESSAGE])
                    for i in range(0, len(records), SCREENED_PER_MESSAGE)]
        produce(self.broker.bootstrap, t["screened"], messages)
        w = self.worker("early", t, f"chdb://{self.workdir / 'chdb-early'}", "bench_early",
                        FOODRISK_AGENTS="early").start()
        try:
            return self.drain_rate([w], "bench_early", len(records),
                                   done=lambda x: x.metric("foodrisk_early_records_total"))
        finally:
            w.stop()

    def pipeline_server(self, name: str, values: list[bytes], workers: int) -> dict[str, float]:
        self.fresh_broker()
        t = self.topics(name)
        produce(self.broker.bootstrap, t["results"], values)
        db = f"bench_{name}"
        url = f"clickhouse://default:@127.0.0.1:{self.server.tcp_port}"
        return self.run_workers([self.worker(f"{name}-{k}", t, url, db) for k in range(workers)], db, len(values))

    def pipeline_split(self, values: list[bytes]) -> dict[str, float]:
        """One worker screens (and archives), another runs early warning: two groups, one each."""
        self.fresh_broker()
        t = self.topics("split")
        produce(self.broker.bootstrap, t["results"], values)
        db = "bench_split"
        url = f"clickhouse://default:@127.0.0.1:{self.server.tcp_port}"
        screen = self.worker("split-screen", t, url, db, FOODRISK_AGENTS="screen,archive,deliver")
        early = self.worker("split-early", t, url, db, group="-early", FOODRISK_AGENTS="early")
        return self.run_workers([screen, early], db, len(values))

    def run_workers(self, workers: list[WorkerProcess], db: str, expect: int) -> dict[str, float]:
        """Start ``workers``, measure ``drain_rate`` (the first one is asked), stop them."""
        for w in workers:
            w.start()
        try:
            return self.drain_rate(workers, db, expect)
        finally:
            for w in workers:
                w.stop()

    def steady_load(self, topic: str, values: list[bytes], rate: float) -> tuple[dict[str, float], float]:
        """Send ``values`` at ``rate``/s; returns when the broker acknowledged each (by result id, epoch
        seconds) and the rate actually offered. The clock of a result starts at that acknowledgement
        (the broker holds it from then on), not at its create time: the load generator's own send
        queue is not pipeline latency. librdkafka (its own C threads) keeps a steady rate; delivery
        reports are served by poll() between sends. Keys spread over the partitions."""
        import confluent_kafka

        p = confluent_kafka.Producer({"bootstrap.servers": self.broker.bootstrap, "acks": "all",
                                      "enable.idempotence": True})
        sent_at: dict[str, float] = {}
        failed: list[Any] = []

        def acked_for(rid: str) -> Callable[[Any, Any], None]:
            def acked(err: Any, _msg: Any) -> None:
                if err is None:
                    sent_at[rid] = time.time()
                else:
                    failed.append(err)

            return acked

        started = time.perf_counter()
        for i, v in enumerate(values):
            p.produce(topic, key=f"dev-{i % 16}".encode(), value=v, on_delivery=acked_for(orjson.loads(v)["result_id"]))
            p.poll(0)
            ahead = (i + 1) / rate - (time.perf_counter() - started)
            while ahead > 0:
                p.poll(min(ahead, 0.001))  # delivery reports while waiting for the next send
                ahead = (i + 1) / rate - (time.perf_counter() - started)
        sending_s = time.perf_counter() - started
        if p.flush(60) or failed:
            raise RuntimeError(f"load not delivered: {failed[:3]}")
        return sent_at, len(values) / sending_s

    def broker_hop(self, rate: float, seconds: float) -> dict[str, float]:
        """The baseline of the alert latency: the same load on an empty broker (as that phase) with no worker, timed
        from the broker's acknowledgement to a bare aiokafka consumer (no group, the worker's fetch wait)."""
        self.fresh_broker()
        topic = self.topic("bench.hop.results")
        n = int(rate * seconds)
        hop = HopTimer(self.broker.bootstrap, topic, PARTITIONS, FAUST_FETCH_WAIT_MS)
        hop.start()
        try:
            if not hop.ready.wait(60) or hop.error:
                raise RuntimeError(f"the bare consumer did not start: {hop.error!r}")
            sent_at, offered = self.steady_load(topic, fresh_messages(n, seed=97, violations_every=100), rate)
            deadline = time.monotonic() + 120
            while len(hop.arrived) < n and time.monotonic() < deadline and not hop.error:
                time.sleep(0.2)
        finally:
            hop.done.set()
            hop.join(10)
        hops = [(sent_at[rid], max(0.0, at - sent_at[rid])) for rid, at in hop.arrived.items() if rid in sent_at]
        if len(hops) < n:
            raise RuntimeError(f"the bare consumer received {len(hops)} of {n} results ({hop.error!r})")
        return {**latency_figures(hops), "offered_per_s": offered}

    def alert_latency(self, rate: float, seconds: float, tag: str = "latency", beside: str = "",
                      **env: str) -> dict[str, float]:
        """The single-result alerts' latency through one worker (every agent; ``env``: its settings,
        e.g. FOODRISK_AGENTS) under a steady load of ``rate`` results/s. ``beside``: the FOODRISK_AGENTS
        of a second worker (its own group and chdb) running on the same machine meanwhile, e.g. early."""
        self.fresh_broker()
        from kafka import KafkaConsumer, TopicPartition

        t = self.topics(tag)
        db = f"bench_{tag}"
        w = self.worker(tag, t, f"chdb://{self.workdir / f'chdb-{tag}'}", db, **env).start()
        other = (self.worker(f"{tag}-beside", t, f"chdb://{self.workdir / f'chdb-{tag}-beside'}", db,
                             group="-beside", FOODRISK_AGENTS=beside).start() if beside else None)
        n = int(rate * seconds)
        try:
            # Warm up: the worker must own its partitions before the clock starts (a group join takes seconds).
            produce(self.broker.bootstrap, t["results"], fresh_messages(40, seed=98))
            w.wait_for(f"SELECT count() FROM {db}.results", 40, timeout_s=120)
            sent_at, offered = self.steady_load(t["results"], fresh_messages(n, seed=99, violations_every=100), rate)
            c = KafkaConsumer(bootstrap_servers=self.broker.bootstrap, auto_offset_reset="earliest")
            parts = [TopicPartition(t["alerts"], q) for q in c.partitions_for_topic(t["alerts"]) or set()]
            c.assign(parts)
            c.seek_to_beginning()
            latencies: list[tuple[float, float]] = []
            expected = len(range(0, n, 100))
            deadline = time.monotonic() + 120
            seen: set[str] = set()
            while len(seen) < expected and time.monotonic() < deadline:
                for records in c.poll(timeout_ms=500).values():
                    for r in records:
                        a = orjson.loads(r.value)
                        if a["kind"] != "banned_pesticide" or a["alert_id"] in seen or a["evidence"][0] not in sent_at:
                            continue  # only the single-result alerts the injected violations raise
                        seen.add(a["alert_id"])
                        sent = sent_at[a["evidence"][0]]
                        latencies.append((sent, r.timestamp / 1000.0 - sent))
            c.close()
        finally:
            w.stop()
            if other is not None:
                other.stop()
        if not latencies:
            raise RuntimeError("no alert arrived")
        return {**latency_figures(latencies), "expected": expected, "offered_per_s": offered}

    def sink(self) -> list[Row]:
        ref = default_reference()
        n = max(10_000, int(100_000 * self.scale))
        now = now_utc()
        rows = []
        for v in fresh_messages(n, seed=5):
            r = parse_result(v, reference=ref, now=now)
            rows.append(as_row(result_values(r, screen(r, ref), src_topic="t", src_partition=0, src_offset=0,
                                             ingested_at=now), RESULTS_COLUMNS))
        out = []
        backends: list[tuple[str, Callable[[], ClickHouse]]] = [
            ("chdb", lambda: ChdbBackend(self.workdir / "chdb-sink", database="bench_sink")),
            ("server 18.16", lambda: DriverBackend(host="127.0.0.1", port=self.server.tcp_port, database="bench_sink")),
        ]
        for label, make in backends:
            ch = make()
            migrate(ch, "bench_sink")
            writer = ClickHouseWriter(ch, database="bench_sink")
            raw_s, sink_s = [], []
            for _ in range(2):
                t0 = time.perf_counter()
                ch.insert("bench_sink.results", RESULTS_COLUMNS, rows)
                raw_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                asyncio.run(writer.insert("results", RESULTS_COLUMNS, rows))
                sink_s.append(time.perf_counter() - t0)
            writer.close()
            ch.close()
            raw, sink = n / min(raw_s), n / min(sink_s)
            out.append(Row(f"sink into {label}", sink, "rows/s", f"raw insert {raw:,.0f} rows/s", sink / raw,
                           ">= 0.8", sink / raw >= 0.8))
        return out


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (every thread), 0 when gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mib(key: str, pid: int | str = "self") -> float:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM, ...) in MiB; 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mib(pid: int | None) -> float:
    return 0.0 if pid is None else status_mib("VmHWM", pid)


def run_all(workdir: Path, scale: float, log: Callable[[str], None]) -> list[Row]:
    with Bench(workdir, scale, log) as b:
        n = b.n_single
        log(f"generating {n} results")
        values = fresh_messages(n, seed=1)
        ceiling_topic = b.topic("bench.ceiling")
        log("pre-producing for the ceilings")
        prod_rate = produce(b.broker.bootstrap, ceiling_topic, values)
        log("bare aiokafka consumer")
        aio = b.aiokafka_ceiling(ceiling_topic, n)
        log("bare faust agent")
        bare = b.faust_ceiling(ceiling_topic, n)
        b.rows.append(Row("bare aiokafka consumer (orjson, count)", aio, "msgs/s",
                          note=f"pre-produced at {prod_rate:,.0f}/s"))
        b.rows.append(Row("bare faust agent (orjson, count)", bare, "msgs/s", f"aiokafka {aio:,.0f}/s", bare / aio))
        log("pipeline, single-result messages (chdb)")
        single = b.pipeline_single(values)
        b.rows.append(Row("pipeline, single-result messages, into ClickHouse (chdb)", single["rate"], "results/s",
                          f"bare faust {bare:,.0f}/s", single["rate"] / bare, ">= 0.6", single["rate"] / bare >= 0.6))
        log("pipeline, bulk messages (chdb)")
        bulk = b.pipeline_bulk(values)
        b.rows.append(Row("pipeline, batch form (500 per message), into ClickHouse (chdb)", bulk["rate"], "results/s",
                          f"single {single['rate']:,.0f}/s", bulk["rate"] / single["rate"], ">= 20,000/s",
                          bulk["rate"] >= 20_000))
        # Each role in a worker of its own (FOODRISK_AGENTS, README "Scaling"), one at a time: on this
        # 2-core machine, which also runs the broker, two busy workers side by side share the cores.
        alone = "screen"
        log("screening agent alone, single-result messages (chdb)")
        single_alone = b.pipeline_single(values, agents=alone)
        b.rows.append(Row("screening agent alone, single-result messages (chdb)", single_alone["rate"], "results/s",
                          f"bare faust {bare:,.0f}/s", single_alone["rate"] / bare, ">= 0.6",
                          single_alone["rate"] / bare >= 0.6, note=f"FOODRISK_AGENTS={alone}"))
        log("quix-streams peer, single-result messages (chdb)")
        peer = b.quix_peer(values)
        b.rows += peer_rows([single_alone], [peer])
        log("layout: the screening job on a direct batch consumer (chdb)")
        b.rows.append(direct_row([b.quix_peer(values, tag="direct", module="tests.bench.direct_screen")], [peer]))
        log("screening agent alone, batch form (chdb)")
        bulk_alone = b.pipeline_bulk(values, agents=alone)
        b.rows.append(Row("screening agent alone, batch form (500 per message) (chdb)", bulk_alone["rate"],
                          "results/s", f"all agents {bulk['rate']:,.0f}/s", bulk_alone["rate"] / bulk["rate"],
                          ">= 20,000/s", bulk_alone["rate"] >= 20_000, note=f"FOODRISK_AGENTS={alone}"))
        log("early-warning agent alone (screened records)")
        early = b.early_alone(values)
        b.rows.append(Row("early-warning agent alone (screened records, 500 per message)", early["rate"], "records/s",
                          f"all agents {bulk['rate']:,.0f}/s", early["rate"] / bulk["rate"], ">= 20,000/s",
                          early["rate"] >= 20_000, note="FOODRISK_AGENTS=early; the records of the same results, "
                                                        "screened beforehand"))
        log("broker hop: the latency load with no worker, to a bare consumer")
        hop = b.broker_hop(rate=1000, seconds=max(5.0, 60 * scale))
        log("alert latency")
        lat = b.alert_latency(rate=1000, seconds=max(5.0, 60 * scale))
        b.rows.append(Row("broker hop p99 (same load, no worker: result acked -> a bare consumer has it)",
                          hop["p99"] * 1000, "ms",
                          note=f"offered {hop['offered_per_s']:,.0f}/s; p50 {hop['p50'] * 1000:,.0f} ms; p99 over the "
                               f"first / last third of the load {hop['p99_first'] * 1000:,.0f} / "
                               f"{hop['p99_last'] * 1000:,.0f} ms"))
        b.rows.append(Row("alert latency p50 (result acked by the broker -> alert record)", lat["p50"] * 1000, "ms",
                          f"broker hop {hop['p50'] * 1000:,.0f} ms", lat["p50"] / hop["p50"],
                          note=f"{lat['n']:.0f} banned-pesticide alerts timed at 1,000 results/s "
                               f"(offered {lat['offered_per_s']:,.0f}/s) "
                               f"({lat['expected']:.0f} injected, the rest from the generator's own incidents)"))
        b.rows.append(Row("alert latency p99", lat["p99"] * 1000, "ms", f"broker hop {hop['p99'] * 1000:,.0f} ms",
                          lat["p99"] / hop["p99"], "< 500 ms", lat["p99"] < 0.5,
                          note=f"p99 over the first / last third of the load {lat['p99_first'] * 1000:,.0f} / "
                               f"{lat['p99_last'] * 1000:,.0f} ms"))
        log("sink")
        b.rows.extend(b.sink())
        n_scale = max(2_000, int(100_000 * scale))
        log("scale-out: 1 worker, server ClickHouse")
        one = b.pipeline_server("one", fresh_messages(n_scale, seed=21), 1)
        log("scale-out: 2 workers, server ClickHouse")
        two = b.pipeline_server("two", fresh_messages(n_scale, seed=22), 2)
        b.rows.append(Row("scale-out: 2 workers vs 1 (server ClickHouse)", two["rate"], "results/s",
                          f"1 worker {one['rate']:,.0f}/s", two["rate"] / one["rate"],
                          note="2 cores also run the broker, ClickHouse and the load"))
        log("agents apart: a screening worker and an early-warning worker, server ClickHouse")
        split = b.pipeline_split(fresh_messages(n_scale, seed=23))
        b.rows.append(Row("agents apart: screening + early-warning worker vs 1 worker", split["rate"], "results/s",
                          f"1 worker {one['rate']:,.0f}/s", split["rate"] / one["rate"],
                          note="FOODRISK_AGENTS; the early-warning worker is its own group"))
        b.rows.append(Row("worker peak RSS, chdb in-process", single["rss_mib"], "MiB",
                          f"with ClickHouse server {one['rss_mib']:.0f} MiB",
                          single["rss_mib"] / max(1, one["rss_mib"])))
        return b.rows


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def peer_rows(foodrisk: list[dict[str, float]], peer: list[dict[str, float]]) -> list[Row]:
    """The quix-streams peer and foodrisk's screening agent beside it: the steady rate (the results stored
    after the first write or poll, over the time after it) and the CPU per result (every thread of the
    process; what a shared machine's contention moves least) of each, the median of the rounds. A run
    too small to have a second write has no steady figure (0): no ratio then (use --scale 0.25 or more)."""
    fr, qx = median([x["steady"] for x in foodrisk]), median([x["steady"] for x in peer])
    fr_cpu, qx_cpu = median([x["cpu_us"] for x in foodrisk]), median([x["cpu_us"] for x in peer])
    runs = "; ".join(f"{a['steady']:,.0f} vs {q['steady']:,.0f}" for a, q in zip(foodrisk, peer, strict=True))
    cpus = "; ".join(f"{a['cpu_us']:,.0f} vs {q['cpu_us']:,.0f}" for a, q in zip(foodrisk, peer, strict=True))
    return [
        Row("quix-streams peer, screening, single-result messages (chdb)", qx, "results/s",
            note="tests/bench/quix_peer.py: the same pure screening, rows into chdb by a BatchingSink, alerts and "
                 "dead letters by to_topic, the screened records; commits after the write (checkpoint 1 s); "
                 f"peak RSS {max(x['rss_mib'] for x in peer):,.0f} MiB"),
        Row("screening agent alone vs the quix peer, single-result messages", fr, "results/s",
            f"quix peer {qx:,.0f}/s", fr / qx if qx else None, ">= 1.0", fr >= qx if qx else None,
            note=f"steady rates, foodrisk vs peer per round: {runs}"),
        Row("CPU per result: quix peer / screening agent alone", fr_cpu, "us", f"quix peer {qx_cpu:,.0f} us",
            qx_cpu / fr_cpu if fr_cpu else None, ">= 1.0", fr_cpu <= qx_cpu if fr_cpu else None,
            note=f"process CPU (every thread) per result after the first write; foodrisk vs peer per round: {cpus}; "
                 "the foodrisk worker also answers the bench's count() polls"),
    ]


def direct_row(direct: list[dict[str, float]], peer: list[dict[str, float]]) -> Row:
    d, qx = median([x["steady"] for x in direct]), median([x["steady"] for x in peer])
    return Row("layout: screening on a consumer taking message batches directly (no Faust stream)", d, "results/s",
               f"quix peer {qx:,.0f}/s", d / qx if qx else None, ">= 1.0", d >= qx if qx else None,
               note="tests/bench/direct_screen.py (a measurement, not the product): aiokafka getmany of up to 5,000, "
                    "the same screen_batch, ClickHouseWriter and sends, commit after the write, one batch writing "
                    "while the next is screened; runs "
                    + ", ".join(f"{x['steady']:,.0f}/s ({x['cpu_us']:,.0f} us CPU per result)" for x in direct))


def run_single(workdir: Path, scale: float, log: Callable[[str], None], repeat: int) -> list[Row]:
    """`--only single`: the bare Faust ceiling, then foodrisk's screening agent alone and the quix peer,
    ``repeat`` pairs, each phase on a fresh broker with the same pre-produced single-result messages."""
    with Bench(workdir, scale, log) as b:
        n = b.n_single
        log(f"generating {n} results")
        values = fresh_messages(n, seed=1)
        ceiling_topic = b.topic("bench.ceiling")
        produce(b.broker.bootstrap, ceiling_topic, values)
        log("bare faust agent")
        bare = b.faust_ceiling(ceiling_topic, n)
        b.rows.append(Row("bare faust agent (orjson, count)", bare, "msgs/s"))
        foodrisk: list[dict[str, float]] = []
        peer: list[dict[str, float]] = []
        direct: list[dict[str, float]] = []
        for k in range(repeat):
            log(f"round {k + 1}/{repeat}: screening agent alone")
            foodrisk.append(b.pipeline_single(values, agents="screen", tag=str(k)))
            log(f"round {k + 1}/{repeat}: quix peer ({foodrisk[-1]['steady']:,.0f}/s foodrisk)")
            peer.append(b.quix_peer(values, tag=f"quix{k}"))
            log(f"round {k + 1}/{repeat}: direct batch consumer ({peer[-1]['steady']:,.0f}/s quix)")
            direct.append(b.quix_peer(values, tag=f"direct{k}", module="tests.bench.direct_screen"))
            log(f"round {k + 1}/{repeat}: foodrisk {foodrisk[-1]['steady']:,.0f}, quix {peer[-1]['steady']:,.0f}, "
                f"direct {direct[-1]['steady']:,.0f}/s")
        mid = sorted(foodrisk, key=lambda x: x["rate"])[len(foodrisk) // 2]
        b.rows.append(Row("screening agent alone, single-result messages (chdb)", mid["rate"], "results/s",
                          f"bare faust {bare:,.0f}/s", mid["rate"] / bare, ">= 0.6", mid["rate"] / bare >= 0.6,
                          note="FOODRISK_AGENTS=screen; runs " + ", ".join(f"{x['rate']:,.0f}" for x in foodrisk)))
        b.rows += peer_rows(foodrisk, peer)
        b.rows.append(direct_row(direct, peer))
        return b.rows


LATENCY_LAYOUTS: dict[str, dict[str, str]] = {
    "one worker, every agent": {},
    "screening worker (FOODRISK_AGENTS=screen,archive,deliver)": {"FOODRISK_AGENTS": "screen,archive,deliver"},
    "screening worker (FOODRISK_AGENTS=screen,archive,deliver), an early-warning worker beside it": {
        "FOODRISK_AGENTS": "screen,archive,deliver", "beside": "early"},
}


def run_latency(workdir: Path, scale: float, log: Callable[[str], None],
                layouts: dict[str, dict[str, str]] | None = None) -> list[Row]:
    """`--only latency`: the broker hop, then the alert latency at 1,000 results/s through each layout
    (one worker with every agent, as `make bench`; a screening worker of its own, as README "Scaling")."""
    with Bench(workdir, scale, log) as b:
        seconds = max(5.0, 60 * scale)
        log("broker hop")
        hop = b.broker_hop(rate=1000, seconds=seconds)
        rows = [Row("broker hop p99", hop["p99"] * 1000, "ms", note=f"p50 {hop['p50'] * 1000:,.0f} ms")]
        for k, (label, env) in enumerate((layouts or LATENCY_LAYOUTS).items()):
            log(f"alert latency: {label}")
            lat = b.alert_latency(rate=1000, seconds=seconds, tag=f"latency{k}", **env)
            rows += [
                Row(f"alert latency p50, {label}", lat["p50"] * 1000, "ms", f"broker hop {hop['p50'] * 1000:,.0f} ms"),
                Row(f"alert latency p99, {label}", lat["p99"] * 1000, "ms", f"broker hop {hop['p99'] * 1000:,.0f} ms",
                    lat["p99"] / hop["p99"], "< 500 ms", lat["p99"] < 0.5,
                    note=f"{lat['n']:.0f} alerts; offered {lat['offered_per_s']:,.0f}/s; p99 first / last third "
                         f"{lat['p99_first'] * 1000:,.0f} / {lat['p99_last'] * 1000:,.0f} ms"),
            ]
        return rows


def run_batch(workdir: Path, scale: float, log: Callable[[str], None]) -> list[Row]:
    """`--only batch`: the batch-form goal (issue 21: one worker running every agent takes batch-form
    results through early warning at >= 20,000/s on the bench data, which squeezes its results into
    one hour of sampling time from a few hundred vendors), beside each role alone and the agents-apart
    layout, all on one fresh broker each."""
    with Bench(workdir, scale, log) as b:
        n = b.n_single
        log(f"generating {n} results")
        values = fresh_messages(n, seed=1)
        log("pipeline, batch form, every agent (chdb)")
        bulk = b.pipeline_bulk(values)
        b.rows.append(Row("pipeline, batch form (500 per message), every agent, through early warning (chdb)",
                          bulk["rate"], "results/s", "", None, ">= 20,000/s", bulk["rate"] >= 20_000,
                          note=f"peak RSS {bulk['rss_mib']:,.0f} MiB"))
        log("screening agent alone, batch form (chdb)")
        alone = b.pipeline_bulk(values, agents="screen")
        b.rows.append(Row("screening agent alone, batch form (chdb)", alone["rate"], "results/s",
                          f"every agent {bulk['rate']:,.0f}/s", alone["rate"] / bulk["rate"], ">= 20,000/s",
                          alone["rate"] >= 20_000, note="FOODRISK_AGENTS=screen"))
        log("early-warning agent alone (screened records)")
        early = b.early_alone(values)
        b.rows.append(Row("early-warning agent alone (screened records, 500 per message)", early["rate"], "records/s",
                          f"every agent {bulk['rate']:,.0f}/s", early["rate"] / bulk["rate"], ">= 20,000/s",
                          early["rate"] >= 20_000, note="FOODRISK_AGENTS=early"))
        return b.rows
