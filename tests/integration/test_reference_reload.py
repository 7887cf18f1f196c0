"""A running worker puts a new reference edition in force without a restart (README "Reference
editions"): a real broker (Apache Kafka), a real worker process with chdb, its reference directory
rewritten while it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from pipeline.localstack.kafka import KafkaBroker
from schemas.reference import Limit, LimitKind, Reference, load_reference, reference_edition
from schemas.result import parse_result
from schemas.rules import screen
from tests.integration.factories import SAMPLED, encode, produce, result
from tests.integration.workers import WorkerProcess, metrics_text, sample
from tests.reference_copy import break_line, copy_reference, set_limit

pytestmark = pytest.mark.integration

NOW = SAMPLED + timedelta(days=1)


def pick_limit(ref: Reference) -> tuple[str, str, Limit]:
    """(analyte, food, limit): a pesticide MRL in force at SAMPLED on a named food, not banned there,
    under which 0.4 x the limit is compliant and 2 x (a fifth of the limit) exceeds: chosen from the
    data so that edits of the reference files elsewhere do not break this test."""
    for lim in ref.limits:
        if lim.kind is not LimitKind.mrl:
            continue
        for food in ref.commodities:
            if lim.food not in ref.ancestors(food.code) or ref.ban_in_force(lim.analyte, food.code, SAMPLED):
                continue
            found = ref.limit_in_force(lim.analyte, food.code, SAMPLED)
            if found is None or found[0] is not lim:
                continue
            r = parse_result(_results("probe", 1, lim.analyte, food.code, 0.4 * lim.limit_mg_kg,
                                      0.05 * lim.limit_mg_kg)[0], reference=ref, now=NOW)
            if screen(r, ref).verdict == "compliant":
                return lim.analyte, food.code, lim
    raise AssertionError("no pesticide limit in the reference data to test with")


@pytest.fixture
def reference_dir(tmp_path: Path) -> Path:
    return copy_reference(tmp_path / "reference")


@pytest.fixture
def topics(unique: str) -> dict[str, str]:
    return {k: f"ed.{k}.{unique}" for k in ("results", "alerts", "deadletter")}


@pytest.fixture
def worker(
    broker: KafkaBroker, reference_dir: Path, topics: dict[str, str], unique: str, tmp_path: Path
) -> Iterator[WorkerProcess]:
    w = WorkerProcess(
        tmp_path / "worker", broker_url=broker.url, clickhouse_url=f"chdb://{tmp_path / 'chdb'}",
        app_id=f"ed-{unique}", topics=topics, FOODRISK_CLICKHOUSE_DATABASE=f"ed_{unique}",
        FOODRISK_REFERENCE_DIR=str(reference_dir), FOODRISK_REFERENCE_POLL_S="0.5",
    )
    w.start()
    yield w
    w.stop()


def _results(prefix: str, n: int, analyte: str, food: str, value: float, loq: float) -> list[bytes]:
    return [
        encode(result(f"{prefix}-{i:03d}", analyte=analyte, commodity=food, method="lc_msms", value=value,
                      unit="mg/kg", loq=loq))
        for i in range(n)
    ]


def _edition_info(w: WorkerProcess, edition: str) -> float:
    return sample(metrics_text(w.port), "foodrisk_reference_edition_info", edition=edition)


def test_a_new_edition_is_screened_and_stored_without_a_restart(
    broker: KafkaBroker, worker: WorkerProcess, reference_dir: Path, topics: dict[str, str], unique: str,
    tmp_path: Path,
) -> None:
    db, topic = f"ed_{unique}", topics["results"]
    first = load_reference(reference_dir)
    analyte, food, limit = pick_limit(first)
    value, loq, lowered = 0.4 * limit.limit_mg_kg, 0.05 * limit.limit_mg_kg, 0.2 * limit.limit_mg_kg

    def results(prefix: str, n: int) -> list[bytes]:
        return _results(prefix, n, analyte, food, value, loq)

    # (1) the edition of the start: compliant, stored with its id
    produce(broker.bootstrap, topic, results(f"a{unique}", 20))
    worker.wait_for(f"SELECT count() FROM {db}.results FINAL", 20)
    assert _edition_info(worker, first.edition) == 1
    rows = worker.query(f"SELECT DISTINCT verdict, reference_edition, limit_mg_kg FROM {db}.results FINAL")
    assert rows == [["compliant", first.edition, limit.limit_mg_kg]]

    # (2) a new edition with the limit lowered, written while the worker runs
    written = time.monotonic()
    set_limit(reference_dir, limit, lowered)
    second = reference_edition(reference_dir)
    assert second != first.edition
    deadline = written + 30
    while _edition_info(worker, second) != 1:
        assert time.monotonic() < deadline, f"edition {second} not in force; log:\n{worker.log_tail()}"
        time.sleep(0.05)
    latency = time.monotonic() - written
    print(f"\nreload: new edition in force {latency:.2f} s after the files were written (poll every 0.5 s)")
    assert _edition_info(worker, first.edition) == 0  # gone from the exposition
    assert worker.metric("foodrisk_reference_reloads_total") == 1
    assert f"reference edition {first.edition} -> {second} in force" in worker.log_tail(10**8)

    produce(broker.bootstrap, topic, results(f"b{unique}", 20))
    worker.wait_for(f"SELECT count() FROM {db}.results FINAL", 40)
    rows = worker.query(
        f"SELECT substring(result_id, 1, 1) AS k, verdict, reference_edition, limit_mg_kg, count() "
        f"FROM {db}.results FINAL GROUP BY k, verdict, reference_edition, limit_mg_kg ORDER BY k"
    )
    assert rows == [
        ["a", "compliant", first.edition, limit.limit_mg_kg, 20],  # history stays as screened
        ["b", "exceeds", second, lowered, 20],
    ]

    # (3) a broken edition is refused: the second stays in force, the error names file and line
    good = (reference_dir / limit.file).read_text(encoding="utf-8").splitlines()[limit.line - 1]
    cells = good.split(",")
    cells[2] = "-1"
    break_line(reference_dir, limit.file, limit.line, ",".join(cells))
    deadline = time.monotonic() + 30
    while worker.metric("foodrisk_reference_reload_failures_total") != 1:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.1)
    assert f"{limit.file}:{limit.line}: limit_mg_kg must be > 0" in worker.log_tail(10**8)
    produce(broker.bootstrap, topic, results(f"c{unique}", 5))
    worker.wait_for(f"SELECT count() FROM {db}.results FINAL", 45)
    assert worker.query(f"SELECT DISTINCT verdict, reference_edition FROM {db}.results FINAL "
                        f"WHERE startsWith(result_id, 'c')") == [["exceeds", second]]
    assert _edition_info(worker, second) == 1

    # (4) `foodrisk rescreen` through this worker's query port: under the first edition again, the
    # results stored as exceeding (second edition) would be newly compliant; nothing is written
    back = copy_reference(tmp_path / "first")
    assert reference_edition(back) == first.edition
    env = {**os.environ, "FOODRISK_CLICKHOUSE_URL": f"chdb://{tmp_path / 'chdb'}",
           "FOODRISK_CLICKHOUSE_DATABASE": db, "FOODRISK_QUERY_PORT": str(worker.query_port),
           "FOODRISK_DATA_DIR": str(worker.workdir)}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "rescreen", "--edition", str(back), "--since", "2026-11-01",
         "--format", "json"], env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    total = orjson.loads(done.stdout.splitlines()[-1])
    assert total == {"commodity": "TOTAL", "analyte": "", "results": 45, "newly_exceeding": 0,
                     "newly_compliant": 25, "other_change": 0, "limit_changed": 0, "unchanged": 20}
    assert f"{first.edition}: 20" in done.stderr and f"{second}: 25" in done.stderr
    assert worker.scalar(f"SELECT count() FROM {db}.results") >= 45  # still the worker's rows, as stored
    assert worker.query(f"SELECT DISTINCT reference_edition FROM {db}.results FINAL "
                        f"WHERE startsWith(result_id, 'b')") == [[second]]
