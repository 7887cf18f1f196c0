"""`foodrisk rescreen --edition DIR --since DATE [--until DATE]`: what another reference edition would
change, from the results stored in ClickHouse. Read-only: it runs SELECTs (through the worker's query
port or a connection of its own, as `foodrisk query` does) and never writes to ClickHouse.

The results sampled in [since, until) are read in pages of ``PAGE_ROWS`` (``results FINAL``: one row
per result, the latest stored), in (sampled_at, device_id, result_id) order, each page starting after
the last row of the one before; each page is screened again with the edition of DIR (with the
configured cut-offs) and compared with the stored verdicts (schemas/rescreen.py). Progress goes to
stderr, the table (or CSV, JSON lines) to stdout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from pipeline.query.render import render
from pipeline.refdata import load_configured_reference
from pipeline.settings import Settings, SettingsError
from schemas.reference import CHINA_TZ
from schemas.rescreen import STORED_COLUMNS, Change, Tally, rescreen
from schemas.sums import SumBook
from sinks.clickhouse import quote_identifier

PAGE_ROWS: Final = 20_000
COUNTED: Final = (Change.newly_exceeding, Change.newly_compliant, Change.other_change, Change.limit_changed)
TABLE_COLUMNS: Final = ("commodity", "analyte", "results", *(c.value for c in COUNTED), "unchanged")


class Reader(Protocol):
    def select(
        self, sql: str, params: dict[str, Any] | None = None, *, max_rows: int = ...
    ) -> tuple[list[str], list[list[Any]], bool]: ...


class Writer(Protocol):
    def write(self, s: str, /) -> int: ...

    def flush(self) -> None: ...


def parse_when(text: str, option: str) -> datetime:
    """``2026-11-01`` (the start of that day in China, as the reference's effective dates) or an ISO
    time (without an offset: Beijing time, as the wire format) -> aware UTC."""
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            return datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ).astimezone(UTC)
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SettingsError(f"{option} {text!r}: expected a date (2026-11-01) or an ISO time") from None
    return (when.replace(tzinfo=CHINA_TZ) if when.tzinfo is None else when).astimezone(UTC)


def _ch_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def page_sql(database: str, page_rows: int = PAGE_ROWS) -> str:
    cols = ", ".join(quote_identifier(c) for c in STORED_COLUMNS)
    after = (
        "(sampled_at > toDateTime(%(t)s, 'UTC') OR (sampled_at = toDateTime(%(t)s, 'UTC') AND "
        "(device_id > %(d)s OR (device_id = %(d)s AND result_id > %(r)s))))"
    )
    return (
        f"SELECT {cols} FROM {quote_identifier(database)}.results FINAL "  # noqa: S608 - quoted identifiers
        f"WHERE sampled_at >= toDateTime(%(since)s, 'UTC') AND sampled_at < toDateTime(%(until)s, 'UTC') "
        f"AND {after} ORDER BY sampled_at, device_id, result_id LIMIT {int(page_rows)}"
    )


def pages(
    reader: Reader, database: str, since: datetime, until: datetime, page_rows: int = PAGE_ROWS
) -> Iterator[list[dict[str, Any]]]:
    """The stored rows sampled in [since, until), a page at a time (keyset paging: each page starts
    after the last row of the one before, so no row is read twice or skipped)."""
    sql = page_sql(database, page_rows)
    params = {"since": _ch_time(since), "until": _ch_time(until),
              "t": _ch_time(since - timedelta(seconds=1)), "d": "", "r": ""}
    while True:
        columns, rows, _ = reader.select(sql, params, max_rows=page_rows)
        if not rows:
            return
        page = [dict(zip(columns, r, strict=True)) for r in rows]
        yield page
        last = page[-1]
        when = last["sampled_at"]
        when = when if isinstance(when, datetime) else datetime.fromisoformat(str(when))
        params.update(t=_ch_time(when if when.tzinfo else when.replace(tzinfo=UTC)),
                      d=str(last["device_id"]), r=str(last["result_id"]))
        if len(rows) < page_rows:
            return


def table(tally: Tally) -> tuple[list[str], list[list[Any]]]:
    """One row per (commodity, analyte) with a change, most newly exceeding first, then TOTAL."""
    rows: list[list[Any]] = []
    for (commodity, analyte), counts in tally.by_key.items():
        if any(counts[c] for c in COUNTED):
            rows.append([commodity, analyte, sum(counts.values()), *(counts[c] for c in COUNTED),
                         counts[Change.unchanged]])
    rows.sort(key=lambda r: (-r[3], -r[4], -r[5], r[0], r[1]))
    total = tally.total()
    rows.append(["TOTAL", "", sum(total.values()), *(total[c] for c in COUNTED), total[Change.unchanged]])
    return list(TABLE_COLUMNS), rows


def run_rescreen(
    settings: Settings,
    reader: Reader,
    *,
    directory: Path,
    since: datetime,
    until: datetime,
    fmt: str,
    out: Writer,
    err: Writer,
    now: datetime,
    page_rows: int = PAGE_ROWS,
) -> Tally:
    """Read, screen again, and print the tally; returns it."""
    if until <= since:
        raise SettingsError(f"--until ({until.isoformat()}) must be after --since ({since.isoformat()})")
    reference = load_configured_reference(settings, directory)  # SettingsError: file, line and reason
    started = time.monotonic()
    tally, sums = Tally(), SumBook()  # residue sums gathered per sample across pages
    for page in pages(reader, settings.database, since, until, page_rows):
        rescreen(page, reference, now=now, watch_fraction=settings.watch_fraction, tally=tally, sums=sums)
        total = tally.total()
        elapsed = max(time.monotonic() - started, 1e-9)
        err.write(f"rescreen: {tally.results:,} results read (sampled up to {page[-1]['sampled_at']}), "
                  f"{sum(total[c] for c in COUNTED):,} would change, {tally.results / elapsed:,.0f} results/s\n")
        err.flush()
    columns, rows = table(tally)
    out.write(render(columns, rows, fmt) + "\n")
    out.flush()
    elapsed = time.monotonic() - started
    stored = ", ".join(f"{e or '(none)'}: {n:,}" for e, n in tally.stored_editions.most_common())
    moves = ", ".join(f"{a} -> {b}: {n:,}" for (a, b), n in tally.transitions.most_common())
    err.write(f"rescreen: {tally.results:,} results sampled in [{since.isoformat()}, {until.isoformat()}) "
              f"screened with {reference.edition} ({directory}) in {elapsed:.2f} s; stored editions: "
              f"{stored or '-'}; verdict changes: {moves or 'none'}\n")
    if tally.not_rebuilt:
        err.write(f"rescreen: {tally.not_rebuilt:,} stored results could not be parsed again with this edition "
                  f"(not counted above): {', '.join(tally.not_rebuilt_ids)}\n")
    err.flush()
    return tally
