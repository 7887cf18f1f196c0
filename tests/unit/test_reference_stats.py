"""`foodrisk reference stats`: what the shipped reference holds, by kind, edition and confidence."""

from __future__ import annotations

import json
import subprocess
import sys

from schemas.reference import default_reference
from schemas.reference.stats import reference_counts


def test_counts_add_up_to_the_tables() -> None:
    ref = default_reference()
    counts = reference_counts(ref)
    assert counts.foods + counts.groups == len(ref.foods)
    assert sum(counts.limits.values()) == len(ref.limits)
    assert sum(counts.bans.values()) == len(ref.bans)
    assert sum(counts.analytes.values()) == len(ref.analytes)
    assert counts.foods >= 400 and counts.limit_analytes["pesticide"] >= 100  # issue 19: the breadth shipped


def test_the_command_prints_every_row() -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "reference", "stats", "--format", "json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"what": "foods", "detail": "named foods", "count": reference_counts(default_reference()).foods} in rows
