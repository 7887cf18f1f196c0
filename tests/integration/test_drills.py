"""Reduced versions of every reliability drill (the full ones: `make drills`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.localstack.process import StartupError
from tests.conftest import unavailable
from tests.drills.analyst import drill_hostile_analyst_queries
from tests.drills.core import (
    DrillRow,
    Stack,
    drill_broker_restart,
    drill_clickhouse_outage,
    drill_hostile_input,
    drill_secrets_not_logged,
    drill_two_workers_one_dies,
    drill_worker_crash,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("drills"))
    try:
        s.start()
    except StartupError as exc:
        s.stop()
        unavailable(str(exc))
    yield s
    s.stop()


def check(row: DrillRow) -> None:
    print(row)
    assert row.lost == 0, row
    assert row.duplicated == 0, row
    assert row.stored > 0 and row.deadlettered > 0, row
    assert row.extra["unexpected_alerts"] == 0, row


def test_worker_crash(stack: Stack, tmp_path: Path) -> None:
    check(drill_worker_crash(stack, tmp_path, n=2_000, kills=2))


def test_two_workers_one_dies(stack: Stack, tmp_path: Path) -> None:
    check(drill_two_workers_one_dies(stack, tmp_path, n=1_500))


def test_clickhouse_outage(stack: Stack, tmp_path: Path) -> None:
    check(drill_clickhouse_outage(stack, tmp_path, n=1_500, outage_s=10))


def test_broker_restart(stack: Stack, tmp_path: Path) -> None:
    row = drill_broker_restart(stack, tmp_path, n=3_000, down_s=3)
    check(row)
    assert row.extra["extra_deadletters"] == 0, row  # nothing valid dead-lettered
    assert row.extra["same_worker"], row  # the worker rode it out, never restarted
    assert row.recovery_s is not None, row
    print(f"broker restart: first new row {row.recovery_s:.1f}s after the kill, broker ready in "
          f"{row.extra['broker_ready_s']:.1f}s, all committed after {row.extra['drained_s']:.1f}s")


def test_hostile_input(stack: Stack, tmp_path: Path) -> None:
    row = drill_hostile_input(stack, tmp_path, n=2_000, huge_every=1_000)
    check(row)
    assert row.extra["restarted"] is False
    assert row.extra["verbatim"] > 0  # injection-looking strings are data, stored as given
    assert row.extra["tables"] >= 4  # and no table went away


def test_secrets_never_logged(tmp_path: Path) -> None:
    try:
        row = drill_secrets_not_logged(tmp_path)
    except StartupError as exc:
        unavailable(str(exc))
        raise
    check(row)
    assert row.extra["log_bytes"] > 1000  # the log was really written (debug level)
    assert row.extra["leaks"] == 0


def test_hostile_analyst_queries(stack: Stack, tmp_path: Path) -> None:
    """No hostile query escapes (the latency ratio is a figure of `make drills`, not asserted here)."""
    row = drill_hostile_analyst_queries(stack, tmp_path, rounds=1, samples=10)
    print(row)
    assert row.extra["escapes"] == [], row
    assert row.lost == 0 and row.stored == 20, row
    assert row.inputs >= 44, row  # every kind tried at least once
    assert set(row.extra["statuses"]) <= {200, 400, 413, 429}, row  # never a server error
    assert all(400 in statuses or 429 in statuses for kind, statuses in row.extra["by_kind"].items()
               if "file" in kind or "system" in kind), row
