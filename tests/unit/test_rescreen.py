"""schemas/rescreen.py: a stored row rebuilds the result it came from (screened again with the same
reference, nothing changes), and the classification of changes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings

from agents.records import result_values
from schemas.rescreen import Change, Tally, classify, rescreen, wire_result
from schemas.result import Result, parse_result
from schemas.rules import screen
from schemas.verdict import Verdict, VerdictKind
from tests.bench.bench_screen import generate_messages
from tests.unit.test_schemas_rules import NOW, REF, cases, make

INGESTED = datetime(2030, 1, 1, tzinfo=UTC)


def stored(r: Result) -> dict[str, Any]:
    """The ``results`` row of ``r`` as ClickHouse gives it back (naive UTC times)."""
    return result_values(r, screen(r, REF), src_topic="t", src_partition=0, src_offset=1, ingested_at=INGESTED,
                         reference_edition=REF.edition)


@settings(deadline=None, max_examples=400)
@given(kw=cases())
def test_a_stored_row_screened_again_with_its_own_edition_is_unchanged(kw: dict[str, Any]) -> None:
    row = stored(make(**kw))
    before = copy.deepcopy(row)
    tally = rescreen([row], REF, now=NOW)
    assert row == before  # the input is not mutated
    assert tally.not_rebuilt == 0
    assert tally.total() == {Change.unchanged: 1}
    assert rescreen([row], REF, now=NOW) == tally  # deterministic


def test_generated_traffic_is_unchanged_under_its_own_edition() -> None:
    rows = [stored(parse_result(m, reference=REF, now=NOW)) for m in generate_messages(3000, seed=5)]
    tally = rescreen(rows, REF, now=NOW)
    assert tally.not_rebuilt == 0 and tally.total() == {Change.unchanged: len(rows)}
    assert tally.stored_editions == {REF.edition: len(rows)} and not tally.transitions
    # pages add up to the whole
    paged = Tally()
    for i in range(0, len(rows), 700):
        rescreen(rows[i : i + 700], REF, now=NOW, tally=paged)
    assert paged == tally


def test_the_rebuilt_result_is_the_stored_one() -> None:
    r = make("cadmium", "cowpea", value=0.35, unit="mg/kg", loq=0.01)
    wire = wire_result(stored(r))
    again = parse_result(orjson.dumps({**wire, "sampled_at": wire["sampled_at"].isoformat(),
                                       "tested_at": wire["tested_at"].isoformat()}), reference=REF, now=NOW)
    assert again.sampled_at == r.sampled_at and again.value_mg_kg == r.value_mg_kg
    assert again.loq_mg_kg == r.loq_mg_kg and again.commodity == r.commodity


def _verdict(kind: VerdictKind, limit: float | None) -> Verdict:
    return Verdict(verdict=kind, limit_mg_kg=limit, ratio=None, rule="mrl", edition=None, source=None,
                   confidence=None, limit_food=None, basis="")


def test_classify() -> None:
    v = VerdictKind
    assert classify("compliant", 0.5, _verdict(v.exceeds, 0.1)) is Change.newly_exceeding
    assert classify("no_limit", None, _verdict(v.banned, None)) is Change.newly_exceeding
    assert classify("watch", 0.5, _verdict(v.positive, None)) is Change.newly_exceeding
    assert classify("exceeds", 0.1, _verdict(v.compliant, 0.5)) is Change.newly_compliant
    assert classify("unclassified", None, _verdict(v.compliant, 0.5)) is Change.newly_compliant
    assert classify("exceeds", 0.1, _verdict(v.banned, None)) is Change.other_change  # a finding still
    assert classify("compliant", 0.5, _verdict(v.watch, 0.1)) is Change.other_change
    assert classify("compliant", 0.5, _verdict(v.no_limit, None)) is Change.other_change
    assert classify("compliant", 0.5, _verdict(v.compliant, 0.1)) is Change.limit_changed
    assert classify("compliant", None, _verdict(v.compliant, 0.1)) is Change.limit_changed
    assert classify("compliant", 0.5, _verdict(v.compliant, 0.5)) is Change.unchanged


def test_residue_sums_are_gathered_again() -> None:
    from schemas.sums import SumBook
    from tests.unit.test_whole_standard_rules import NOW as SUM_NOW
    from tests.unit.test_whole_standard_rules import run, sample_batch, with_rice_limit

    ref = with_rice_limit()
    rows = run(ref, [sample_batch(("carbofuran", 0.06), ("3-hydroxycarbofuran", 0.05))], SumBook())
    assert [r["verdict"] for r in rows] == ["exceeds", "exceeds"]  # stored judged on their sum, 0.11 > 0.1
    whole = rescreen(rows, ref, now=SUM_NOW, sums=SumBook())
    assert whole.total() == {Change.unchanged: 2}
    alone = rescreen(rows, ref, now=SUM_NOW)  # without the book each is judged alone
    assert sum(alone.transitions.values()) == 2  # each part alone is under the limit
    assert {before for before, _ in alone.transitions} == {"exceeds"}
    assert not {after for _, after in alone.transitions} & {"exceeds", "banned", "positive"}
