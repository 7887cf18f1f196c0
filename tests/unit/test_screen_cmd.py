"""`foodrisk screen` (pipeline.screen_cmd.run_screen): one line out per line in, in constant memory."""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, datetime

import orjson

from pipeline.screen_cmd import MAX_LINE_CHARS, run_screen
from schemas.reference import default_reference
from tests.bench.bench_screen import CountingSink, GeneratedLines, example_message

REF = default_reference()
NOW = datetime(2027, 1, 1, tzinfo=UTC)


def run(text: str) -> tuple[int, list[dict[str, object]]]:
    out = io.StringIO()
    invalid = run_screen(io.StringIO(text), out, reference=REF, now=NOW)
    return invalid, [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_valid_and_invalid_lines_interleaved() -> None:
    lines = [
        orjson.dumps(example_message(result_id="a")).decode(),
        "{not json",
        orjson.dumps(example_message(result_id="b", value=0.05)).decode(),
        "",
        orjson.dumps(example_message(result_id=None, value=-1)).decode(),
        "[1]",
        orjson.dumps(example_message(result_id="c", commodity="豆角", analyte="克百威", value=0.03)).decode(),
    ]
    invalid, out = run("\n".join(lines) + "\n")
    assert invalid == 3
    assert [o["line"] for o in out] == [1, 2, 3, 5, 6, 7]  # the blank line 4 is skipped
    assert [o["verdict"] for o in out] == ["compliant", "invalid", "exceeds", "invalid", "invalid", "banned"]
    ok = out[2]
    assert ok["result_id"] == "b"
    assert (ok["limit_mg_kg"], ok["ratio"], ok["rule"]) == (0.01, 5.0, "mrl")
    assert "GB 2763-2021" in str(ok["basis"])
    assert out[1]["errors"][0]["field"] == "$"  # type: ignore[index]  # a list of objects
    fields = {e["field"] for e in out[3]["errors"]}  # type: ignore[attr-defined]  # a list of objects
    assert {"result_id", "value"} <= fields
    assert out[5]["commodity"] == "cowpea" and out[5]["analyte"] == "carbofuran"


def test_every_output_has_the_contract_keys() -> None:
    text = "".join(orjson.dumps(example_message(result_id=f"r{i}")).decode() + "\n" for i in range(5))
    invalid, out = run(text)
    assert invalid == 0
    for o in out:
        assert {"result_id", "verdict", "limit_mg_kg", "ratio", "basis"} <= set(o)


def test_last_line_without_newline_and_crlf() -> None:
    one = orjson.dumps(example_message()).decode()
    invalid, out = run(one + "\r\n" + one)
    assert invalid == 0 and len(out) == 2


def test_overlong_line_is_invalid_and_processing_goes_on() -> None:
    one = orjson.dumps(example_message()).decode()
    invalid, out = run(one + "\n" + "x" * (MAX_LINE_CHARS * 3) + "\n" + one + "\n")
    assert invalid == 1
    assert [o["verdict"] for o in out] == ["compliant", "invalid", "compliant"]
    assert [o["line"] for o in out] == [1, 2, 3]


def test_empty_input() -> None:
    assert run("") == (0, [])


def _peak(lines: int) -> tuple[int, CountingSink]:
    sink = CountingSink()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run_screen(GeneratedLines(lines, seed=9, invalid_every=50), sink, reference=REF, now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, sink


def test_constant_memory() -> None:
    _peak(100)  # warm up one-time caches
    small, _ = _peak(1_000)
    large, sink = _peak(10_000)
    assert sink.lines == 10_000
    # 10x the input, same peak (within noise; both are ~50 KiB): nothing accumulates per line.
    # The benchmark runs 200,000 lines (and --lines 1000000) and reports peak RSS.
    assert large < small + 256 * 1024, (small, large)
    assert large < 1024 * 1024, large
