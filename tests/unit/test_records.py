"""The results row contract: the row builder follows the table's one column definition."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents import records
from agents.batch import Incoming, screen_batch
from schemas.reference import default_reference
from schemas.result import parse_result
from schemas.rules import screen
from sinks.clickhouse.schema import RESULTS, RESULTS_COLUMNS
from tests.integration.factories import encode, result

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def test_the_row_follows_the_schema_order() -> None:
    assert records.RESULT_FIELDS == RESULTS_COLUMNS == tuple(name for name, _ in RESULTS)
    assert records.result_row_layout(RESULTS_COLUMNS) is None  # nothing to reorder at run time
    items = [Incoming("foodrisk.results", 2, 40, 1_764_000_000.0, b"k", encode(result("c1")))]
    out = screen_batch(items, reference=default_reference(), columns=RESULTS_COLUMNS, watch_fraction=0.5, now=NOW)
    (row,) = out.result_rows
    values = dict(zip(RESULTS_COLUMNS, row, strict=True))
    assert values["result_id"] == "c1" and values["site_name"] == "Test market"
    assert values["src_topic"] == "foodrisk.results" and values["src_partition"] == 2 and values["src_offset"] == 40
    assert values["quick"] in (0, 1) and values["sampled_at"].tzinfo is None
    assert isinstance(values["verdict"], str) and values["ingested_at"] == datetime(2026, 11, 28, 8, 0)  # noqa: DTZ001


def test_a_column_without_a_value_or_a_value_without_a_column_fails() -> None:
    values = dict(records._RESULT_VALUES)
    with pytest.raises(ValueError, match="missing \\['extra_col'\\]"):
        records.compile_row_builder((*RESULTS_COLUMNS, "extra_col"), values)
    del values["ratio"]
    with pytest.raises(ValueError, match="missing \\['ratio'\\]"):
        records.compile_row_builder(RESULTS_COLUMNS, values)
    with pytest.raises(ValueError, match="not columns \\['ratio'\\]"):
        records.compile_row_builder(tuple(c for c in RESULTS_COLUMNS if c != "ratio"), records._RESULT_VALUES)


def test_a_new_column_order_is_one_change_in_the_schema() -> None:
    ref = default_reference()
    res = parse_result(result("c2"), reference=ref, now=NOW)
    verdict = screen(res, ref)
    reordered = (RESULTS_COLUMNS[-1], *RESULTS_COLUMNS[2:-1], RESULTS_COLUMNS[1], RESULTS_COLUMNS[0])
    build = records.compile_row_builder(reordered, records._RESULT_VALUES)
    args = (res, verdict, "t", 0, 1, datetime(2026, 11, 28, 8, 0), "ref-0123456789ab")  # noqa: DTZ001
    by_schema = dict(zip(RESULTS_COLUMNS, records.result_row(*args), strict=True))
    assert build(*args) == tuple(by_schema[c] for c in reordered)
    assert build.__doc__ and "RESULT_FIELDS" in build.__doc__
