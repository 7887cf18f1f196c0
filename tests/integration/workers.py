"""A real `foodrisk worker` process for the end-to-end tests, queried through its query port with
the analyst token it writes at start."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.localstack.process import ChildProcess, free_port, port_open
from pipeline.query.client import WorkerUnreachable, ask_worker
from pipeline.query.guard import QueryRejected


def metrics_text(port: int, *, timeout_s: float = 15) -> str:
    """The exposition a worker serves on ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as resp:
        return str(resp.read().decode())


def sample(text: str, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` in ``text`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, label_text = head.partition("{")
        if metric_name != name:
            continue
        got = dict(pair.split("=", 1) for pair in label_text.rstrip("}").split(",") if pair)
        if all(got.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
    return total


class WorkerProcess:
    def __init__(self, workdir: Path, *, broker_url: str, clickhouse_url: str, app_id: str,
                 topics: dict[str, str], **env: str) -> None:
        self.port = free_port()  # the device port (Faust web): ingest, /metrics, /healthz, /readyz
        self.query_port = free_port()  # the analyst query port
        while self.query_port == self.port:
            self.query_port = free_port()
        self.workdir = workdir
        e = dict(os.environ)
        e.update(
            FOODRISK_BROKER_URL=broker_url,
            FOODRISK_BROKER_SESSION_TIMEOUT_S="6",  # a killed worker's partitions move within seconds
            FOODRISK_CLICKHOUSE_URL=clickhouse_url,
            FOODRISK_APP_ID=app_id,
            FOODRISK_WEB_PORT=str(self.port),
            FOODRISK_QUERY_PORT=str(self.query_port),
            FOODRISK_DATA_DIR=str(workdir),
            FOODRISK_SINK_RETRY_CAP_S="2",
            FOODRISK_TOPIC_PARTITIONS="3",
            FOODRISK_RESULTS_TOPIC=topics["results"],
            FOODRISK_ALERTS_TOPIC=topics["alerts"],
            FOODRISK_DEADLETTER_TOPIC=topics["deadletter"],
            # each test its own screened topic (a shared one would feed one test's records to another's tables)
            FOODRISK_SCREENED_TOPIC=topics.get("screened", f"{topics['results']}.screened"),
            FOODRISK_METRICS_LAG_INTERVAL_S="2",
            FOODRISK_CONSUMER_STALL_S="10",
        )
        e.update(env)
        self.proc = ChildProcess(
            f"worker {app_id}",
            [sys.executable, "-m", "pipeline.cli", "worker"],
            log_path=workdir / "worker.log",
            ready=lambda: port_open("127.0.0.1", self.port) and port_open("127.0.0.1", self.query_port),
            ready_timeout=90,
            env=e,
            cwd=Path(__file__).resolve().parents[2],
        )

    def start(self) -> WorkerProcess:
        self.proc.start()
        return self

    def stop(self) -> None:
        self.proc.stop(timeout=30)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.workdir / "worker.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def metric(self, name: str, **labels: str) -> float:
        """One metric of this worker (summed over the samples matching ``labels``)."""
        return sample(metrics_text(self.port), name, **labels)

    def consumed(self) -> float:
        """Messages this worker read from the results topic; 0 while it cannot answer."""
        try:
            return sample(metrics_text(self.port, timeout_s=5), "foodrisk_results_consumed_total")
        except OSError:
            return 0.0

    @property
    def analyst_token(self) -> str:
        """The local analyst token this worker wrote at start."""
        return (self.workdir / "auth" / "local-analyst.token").read_text(encoding="utf-8").strip()

    def query(self, sql: str, **params: Any) -> list[list[Any]]:
        _, rows, _ = ask_worker("127.0.0.1", self.query_port, sql, token=self.analyst_token,
                                params=params or None, timeout_s=30)
        return rows

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.query(sql, **params)[0][0]

    def wait_for(self, sql: str, expected: Any, *, timeout_s: float = 90, **params: Any) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.scalar(sql, **params)
                if last == expected:
                    return last
            except (WorkerUnreachable, QueryRejected) as exc:
                last = exc
            if not self.proc.running:
                raise AssertionError(f"worker died; log:\n{self.log_tail()}")
            time.sleep(0.3)
        raise AssertionError(f"{sql!r}: expected {expected!r}, last {last!r}; worker log:\n{self.log_tail()}")
