"""`foodrisk publish`'s pure core: who is named, what is counted, what the pass rate is over, the
classification roll-up, the votes, and the pages (escaped, the same numbers in HTML, CSV and JSON,
nothing outside the page)."""

from __future__ import annotations

import copy
import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.publish.command import FINDING_COLUMNS, PublishError, parse_period, publish
from pipeline.publish.page import render_site
from pipeline.publish.tally import (
    UNCLASSIFIED,
    CountRow,
    Counts,
    FollowUps,
    Priority,
    Report,
    ResultRow,
    build_report,
    by_category,
    follow_ups,
    is_confirmed_finding,
    named_findings,
    names_from,
    pass_rate_pct,
    priority_lines,
)
from schemas.reference import default_reference

NAMES = names_from(default_reference())
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>" onmouseover="alert(2)'
T = datetime(2026, 11, 10, 2, 0)  # noqa: DTZ001 - naive UTC, as ClickHouse hands it out


def row(rid: str, *, method: str = "lc_msms", quick: bool = False, verdict: str = "exceeds",
        vendor: str | None = "stall-07", site_name: str = "石牌农贸市场", commodity: str = "cowpea",
        analyte: str = "isocarbophos", limit: float | None = 0.05, sampled_at: datetime = T) -> ResultRow:
    return ResultRow(result_id=rid, sample_id=f"s-{rid}", method=method, quick=quick, verdict=verdict,
                     vendor_id=vendor, site_name=site_name, district="天河", site_type="farmers_market",
                     commodity=commodity, analyte=analyte, value_mg_kg=0.2, limit_mg_kg=limit,
                     basis="GB 2763-2021; cowpea", sampled_at=sampled_at)


def count(commodity: str, verdict: str, n: int, *, quick: bool = False, district: str = "天河",
          site_type: str = "farmers_market") -> CountRow:
    return CountRow(commodity=commodity, district=district, site_type=site_type, quick=quick, verdict=verdict, tests=n)


def test_only_lab_confirmed_findings_name_a_vendor() -> None:
    rows = [
        row("lab-exceeds"),
        row("lab-banned", verdict="banned", limit=None, analyte="carbofuran"),
        row("quick-positive", method="colloidal_gold", quick=True, verdict="positive", vendor="stall-99"),
        # a forged verdict a quick screen never gives, by flag and by method name alone
        row("quick-forged", method="colloidal_gold", quick=True, verdict="banned", vendor="stall-98"),
        row("quick-by-method", method="enzyme_inhibition", quick=False, verdict="exceeds", vendor="stall-97"),
        row("lab-watch", verdict="watch", vendor="stall-96"),
        row("lab-compliant", verdict="compliant", vendor="stall-95"),
        row("lab-inconclusive", verdict="inconclusive", vendor="stall-94"),
    ]
    before = copy.deepcopy(rows)
    found = named_findings(rows, NAMES)
    assert rows == before  # input unmutated
    assert [(f.sample_id, f.vendor_id) for f in found] == [("s-lab-banned", "stall-07"), ("s-lab-exceeds", "stall-07")]
    assert {r.result_id for r in rows if is_confirmed_finding(r)} == {"lab-exceeds", "lab-banned"}
    assert found[0].commodity_zh == "豇豆" and found[0].analyte_zh == NAMES.analyte_name("carbofuran")[0]
    assert named_findings(rows, NAMES) == found  # deterministic


def test_quick_positives_are_counted_never_passes_and_never_named() -> None:
    c = Counts()
    c.add(True, "positive", 3)
    c.add(True, "banned", 1)  # forged: still only a quick positive
    c.add(True, "compliant", 10)
    c.add(True, "watch", 2)
    c.add(True, "no_limit", 4)
    assert (c.quick_tests, c.quick_positive, c.quick_negative, c.quick_not_judged) == (20, 4, 12, 4)
    assert (c.lab_tests, c.lab_noncompliant, c.pass_rate_pct) == (0, 0, None)  # no lab test: no pass rate

    report = build_report("2026-11", [count("cowpea", "positive", 5, quick=True)],
                          [row("q", method="colloidal_gold", quick=True, verdict="positive", vendor=HOSTILE)],
                          [], NAMES, generated_at="now")
    assert report.total.quick_positive == 5 and report.findings == []
    files = render_site(report)
    assert all("stall" not in text and "alert" not in text for text in files.values())


def test_quick_positive_follow_ups_are_counted_once_each() -> None:
    labs = [("q1", "exceeds"), ("q1", "compliant"), ("q2", "compliant"), ("q2", "watch"), ("q3", "no_limit"),
            ("other", "banned")]
    assert follow_ups(["q1", "q2", "q3", "q4"], labs) == FollowUps(confirmed=1, not_confirmed=1, awaiting=2)
    report = build_report("2026-11", [count("cowpea", "positive", 3, quick=True)], [], [], NAMES, generated_at="-")
    assert report.follow_ups == FollowUps(awaiting=3)  # nothing known of them: all awaiting


def test_pass_rate_excludes_not_judged() -> None:
    c = Counts()
    for verdict, n in [("compliant", 90), ("watch", 5), ("exceeds", 3), ("banned", 2),
                       ("unclassified", 50), ("inconclusive", 20), ("no_limit", 30), ("positive", 1)]:
        c.add(False, verdict, n)
    assert (c.lab_tests, c.lab_pass, c.lab_noncompliant, c.lab_not_judged) == (201, 95, 5, 101)
    assert c.pass_rate_pct == 95.0  # 95 / 100, the 101 not judged left out (not 95 / 201, not 196 / 201)
    assert pass_rate_pct(0, 0) is None
    assert pass_rate_pct(9999, 1) == 99.9  # rounded down: 100.0 only when nothing failed
    assert pass_rate_pct(10, 0) == 100.0
    only_not_judged = Counts()
    only_not_judged.add(False, "no_limit", 7)
    assert only_not_judged.pass_rate_pct is None and only_not_judged.not_judged == 7


def test_categories_roll_up_to_top_categories_and_subgroups() -> None:
    rows = [count("cowpea", "compliant", 4), count("cowpea", "exceeds", 1), count("pak_choi_x", "unclassified", 2),
            count("pork", "compliant", 3), count("vegetables", "compliant", 1)]
    lines = by_category(rows, NAMES)
    tops = [(x.key, x.counts.tests) for x in lines if x.level == "category"]
    assert tops == [("vegetables", 6), ("meat", 3), (UNCLASSIFIED, 2)]  # most tests first, unclassified last
    cowpea_sub = NAMES.foods["cowpea"].chain[-2]
    subs = [(x.key, x.parent, x.counts.tests) for x in lines if x.level == "subgroup"]
    assert (cowpea_sub, "vegetables", 5) in subs
    assert all(p != UNCLASSIFIED for _, p, _ in subs)
    assert sum(x.counts.tests for x in lines if x.level == "category") == sum(r.tests for r in rows)


def test_priorities_top_ten_with_their_results_unknown_listed() -> None:
    rows = [count("cowpea", "compliant", 4), count("cowpea", "exceeds", 1), count("pork", "positive", 2, quick=True)]
    votes = [Priority("vegetables", "蔬菜", 900, 1), Priority("meat", "肉类", 500, 2),
             Priority("no_such_group", "奶茶", 300, 3), *[Priority("fruits", "水果", 1, r) for r in range(4, 13)]]
    lines = priority_lines(rows, votes, NAMES)
    assert [p.priority.rank for p in lines] == list(range(1, 11))  # top ten only
    veg, meat, unknown = lines[:3]
    assert (veg.counts.lab_tests, veg.counts.lab_noncompliant, veg.counts.pass_rate_pct) == (5, 1, 80.0)
    assert (meat.counts.quick_positive, meat.counts.lab_tests) == (2, 0)
    assert not unknown.known and unknown.name_zh == "奶茶" and unknown.counts.tests == 0


def test_pages_escape_hostile_values_and_keep_the_same_numbers() -> None:
    findings = [row("f1", vendor=HOSTILE, site_name=HOSTILE), row("f2", vendor="=HYPERLINK(\"http://x\")")]
    counts = [count("cowpea", "exceeds", 2, district=HOSTILE), count("cowpea", "compliant", 8),
              count("cowpea", "positive", 3, quick=True), count("cowpea", "no_limit", 4)]
    report = build_report("2026-11", counts, findings, [Priority("vegetables", HOSTILE, 10, 1)], NAMES,
                          generated_at="2026-12-01 00:00 UTC")
    files = render_site(report)
    assert set(files) == {f"{stem}.{ext}" for stem in ("categories", "districts", "site-types", "noncompliant",
                                                     "priorities", "summary") for ext in ("csv", "json")} | {
        f"{stem}.html" for stem in ("index", "categories", "districts", "site-types", "noncompliant", "priorities")}
    for name, text in files.items():
        if name.endswith(".html"):
            assert "<script" not in text and "<img" not in text and 'onmouseover="' not in text
            assert 'name="viewport"' in text and "Content-Security-Policy" in text
            assert not re.search(r"(src|href)=\"(https?:)?//", text)  # no external asset or link
    page = files["noncompliant.html"]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    # CSV: a formula is defused; the JSON keeps the value as it is
    rows = list(csv.DictReader(io.StringIO(files["noncompliant.csv"])))
    assert [r["vendor_id"] for r in rows] == [HOSTILE, "'=HYPERLINK(\"http://x\")"]
    doc = orjson.loads(files["noncompliant.json"])
    assert [r["vendor_id"] for r in doc["rows"]] == [HOSTILE, "=HYPERLINK(\"http://x\")"]
    # the same numbers in CSV and JSON; the HTML shows them
    summary_csv = next(csv.DictReader(io.StringIO(files["summary.csv"])))
    summary_json = orjson.loads(files["summary.json"])["rows"][0]
    assert summary_json["lab_pass_rate_pct"] == 80.0 and summary_csv["lab_pass_rate_pct"] == "80.0"
    for key in ("tests", "lab_tests", "lab_noncompliant", "quick_positive", "not_judged"):
        assert str(summary_json[key]) == summary_csv[key]
    assert (summary_json["tests"], summary_json["not_judged"], summary_json["quick_positive"]) == (17, 4, 3)
    assert ">80<" in files["index.html"] or ">80.0<" in files["index.html"]


def test_period_is_a_month_in_china_time() -> None:
    start, end = parse_period("2026-11")
    assert (start, end) == (datetime(2026, 10, 31, 16), datetime(2026, 11, 30, 16))  # noqa: DTZ001
    assert parse_period("2026-12")[1] == datetime(2026, 12, 31, 16)  # noqa: DTZ001
    for bad in ("2026-13", "2026-1", "Nov 2026"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            parse_period(bad)


VERDICTS = ["compliant", "watch", "positive", "exceeds", "banned", "unclassified", "inconclusive", "no_limit",
            "something_new"]
METHODS = ["lc_msms", "gc_ms", "icp_ms", "enzyme_inhibition", "colloidal_gold", "xrf"]
COMMODITIES = ["cowpea", "pork", "rice", "vegetables", "eggs", "mystery_x"]


@st.composite
def count_rows(draw: st.DrawFn) -> CountRow:
    return CountRow(commodity=draw(st.sampled_from(COMMODITIES)),
                    district=draw(st.sampled_from(["天河", "越秀", HOSTILE])),
                    site_type=draw(st.sampled_from(["farmers_market", "supermarket"])), quick=draw(st.booleans()),
                    verdict=draw(st.sampled_from(VERDICTS)), tests=draw(st.integers(1, 1000)))


@st.composite
def result_rows(draw: st.DrawFn) -> ResultRow:
    return row(draw(st.text(min_size=1, max_size=8)), method=draw(st.sampled_from(METHODS)), quick=draw(st.booleans()),
               verdict=draw(st.sampled_from(VERDICTS)), vendor=draw(st.one_of(st.none(), st.text(max_size=20))),
               commodity=draw(st.sampled_from(COMMODITIES)))


def counted_once(report: Report, rows: list[CountRow]) -> bool:
    n = sum(r.tests for r in rows)
    tops = [x for x in report.categories if x.level == "category"]
    return (report.total.tests == n == sum(x.counts.tests for x in tops)
            == sum(x.counts.tests for x in report.districts) == sum(x.counts.tests for x in report.site_types))


def pass_rate_over_judged_lab_tests(c: Counts) -> bool:
    judged = c.lab_pass + c.lab_noncompliant
    parts = c.lab_pass + c.lab_noncompliant + c.lab_not_judged == c.lab_tests and (
        c.quick_negative + c.quick_positive + c.quick_not_judged == c.quick_tests)
    return parts and (c.pass_rate_pct is None if judged == 0 else c.pass_rate_pct == (c.lab_pass * 1000 // judged) / 10)


def names_only_confirmed(report: Report, offered: list[ResultRow]) -> bool:
    confirmed = [r for r in offered if r.method not in {"enzyme_inhibition", "colloidal_gold", "xrf"}
                 and not r.quick and r.verdict in {"exceeds", "banned"}]
    return len(report.findings) == len(confirmed) and all(f.verdict in {"exceeds", "banned"} for f in report.findings)


@settings(deadline=2000, max_examples=30)
@given(st.lists(count_rows(), max_size=30), st.lists(result_rows(), max_size=10))
def test_report_invariants(rows: list[CountRow], offered: list[ResultRow]) -> None:
    before = (copy.deepcopy(rows), copy.deepcopy(offered))
    report = build_report("2026-11", rows, offered, [], NAMES, generated_at="-")
    assert (rows, offered) == before
    assert counted_once(report, rows)
    assert all(pass_rate_over_judged_lab_tests(x.counts) for x in [*report.categories, *report.districts])
    assert names_only_confirmed(report, offered)
    site = render_site(report)
    assert site == render_site(build_report("2026-11", rows, offered, [], NAMES, generated_at="-"))  # deterministic
    assert all("<script" not in text for name, text in site.items() if name.endswith(".html"))


def test_shell_reads_rows_as_the_query_port_answers(tmp_path: Path) -> None:
    """Through a worker's query port, times come as ISO text and numbers as JSON numbers: the shell takes
    both, asks for no vendor of a quick result, and writes every file."""
    asked: list[str] = []

    def select(sql: str, params: dict[str, str], max_rows: int) -> tuple[list[str], list[list[Any]], bool]:
        asked.append(sql)
        assert params["period" if "citizen_votes" in sql else "start"]
        if "count() AS tests" in sql:
            return (["commodity", "district", "site_type", "quick", "verdict", "tests"],
                    [["cowpea", "天河", "farmers_market", 0, "exceeds", 1], ["cowpea", "天河", "farmers_market", 1,
                                                                           "positive", 2]], False)
        if "vendor_id" in sql:
            assert "quick = 0" in sql and "verdict IN ('exceeds', 'banned')" in sql
            return (list(FINDING_COLUMNS), [["r1", "s1", "lc_msms", 0, "exceeds", "stall-1", "市场", "天河",
                                             "farmers_market", "cowpea", "cyromazine", 2.0, 0.5, "GB 2763",
                                             "2026-11-20T23:30:00"]], False)
        if "quick = 1" in sql:
            return ["result_id"], [["q1"], ["q2"]], False
        if "confirms" in sql:
            return ["confirms", "verdict"], [["q1", "exceeds"]], False
        return ["category", "label", "votes", "rank"], [["vegetables", "蔬菜", 12, 1]], False

    report, files = publish(select, database="foodrisk", period="2026-11", names=NAMES, out=tmp_path / "site",
                            generated_at=datetime(2026, 12, 7, tzinfo=UTC))
    assert [f.sampled_on for f in report.findings] == ["2026-11-21"]  # 23:30 UTC is the next day in China
    assert report.follow_ups == FollowUps(confirmed=1, awaiting=1)
    assert report.priorities[0].counts.quick_positive == 2
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == files and len(files) == 18
    assert all("vendor_id" not in sql or "quick = 0" in sql for sql in asked)
    with pytest.raises(PublishError, match="more than"):
        publish(lambda sql, p, n: (["result_id"], [], True), database="foodrisk", period="2026-11", names=NAMES,
                out=tmp_path / "x", generated_at=datetime(2026, 12, 7, tzinfo=UTC))
