"""The command line as a person uses it: help, clear errors, and the main job's clean exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import COMMANDS
from pipeline.localstack.process import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def foodrisk(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
             cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("FOODRISK_")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=cwd, check=False)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_on_every_command(command: str | None) -> None:
    res = foodrisk(*([command] if command else []), "--help")
    assert res.returncode == 0, res.stderr
    assert "usage: foodrisk" in res.stdout


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"FOODRISK_BROKER_URL": "redis://x:1"}, "unknown broker URL"),
        ({"FOODRISK_CLICKHOUSE_URL": "postgres://x"}, "unknown ClickHouse URL"),
    ],
)
def test_broken_setting_fails_fast_with_one_line(env: dict[str, str], needle: str) -> None:
    res = foodrisk("check", env=env, timeout=30)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert needle in lines[0]
    assert "Traceback" not in res.stderr


def test_unreachable_broker_fails_fast_with_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    res = foodrisk("check", env={"FOODRISK_BROKER_URL": f"kafka://127.0.0.1:{free_port()}",
                                 "FOODRISK_DATA_DIR": str(tmp_path)}, timeout=60)
    assert res.returncode == 2
    errors = [ln for ln in res.stderr.splitlines() if "error" in ln.lower() and "foodrisk" in ln]
    assert len(errors) == 1 and "unreachable" in errors[0], res.stderr
    assert "Traceback" not in res.stderr
    assert time.monotonic() - started < 30


def _pids(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"\(pid (\d+)", text)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def _run_env(tmp_path: Path) -> dict[str, str]:
    return {
        "FOODRISK_DATA_DIR": str(tmp_path / "var"),
        "FOODRISK_CLICKHOUSE_URL": f"chdb://{tmp_path / 'var' / 'clickhouse'}",
        "FOODRISK_WEB_PORT": str(free_port()),
    }


def test_main_job_runs_for_a_duration_and_leaves_nothing(tmp_path: Path) -> None:
    res = foodrisk("run", "--duration", "20", env=_run_env(tmp_path), timeout=300, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "ALERT" in res.stdout
    assert "banned_pesticide" in res.stdout  # the injected cowpea lot
    assert "Summary (from ClickHouse)" in res.stdout
    assert "Tests and positive rate by district and site type" in res.stdout
    pids = _pids(out)
    assert len(pids) >= 2, out[-3000:]  # the broker and the worker
    assert not [p for p in pids if _alive(p)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_main_job_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    e = {k: v for k, v in os.environ.items() if not k.startswith("FOODRISK_")}
    e.update(_run_env(tmp_path))
    log = tmp_path / "run.log"
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run"], stdout=f, stderr=subprocess.STDOUT,
                                text=True, env=e, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 120
            while "simulating devices" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.3)
            time.sleep(3)
            proc.send_signal(sig)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert code in (0, 130), text[-3000:]
    assert "stopped cleanly" in text or "interrupted" in text
    pids = _pids(text)
    assert len(pids) >= 2, text[-3000:]
    assert not [p for p in pids if _alive(p)]


def test_simulate_publishes_to_a_running_broker(broker: Any, unique: str, tmp_path: Path) -> None:
    from kafka import KafkaConsumer, TopicPartition

    topic = f"sim.results.{unique}"
    res = foodrisk("simulate", "--duration", "3", "--speed", "600",
                   env={"FOODRISK_BROKER_URL": broker.url,
                        "FOODRISK_RESULTS_TOPIC": topic,
                        "FOODRISK_DATA_DIR": str(tmp_path)}, timeout=120)
    assert res.returncode == 0, res.stderr
    sent = int(re.search(r"sent (\d+) messages", res.stdout).group(1))  # type: ignore[union-attr]
    assert sent > 50
    assert "0 not delivered" in res.stdout
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    parts = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or set()]
    assert sum(c.end_offsets(parts).values()) == sent
    c.close()


def test_simulate_refuses_the_embedded_default() -> None:
    res = foodrisk("simulate", "--duration", "1", timeout=60)
    assert res.returncode == 2
    assert "FOODRISK_BROKER_URL=kafka://" in res.stderr
