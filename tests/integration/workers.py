"""A real `foodrisk worker` process for the end-to-end tests, queried through its HTTP port."""

from __future__ import annotations

import os
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.localstack.process import ChildProcess, free_port, port_open
from pipeline.query import QueryRejected, WorkerUnreachable, ask_worker


class WorkerProcess:
    def __init__(self, workdir: Path, *, broker_url: str, clickhouse_url: str, app_id: str,
                 topics: dict[str, str], **env: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        e = dict(os.environ)
        e.update(
            FOODRISK_BROKER_URL=broker_url,
            FOODRISK_BROKER_FLAVOR="tansu",
            FOODRISK_CLICKHOUSE_URL=clickhouse_url,
            FOODRISK_APP_ID=app_id,
            FOODRISK_WEB_PORT=str(self.port),
            FOODRISK_DATA_DIR=str(workdir),
            FOODRISK_SINK_MAX_AGE_S="0.2",
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
            ready=lambda: port_open("127.0.0.1", self.port),
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

    def consumed(self) -> float:
        """Messages this worker read from the results topic (its /metrics); 0 while it cannot answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        m = re.search(r"^foodrisk_results_consumed_total (\S+)$", text, re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    def query(self, sql: str, **params: Any) -> list[list[Any]]:
        _, rows, _ = ask_worker("127.0.0.1", self.port, sql, params=params or None, timeout_s=30)
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
