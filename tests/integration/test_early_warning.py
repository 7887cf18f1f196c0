# ruff: noqa: PERF401  (readable loops that build test traffic)
"""Early warning end to end on the real broker: one worker process (chdb inside it) fed injected
patterns through the results topic; the detectors' alerts reach the alerts topic and ClickHouse;
then the worker is killed with SIGKILL and restarted (same app id, same data dir): its Faust
tables come back from their changelogs, the patterns that continue after the restart extend the
same alerts, and nothing fires twice."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.localstack.kafka import KafkaBroker
from tests.integration.factories import encode, produce, result
from tests.integration.test_pipeline import read_topic
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))

EARLY_KINDS = ("rate_surge", "repeat_offender", "supplier_cluster", "unconfirmed_positive", "device_drift",
               "device_silent")


class Patterns:
    """Wire-format results for every detector; event times relative to ``t`` (a few days back)."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix
        # 20:00 local (CST) two days back: the patterns (t - 9 h .. t) and the watermark (t - 1 h)
        # stay on one local day whatever the hour the test runs at
        local = (datetime.now(UTC) - timedelta(days=2)).astimezone(CST)
        self.t = local.replace(hour=20, minute=0, second=0, microsecond=0).astimezone(UTC)
        self.n = 0

    def r(self, at: timedelta, *, positive: bool = False, **kw: Any) -> bytes:
        self.n += 1
        kw.setdefault("supplier_id", f"{self.p}-sup-{self.n}")  # no accidental clusters
        kw.setdefault("vendor_id", f"{self.p}-v-{self.n}")  # no accidental offenders
        kw.setdefault("device_id", f"{self.p}-dev-x")
        kw.setdefault("district", "Conghua")
        kw.setdefault("site_id", f"{self.p}-m-x")
        kw.setdefault("value", 70.0 if positive else 10.0)
        return encode(result(f"{self.p}-{self.n:05d}", sampled_at=self.t + at, **kw))

    def phase1(self) -> list[bytes]:
        h = timedelta(hours=1)
        out: list[bytes] = []
        # supplier cluster: one supplier's cowpea positive at two markets
        for site in ("a", "b"):
            out.append(self.r(-3 * h, positive=True, supplier_id=f"{self.p}-LOT", site_id=f"{self.p}-m-{site}"))
        # repeat offender: two non-compliant samples of one vendor (listed at the third)
        for i in range(2):
            out.append(self.r(-(5 + i) * h, positive=True, vendor_id=f"{self.p}-STALL"))
        # unconfirmed positive: sampled 50 h before the rest, never confirmed
        out.append(self.r(-50 * h, positive=True, site_id=f"{self.p}-m-u"))
        # a confirmed positive: must NOT raise unconfirmed_positive
        out.append(self.r(-50 * h, positive=True, site_id=f"{self.p}-m-u"))
        confirmed_id = f"{self.p}-{self.n:05d}"
        out.append(self.r(-49 * h, analyte="cyromazine", method="lc_msms", value=0.01, unit="mg/kg",
                          confirms=confirmed_id, site_id=f"{self.p}-tc", device_id=f"{self.p}-lab"))
        # device drift: one reader with 6 positives of 20 while its peer reads 30 negatives
        site_d = f"{self.p}-m-d"
        for i in range(20):
            out.append(self.r(-6 * h + i * timedelta(minutes=5), positive=i % 3 == 0 and i < 18,
                              site_id=site_d, device_id=f"{self.p}-DRIFT"))
        for i in range(30):
            out.append(self.r(-6 * h + i * timedelta(minutes=4), site_id=site_d, device_id=f"{self.p}-peer"))
        # device silent: three readers for 3 h, then one stops while the other two go on for 4 h
        site_s = f"{self.p}-m-s"
        for hour in range(-9, -2):
            devs = ("s1", "s2", "s3") if hour < -6 else ("s2", "s3")
            for d in devs:
                for i in range(10):
                    out.append(self.r(hour * h + i * timedelta(minutes=5), site_id=site_s,
                                      device_id=f"{self.p}-{d}"))
        # rate surge: Nansha spinach, 8 positives of 80 in a few hours (baseline 0.15%)
        for i in range(80):
            out.append(self.r(-8 * h + i * timedelta(minutes=3), positive=i % 10 == 0, district="Nansha",
                              commodity="spinach", site_id=f"{self.p}-m-n{i % 4}", device_id=f"{self.p}-n{i % 4}"))
        # the latest event time: the watermark is one hour before it
        out.append(self.r(timedelta(0)))
        return out

    def phase2(self) -> list[bytes]:
        h = timedelta(hours=1)
        return [
            self.r(-2 * h, positive=True, supplier_id=f"{self.p}-LOT", site_id=f"{self.p}-m-c"),  # third market
            self.r(-2 * h, positive=True, vendor_id=f"{self.p}-STALL"),  # third sample: red list
        ]


def _alerts(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, v in read_topic(bootstrap, topic, settle_s=2.0)]


def test_detectors_fire_on_injected_patterns_and_survive_kill_9(
    broker: KafkaBroker, topics_early: dict[str, str], unique: str, tmp_path: Path
) -> None:
    db = f"ew_{unique}"
    workdir = tmp_path / "worker"

    def start() -> WorkerProcess:
        return WorkerProcess(
            workdir, broker_url=broker.url, clickhouse_url=f"chdb://{tmp_path / 'chdb'}", app_id=f"ew-{unique}",
            topics=topics_early, FOODRISK_CLICKHOUSE_DATABASE=db, FOODRISK_SCREENED_TOPIC=topics_early["screened"],
        ).start()

    pat = Patterns(f"ew{unique}")
    w = start()
    try:
        produce(broker.bootstrap, topics_early["results"], pat.phase1())
        for kind in ("supplier_cluster", "unconfirmed_positive", "device_drift", "device_silent"):
            w.wait_for(f"SELECT uniqExact(alert_id) FROM {db}.alerts FINAL WHERE kind = %(k)s", 1, k=kind)
        w.wait_for(f"SELECT count() FROM {db}.alerts FINAL WHERE kind = 'rate_surge' AND district = 'Nansha'", 1)
        assert w.scalar(f"SELECT count() FROM {db}.alerts FINAL WHERE kind = 'repeat_offender'") == 0
        # The screening agent stores a batch's rows up to a second after it published the batch's alerts
        # and screened records (rows of consecutive batches go in one insert): read both until they meet.
        deadline = time.monotonic() + 30
        while True:
            stored = w.scalar(f"SELECT count() FROM {db}.results FINAL")
            fresh = w.metric("foodrisk_early_records_total", outcome="fresh")
            if (fresh == stored > 0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert w.metric("foodrisk_early_records_total", outcome="fresh") == stored > 0  # every stored result, once
        assert w.metric("foodrisk_early_records_total", outcome="duplicate") == 0
        before = _alerts(broker.bootstrap, topics_early["alerts"])
        by_kind = {a["kind"]: a for a in before if a["kind"] in EARLY_KINDS and a.get("district") != "Conghua"}
        by_kind.update({a["kind"]: a for a in before if a["kind"] != "rate_surge" and a["kind"] in EARLY_KINDS})
        p = pat.p
        cl = by_kind["supplier_cluster"]
        assert cl["supplier_id"] == f"{p}-LOT" and cl["details"]["places"] == 2 and len(cl["evidence"]) == 2
        un = by_kind["unconfirmed_positive"]
        assert un["evidence"] == [f"{p}-00005"] and un["site_id"] == f"{p}-m-u"
        dr = by_kind["device_drift"]
        assert dr["device_id"] == f"{p}-DRIFT" and dr["details"]["positives"] == 6
        assert dr["details"]["subject"] == "device"
        si = by_kind["device_silent"]
        assert si["device_id"] == f"{p}-s1" and si["details"]["subject"] == "device"
        su = by_kind["rate_surge"]
        assert (su["district"], su["commodity"], su["details"]["observed"]) == ("Nansha", "spinach", 8)
        # baseline noise raised nothing else; the injected Conghua cowpea positives are a surge too
        assert {a["kind"] for a in before} <= {*EARLY_KINDS, "quick_test_positive"}
        surges = {(a["district"], a["commodity"]) for a in before if a["kind"] == "rate_surge"}
        assert surges == {("Nansha", "spinach"), ("Conghua", "cowpea")}
        time.sleep(3)  # the tables' changelogs and the offsets are committed (commit interval 1 s)
    finally:
        w.proc.kill()

    w = start()  # same app id, same data dir: the tables recover from their changelogs
    try:
        produce(broker.bootstrap, topics_early["results"], pat.phase2())
        w.wait_for(f"SELECT uniqExact(alert_id) FROM {db}.alerts FINAL WHERE kind = 'repeat_offender'", 1)
        w.wait_for(f"SELECT max(JSONExtractInt(details, 'places')) FROM {db}.alerts FINAL "
                   "WHERE kind = 'supplier_cluster'", 3)
        off = w.query(f"SELECT vendor_id, evidence FROM {db}.alerts FINAL WHERE kind = 'repeat_offender'")
        assert off[0][0] == f"{pat.p}-STALL" and len(off[0][1]) == 3
        w.wait_for(f"SELECT count() FROM {db}.redlist FINAL WHERE listed = 1", 1)
        after = _alerts(broker.bootstrap, topics_early["alerts"])
        # one alert id per condition, and the cluster kept its id while it grew
        ids = {(a["kind"], a["alert_id"]) for a in after if a["kind"] in EARLY_KINDS}
        assert Counter(k for k, _ in ids) == Counter({**dict.fromkeys(EARLY_KINDS, 1), "rate_surge": 2})
        assert {a["alert_id"] for a in after if a["kind"] == "supplier_cluster"} == {cl["alert_id"]}
        # nothing raised twice: the conditions that did not change were not emitted again
        for a in (un, dr, si, su):
            assert sum(1 for b in after if b["alert_id"] == a["alert_id"] and b["status"] == "firing") == 1, a
        assert w.scalar(f"SELECT count() FROM {db}.alerts FINAL WHERE kind IN %(k)s AND status = 'firing'",
                        k=list(EARLY_KINDS)) == 7
    finally:
        w.stop()


@pytest.fixture
def topics_early(unique: str) -> dict[str, str]:
    return {k: f"ew.{k}.{unique}" for k in ("results", "alerts", "deadletter", "screened")}


