"""The `foodrisk` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from pipeline.settings import Settings, SettingsError, load_settings
from sinks.redact import install_log_redaction, redact

log = logging.getLogger("foodrisk")

EPILOG = "Settings come from FOODRISK_* environment variables; see the README."


def _positive_float(text: str) -> float:
    v = float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="foodrisk",
        description="Streaming food-safety risk monitoring: screen quick tests and lab results against "
        "national limits, raise early warnings, store everything in ClickHouse.",
        epilog=EPILOG,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="the main job: embedded broker + worker + simulated device fleet, then a summary",
        description="Start the embedded broker and a worker (ClickHouse in-process by default), run the "
        "simulated fleet of market and lab devices, print each alert as it fires, and on exit a summary "
        "drawn from ClickHouse. Ctrl-C ends it cleanly.",
        epilog=EPILOG,
    )
    run.add_argument("--duration", type=_positive_float, default=None, help="seconds to run (default: until Ctrl-C)")
    _fleet_args(run, speed=5400.0, rate=500.0)

    sub.add_parser(
        "worker",
        help="run the stream worker (all agents) against the configured broker and ClickHouse",
        description="Run the Faust worker with every agent. With FOODRISK_BROKER_URL=embedded it also starts "
        "an embedded broker for itself.",
        epilog=EPILOG,
    )

    sim = sub.add_parser(
        "simulate",
        help="run only the simulated device fleet, publishing to the configured broker",
        description="Publish simulated results to the results topic of a running broker "
        "(FOODRISK_BROKER_URL must be kafka://...).",
        epilog=EPILOG,
    )
    sim.add_argument("--duration", type=_positive_float, default=None, help="seconds to run (default: until Ctrl-C)")
    _fleet_args(sim, speed=60.0, rate=None)

    scr = sub.add_parser(
        "screen",
        help="screen results given as JSON lines on stdin; one JSON verdict per line on stdout",
        description="Read wire-format v1 results (one JSON object per line) from stdin and write one JSON "
        "line per input with result_id, verdict, limit_mg_kg, ratio and basis. Invalid lines give "
        '{"line": N, "verdict": "invalid", "errors": [...]} and processing goes on.',
        epilog=EPILOG,
    )
    scr.add_argument("--now", default=None, help="ISO time used as 'now' for the future-time check (default: clock)")

    q = sub.add_parser(
        "query",
        help="run a read-only SELECT on the foodrisk database and print the answer",
        description="Run one SELECT. With the chdb default it asks the running worker on its query port "
        "(FOODRISK_QUERY_PORT) with an analyst token (FOODRISK_ANALYST_TOKEN, else the worker's "
        "DATA_DIR/auth/local-analyst.token), or opens the database itself when no worker runs. With "
        "clickhouse:// it connects to ClickHouse directly, as the URL's ClickHouse user.",
        epilog=EPILOG,
    )
    q.add_argument("sql", help="one SELECT statement; %%(name)s or {name:Type} placeholders take --param values")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="bind a parameter")
    q.add_argument("--max-rows", type=int, default=10_000)

    rs = sub.add_parser(
        "rescreen",
        help="what another reference edition would change in the stored results (read-only)",
        description="Read the results sampled since --since (until --until, default: all) from ClickHouse, "
        "as `foodrisk query` reads, screen each again with the reference files of --edition DIR (with the "
        "configured cut-offs) and compare with the stored verdict: newly exceeding, newly compliant, other "
        "verdict changes and limit-only changes, by commodity and analyte, with totals. Writes nothing to "
        "ClickHouse. Progress and a summary go to stderr.",
        epilog=EPILOG,
    )
    rs.add_argument("--edition", required=True, metavar="DIR", help="directory of the reference CSV files to try")
    rs.add_argument("--since", required=True, metavar="DATE",
                    help="first sampling time: a date (the start of that day in China) or an ISO time")
    rs.add_argument("--until", default=None, metavar="DATE", help="end of the sampling times (exclusive)")
    rs.add_argument("--format", choices=["table", "csv", "json"], default="table")

    rl = sub.add_parser(
        "redlist",
        help="the red list of repeat-offender vendors (early warning)",
        description="Print the vendors on the red list: >= FOODRISK_EW_OFFENDER_N non-compliant samples within "
        "FOODRISK_EW_OFFENDER_DAYS days; a vendor comes off after FOODRISK_EW_OFFENDER_CLEAN_K consecutive clean "
        "samples. Reads like `foodrisk query` (through the running worker with chdb, else directly).",
        epilog=EPILOG,
    )
    rl.add_argument("--all", action="store_true", help="also vendors taken off the list")
    rl.add_argument("--vendor", default=None, help="only this vendor id")
    rl.add_argument("--format", choices=["table", "csv", "json"], default="table")

    pub = sub.add_parser(
        "publish",
        help="write a static site of a period's results, as a regulator publishes them",
        description="Read the period's results from ClickHouse (like `foodrisk query`) and write HTML pages with "
        "CSV and JSON beside them to --out: tests and pass rate by food category, district and site type; the "
        "lab-confirmed non-compliant results with vendor, product, item, value, limit and basis; the citizens' "
        "priority categories. Quick-test positives are counts only; results not judged are never passes.",
        epilog=EPILOG,
    )
    pub.add_argument("--period", required=True, metavar="YYYY-MM",
                     help="a calendar month in China time (Asia/Shanghai), e.g. 2026-11")
    pub.add_argument("--out", required=True, metavar="DIR", help="directory to write (created; files replaced)")

    mig = sub.add_parser(
        "migrate",
        help="create or upgrade the ClickHouse schema (idempotent)",
        description="Apply the versioned ClickHouse migrations to the configured database "
        "(ON CLUSTER with FOODRISK_CLICKHOUSE_CLUSTER). --print-ddl only prints the statements.",
        epilog=EPILOG,
    )
    mig.add_argument(
        "--print-ddl", action="store_true",
        help="print every statement for an empty database instead of connecting (for review by a DBA)",
    )
    mig.add_argument(
        "--server-version", default="25.8", metavar="X.Y",
        help="with --print-ddl: the ClickHouse version to render for (default 25.8)",
    )
    dev = sub.add_parser(
        "devices",
        help="manage the device tokens of HTTP ingest (add, list, revoke)",
        description="Device tokens for POST /v1/results on the worker's web port. The registry "
        "(FOODRISK_INGEST_TOKENS_FILE) keeps only hashes; a running worker picks changes up within a second.",
        epilog=EPILOG,
    )
    dev_sub = dev.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    dev_add = dev_sub.add_parser("add", help="register a device and print its new token (shown once)")
    dev_add.add_argument("name", metavar="DEVICE_ID", help="the device_id its results carry")
    dev_add.add_argument("--replace", action="store_true", help="issue a new token for a registered device")
    dev_add.add_argument("--site", default=None, metavar="SITE_ID",
                         help="bind the device to this site: its results naming another site.id get 403 "
                         "(with --replace, the binding is kept unless --site is given)")
    dev_add.add_argument("--note", default="", help="free text kept with the entry (owner, site)")
    dev_sub.add_parser("list", help="registered devices, active and revoked (never the tokens)")
    dev_rev = dev_sub.add_parser("revoke", help="revoke a device's token (its requests get 401)")
    dev_rev.add_argument("name", metavar="DEVICE_ID")

    ana = sub.add_parser(
        "analysts",
        help="manage the analyst tokens of the query port (add, list, revoke)",
        description="Analyst tokens for POST /v1/query on the worker's query port (FOODRISK_QUERY_PORT). The "
        "registry (FOODRISK_ANALYST_TOKENS_FILE) keeps only hashes; a running worker picks changes up within a "
        "second. The worker registers its own token as `local` at each start.",
        epilog=EPILOG,
    )
    ana_sub = ana.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    ana_add = ana_sub.add_parser("add", help="register an analyst and print the new token (shown once)")
    ana_add.add_argument("name", metavar="NAME", help="who the token is for")
    ana_add.add_argument("--replace", action="store_true", help="issue a new token for a registered analyst")
    ana_add.add_argument("--note", default="", help="free text kept with the entry")
    ana_sub.add_parser("list", help="registered analysts, active and revoked (never the tokens)")
    ana_rev = ana_sub.add_parser("revoke", help="revoke an analyst's token (its requests get 401)")
    ana_rev.add_argument("name", metavar="NAME")

    imp = sub.add_parser(
        "import",
        help="import a CSV / LIMS export into the results topic",
        description="Stream FILE (constant memory), map each row to a wire-format v1 result (the wire "
        "format's own column names, or --mapping MAP.yaml for a LIMS export), validate it, and publish the "
        "valid ones to the results topic in batches. Ends with a summary: accepted, rejected and duplicates; "
        "the line numbers and reasons go to the rejects file. Exit 0 when every row was accepted (or was a "
        "duplicate), 1 when some were rejected or not delivered.",
        epilog=EPILOG,
    )
    imp.add_argument("file", help="the CSV file (first line: column names)")
    imp.add_argument("--mapping", default=None, metavar="MAP.yaml",
                     help="column mapping (see deploy/import/lims-mapping.example.yaml); default: wire-format names")
    imp.add_argument("--rejects", default=None, metavar="FILE",
                     help="where to write rejected lines with reasons (default: FILE.rejects.csv)")
    imp.add_argument("--dry-run", action="store_true", help="validate only; publish nothing")
    imp.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    imp.add_argument("--quiet", action="store_true", help="no progress line on stderr")

    _reference_parser(sub)
    from pipeline.plan_cmd import add_plan_parser
    from pipeline.votes_cmd import add_votes_parser

    add_votes_parser(sub, EPILOG)
    add_plan_parser(sub, EPILOG)

    sub.add_parser(
        "check",
        help="check the settings and that the broker and ClickHouse answer",
        description="Validate the settings, start (embedded) or reach (kafka://) the broker, open "
        "ClickHouse, and report. Exit 0 when everything answers.",
        epilog=EPILOG,
    )
    return p


def _reference_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``foodrisk reference ACTION``: the reference data's commands (each action's arguments in its own
    function below)."""
    from pipeline.reference_cmd import add_actions

    ref = sub.add_parser(
        "reference",
        help="the reference data (foods, analytes, limits, bans): build, import, counts, what it is missing",
        description="Commands about the reference data the screening judges against "
        "(schemas/reference/, built from the standards' tables in schemas/reference/sources/).",
        epilog=EPILOG,
    )
    ref_sub = ref.add_subparsers(dest="reference_command", metavar="ACTION", required=True)
    add_actions(ref_sub)
    _reference_gaps_parser(ref_sub)


def _reference_gaps_parser(ref_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pipeline.gaps import parse_since

    gaps = ref_sub.add_parser(
        "gaps",
        help="the commodity and analyte labels results carried that the reference data does not know",
        description="List from ClickHouse the labels seen in unclassified results (a commodity or analyte the "
        "reference data does not know): field, label, results, first and last sampled_at (UTC), sites and "
        "devices, most frequent first. Reads like `foodrisk query` (through the running worker with chdb, "
        "else directly). Each is a job for the data steward: add it as an alias, or add the food or analyte.",
        epilog=EPILOG,
    )
    gaps.add_argument("--since", type=parse_since, default=None, metavar="DATE",
                      help="only results sampled from then on: YYYY-MM-DD (00:00 UTC) or an ISO time with a zone")
    gaps.add_argument("--format", choices=["table", "csv", "json"], default="table")


def _fleet_args(p: argparse.ArgumentParser, *, speed: float, rate: float | None) -> None:
    p.add_argument("--speed", type=_positive_float, default=speed,
                   help=f"simulated seconds per real second (default {speed:g}); the simulated clock starts at "
                   "06:00 Beijing time four days back and never passes the wall clock")
    p.add_argument("--rate", type=_positive_float, default=rate,
                   help="results per simulated hour, fleet total (default "
                   + (f"{rate:g}" if rate else "the simulator's, about 2,000") + ")")
    p.add_argument("--seed", type=int, default=7, help="random seed of the fleet")


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.demo import run_demo

    return run_demo(settings, duration_s=args.duration, speed=args.speed, rate_per_sim_hour=args.rate, seed=args.seed)


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.worker import run_worker

    return run_worker(settings)


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.simulator.publish import run_fleet
    from pipeline.topics import ensure_topics

    if settings.embedded:
        raise SettingsError("simulate publishes to a running broker: set FOODRISK_BROKER_URL=kafka://host:port")
    bootstrap = settings.bootstrap_servers()
    ensure_topics(settings, bootstrap)

    try:
        progress = run_fleet(
            settings, bootstrap, duration_s=args.duration, speed=args.speed,
            rate_per_sim_hour=args.rate, seed=args.seed,
        )
    except KeyboardInterrupt:
        return 130
    print(f"sent {progress.sent} messages ({progress.invalid} deliberately invalid, "  # noqa: T201
          f"{progress.failed} not delivered)")
    return 1 if progress.failed else 0


def _cmd_screen(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.refdata import load_configured_reference
    from pipeline.screen_cmd import run_screen

    now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    if now.tzinfo is None:
        raise SettingsError("--now needs a time zone, e.g. 2026-11-28T08:00:00+08:00")
    reference = load_configured_reference(settings)
    run_screen(sys.stdin, sys.stdout, reference=reference, now=now, watch_fraction=settings.watch_fraction)
    return 0


def _cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.query.guard import QueryRejected
    from pipeline.query.render import render

    params: dict[str, str] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"--param {item!r}: expected NAME=VALUE")
        params[name] = value
    try:
        cols, rows, truncated = _select(settings, args.sql, params, args.max_rows)
    except QueryRejected as exc:
        print(f"foodrisk query: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(render(cols, rows, args.format))  # noqa: T201
    if truncated:
        print(f"(first {args.max_rows} rows shown; raise --max-rows for more)", file=sys.stderr)  # noqa: T201
    return 0


def _select(
    settings: Settings, sql: str, params: dict[str, str], max_rows: int
) -> tuple[list[str], list[list[object]], bool]:
    """One guarded SELECT, as `foodrisk query` runs it: with chdb through the running worker's query
    port (else the database opened here), with clickhouse:// directly. Raises QueryRejected.
    (``pipeline.query.client.SelectReader``, for one query.)"""
    from pipeline.query.client import SelectReader

    reader = SelectReader(settings)
    try:
        return reader.select(sql, dict(params), max_rows=max_rows)
    finally:
        reader.close()


def _cmd_rescreen(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from pipeline.query.client import SelectReader
    from pipeline.query.guard import QueryRejected
    from pipeline.rescreen_cmd import parse_when, run_rescreen

    since = parse_when(args.since, "--since")
    until = parse_when(args.until, "--until") if args.until else datetime.now(UTC) + timedelta(days=1)
    reader = SelectReader(settings)
    try:
        run_rescreen(settings, reader, directory=Path(args.edition), since=since, until=until, fmt=args.format,
                     out=sys.stdout, err=sys.stderr, now=datetime.now(UTC))
    except QueryRejected as exc:
        print(f"foodrisk rescreen: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        reader.close()
    return 0


def _cmd_redlist(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.clickhouse import quote_identifier

    where = [] if args.all else ["listed = 1"]
    params = []
    if args.vendor:
        where.append("vendor_id = %(vendor)s")
        params.append(f"vendor={args.vendor}")
    table = f"{quote_identifier(settings.database)}.redlist"
    cols = "vendor_id, listed, listed_at, changed_at, findings, clean_run, site_id, district, alert_id"
    sql = f"SELECT {cols} FROM {table} FINAL"  # noqa: S608 - a quoted identifier, fixed columns
    if where:
        sql += f" WHERE {' AND '.join(where)}"
    sql += " ORDER BY listed DESC, listed_at DESC, vendor_id"
    return _cmd_query(argparse.Namespace(sql=sql, format=args.format, param=params, max_rows=10_000), settings)


def _cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from pipeline.publish.command import parse_period, print_summary, publish
    from pipeline.publish.tally import names_from
    from pipeline.query.client import SelectReader
    from pipeline.query.guard import QueryRejected
    from pipeline.refdata import load_configured_reference

    parse_period(args.period)  # a PublishError (ValueError): one line, exit 2
    names = names_from(load_configured_reference(settings))
    reader = SelectReader(settings)
    out = Path(args.out)
    try:
        report, files = publish(
            lambda sql, params, max_rows: reader.select(sql, dict(params), max_rows=max_rows),
            database=settings.database, period=args.period, names=names, out=out, generated_at=datetime.now(UTC),
        )
    except QueryRejected as exc:
        print(f"foodrisk publish: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        reader.close()
    print_summary(report, out, files, sys.stdout)
    return 0


def _cmd_reference(args: argparse.Namespace, settings: Settings) -> int:
    return REFERENCE_COMMANDS[args.reference_command](args, settings)


def _cmd_reference_gaps(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.gaps import run_gaps
    from pipeline.query.guard import QueryRejected

    try:
        return run_gaps(args, settings, _select)
    except QueryRejected as exc:
        print(f"foodrisk reference gaps: {exc}", file=sys.stderr)  # noqa: T201
        return 2


def _cmd_reference_data(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.reference_cmd import main_reference
    return main_reference(args)


REFERENCE_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "gaps": _cmd_reference_gaps,
    "build": _cmd_reference_data,
    "import": _cmd_reference_data,
    "stats": _cmd_reference_data,
}


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.worker import open_clickhouse
    from sinks.clickhouse import Features, parse_version, redact_url

    if args.print_ddl:
        from sinks.ddl import render_all

        features = Features.for_version(parse_version(args.server_version))
        for statement in render_all(settings.database, features, cluster=settings.clickhouse_cluster):
            print(statement + ";\n")  # noqa: T201
        return 0
    ch = open_clickhouse(settings)
    ch.close()
    print(f"ClickHouse schema up to date at {redact_url(settings.clickhouse_url)}")  # noqa: T201
    return 0


def _cmd_devices(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ingest.tokens import main_devices
    return main_devices(args, settings)


def _cmd_analysts(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ingest.tokens import main_analysts
    return main_analysts(args, settings)


def _cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ingest.importer import main_import
    return main_import(args, settings)


def _cmd_votes(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.votes_cmd import run_votes_import
    from pipeline.worker import open_clickhouse

    return run_votes_import(args, settings, open_writer=open_clickhouse, now=datetime.now(UTC))


def _cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.plan_cmd import run_plan
    from pipeline.query.guard import QueryRejected

    try:
        return run_plan(args, settings, now=datetime.now(UTC))
    except QueryRejected as exc:
        print(f"foodrisk plan: {exc}", file=sys.stderr)  # noqa: T201
        return 2


def _cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.topics import admin_client
    from pipeline.worker import broker_for, open_clickhouse
    from sinks.clickhouse import redact_url

    with broker_for(settings, settings.data_dir / "stack") as bootstrap:
        admin = admin_client(settings, bootstrap)
        topics = sorted(t for t in admin.list_topics() if not t.startswith("__"))
        admin.close()
        print(f"broker      ok  {','.join(bootstrap)}; topics: {', '.join(topics) or '-'}")  # noqa: T201
    ch = open_clickhouse(settings)
    version = ".".join(str(x) for x in ch.server_version)
    ch.close()
    print(f"clickhouse  ok  {redact_url(settings.clickhouse_url)} (server {version}, database {settings.database})")  # noqa: T201
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "run": _cmd_run,
    "worker": _cmd_worker,
    "simulate": _cmd_simulate,
    "screen": _cmd_screen,
    "query": _cmd_query,
    "rescreen": _cmd_rescreen,
    "redlist": _cmd_redlist,
    "publish": _cmd_publish,
    "migrate": _cmd_migrate,
    "check": _cmd_check,
    "devices": _cmd_devices,
    "analysts": _cmd_analysts,
    "import": _cmd_import,
    "reference": _cmd_reference,
    "votes": _cmd_votes,
    "plan": _cmd_plan,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    install_log_redaction()  # no secret reaches a log line (sinks/redact.py)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from pipeline.localstack.process import StartupError
    from pipeline.topics import BrokerUnavailable
    from sinks.errors import ClickHouseError

    try:
        settings = load_settings()
        return COMMANDS[args.command](args, settings)
    except (SettingsError, StartupError, BrokerUnavailable, ClickHouseError, ValueError) as exc:
        print(f"foodrisk {args.command}: error: {redact(str(exc))}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        print(f"foodrisk {args.command}: interrupted", file=sys.stderr)  # noqa: T201
        return 130


if __name__ == "__main__":
    sys.exit(main())
