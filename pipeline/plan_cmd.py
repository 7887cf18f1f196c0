"""`foodrisk plan` and ``GET /v1/plan``: the day's sampling plan from ClickHouse history, stored in
``sampling_plans``; and `foodrisk plan --backtest` (``pipeline/plan_backtest.py``).

What is read (all within ``FOODRISK_PLAN_LOOKBACK_DAYS`` before the planned day, results FINAL):

- **history**: tests per (site, commodity, method, analyte, day in China) at the sites that sample
  (not testing centres), and how many were non-compliant (verdict ``exceeds``, ``banned`` or
  ``positive``); lab confirmations (``confirms`` set) are left out, their quick test counts. The
  sites, their districts and each site's candidate strata (those tested there) come from the same rows;
- **follow-ups**: vendors on the red list (``redlist FINAL``, listed) with the commodity, method and
  analyte of their latest non-compliant result; open ``supplier_cluster`` alerts (no resolved row),
  followed up at every site the supplier delivered to; open ``unconfirmed_positive`` alerts, a lab
  sample at the alert's site and vendor;
- **priority categories**: the top 10 of ``citizen_votes_latest`` for the latest period up to the
  planned day's month.

The plan (:func:`schemas.plan.make_plan`) is stored under one ``planned_at``; each run is kept
and readers take the latest run per day and district (``sampling_plans_latest``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from schemas.plan import (
    POPULATIONS_FILE,
    REASON_CLUSTER,
    REASON_REDLIST,
    REASON_UNCONFIRMED,
    FollowUp,
    HistoryCount,
    Plan,
    PlanParams,
    SiteBudget,
    Stratum,
    make_plan,
    parse_populations,
    site_budgets,
)
from schemas.votes import PRIORITY_CATEGORIES

if TYPE_CHECKING:
    from pipeline.settings import Settings
    from schemas.reference import Reference
    from sinks.clickhouse import ClickHouse

NONCOMPLIANT = ("exceeds", "banned", "positive")
SAMPLING_SITE = "site_type != 'testing_centre'"
PLAN_COLUMNS = ("district", "site_id", "line", "commodity", "method", "analyte", "vendor_id", "supplier_id", "tests",
                "reason", "reason_text", "score")

# (sql, params) -> rows as sequences
Select = Callable[[str, Mapping[str, Any]], Sequence[Sequence[Any]]]



# The days a plan can be made for: ClickHouse DateTime covers 1970-2106, and a plan reads 90 days of
# history before its day.
FIRST_PLAN_DAY: Final = dt.date(2000, 1, 1)
LAST_PLAN_DAY: Final = dt.date(2100, 12, 31)


def plan_day(text: str) -> dt.date:
    """``YYYY-MM-DD`` within [FIRST_PLAN_DAY, LAST_PLAN_DAY]; ValueError naming the range otherwise."""
    day = dt.date.fromisoformat(text)
    if not FIRST_PLAN_DAY <= day <= LAST_PLAN_DAY:
        raise ValueError(f"the day to plan must lie between {FIRST_PLAN_DAY} and {LAST_PLAN_DAY}")
    return day

def add_plan_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    p = sub.add_parser(
        "plan",
        help="the day's risk-based sampling plan per district and site (stored in sampling_plans), or a backtest",
        description="Plan a day's sampling within each site's budget: follow-ups first (unconfirmed quick "
        "positives, open supplier clusters, red-listed vendors), then the citizens' priority categories, then "
        "the highest shrunk non-compliance estimates, with a fixed random share (FOODRISK_PLAN_RANDOM_SHARE) "
        "drawn uniformly. Reads history like `foodrisk query` (with chdb through the running worker's "
        "GET /v1/plan, which stores the plan; else directly) and stores the plan in sampling_plans. "
        "--backtest runs the risk plan against uniform allocation on the simulator's hidden truth instead.",
        epilog=epilog,
    )
    p.add_argument("--date", type=plan_day, default=None, metavar="YYYY-MM-DD",
                   help="the day to plan (default: tomorrow in China)")
    p.add_argument("--district", default=None, help="only this district")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--seed", type=int, default=None, help="seed of the random share (default: from the date)")
    p.add_argument("--backtest", action="store_true", help="risk plan vs uniform allocation on the simulator")
    p.add_argument("--days", type=int, default=30, help="with --backtest: simulated days (default 30)")


def plan_params(settings: Settings) -> PlanParams:
    return PlanParams(
        half_life_days=settings.plan_half_life_days,
        prior_tests=settings.plan_prior_tests,
        random_share=settings.plan_random_share,
        priority_share=settings.plan_priority_share,
        max_tests_per_line=settings.plan_max_tests_per_line,
    )


def default_seed(day: dt.date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def china_tomorrow(now: dt.datetime) -> dt.date:
    return (now.astimezone(dt.timezone(dt.timedelta(hours=8))) + dt.timedelta(days=1)).date()


@dataclass(frozen=True)
class PlanInputs:
    budgets: list[SiteBudget]
    candidates: dict[str, list[Stratum]]
    history: list[HistoryCount]
    follow_ups: list[FollowUp]
    priority: list[str]


def _table(database: str, name: str) -> str:
    from sinks.clickhouse import quote_identifier

    return f"{quote_identifier(database)}.{quote_identifier(name)}"


def gather(
    select: Select, database: str, day: dt.date, *, lookback_days: int, district: str | None,
    populations: Mapping[str, int], tests_per_1000: float, per_site: int | None,
) -> PlanInputs:
    """Everything the planner needs, read through ``select`` (see the module's text)."""
    until = dt.datetime(day.year, day.month, day.day) - dt.timedelta(hours=8)  # noqa: DTZ001 - naive UTC
    since = until - dt.timedelta(days=lookback_days)
    window = {"since": since.strftime("%Y-%m-%d %H:%M:%S"), "until": until.strftime("%Y-%m-%d %H:%M:%S")}
    in_window = "sampled_at >= toDateTime(%(since)s, 'UTC') AND sampled_at < toDateTime(%(until)s, 'UTC')"
    where = f"{in_window} AND {SAMPLING_SITE} AND confirms IS NULL AND verdict NOT IN ('unclassified', 'no_limit')"
    params: dict[str, Any] = dict(window)
    if district:
        where += " AND district = %(district)s"
        params["district"] = district
    results = _table(database, "results")
    rows = select(
        "SELECT site_id, any(district) AS site_district, any(site_type) AS site_kind, commodity, method, analyte, "  # noqa: S608
        "toDate(sampled_at + 28800) AS day, count() AS tests, "
        f"countIf(verdict IN ('exceeds', 'banned', 'positive')) AS noncompliant FROM {results} FINAL WHERE {where} "
        "GROUP BY site_id, commodity, method, analyte, day",
        params,
    )
    history: list[HistoryCount] = []
    sites: dict[str, tuple[str, str]] = {}
    candidates: dict[str, set[Stratum]] = {}
    for site, dist, site_type, commodity, method, analyte, d, tests, bad in rows:
        stratum = Stratum(str(commodity), str(method), str(analyte))
        day_ = d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)[:10])
        history.append(HistoryCount(str(site), str(dist), stratum, day_, int(tests), int(bad)))
        sites[str(site)] = (str(dist), str(site_type))
        candidates.setdefault(str(site), set()).add(stratum)
    budgets = site_budgets([(s, d, t) for s, (d, t) in sites.items()], populations,
                           tests_per_1000_a_year=tests_per_1000, per_site=per_site)
    follow_ups = _follow_ups(select, database, params, in_window, sites)
    return PlanInputs(budgets, {s: sorted(c) for s, c in candidates.items()}, history, follow_ups,
                      _priority(select, database, day))


def _follow_ups(
    select: Select, database: str, params: dict[str, Any], in_window: str, sites: Mapping[str, tuple[str, str]]
) -> list[FollowUp]:
    out: list[FollowUp] = []
    results, alerts, redlist = (_table(database, t) for t in ("results", "alerts", "redlist"))
    alert_rows = select(
        "SELECT alert_id, any(kind), any(site_id), any(district), any(commodity), any(analyte), any(supplier_id), "  # noqa: S608
        f"any(vendor_id), min(starts_at) FROM {alerts} "
        "WHERE kind IN ('unconfirmed_positive', 'supplier_cluster') "
        "AND starts_at >= toDateTime(%(since)s, 'UTC') AND starts_at < toDateTime(%(until)s, 'UTC') "
        "GROUP BY alert_id HAVING countIf(status = 'resolved') = 0 ORDER BY min(starts_at), alert_id",
        params,
    )
    clusters: list[tuple[str, str, str, str]] = []
    for alert_id, kind, site, _district, commodity, analyte, supplier, vendor, starts in alert_rows:
        if kind == REASON_UNCONFIRMED and site is not None and str(site) in sites:
            stratum = Stratum(str(commodity or ""), "", str(analyte or ""))
            out.append(FollowUp(
                REASON_UNCONFIRMED, str(site), sites[str(site)][0], stratum,
                f"quick positive not confirmed by a lab since {str(starts)[:16]} (alert {alert_id}): take a lab sample",
                vendor_id=str(vendor) if vendor else None, supplier_id=str(supplier) if supplier else None))
        elif kind == REASON_CLUSTER and supplier:
            clusters.append((str(alert_id), str(supplier), str(commodity or ""), str(analyte or "")))
    if clusters:
        delivered = select(
            f"SELECT DISTINCT supplier_id, site_id FROM {results} FINAL WHERE {in_window} AND {SAMPLING_SITE} "  # noqa: S608
            "AND has(%(suppliers)s, supplier_id) ORDER BY supplier_id, site_id",
            {**params, "suppliers": sorted({c[1] for c in clusters})},
        )
        sites_of: dict[str, list[str]] = {}
        for supplier, site in delivered:
            sites_of.setdefault(str(supplier), []).append(str(site))
        for alert_id, supplier, commodity, analyte in clusters:
            out.extend(
                FollowUp(REASON_CLUSTER, site, sites[site][0], Stratum(commodity, "", analyte),
                         f"open supplier cluster {alert_id}: supplier {supplier} non-compliant at 2+ sites; "
                         "sample its goods here", supplier_id=supplier)
                for site in sites_of.get(supplier, []) if site in sites
            )
    listed = select(
        f"SELECT vendor_id, site_id, district FROM {redlist} FINAL WHERE listed = 1 ORDER BY listed_at, vendor_id",  # noqa: S608
        {},
    )
    if listed:
        latest = select(
            "SELECT vendor_id, argMax(commodity, sampled_at), argMax(method, sampled_at), "  # noqa: S608
            f"argMax(analyte, sampled_at) FROM {results} FINAL WHERE has(%(vendors)s, vendor_id) "
            "AND verdict IN ('exceeds', 'banned', 'positive') GROUP BY vendor_id",
            {"vendors": [str(r[0]) for r in listed]},
        )
        what = {str(r[0]): Stratum(str(r[1]), str(r[2]), str(r[3])) for r in latest}
        for vendor, site, _district in listed:
            if str(site) in sites and str(vendor) in what:
                out.append(FollowUp(REASON_REDLIST, str(site), sites[str(site)][0], what[str(vendor)],
                                    f"red-listed vendor {vendor}: sample what it was found non-compliant for",
                                    vendor_id=str(vendor)))
    return out


def _priority(select: Select, database: str, day: dt.date) -> list[str]:
    votes = _table(database, "citizen_votes_latest")
    rows = select(
        f"SELECT period, category FROM {votes} WHERE period = (SELECT max(period) FROM {votes} "  # noqa: S608
        f"WHERE period <= %(period)s) AND rank <= {PRIORITY_CATEGORIES} ORDER BY rank, category",
        {"period": f"{day.year:04d}-{day.month:02d}"},
    )
    return [str(r[1]) for r in rows]


def populations(settings: Settings) -> dict[str, int]:
    path = settings.plan_populations_file or POPULATIONS_FILE
    return parse_populations(Path(path).read_text(encoding="utf-8"))


def build(
    select: Select, settings: Settings, reference: Reference, day: dt.date, district: str | None, seed: int | None
) -> Plan:
    inputs = gather(select, settings.database, day, lookback_days=settings.plan_lookback_days, district=district,
                    populations=populations(settings), tests_per_1000=settings.plan_tests_per_1000,
                    per_site=settings.plan_site_budget)
    ancestors = {s.commodity: reference.ancestors(reference.normalise_commodity(s.commodity))
                 for c in inputs.candidates.values() for s in c}
    return make_plan(day, inputs.budgets, inputs.candidates, inputs.history, follow_ups=inputs.follow_ups,
                     priority=inputs.priority, ancestors=ancestors, params=plan_params(settings),
                     seed=default_seed(day) if seed is None else seed)


def plan_table(plan: Plan) -> tuple[list[str], list[list[Any]]]:
    rows = [[ln.district, ln.site_id, ln.line, ln.stratum.commodity, ln.stratum.method, ln.stratum.analyte,
             ln.vendor_id, ln.supplier_id, ln.tests, ln.reason, ln.reason_text, ln.score] for ln in plan.lines]
    return list(PLAN_COLUMNS), rows


def store_plan(ch: ClickHouse, database: str, plan: Plan, planned_at: dt.datetime) -> int:
    from sinks.clickhouse.schema import SAMPLING_PLANS_COLUMNS

    at = planned_at.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None)
    rows = [(plan.day, ln.district, ln.site_id, ln.line, ln.stratum.commodity, ln.stratum.method, ln.stratum.analyte,
             ln.vendor_id, ln.supplier_id, ln.tests, ln.reason, ln.reason_text, ln.score, plan.budgets[ln.site_id],
             plan.seed, at) for ln in plan.lines]
    if rows:
        ch.insert(f"{database}.sampling_plans", SAMPLING_PLANS_COLUMNS, rows)
    return len(rows)


def plan_document(plan: Plan, planned_at: dt.datetime, district: str | None) -> dict[str, Any]:
    """The JSON answer of GET /v1/plan (and `foodrisk plan --format json`'s header line)."""
    cols, rows = plan_table(plan)
    return {
        "date": plan.day.isoformat(),
        "district": district,
        "seed": plan.seed,
        "planned_at": planned_at.astimezone(dt.UTC).replace(microsecond=0).isoformat(),
        "sites": len(plan.budgets),
        "budget": sum(plan.budgets.values()),
        "tests_by_reason": plan.tests_by_reason(),
        "columns": cols,
        "rows": rows,
        "deferred": [{"reason": f.reason, "site_id": f.site_id, "commodity": f.stratum.commodity,
                      "analyte": f.stratum.analyte, "vendor_id": f.vendor_id, "supplier_id": f.supplier_id,
                      "text": f.text} for f in plan.deferred],
    }


def make_and_store(ch: ClickHouse, settings: Settings, reference: Reference, day: dt.date, district: str | None,
                   seed: int | None, now: dt.datetime) -> dict[str, Any]:
    """Plan from ``ch``'s history, store it, return :func:`plan_document` (the query port's handler)."""

    def select(sql: str, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        return ch.query(sql, params).rows

    plan = build(select, settings, reference, day, district, seed)
    store_plan(ch, settings.database, plan, now)
    return plan_document(plan, now, district)


def print_document(doc: Mapping[str, Any], fmt: str, out: TextIO, err: TextIO) -> None:
    from pipeline.query.render import render

    print(render(doc["columns"], doc["rows"], fmt), file=out)
    by = ", ".join(f"{k} {v}" for k, v in doc["tests_by_reason"].items() if v)
    summary = (f"plan of {doc['date']}{' for ' + doc['district'] if doc['district'] else ''}: {len(doc['rows'])} "
               f"lines, {doc['budget']} tests at {doc['sites']} sites ({by or 'none'}); seed {doc['seed']}; stored "
               f"in sampling_plans at {doc['planned_at']}")
    print(summary, file=out if fmt == "table" else err)
    if not doc["sites"]:
        print(f"no sampling site has results in the {doc.get('lookback_days', 'look-back')} days before "
              f"{doc['date']}: nothing to plan (FOODRISK_PLAN_LOOKBACK_DAYS)", file=err)
    for f in doc["deferred"]:
        print(f"deferred (over the site's budget): {f['reason']} at {f['site_id']}: {f['text']}", file=err)


def run_plan(args: argparse.Namespace, settings: Settings, *, now: dt.datetime, out: TextIO = sys.stdout,
             err: TextIO = sys.stderr) -> int:
    if args.backtest:
        from pipeline.plan_backtest import run_backtest

        result = run_backtest(days=args.days, seed=7 if args.seed is None else args.seed, params=plan_params(settings))
        print("\n".join(result.lines()), file=out)
        return 0
    day = args.date or china_tomorrow(now)
    if settings.uses_chdb:
        from pipeline.query.client import WorkerUnreachable, analyst_token, query_address

        address, token = query_address(settings), analyst_token(settings)
        if address is not None and token is not None:
            try:
                doc = ask_plan(*address, token=token, day=day, district=args.district, seed=args.seed)
            except WorkerUnreachable:
                pass
            else:
                print_document(doc, args.format, out, err)
                return 0
    from pipeline.refdata import load_configured_reference
    from pipeline.worker import open_clickhouse

    reference = load_configured_reference(settings)
    ch = open_clickhouse(settings)
    try:
        doc = make_and_store(ch, settings, reference, day, args.district, args.seed, now)
    finally:
        ch.close()
    print_document(doc, args.format, out, err)
    return 0


def ask_plan(host: str, port: int, *, token: str, day: dt.date, district: str | None, seed: int | None,
             timeout_s: float = 120.0) -> dict[str, Any]:
    """GET /v1/plan of a running worker (it plans from its history and stores the plan)."""
    import urllib.parse

    from pipeline.query.client import call_worker

    query: dict[str, str] = {"date": day.isoformat()}
    if district:
        query["district"] = district
    if seed is not None:
        query["seed"] = str(seed)
    doc: dict[str, Any] = call_worker(f"/v1/plan?{urllib.parse.urlencode(query)}", host, port, token=token,
                                      timeout_s=timeout_s)
    return doc
