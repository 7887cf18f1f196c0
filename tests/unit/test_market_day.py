"""One day of everyday market results, named as devices send them, through `foodrisk screen`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from schemas.reference import default_reference
from tests.fixtures.market_day import results

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "market_day.jsonl"
REF = default_reference()


def test_the_committed_fixture_is_what_its_generator_writes() -> None:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == results()
    assert len(lines) >= 200


def test_every_everyday_name_resolves() -> None:
    for r in results():
        assert REF.commodity(REF.normalise_commodity(r["commodity"])) is not None, r["commodity"]
        if r["method"] != "enzyme_inhibition":  # the enzyme screen is keyed on the method
            assert REF.analyte(REF.normalise_analyte(r["analyte"])) is not None, r["analyte"]


def test_foodrisk_screen_leaves_no_label_unclassified() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "screen", "--now", "2026-12-01T00:00:00+08:00"],
        input=FIXTURE.read_text(encoding="utf-8"), capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(out) == len(results())
    verdicts = Counter(o["verdict"] for o in out)
    assert verdicts["invalid"] == 0 and verdicts["unclassified"] == 0, verdicts
    # a no_limit is only ever a known food and analyte with nothing in force
    for o in out:
        if o["verdict"] == "no_limit":
            assert o["rule"] == "no_limit" and REF.commodity(o["commodity"]) and REF.analyte(o["analyte"])
    # the market's findings are there: enzyme positives, strip positives, lab exceedances
    assert verdicts["positive"] > 0 and verdicts["exceeds"] + verdicts["banned"] > 0
