"""`foodrisk publish` end to end: results screened and stored in chdb (no worker: the commands open the
database themselves, as `foodrisk query` does then), citizens' votes imported with `foodrisk votes
import`, the command run, and every page loaded in headless Chromium (Debian's `chromium`): the
content checked in the DOM Chromium built, and a screenshot in a phone's window.

Chromium is required, never skipped: `make test` (and so .ci/run) installs it with the other system
packages (`make system-deps`); without it this test fails and says how to get it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.records import result_values
from pipeline.cli import main
from pipeline.localstack.clickhouse_server import ClickHouseServer
from schemas.reference import default_reference
from schemas.result import parse_result
from schemas.rules import screen
from sinks.clickhouse import ChdbBackend, ClickHouse
from sinks.ddl import RESULTS_COLUMNS, migrate
from sinks.writer import ClickHouseWriter
from tests.integration.conftest import fresh_database_name
from tests.integration.factories import SAMPLED, result
from tests.integration.test_reference_reload import NOW

pytestmark = pytest.mark.integration

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
QUICK_VENDOR, QUICK_SITE = "stall-quick-99", "快检阳性市场 Quick Market"
PHONE = (390, 844)
ROOT = Path(__file__).resolve().parents[2]
PAGES = ("index", "categories", "districts", "site-types", "noncompliant", "priorities")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Debian's chromium is not installed: the published pages are checked in a real browser. "
                "`make system-deps` (as root; `make test` runs it) installs it, or `apt-get install chromium`.")


def _browser(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp / 'chromium-profile'}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


class Dom(HTMLParser):
    """The elements and text of the DOM Chromium dumped."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(self.text)

    def cells(self) -> list[str]:
        return [a.get("data-label") or "" for t, a in self.tags if t == "td"]


def _lab(rid: str, analyte: str, value: float, loq: float = 0.005, **kw: Any) -> dict[str, Any]:
    return result(rid, analyte=analyte, method="lc_msms", value=value, unit="mg/kg", loq=loq, **kw)


def _messages() -> list[dict[str, Any]]:
    nov = SAMPLED  # 2026-11-20 07:30 +08:00
    quick_site = {"id": "gz-qp-01", "type": "supermarket", "district": "Yuexiu", "name": QUICK_SITE}
    msgs = [
        # lab: cyromazine on cowpea, limit 0.5 mg/kg: 8 compliant, 1 over it (named), 1 over it by a hostile vendor id
        *[_lab(f"lab-ok-{i}", "cyromazine", 0.1, sampled_at=nov + timedelta(hours=i)) for i in range(8)],
        _lab("lab-exceeds", "cyromazine", 2.0, vendor_id="stall-lab-07", confirms="q-pos-1"),
        _lab("lab-clears", "cyromazine", 0.1, confirms="q-pos-0"),  # the lab does not confirm q-pos-0
        _lab("lab-hostile", "cyromazine", 1.5, vendor_id=HOSTILE),
        # lab: clenbuterol in pork, banned (named)
        _lab("lab-banned", "clenbuterol", 0.002, loq=0.0005, commodity="pork", vendor_id="stall-pork-03"),
        # lab on a label nobody classified: not judged, never a pass
        _lab("lab-unclassified", "cyromazine", 0.1, commodity="mystery_fruit_x"),
        # quick: enzyme screens, 2 positive at a site of their own, 5 negative
        *[result(f"q-pos-{i}", value=80.0, vendor_id=QUICK_VENDOR, site=quick_site) for i in range(2)],
        *[result(f"q-neg-{i}", value=10.0) for i in range(5)],
        # the month in China: 00:30 on Nov 1 counts (Oct 31 UTC), 00:10 on Dec 1 and October do not
        _lab("edge-in", "cyromazine", 0.1, sampled_at=datetime.fromisoformat("2026-11-01T00:30:00+08:00")),
        _lab("edge-out", "cyromazine", 3.0, vendor_id="stall-december",
             sampled_at=datetime.fromisoformat("2026-12-01T00:10:00+08:00")),
        _lab("october", "cyromazine", 3.0, vendor_id="stall-october", sampled_at=nov - timedelta(days=30)),
    ]
    return msgs


def _store(ch: ClickHouse) -> None:
    ref = default_reference()
    rows = []
    now = max(NOW, datetime(2026, 12, 2, tzinfo=UTC))
    for i, m in enumerate(_messages()):
        r = parse_result(orjson.dumps(m), reference=ref, now=now)
        values = result_values(r, screen(r, ref), src_topic="t", src_partition=0, src_offset=i,
                               ingested_at=now, reference_edition=ref.edition)
        rows.append(tuple(values[c] for c in RESULTS_COLUMNS))
    writer = ClickHouseWriter(ch, database=ch.database)
    try:
        asyncio.run(writer.insert("results", RESULTS_COLUMNS, rows))
        asyncio.run(writer.insert("results", RESULTS_COLUMNS, rows[:3]))  # stored twice: still one result each
    finally:
        writer.close()


@pytest.fixture
def stored(chdb_path: Path, tmp_path: Path) -> Any:
    db = fresh_database_name()
    ch = ChdbBackend(chdb_path, database=db)
    migrate(ch, db)
    _store(ch)
    env = {"FOODRISK_CLICKHOUSE_URL": f"chdb://{chdb_path}", "FOODRISK_CLICKHOUSE_DATABASE": db,
           "FOODRISK_DATA_DIR": str(tmp_path / "data"), "FOODRISK_QUERY_PORT": "0"}
    yield env
    ch.execute(f"DROP DATABASE IF EXISTS `{db}`")
    ch.close()


# The citizens' votes, as `foodrisk votes import` takes them: a first file of the period, replaced by a
# second (蔬菜 and 肉类 first; eleven categories, so 谷物 in 11th place is no priority), and another period.
VOTES_FIRST = "category,votes,period\n水果,999,2026-11\n蛋类,50,2026-10\n"
VOTES = "category,votes,period\n蔬菜,1200,2026-11\n肉类,800,2026-11\n" + "".join(
    f"{name},{100 - i},2026-11\n" for i, name in enumerate(
        ["水果", "蛋类", "水产品", "食用菌", "坚果", "饮料类", "调味料", "糖料", "谷物"]))


def _foodrisk(env: dict[str, str], capsys: Any, *argv: str) -> str:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        capsys.readouterr()
        code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return str(captured.out)


def _publish(env: dict[str, str], out: Path, capsys: Any) -> str:
    for i, text in enumerate((VOTES_FIRST, VOTES)):
        path = out.parent / f"votes-{i}.csv"
        path.write_text(text, encoding="utf-8")
        _foodrisk(env, capsys, "votes", "import", str(path))
    return _foodrisk(env, capsys, "publish", "--period", "2026-11", "--out", str(out))


def test_publish_period_checked_in_chromium(stored: dict[str, str], tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "site"
    summary = _publish(stored, out, capsys)
    # 8 + 1 + 2 + 1 + 1 + 1 (edge-in) lab, 7 quick; December and October left out
    assert ("21 tests (14 lab, 7 quick), 3 lab non-compliant (3 named), 2 quick positives counted "
            "(1 confirmed by a lab), 1 not judged") in summary

    files = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()}
    assert {f"{p}.html" for p in PAGES} <= set(files)
    everything = "\n".join(files.values())
    for absent in (QUICK_VENDOR, QUICK_SITE, "stall-december", "stall-october"):
        assert absent not in everything  # no quick positive names anyone; other months are not here

    # the numbers in CSV and JSON agree
    summary_json = orjson.loads(files["summary.json"])["rows"][0]
    summary_csv = next(csv.DictReader(io.StringIO(files["summary.csv"])))
    rate = (summary_json["lab_pass"], summary_json["lab_noncompliant"], summary_json["lab_pass_rate_pct"])
    assert rate == (10, 3, 76.9)  # 10 / 13 rounded down: the unclassified lab result is not judged
    follow = (summary_json["quick_positive_confirmed"], summary_json["quick_positive_not_confirmed"],
              summary_json["quick_positive_awaiting"])
    assert follow == (1, 1, 0)
    assert {k: str(v) for k, v in summary_json.items()} == summary_csv
    named = orjson.loads(files["noncompliant.json"])["rows"]
    assert sorted(r["vendor_id"] for r in named) == sorted(["stall-lab-07", "stall-pork-03", HOSTILE])
    prio = orjson.loads(files["priorities.json"])["rows"]
    assert [(p["rank"], p["category"], p["lab_tests"], p["lab_noncompliant"]) for p in prio[:3]] == [
        (1, "vegetables", 12, 2), (2, "meat", 1, 1), (3, "fruit", 0, 0)]
    assert len(prio) == 10 and "cereals" not in {p["category"] for p in prio}

    shots = tmp_path / "screenshots"
    shots.mkdir()
    for page in PAGES:
        url = (out / f"{page}.html").as_uri()
        dom = Dom(_browser(tmp_path, "--dump-dom", url).stdout)
        tags = {t for t, _ in dom.tags}
        assert "script" not in tags and "img" not in tags, page  # the hostile id is text, not markup
        assert not any(k.startswith("on") for _, a in dom.tags for k in a), page
        assert all(not (a.get("src") or a.get("href") or "").startswith(("http:", "https:", "//"))
                   for _, a in dom.tags), page  # nothing outside the page
        assert any(t == "meta" and a.get("name") == "viewport" for t, a in dom.tags)
        text = dom.all_text
        assert "Food safety test results" in text and "食品安全抽检结果" in text
        if page == "noncompliant":
            assert "stall-lab-07" in text and "stall-pork-03" in text and HOSTILE in text
            assert "猪肉 Pork" in text and "检出禁用物质 Banned substance found" in text
            assert "不得检出 Not permitted" in text
            assert "经营者 Vendor" in dom.cells()  # each cell names its column (the phone layout's cards)
        if page == "index":
            assert "76.9" in text and "Quick positives (awaiting lab confirmation)" in text
            assert "Quick positives confirmed by a lab" in text
        if page == "priorities":
            assert "蔬菜" in text and "肉类" in text and "谷物" not in text
        if page == "categories":
            assert "未分类食品名称" in text and "Unclassified food label" in text

        shot = shots / f"{page}.png"
        _browser(tmp_path, f"--window-size={PHONE[0]},{PHONE[1]}", "--hide-scrollbars", f"--screenshot={shot}", url)
        png = shot.read_bytes()
        assert len(png) > 5_000 and png[:8] == b"\x89PNG\r\n\x1a\n", page
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == PHONE, page


def test_publish_on_the_server(ch_server: ClickHouse, clickhouse_server: ClickHouseServer, tmp_path: Path) -> None:
    """The same queries on Debian's 18.16 server, over clickhouse:// as an operator runs the command."""
    migrate(ch_server, ch_server.database)
    _store(ch_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOODRISK_")}
    env["FOODRISK_CLICKHOUSE_URL"] = f"clickhouse://default:@{clickhouse_server.host}:{clickhouse_server.tcp_port}"
    env["FOODRISK_CLICKHOUSE_DATABASE"] = ch_server.database
    votes = tmp_path / "votes.csv"
    votes.write_text(VOTES, encoding="utf-8")
    for argv in (["votes", "import", str(votes)], ["publish", "--period", "2026-11", "--out", str(tmp_path / "site")]):
        res = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], capture_output=True, text=True, timeout=120,
                             env=env, cwd=ROOT, check=False)
        assert res.returncode == 0, res.stderr
    assert ("21 tests (14 lab, 7 quick), 3 lab non-compliant (3 named), 2 quick positives counted "
            "(1 confirmed by a lab), 1 not judged") in res.stdout
    prio = orjson.loads((tmp_path / "site" / "priorities.json").read_text(encoding="utf-8"))["rows"]
    assert [p["category"] for p in prio[:2]] == ["vegetables", "meat"] and len(prio) == 10
