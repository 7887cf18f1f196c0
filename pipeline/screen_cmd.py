"""`foodrisk screen`: JSON-lines results on stdin -> one JSON-line verdict per line on stdout.

Streams line by line in constant memory (a line is read with a length bound, so even an endless
line cannot grow it). Blank lines are skipped. The components of a residue sum (schemas/sums.py) are judged on the sum
of their sample's parts in the lines read so far. An invalid line gives
``{"line": N, "verdict": "invalid", "errors": [{"field": ..., "reason": ...}]}`` and processing goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final, Protocol

import orjson

from schemas.reference import Reference
from schemas.result import MAX_MESSAGE_BYTES, InvalidResult, Result, parse_result
from schemas.rules import screen, screen_sum
from schemas.sums import SumBook
from schemas.verdict import Verdict

MAX_LINE_CHARS: Final = MAX_MESSAGE_BYTES
_CHUNK: Final = 65_536


class LineReader(Protocol):
    """What run_screen reads from (``sys.stdin`` or any ``TextIO``)."""

    def readline(self, size: int = -1, /) -> str: ...


class LineWriter(Protocol):
    """What run_screen writes to (``sys.stdout`` or any ``TextIO``)."""

    def write(self, s: str, /) -> int: ...

    def flush(self) -> None: ...


def verdict_line(number: int, result: Result, verdict: Verdict) -> dict[str, Any]:
    """The output object for a screened line."""
    return {
        "line": number,
        "result_id": result.result_id,
        "verdict": verdict.verdict.value,
        "limit_mg_kg": verdict.limit_mg_kg,
        "ratio": verdict.ratio,
        "rule": str(verdict.rule),
        "basis": verdict.basis,
        "edition": verdict.edition,
        "source": verdict.source,
        "confidence": verdict.confidence,
        "limit_food": verdict.limit_food,
        "commodity": result.commodity,
        "analyte": result.analyte,
        "method": result.method.value,
        "value_mg_kg": result.value_mg_kg,
        "percent": result.percent,
        "qualitative": result.qualitative.value if result.qualitative is not None else None,
        "sampled_at": result.sampled_at.isoformat(),
    }


def invalid_line(number: int, errors: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "line": number,
        "verdict": "invalid",
        "errors": [{"field": f, "reason": r} for f, r in errors],
    }


def _lines(stdin: LineReader) -> Iterator[str | None]:
    """(line, text or None when over the bound) for each line, reading at most a bound at a time."""
    while True:
        text = stdin.readline(MAX_LINE_CHARS + 1)
        if not text:
            return
        if len(text) > MAX_LINE_CHARS and not text.endswith("\n"):
            while True:  # skip the rest of an overlong line without keeping it
                rest = stdin.readline(_CHUNK)
                if not rest or rest.endswith("\n"):
                    break
            yield None
            continue
        yield text


def run_screen(
    stdin: LineReader,
    stdout: LineWriter,
    *,
    reference: Reference,
    now: datetime,
    watch_fraction: float = 0.5,
) -> int:
    """Screen every line of ``stdin``; returns the number of invalid lines (0 when all were valid)."""
    invalid = 0
    sums = SumBook()
    write = stdout.write
    dumps = orjson.dumps
    for number, text in enumerate(_lines(stdin), start=1):
        if text is None:
            invalid += 1
            out = invalid_line(number, [("$", f"line longer than {MAX_LINE_CHARS} characters")])
        elif not text.strip():
            continue
        else:
            try:
                result = parse_result(text, reference=reference, now=now)
            except InvalidResult as exc:
                invalid += 1
                out = invalid_line(number, [(e.field, e.reason) for e in exc.errors])
            else:
                so_far = sums.so_far(result, reference) if sums.add(result, reference) else None
                if so_far is None:
                    verdict = screen(result, reference, watch_fraction=watch_fraction)
                else:  # a component of a residue sum: judged on its sample's parts in the lines so far
                    verdict = screen_sum(
                        result, reference, so_far.total_mg_kg, so_far.parts, watch_fraction=watch_fraction
                    )
                out = verdict_line(number, result, verdict)
        write(dumps(out).decode())
        write("\n")
    stdout.flush()
    return invalid
