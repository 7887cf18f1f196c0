"""`foodrisk run` / `make run`: the main job on the embedded default.

Embedded broker + a worker process (chdb inside it) + the simulated device fleet. Prints progress,
each alert as it fires, and on exit a summary read back from ClickHouse. Nothing started here
outlives it: the broker and the worker are children stopped by PID, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import orjson
from kafka import KafkaConsumer, TopicPartition

from pipeline.localstack.process import ChildProcess, free_port, port_open
from pipeline.query.client import WorkerUnreachable, analyst_token, ask_worker, no_token_hint
from pipeline.query.guard import QueryRejected
from pipeline.query.render import render
from pipeline.settings import Settings, kafka_python_security_options
from pipeline.simulator.publish import FleetProgress, run_fleet
from pipeline.topics import ensure_topics, group_lag
from pipeline.worker import broker_for
from schemas.alert import SINGLE_RESULT_KINDS
from sinks.clickhouse import redact_url

KIND_CLUSTER = "supplier_cluster"
PANEL_FAMILIES = frozenset({"veterinary_drug", "banned_compound", "additive"})  # the families of issue 20

SUMMARY_QUERIES: list[tuple[str, str]] = [
    (
        "Tests and positive rate by district and site type",
        """SELECT district, site_type, count() AS tests,
                  countIf(verdict IN ('positive', 'exceeds', 'banned')) AS non_compliant,
                  round(100 * non_compliant / tests, 2) AS pct
           FROM foodrisk.results FINAL
           GROUP BY district, site_type ORDER BY district, site_type""",
    ),
    (
        "Top commodity x analyte findings",
        """SELECT commodity, analyte, countIf(verdict = 'banned') AS banned,
                  countIf(verdict = 'exceeds') AS exceeds, countIf(verdict = 'positive') AS positive,
                  round(max(ratio), 2) AS max_ratio
           FROM foodrisk.results FINAL
           WHERE verdict IN ('positive', 'exceeds', 'banned')
           GROUP BY commodity, analyte ORDER BY banned + exceeds + positive DESC LIMIT 10""",
    ),
    (
        "Alerts by kind",
        """SELECT kind, classification, risk, uniqExact(alert_id) AS alerts
           FROM foodrisk.alerts FINAL GROUP BY kind, classification, risk ORDER BY alerts DESC""",
    ),
    (
        "Findings by family (single-result alerts; family from details)",
        """SELECT visitParamExtractString(details, 'family') AS family, kind,
                  uniqExact(alert_id) AS alerts, uniqExact(analyte) AS analytes,
                  arrayStringConcat(arraySlice(groupUniqArray(analyte), 1, 4), ',') AS some_analytes
           FROM foodrisk.alerts FINAL
           WHERE family != ''
           GROUP BY family, kind ORDER BY family, alerts DESC""",
    ),
    (
        "Dead letters by kind",
        """SELECT error_kind, count() AS messages FROM foodrisk.deadletters FINAL GROUP BY error_kind""",
    ),
]


def alert_line(a: dict[str, Any]) -> str:
    """One readable line for an alert (its English summary up to the site details)."""
    label = f"{a.get('classification')}/{a.get('risk')}"
    summary = str(a.get("summary_en", "")).split("; site ")[0]
    where = a.get("district") or "-"
    return f"ALERT {label:<29} {a.get('kind', '?'):<24} {where:<10} {summary}"


class ClusterFamilies:
    """Which families of findings each supplier cluster was built from: the clusters' evidence (result
    ids, as the alert grows) matched to the single-result alerts of those results (kind, family)."""

    def __init__(self) -> None:
        self.finding: dict[str, tuple[str, str, str]] = {}  # result_id -> (family, kind, analyte)
        self.clusters: dict[str, dict[str, Any]] = {}  # alert_id -> the latest cluster alert
        self.evidence: dict[str, set[str]] = {}  # alert_id -> every result id it named

    def add(self, a: dict[str, Any]) -> None:
        kind = a.get("kind")
        details = a.get("details") or {}
        if kind in SINGLE_RESULT_KINDS and a.get("evidence"):
            self.finding[a["evidence"][0]] = (str(details.get("family") or "?"), str(kind), str(a.get("analyte")))
        elif kind == KIND_CLUSTER and a.get("alert_id"):
            self.clusters[a["alert_id"]] = a
            self.evidence.setdefault(a["alert_id"], set()).update(a.get("evidence") or ())

    def of(self, alert_id: str) -> Counter[tuple[str, str, str]]:
        """(family, kind, analyte) -> findings of the cluster's results."""
        return Counter(self.finding[r] for r in self.evidence.get(alert_id, ()) if r in self.finding)

    def lines(self, limit: int = 8) -> list[str]:
        """One line per cluster, those built from veterinary drugs, banned compounds or additives first."""
        rows = []
        for alert_id, a in self.clusters.items():
            found = self.of(alert_id)
            other = any(f in PANEL_FAMILIES for f, _, _ in found)
            what = ", ".join(f"{k} {an} ({f}) x{n}" for (f, k, an), n in sorted(found.items()))
            line = (f"CLUSTER {a.get('classification')}/{a.get('risk')} {a.get('supplier_id') or '-'} "
                    f"{a.get('commodity')}: {what or 'no single-result alert seen'}")
            rows.append((not other, -sum(found.values()), line))
        return [line for _, _, line in sorted(rows)[:limit]]


class AlertPrinter(threading.Thread):
    """Reads the alerts topic from the start and prints one line per alert."""

    def __init__(self, settings: Settings, bootstrap: list[str], out: TextIO) -> None:
        super().__init__(name="alert-printer", daemon=True)
        self._settings, self._servers, self._out = settings, bootstrap, out
        self._stop_event = threading.Event()
        self.seen: set[str] = set()
        self.by_kind: Counter[str] = Counter()
        self.by_family: Counter[str] = Counter()
        self.clusters = ClusterFamilies()

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self._servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **kafka_python_security_options(self._settings),
        )
        try:
            topic = self._settings.alerts_topic
            parts = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
            while not self._stop_event.is_set():
                for records in consumer.poll(timeout_ms=300).values():
                    for rec in records:
                        self._print(rec.value)
        finally:
            consumer.close()

    def _print(self, value: bytes) -> None:
        try:
            a = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(a, dict):
            return
        self.clusters.add(a)  # updates too: a cluster's evidence grows under one id
        if a.get("alert_id") in self.seen:
            return
        self.seen.add(a["alert_id"])
        self.by_kind[a.get("kind", "?")] += 1
        family = (a.get("details") or {}).get("family")
        if family:
            self.by_family[str(family)] += 1
        print("  " + alert_line(a), file=self._out, flush=True)

    def stop(self) -> None:
        self._stop_event.set()


def _worker_process(
    settings: Settings, bootstrap: list[str], web_port: int, query_port: int, logdir: Path
) -> ChildProcess:
    env = dict(os.environ)
    env.update(
        FOODRISK_BROKER_URL="kafka://" + ",".join(bootstrap),
        FOODRISK_WEB_PORT=str(web_port),
        FOODRISK_QUERY_HOST="127.0.0.1",
        FOODRISK_QUERY_PORT=str(query_port),
        FOODRISK_CLICKHOUSE_URL=settings.clickhouse_url,
        FOODRISK_DATA_DIR=str(settings.data_dir.resolve()),
    )
    return ChildProcess(
        "worker",
        [sys.executable, "-m", "pipeline.cli", "worker"],
        log_path=logdir / "worker.log",
        ready=lambda: port_open(settings.web_host, web_port) and port_open("127.0.0.1", query_port),
        ready_timeout=60,
        env=env,
    )


def run_demo(
    settings: Settings,
    *,
    duration_s: float | None,
    speed: float,
    rate_per_sim_hour: float | None,
    seed: int,
    out: TextIO = sys.stdout,
) -> int:
    logdir = settings.data_dir / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        stop.set()

    def on_int(signum: int, frame: Any) -> None:
        # The first Ctrl-C asks the fleet to stop, like SIGTERM: a KeyboardInterrupt raised wherever
        # the main thread happens to be (a Kafka client call, a query to the worker) could be caught
        # on the way and leave the fleet running (seen once under load: `foodrisk run` had not
        # stopped 120 s after SIGINT, its worker still busy). A second Ctrl-C interrupts at once.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.signal(signal.SIGINT, on_int)
    web_port = settings.web_port if not port_open(settings.web_host, settings.web_port) else free_port()
    query_port = settings.query_port
    if not query_port or query_port == web_port or port_open("127.0.0.1", query_port):
        query_port = free_port()

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    try:
        with broker_for(settings, settings.data_dir / "stack") as bootstrap:
            ch_url = redact_url(settings.clickhouse_url)
            say(f"foodrisk: broker {','.join(bootstrap)}, ClickHouse {ch_url}")
            ensure_topics(settings, bootstrap)
            worker = _worker_process(settings, bootstrap, web_port, query_port, logdir)
            say(f"foodrisk: starting the worker (log {worker.log_path}) ...")
            with worker:
                ask = _Asker(settings, query_port)
                say(f"foodrisk: worker up (pid {worker.pid}), http://{settings.web_host}:{web_port}/metrics;"
                    " simulating devices"
                    + (f" for {duration_s:.0f}s" if duration_s else " until Ctrl-C") + f" at {speed:g}x")
                printer = AlertPrinter(settings, bootstrap, out)
                printer.start()
                last = [0.0]

                def tick(p: FleetProgress) -> None:
                    if p.elapsed_s - last[0] >= 5:
                        last[0] = p.elapsed_s
                        stored = _count(ask, "SELECT count() FROM foodrisk.results FINAL")
                        say(f"  ... {p.elapsed_s:5.0f}s  sim {p.sim_time:%Y-%m-%d %H:%M}Z  sent {p.sent}"
                            f" ({p.sent / max(p.elapsed_s, 0.001):.0f}/s)  stored {stored}"
                            f"  alerts {len(printer.seen)}")

                try:
                    progress = run_fleet(
                        settings, bootstrap, duration_s=duration_s, speed=speed,
                        rate_per_sim_hour=rate_per_sim_hour, seed=seed, should_stop=stop.is_set, on_tick=tick,
                    )
                except KeyboardInterrupt:
                    say("foodrisk: interrupted; draining what was sent")
                    progress = FleetProgress()
                say(f"foodrisk: fleet stopped after {progress.sent} messages ({progress.failed} not delivered);"
                    " waiting for the worker to store them")
                left = _drain(settings, bootstrap, timeout_s=60)
                if left:
                    say(f"foodrisk: {left} results still unprocessed after 60 s (see {worker.log_path})")
                time.sleep(1.5)  # let the last alerts reach the printer
                printer.stop()
                _summary(ask, say)
                say(f"foodrisk: {len(printer.seen)} alerts: "
                    + ", ".join(f"{k} {n}" for k, n in printer.by_kind.most_common()))
                say("foodrisk: single-result alerts by family: "
                    + ", ".join(f"{k} {n}" for k, n in printer.by_family.most_common()))
                cluster_lines = printer.clusters.lines()
                if cluster_lines:
                    say("foodrisk: supplier clusters and the findings they were built from:")
                    for line in cluster_lines:
                        say("  " + line)
                printer.join(timeout=5)
        say("foodrisk: stopped cleanly")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


class _Asker:
    """Queries to the demo's worker on its query port, with the analyst token it wrote at start
    (or FOODRISK_ANALYST_TOKEN)."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings, self.port = settings, port

    def __call__(self, sql: str, *, timeout_s: float = 60.0) -> tuple[list[str], list[list[Any]], bool]:
        token = analyst_token(self.settings)
        if token is None:
            raise QueryRejected(no_token_hint(self.settings))
        return ask_worker("127.0.0.1", self.port, sql, token=token, timeout_s=timeout_s)


def _count(ask: _Asker, sql: str) -> int | str:
    try:
        _, rows, _ = ask(sql, timeout_s=10)
        return int(rows[0][0])
    except (WorkerUnreachable, QueryRejected, IndexError, ValueError):
        return "?"


def _drain(settings: Settings, bootstrap: list[str], *, timeout_s: float) -> int | None:
    """Wait until the worker committed every result sent (its commits follow the ClickHouse writes)."""
    deadline = time.monotonic() + timeout_s
    left = group_lag(settings, bootstrap, settings.app_id, settings.results_topic)
    while time.monotonic() < deadline and left != 0:
        time.sleep(0.5)
        left = group_lag(settings, bootstrap, settings.app_id, settings.results_topic)
    return left


def _summary(ask: _Asker, say: Callable[[str], None]) -> None:
    say("\n== Summary (from ClickHouse) ==")
    for title, sql in SUMMARY_QUERIES:
        try:
            cols, rows, _ = ask(sql)
        except (WorkerUnreachable, QueryRejected) as exc:
            say(f"\n{title}: unavailable ({exc})")
            continue
        say(f"\n{title}\n{render(cols, rows)}")
    say("")
