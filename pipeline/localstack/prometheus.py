"""Debian's Prometheus (2.42) as a child process: free port, storage under a work folder, given targets.

Used by tests/integration/test_prometheus.py to scrape a real worker. ``promtool`` (same package)
checks metric exposition and rule files. Install both with ``apt-get install -y prometheus``
(``make test`` does it).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeline.localstack.process import ChildProcess, ManagedServer, StartupError, free_port, http_ok

INSTALL_HINT = "apt-get install -y prometheus (as root on Debian; `make test` does it)"
JOB = "foodrisk-worker"


class PrometheusMissing(StartupError):
    """No prometheus (or promtool) binary on this machine."""


def find_binary(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``, or :class:`PrometheusMissing` naming the install command."""
    found = shutil.which(name)
    if not found:
        raise PrometheusMissing(f"{name} is not installed; run: {INSTALL_HINT}")
    return found


class PrometheusError(RuntimeError):
    """The Prometheus HTTP API answered with an error (the message carries its text)."""


class PrometheusServer(ManagedServer):
    """A Prometheus on 127.0.0.1 scraping ``targets`` (host:port) as job ``foodrisk-worker``.

    ``rule_files`` are loaded as they are (absolute paths), so the shipped rules of
    deploy/prometheus/rules/ can be evaluated against a live worker.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        targets: Sequence[str],
        scrape_interval_s: float = 1.0,
        evaluation_interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.targets = list(targets)
        self.scrape_interval_s = scrape_interval_s
        self.evaluation_interval_s = evaluation_interval_s
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.ready_timeout = ready_timeout
        self._child: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def config(self) -> dict[str, Any]:
        interval = f"{max(1, round(self.scrape_interval_s * 1000))}ms"
        return {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": f"{max(1, round(self.evaluation_interval_s * 1000))}ms",
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": self.targets}]}
            ],
        }

    def write_config(self) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def start(self) -> PrometheusServer:
        """Start and wait until ``/-/ready`` answers 200. Raises StartupError (PrometheusMissing)."""
        if self.running:
            return self
        binary = find_binary("prometheus")
        self.write_config()
        self._child = ChildProcess(
            "prometheus",
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            log_path=self.workdir / "prometheus.log",
            ready=self.ready,
            ready_timeout=self.ready_timeout,
            cwd=self.workdir,
        )
        self._child.start()
        return self

    def ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; returns its ``data`` or raises PrometheusError."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - our own URL
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; the result vector (``[{"metric": {...}, "value": [ts, "v"]}, ...]``)."""
        data = self.api("query", query=promql)
        if data.get("resultType") == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def scalar(self, promql: str) -> float | None:
        """The value of a query that yields one element, None when it yields none."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{promql!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, expected: float, *, timeout_s: float = 60.0) -> float:
        """Poll ``promql`` until it equals ``expected``; AssertionError with the last value otherwise."""
        deadline = time.monotonic() + timeout_s
        last: float | Exception | None = None
        while time.monotonic() < deadline:
            try:
                last = self.scalar(promql)
                if last == expected:
                    return expected
            except PrometheusError as exc:
                last = exc
            time.sleep(0.5)
        raise AssertionError(f"Prometheus {promql!r}: expected {expected}, last {last!r} (log {self.workdir})")

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"PrometheusServer({self.url}, {state}, {self.workdir})"
