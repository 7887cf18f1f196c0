"""`foodrisk votes import FILE.csv`: citizens' votes into ClickHouse (``citizen_votes``).

The file is parsed and resolved against the configured food classification by the pure
:func:`schemas.votes.parse_votes`. Every problem goes to stderr with file and line; the command
exits 1 on any, writing nothing, unless ``--allow-unknown``, which lets categories nobody classified
through (still listed on stderr, their rows left out) but no other problem. The rows are stored
under one ``imported_at``: an import of a period replaces that period (readers take the latest
import per period: the view ``citizen_votes_latest``). Two imports within one second get distinct
times (the later one is moved a second past the stored one).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from schemas.votes import PRIORITY_CATEGORIES, VoteBatch, parse_votes

if TYPE_CHECKING:
    from pipeline.settings import Settings
    from sinks.clickhouse import ClickHouse


def add_votes_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    votes = sub.add_parser(
        "votes",
        help="citizens' votes on what to test (you pick, we test): import a period's vote file",
        description="Citizens' votes per food category and period; the ten categories with the most votes in "
        "a period become its priority categories in the sampling plan.",
        epilog=epilog,
    )
    votes_sub = votes.add_subparsers(dest="votes_command", metavar="ACTION", required=True)
    imp = votes_sub.add_parser(
        "import",
        help="import a vote file (CSV: category, votes, period); a period imported again is replaced",
        description="Read a CSV with the columns category, votes and period (YYYY-MM); each category is "
        "resolved through the food classification's codes, names and aliases. Problems are listed on stderr "
        "with their line and the command exits 1 without writing, unless --allow-unknown lets unknown "
        "categories through (listed, left out). Each period in the file replaces what was imported for it.",
        epilog=epilog,
    )
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.add_argument("--allow-unknown", action="store_true",
                     help="import the known categories even when some are unknown (those are listed, left out)")
    imp.add_argument("--dry-run", action="store_true", help="parse, resolve and report; write nothing")


def import_time(ch: ClickHouse, database: str, periods: tuple[str, ...], now: datetime) -> datetime:
    """``now`` to the second, moved past the latest stored import of any of ``periods``."""
    from sinks.clickhouse import quote_identifier

    at = now.astimezone(UTC).replace(microsecond=0)
    table = f"{quote_identifier(database)}.citizen_votes"
    latest = ch.query(
        f"SELECT max(imported_at) FROM {table} WHERE has(%(periods)s, period)",  # noqa: S608 - quoted identifier
        {"periods": list(periods)},
    ).scalar()
    if isinstance(latest, datetime) and latest.year > 1970 and latest >= at:
        at = latest.astimezone(UTC) + timedelta(seconds=1)
    return at


def store_votes(ch: ClickHouse, database: str, batch: VoteBatch, now: datetime) -> datetime:
    from sinks.clickhouse.schema import CITIZEN_VOTES_COLUMNS

    at = import_time(ch, database, batch.periods, now)
    rows = [(r.period, r.category, r.label, r.votes, r.rank, at.replace(tzinfo=None)) for r in batch.rows]
    ch.insert(f"{database}.citizen_votes", CITIZEN_VOTES_COLUMNS, rows)
    return at


def run_votes_import(
    args: argparse.Namespace,
    settings: Settings,
    *,
    open_writer: Callable[[Settings], ClickHouse],
    now: datetime,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    from pipeline.refdata import load_configured_reference

    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"foodrisk votes import: cannot read {path}: {exc}", file=err)
        return 2
    batch = parse_votes(text, load_configured_reference(settings))
    for problem in batch.problems:
        print(problem.render(str(path)), file=err)
    for note in batch.merged:
        print(f"{path}: one category named twice: {note}", file=err)
    blocking = batch.blocking(allow_unknown=args.allow_unknown)
    if blocking:
        hint = " (--allow-unknown imports the rest)" if all(p.kind == "unknown_category" for p in blocking) else ""
        print(f"foodrisk votes import: {len(blocking)} problem(s) in {path}; nothing imported{hint}", file=err)
        return 1
    if not batch.rows:
        print(f"foodrisk votes import: no vote in {path}; nothing imported", file=err)
        return 1
    left_out = len(batch.unknown())
    summary = (f"{len(batch.rows)} categories for {', '.join(batch.periods)} from {batch.lines_read} line(s)"
               + (f"; {left_out} unknown left out" if left_out else ""))
    if args.dry_run:
        print(f"dry run: {summary}; nothing written", file=out)
    else:
        ch = open_writer(settings)
        try:
            at = store_votes(ch, settings.database, batch, now)
        finally:
            ch.close()
        print(f"imported {summary} at {at:%Y-%m-%d %H:%M:%S} UTC (each period replaces its earlier import)", file=out)
    for period in batch.periods:
        top = [r for r in batch.rows if r.period == period and r.rank <= PRIORITY_CATEGORIES]
        names = ", ".join(f"{r.rank}. {r.category} ({r.votes})" for r in top)
        print(f"{period} priority categories: {names}", file=out)
    return 0
