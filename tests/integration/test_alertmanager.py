"""Alert delivery against a real Alertmanager (Debian's prometheus-alertmanager 0.25) running the
shipped deploy/alertmanager/alertmanager.yml on a free port.

- the shipped config passes ``amtool check-config``, routes by district and severity, and its
  templates render;
- alerts posted by the sink appear in ``GET /api/v2/alerts`` with the mapped labels and
  annotations; a resolution ends them; the shipped inhibit rule inhibits; grouping holds;
- the parked-alerts table works on both ClickHouse backends;
- outage drill: a real worker delivers alerts, Alertmanager is stopped for 30 s while more
  alerts flow, then started: every alert arrives, none is parked, and the alerts topic's offsets
  waited for the deliveries; the worker is also restarted during the outage (it stops promptly
  and commits none of the undelivered alerts). Then the worker is restarted against an
  Alertmanager that lost its memory: the firing alerts come back from ClickHouse.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.delivery import AlertmanagerDelivery, DeliveryConfig, Item, Parked, parked_values
from agents.early.common import EarlyParams
from agents.early.gap import step as gap_step
from agents.metrics import create as create_metrics
from agents.records import alert_values, as_row
from pipeline.localstack.alertmanager import AlertmanagerMissing, AlertmanagerServer, find_alertmanager, find_amtool
from pipeline.localstack.kafka import KafkaBroker
from pipeline.localstack.process import free_port
from pipeline.settings import Settings
from pipeline.topics import group_lag
from schemas.alert import Alert, alert_id_for
from schemas.result import result_key
from sinks.alertmanager import AlertmanagerSink, to_alertmanager
from sinks.clickhouse import ClickHouse
from sinks.ddl import ALERTS_COLUMNS, PARKED_ALERTS_COLUMNS, migrate
from sinks.errors import AlertmanagerSinkError
from sinks.presentation import Links, alert_labels
from sinks.writer import ClickHouseWriter
from tests.conftest import unavailable
from tests.early.records import rec
from tests.integration.factories import mixed_batch, produce
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
TEMPLATES = REPO / "deploy" / "alertmanager" / "templates" / "*.tmpl"
LINKS = Links(grafana_url="https://grafana.example/d/foodrisk-alerts/alerts", runbook_url="https://wiki.example/rb")


# -- helpers ---------------------------------------------------------------------------------------


def _start_alertmanager(workdir: Path) -> AlertmanagerServer:
    try:
        find_alertmanager()
    except AlertmanagerMissing as exc:
        unavailable(str(exc))
    return AlertmanagerServer(workdir, CONFIG).start()


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerServer]:
    am = _start_alertmanager(tmp_path_factory.mktemp("alertmanager"))
    yield am
    am.stop()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=15) as resp:  # noqa: S310 - loopback test server
        return json.loads(resp.read())


def am_alerts(am_url: str, **filters: str) -> list[dict[str, Any]]:
    """GET /api/v2/alerts (active, silenced and inhibited; resolved ones are not listed)."""
    query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in filters.items()])
    return list(get_json(f"{am_url}/api/v2/alerts?{query}"))


def wait_until(check: Any, *, timeout_s: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")


def alert(alert_id: str, kind: str, district: str, commodity: str, **changes: Any) -> Alert:
    data: dict[str, Any] = {
        "alert_id": alert_id,
        "kind": kind,
        "classification": "alert" if kind == "banned_pesticide" else "follow_up",
        "risk": "serious" if kind == "banned_pesticide" else "undecided",
        "summary_en": f"{kind} in {commodity}, {district}",
        "summary_zh": f"{district}{commodity}：{kind}",
        "district": district,
        "commodity": commodity,
        "evidence": (f"r-{alert_id}",),
        "starts_at": datetime.now(UTC) - timedelta(minutes=5),
    }
    data.update(changes)
    return Alert.model_validate(data)


def post(am_url: str, alerts: list[Alert]) -> tuple[str, ...]:
    async def go() -> tuple[str, ...]:
        sink = AlertmanagerSink([am_url], timeout_s=10)
        try:
            now = datetime.now(UTC)
            return await sink.post([to_alertmanager(a, now=now, links=LINKS, firing_ttl_s=600) for a in alerts])
        finally:
            await sink.close()

    return asyncio.run(go())


# -- the shipped config -----------------------------------------------------------------------------


def _amtool() -> str:
    amtool = find_amtool()
    if amtool is None:
        unavailable("amtool is not installed (it comes with Debian's prometheus-alertmanager)")
        raise AssertionError("unreachable")
    return amtool


def test_shipped_config_passes_amtool_and_routes_by_district_and_severity() -> None:
    amtool = _amtool()
    check = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "2 inhibit rules" in check.stdout and "1 templates" in check.stdout and "11 receivers" in check.stdout

    def route(*labels: str) -> str:
        res = subprocess.run([amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels],
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout.strip()

    assert route("alertname=banned_pesticide", "severity=critical", "district=Tianhe") == \
        "duty-officer-pager,central-districts-chat"
    assert route("alertname=quick_test_positive", "severity=warning", "district=Baiyun") == "northern-districts-chat"
    assert route("alertname=rate_surge", "severity=warning", "district=Panyu") == "south-east-districts-chat"
    assert route("alertname=repeat_offender", "severity=info", "district=Panyu") == "south-east-districts-tickets"
    assert route("alertname=device_silent", "severity=info", "district=Tianhe") == "device-ops"
    assert route("alertname=mrl_exceedance", "severity=warning", "district=Elsewhere") == "city-duty-desk"
    # The pipeline's own alerts (deploy/prometheus/rules) go to the platform on-call, not to food teams.
    assert route("alertname=FoodriskAlertsParked", "severity=critical", "component=pipeline") == "platform-oncall"
    # A label the reference data does not know goes to the data steward only, whatever else it carries.
    assert route("alertname=reference_gap", "severity=info", "district=Tianhe", "field=commodity") == "data-steward"
    assert route("alertname=reference_gap", "severity=critical", "district=Baiyun") == "data-steward"


def test_shipped_templates_render_chinese_and_english(tmp_path: Path) -> None:
    amtool = _amtool()
    a = alert("tmpl-1", "banned_pesticide", "Tianhe", "cowpea", supplier_id="sup-9")
    body = to_alertmanager(a, now=datetime.now(UTC), links=LINKS, firing_ttl_s=600)
    data = {
        "receiver": "central-districts-chat", "status": "firing", "externalURL": "http://am.example",
        "alerts": [{"status": "firing", **body}], "groupLabels": {"alertname": "banned_pesticide"},
        "commonLabels": body["labels"], "commonAnnotations": {},
    }
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    out = subprocess.run(
        [amtool, "template", "render", f"--template.glob={TEMPLATES}", f"--template.data={data_file}",
         '--template.text={{ template "foodrisk.text" . }}'],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "[FIRING:1] banned_pesticide · Tianhe · cowpea" in text
    assert a.summary_zh in text and a.summary_en in text
    assert "供应商 Supplier: sup-9" in text and "https://wiki.example/rb#banned_pesticide" in text


# -- the sink against the real server -----------------------------------------------------------------


def test_alerts_appear_with_their_labels_and_resolution_ends_them(alertmanager: AlertmanagerServer,
                                                                   unique: str) -> None:
    district = f"D{unique}"
    alerts = [
        alert(f"lab-{unique}", "banned_pesticide", district, "cowpea", site_id="gz-th-m01", analyte="carbofuran",
              supplier_id="sup-1", vendor_id="stall-7"),
        alert(f"quick-{unique}", "quick_test_positive", district, "leek", device_id="dev-3"),
        alert(f"surge-{unique}", "rate_surge", district, "celery"),
    ]
    assert post(alertmanager.url, alerts) == (alertmanager.url,)
    got = {a["labels"]["alert_id"]: a for a in am_alerts(alertmanager.url, district=district)}
    assert set(got) == {a.alert_id for a in alerts}
    for a in alerts:
        g = got[a.alert_id]
        assert g["labels"] == alert_labels(a)
        assert g["status"]["state"] == "active"
        assert g["annotations"]["summary_zh"] == a.summary_zh and g["annotations"]["summary"] == a.summary_en
        assert g["annotations"]["evidence"] == f"r-{a.alert_id}"
        assert g["annotations"]["runbook_url"].endswith(f"#{a.kind}")
        assert g["generatorURL"].startswith(LINKS.grafana_url or "")
        assert abs(datetime.fromisoformat(g["startsAt"]) - a.starts_at) < timedelta(milliseconds=1)
    lab = got[f"lab-{unique}"]["labels"]
    assert lab["severity"] == "critical" and lab["supplier"] == "sup-1" and lab["site"] == "gz-th-m01"
    assert got[f"quick-{unique}"]["labels"]["severity"] == "warning"
    assert got[f"quick-{unique}"]["labels"]["device"] == "dev-3"

    # Posting the same alerts again changes nothing (Alertmanager de-duplicates by label set).
    post(alertmanager.url, alerts)
    assert len(am_alerts(alertmanager.url, district=district)) == 3

    # Resolution: the same alert with status resolved ends it.
    resolved = alerts[1].model_copy(update={"status": "resolved", "ends_at": datetime.now(UTC)})
    post(alertmanager.url, [resolved])
    left = {a["labels"]["alert_id"] for a in am_alerts(alertmanager.url, district=district)}
    assert left == {f"lab-{unique}", f"surge-{unique}"}


def test_reference_gap_reaches_the_data_steward_and_never_on_call(alertmanager: AlertmanagerServer,
                                                                 unique: str) -> None:
    """Routing on the running server: Alertmanager lists each alert's receivers (``GET /api/v2/alerts``)
    and its groups by receiver. The data-steward alert (from the detector itself) goes to ``data-steward``
    alone, though it names a central district; a finding of the same place pages as before; an
    exceedance of an unverified limit arrives with ``limit_confidence``."""
    label = f"上海青-{unique}"
    record = rec(f"gap-{unique}", int(time.time()) - 600, commodity=label, verdict="unclassified",
                 rule="unknown_food", district="Tianhe", site_id="gz-th-m01", device_id=f"dev-{unique}")
    step = gap_step({}, [record], record.sampled_at, EarlyParams())
    (gap_alert,) = step.alerts
    finding = alert(f"ban-gap-{unique}", "banned_pesticide", "Tianhe", "cowpea", site_id="gz-th-m01")
    unverified = alert(f"unv-{unique}", "mrl_exceedance", "Tianhe", "cowpea", classification="alert",
                       risk="potentially_serious", details={"confidence": "unverified"})
    post(alertmanager.url, [gap_alert, finding, unverified])

    def receivers(alert_id: str) -> list[str] | None:
        got = am_alerts(alertmanager.url, alert_id=alert_id)
        return sorted(r["name"] for r in got[0]["receivers"]) if got else None

    assert wait_until(lambda: receivers(gap_alert.alert_id), what="the gap alert") == ["data-steward"]
    assert receivers(finding.alert_id) == ["central-districts-chat", "duty-officer-pager"]
    (got,) = am_alerts(alertmanager.url, alert_id=gap_alert.alert_id)
    assert got["labels"] == alert_labels(gap_alert)
    assert got["labels"]["field"] == "commodity" and got["labels"]["commodity"] == label
    assert got["labels"]["severity"] == "info" and "limit_confidence" not in got["labels"]
    assert "foods.csv" in got["annotations"]["summary"] and label in got["annotations"]["summary_zh"]
    (unv,) = am_alerts(alertmanager.url, alert_id=unverified.alert_id)
    assert unv["labels"]["limit_confidence"] == "unverified"
    assert sorted(r["name"] for r in unv["receivers"]) == ["central-districts-chat", "duty-officer-pager"]

    def steward_groups() -> list[dict[str, Any]]:
        return [g for g in get_json(f"{alertmanager.url}/api/v2/alerts/groups")
                if g["receiver"]["name"] == "data-steward"
                and any(a["labels"]["alert_id"] == gap_alert.alert_id for a in g["alerts"])]

    (group,) = wait_until(steward_groups, what="the data-steward group")
    assert group["labels"] == {"alertname": "reference_gap", "field": "commodity"}


def test_shipped_inhibit_rule_silences_rate_surges_behind_a_confirmed_banned_supplier(
    alertmanager: AlertmanagerServer, unique: str
) -> None:
    d, other = f"I{unique}", f"J{unique}"
    banned = alert(f"ban-{unique}", "banned_pesticide", d, "cowpea", supplier_id="sup-42")
    no_supplier = alert(f"ban-nosup-{unique}", "banned_pesticide", other, "leek")
    surges = [
        alert(f"s-same-{unique}", "rate_surge", d, "cowpea"),  # inhibited
        alert(f"s-commodity-{unique}", "rate_surge", d, "leek"),  # other commodity
        alert(f"s-district-{unique}", "rate_surge", other, "cowpea"),  # other district
        alert(f"s-nosup-{unique}", "rate_surge", other, "leek"),  # its banned alert names no supplier
    ]
    post(alertmanager.url, [banned, no_supplier, *surges])

    def states() -> dict[str, dict[str, Any]]:
        out = {}
        for district in (d, other):
            out.update({a["labels"]["alert_id"]: a["status"] for a in am_alerts(alertmanager.url, district=district)})
        return out

    wait_until(lambda: len(states()) == 6, what="six alerts")
    st = states()
    banned_fp = next(a["fingerprint"] for a in am_alerts(alertmanager.url, district=d)
                     if a["labels"]["alertname"] == "banned_pesticide")
    assert st[f"s-same-{unique}"] == {"state": "suppressed", "inhibitedBy": [banned_fp], "silencedBy": []}
    for name in ("s-commodity", "s-district", "s-nosup", "ban", "ban-nosup"):
        assert st[f"{name}-{unique}"]["state"] == "active", name
    # The banned alert resolves: the surge is active again.
    post(alertmanager.url, [banned.model_copy(update={"status": "resolved", "ends_at": datetime.now(UTC)})])
    wait_until(lambda: states()[f"s-same-{unique}"]["state"] == "active", what="the inhibition to lift")


def test_grouping_by_alertname_district_and_commodity(alertmanager: AlertmanagerServer, unique: str) -> None:
    d1, d2 = f"G{unique}", f"H{unique}"
    alerts = [
        alert(f"g1-{unique}", "quick_test_positive", d1, "cowpea", site_id="m1"),
        alert(f"g2-{unique}", "quick_test_positive", d1, "cowpea", site_id="m2"),
        alert(f"g3-{unique}", "quick_test_positive", d1, "leek", site_id="m1"),
        alert(f"g4-{unique}", "quick_test_positive", d2, "cowpea", site_id="m9"),
        alert(f"g5-{unique}", "banned_pesticide", d1, "cowpea", site_id="m1", supplier_id="sup-1"),
    ]
    post(alertmanager.url, alerts)

    def groups() -> dict[tuple[str, str, str], set[str]]:
        out: dict[tuple[str, str, str], set[str]] = {}
        for g in get_json(f"{alertmanager.url}/api/v2/alerts/groups"):
            labels = g["labels"]
            if labels.get("district") not in (d1, d2):
                continue
            assert set(labels) == {"alertname", "district", "commodity"}, labels
            key = (labels["alertname"], labels["district"], labels["commodity"])
            out.setdefault(key, set()).update(a["labels"]["alert_id"] for a in g["alerts"])
        return out

    expected = {
        ("quick_test_positive", d1, "cowpea"): {f"g1-{unique}", f"g2-{unique}"},
        ("quick_test_positive", d1, "leek"): {f"g3-{unique}"},
        ("quick_test_positive", d2, "cowpea"): {f"g4-{unique}"},
        ("banned_pesticide", d1, "cowpea"): {f"g5-{unique}"},
    }
    wait_until(lambda: groups() == expected, what=f"groups {expected}")


def test_sink_reports_rejection_and_unreachable_targets(alertmanager: AlertmanagerServer, unique: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"

    async def go() -> None:
        sink = AlertmanagerSink([dead, alertmanager.url], timeout_s=5)
        good = [to_alertmanager(alert(f"ha-{unique}", "rate_surge", f"K{unique}", "cowpea"),
                                now=datetime.now(UTC), links=LINKS, firing_ttl_s=600)]
        try:
            assert await sink.post(good) == (alertmanager.url,)  # one of the HA pair is enough
            bad = [{**good[0], "startsAt": "2030-01-01T00:00:00Z", "endsAt": "2029-01-01T00:00:00Z"}]
            with pytest.raises(AlertmanagerSinkError) as rejected:
                await sink.post(bad)
            assert rejected.value.retriable is False and rejected.value.status == 400
            only_dead = AlertmanagerSink([dead], timeout_s=5)
            with pytest.raises(AlertmanagerSinkError, match="unreachable") as down:
                await only_dead.post(good)
            assert down.value.retriable is True
            await only_dead.close()
        finally:
            await sink.close()

    asyncio.run(go())
    assert am_alerts(alertmanager.url, alert_id=f"ha-{unique}")


# bcrypt (cost 6) of AM_PASSWORD, for Alertmanager's basic_auth_users; made once for this test.
AM_USER, AM_PASSWORD = "foodrisk", "am-test-pass-0417"
AM_PASSWORD_BCRYPT = "$2b$06$1ymo9C2k.x4l4MG/Sp10eOrHK4VAQECaIOssEqDsjALdKt42z0ayy"


def test_finding_8_alertmanager_behind_basic_auth_gets_the_credentials_from_the_url(
    tmp_path: Path, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Security finding 8: the credentials of FOODRISK_ALERTMANAGER_URL were stripped before posting,
    so an Alertmanager behind basic auth answered 401 and the alerts ended parked. They go in the
    Authorization header now, and appear in no error, log line or metric label."""
    try:
        find_alertmanager()
    except AlertmanagerMissing as exc:
        unavailable(str(exc))
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  {AM_USER}: {AM_PASSWORD_BCRYPT}\n")
    am = AlertmanagerServer(tmp_path / "am", CONFIG, web_config=web, basic_auth=(AM_USER, AM_PASSWORD)).start()
    try:
        host = am.url.removeprefix("http://")
        with_creds = f"http://{AM_USER}:{AM_PASSWORD}@{host}"
        wrong = f"http://{AM_USER}:not-the-password@{host}"
        good = [to_alertmanager(alert(f"auth-{unique}", "rate_surge", f"A{unique}", "cowpea"),
                                now=datetime.now(UTC), links=LINKS, firing_ttl_s=600)]

        async def go() -> None:
            refused = AlertmanagerSink([wrong], timeout_s=5)
            try:
                with pytest.raises(AlertmanagerSinkError) as err:
                    await refused.post(good)
                assert err.value.status == 401 and err.value.retriable is True
                assert "not-the-password" not in str(err.value)
            finally:
                await refused.close()
            sink = AlertmanagerSink([with_creds], timeout_s=5)
            try:
                assert await sink.post(good) == (with_creds,)
            finally:
                await sink.close()

        with caplog.at_level("DEBUG"):
            asyncio.run(go())
        assert AM_PASSWORD not in caplog.text
        req = urllib.request.Request(f"{am.url}/api/v2/alerts?filter=alert_id%3D%22auth-{unique}%22")  # noqa: S310
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{AM_USER}:{AM_PASSWORD}".encode()).decode())
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - loopback test server
            assert [a["labels"]["alert_id"] for a in json.loads(resp.read())] == [f"auth-{unique}"]
    finally:
        am.stop()


# -- the parked-alerts table ---------------------------------------------------------------------------


def test_parked_alerts_table_on_both_backends(ch: ClickHouse) -> None:
    migrate(ch, ch.database)
    a = alert("park-1", "banned_pesticide", "Tianhe", "cowpea", supplier_id="sup-1", summary_zh="天河区 豇豆 克百威")
    item = Item(a, a.to_json(), "foodrisk.alerts", 2, 41)
    first = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    parked = Parked(item, "unavailable", "Alertmanager http://x unreachable", 7, first)
    row = as_row(parked_values("alertmanager", parked, parked_at=first + timedelta(minutes=15)), PARKED_ALERTS_COLUMNS)

    async def write() -> None:
        writer = ClickHouseWriter(ch, database=ch.database)
        try:
            await writer.insert("parked_alerts", PARKED_ALERTS_COLUMNS, [row])
            await writer.insert("parked_alerts", PARKED_ALERTS_COLUMNS, [row])  # a replay parks it again
        finally:
            writer.close()

    asyncio.run(write())
    res = ch.query(
        f"SELECT target, alert_id, severity, district, reason, attempts, first_attempt_at, parked_at, alert, "
        f"src_partition, src_offset FROM `{ch.database}`.parked_alerts FINAL"
    )
    assert len(res.rows) == 1
    r = res.dicts()[0]
    assert (r["target"], r["alert_id"], r["severity"], r["district"], r["reason"], r["attempts"]) == (
        "alertmanager", "park-1", "critical", "Tianhe", "unavailable", 7)
    assert r["first_attempt_at"] == first and r["parked_at"] == first + timedelta(minutes=15)
    assert Alert.from_json(r["alert"]) == a
    assert (r["src_partition"], r["src_offset"]) == (2, 41)


def test_firing_set_rebuild_query_on_both_backends(ch: ClickHouse) -> None:
    """The query that rebuilds the re-post set after a start or rebalance, on 18.16 and chdb: the
    latest state per alert of the assigned partitions, firing ones only, within the active window."""
    migrate(ch, ch.database)
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for alert_id, status, partition, offset, age_h in (
        ("still", "firing", 0, 1, 1),
        ("ended", "firing", 0, 2, 1), ("ended", "resolved", 0, 3, 1),  # resolved later: not firing
        ("other-partition", "firing", 2, 4, 1),
        ("too-old", "firing", 1, 5, 48),
        ("updated", "firing", 1, 6, 2), ("updated", "firing", 1, 7, 1),  # the newer row wins
    ):
        a = alert(alert_id, "rate_surge", "Tianhe", "cowpea", status=status, summary_zh=f"更新 {offset}",
                  ends_at=now if status == "resolved" else None)
        values = alert_values(a, src_partition=partition, src_offset=offset, ingested_at=now - timedelta(hours=age_h))
        rows.append(as_row(values, ALERTS_COLUMNS))
    metrics = create_metrics(CollectorRegistry())

    async def rebuild() -> set[str]:
        writer = ClickHouseWriter(ch, database=ch.database)
        cfg = DeliveryConfig(
            alertmanager_urls=("http://127.0.0.1:9",), webhook_url=None, webhook_secret=None, links=LINKS,
            resend_s=60, active_s=24 * 3600, alertmanager_give_up_s=60, webhook_give_up_s=60, timeout_s=5,
            retry_cap_s=1, max_rows=100, max_age_s=0.1, database=ch.database,
        )
        sink = AlertmanagerSink(cfg.alertmanager_urls)
        d = AlertmanagerDelivery(sink, writer=writer, metrics=metrics, config=cfg)
        try:
            await writer.insert("alerts", ALERTS_COLUMNS, rows)
            d.set_assignment({0, 1})
            assert await d.load()
            assert {a.summary_zh for a in d.firing.due(now.timestamp()) if a.alert_id == "updated"} == {"更新 7"}
            return {a.alert_id for a in d.firing.due(now.timestamp())}
        finally:
            writer.close()
            await sink.close()

    assert asyncio.run(rebuild()) == {"still", "updated"}


# -- a real worker: delivery, outage drill, restart ------------------------------------------------------



def expected_alert_ids(expected: dict[str, str]) -> set[str]:
    return {alert_id_for(kind, result_key("dev-01", rid)) for rid, kind in expected.items()}  # mixed_batch's device


def test_outage_drill_every_alert_arrives_and_restart_rebuilds_from_clickhouse(
    broker: KafkaBroker, tmp_path: Path, unique: str
) -> None:
    am = _start_alertmanager(tmp_path / "am")
    topics = {k: f"amd.{k}.{unique}" for k in ("results", "alerts", "deadletter")}
    group = f"amd-{unique}"
    db = f"amd_{unique}"
    settings = Settings(broker_url=broker.url)

    def worker() -> WorkerProcess:
        return WorkerProcess(
            tmp_path / "worker", broker_url=broker.url, clickhouse_url=f"chdb://{tmp_path / 'chdb'}", app_id=group,
            topics=topics, FOODRISK_CLICKHOUSE_DATABASE=db, FOODRISK_ALERTMANAGER_URL=am.url,
            FOODRISK_ALERTMANAGER_RESEND_S="3", FOODRISK_ALERTMANAGER_GIVE_UP_S="600",
            FOODRISK_GRAFANA_URL=LINKS.grafana_url or "", FOODRISK_RUNBOOK_URL=LINKS.runbook_url or "",
        )

    def in_am() -> set[str]:
        return {a["labels"]["alert_id"] for a in am_alerts(am.url)} if am.running else set()

    def alerts_lag() -> int | None:
        return group_lag(settings, [broker.bootstrap], group, topics["alerts"])

    w = worker().start()
    try:
        before, _, exp_before = mixed_batch(f"b{unique}", 100)
        produce(broker.bootstrap, topics["results"], before)
        ids_before = expected_alert_ids(exp_before)
        wait_until(lambda: ids_before <= in_am(), timeout_s=90, what="the first alerts in Alertmanager")
        wait_until(lambda: alerts_lag() == 0, timeout_s=60, what="alerts topic committed")
        one = next(a for a in am_alerts(am.url) if a["labels"]["alertname"] == "banned_pesticide")
        assert one["labels"]["district"] == "Tianhe" and one["labels"]["commodity"] == "cowpea"
        assert one["labels"]["supplier"] == "sup-001" and one["labels"]["severity"] == "critical"
        assert "克百威" in one["annotations"]["summary_zh"]

        # Alertmanager away for 30 s while alerts flow.
        am.stop()
        stopped = time.monotonic()
        during, _, exp_during = mixed_batch(f"d{unique}", 100)
        produce(broker.bootstrap, topics["results"], during)
        ids_during = expected_alert_ids(exp_during)
        # Screened and archived, but not acknowledged by the delivery agent: offsets held back.
        w.wait_for(f"SELECT uniqExact(alert_id) FROM {db}.alerts WHERE has(%(ids)s, alert_id)", len(ids_during),
                   timeout_s=60, ids=sorted(ids_during))
        time.sleep(4)
        lag = alerts_lag()
        assert lag is not None and lag >= len(ids_during)  # (early-warning agents may add alerts of their own)

        # The worker stops during the outage: promptly, committing none of the undelivered alerts.
        t = time.monotonic()
        w.stop()
        stop_s = time.monotonic() - t
        assert stop_s < 20, f"worker took {stop_s:.1f}s to stop"
        lag = alerts_lag()
        assert lag is not None and lag >= len(ids_during)
        w = worker().start()

        later, _, exp_later = mixed_batch(f"l{unique}", 100)
        produce(broker.bootstrap, topics["results"], later)
        ids_later = expected_alert_ids(exp_later)
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))
        assert w.proc.running, w.log_tail()
        assert w.metric("foodrisk_delivery_failures_total", target="alertmanager", reason="unavailable") > 0
        assert w.metric("foodrisk_delivery_target_up", target="alertmanager") == 0
        am.start()  # empty: Alertmanager keeps alerts in memory only
        back = time.monotonic()

        every = ids_before | ids_during | ids_later
        wait_until(lambda: every <= in_am(), timeout_s=90, what="every alert in Alertmanager after the outage")
        print(f"outage drill: {len(every)} alerts, Alertmanager down {back - stopped:.0f}s, worker stop during "
              f"the outage {stop_s:.1f}s, all alerts in Alertmanager {time.monotonic() - back:.1f}s after it was back")
        wait_until(lambda: alerts_lag() == 0, timeout_s=60, what="alerts topic committed after the outage")
        assert w.scalar(f"SELECT count() FROM {db}.parked_alerts") == 0
        assert w.metric("foodrisk_parked_alerts_total") == 0
        assert w.metric("foodrisk_delivered_alerts_total", target="alertmanager") >= len(ids_during | ids_later)
        assert w.metric("foodrisk_alertmanager_firing_alerts") >= len(every)
        assert w.metric("foodrisk_delivery_target_up", target="alertmanager") == 1
        assert "parked in" in w.log_tail(400_000)  # the retry log line says when it would park
    finally:
        w.stop()

    # Restart: Alertmanager loses its memory while the worker is down; the new worker reads no
    # alert from the topic (all committed) and rebuilds the firing set from ClickHouse.
    am.stop()
    am.start()
    assert in_am() == set()
    w = worker().start()
    try:
        wait_until(lambda: every <= in_am(), timeout_s=90, what="firing alerts re-posted from ClickHouse")
        assert "rebuilt from ClickHouse" in w.log_tail(400_000)
    finally:
        w.stop()
        am.stop()
