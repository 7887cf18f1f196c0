"""Alert -> Alertmanager payload (pure), the webhook body and signature, and the firing-set
bookkeeping of the delivery agent. No server here: tests/integration/test_alertmanager.py posts
these payloads to a real Alertmanager."""

from __future__ import annotations

import copy
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.delivery.firing import FiringAlerts
from schemas.alert import Alert, AlertStatus, Classification, Risk
from sinks.alertmanager import api_endpoint, parse_urls, to_alertmanager
from sinks.presentation import MAX_EVIDENCE_IDS, SEVERITY, Links, alert_labels, severity_for
from sinks.webhook import InvalidSignature, sign, signature_header, verify_signature, webhook_body

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
STARTS = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
MIN_TS = datetime(2020, 1, 1)  # noqa: DTZ001 - hypothesis wants naive bounds, timezones= makes them aware
MAX_TS = datetime(2030, 1, 1)  # noqa: DTZ001
LINKS = Links(grafana_url="https://grafana.example/d/foodrisk-alerts/alerts", runbook_url="https://wiki.example/rb")


def banned(**changes: object) -> Alert:
    base: dict[str, object] = {
        "alert_id": "a-banned-1",
        "kind": "banned_pesticide",
        "classification": Classification.alert,
        "risk": Risk.serious,
        "summary_en": "Banned pesticide carbofuran detected in cowpea: 0.08 mg/kg (lc_msms).",
        "summary_zh": "豇豆检出禁用农药克百威：0.08 mg/kg（液相色谱-串联质谱）。",
        "district": "Tianhe",
        "site_id": "gz-th-m01",
        "site_type": "farmers_market",
        "commodity": "cowpea",
        "analyte": "carbofuran",
        "supplier_id": "sup-001",
        "vendor_id": "stall-07",
        "device_id": None,
        "evidence": ("r-1",),
        "starts_at": STARTS,
        "details": {"method": "lc_msms", "ratio": None, "value_mg_kg": 0.08},
    }
    base.update(changes)
    return Alert.model_validate(base)


# -- severity ------------------------------------------------------------------------------------


def test_severity_table_covers_every_classification_and_risk() -> None:
    assert set(SEVERITY) == {(c, r) for c in Classification for r in Risk}
    assert set(SEVERITY.values()) == {"critical", "warning", "info"}


@pytest.mark.parametrize(
    ("classification", "risk", "severity"),
    [
        ("alert", "serious", "critical"),
        ("alert", "potentially_serious", "critical"),
        ("alert", "undecided", "warning"),
        ("follow_up", "undecided", "warning"),
        ("follow_up", "serious", "warning"),
        ("attention", "not_serious", "info"),
    ],
)
def test_severity_for(classification: str, risk: str, severity: str) -> None:
    assert severity_for(Classification(classification), Risk(risk)) == severity


# -- labels --------------------------------------------------------------------------------------


def test_labels_of_a_banned_pesticide_alert() -> None:
    assert alert_labels(banned()) == {
        "alertname": "banned_pesticide",
        "alert_id": "a-banned-1",
        "severity": "critical",
        "classification": "alert",
        "risk": "serious",
        "district": "Tianhe",
        "site": "gz-th-m01",
        "site_type": "farmers_market",
        "commodity": "cowpea",
        "analyte": "carbofuran",
        "supplier": "sup-001",
        "vendor": "stall-07",
    }


def test_labels_leave_out_unset_and_blank_fields() -> None:
    a = banned(site_id=None, supplier_id="  ", vendor_id=None, device_id="dev-9", analyte=None)
    labels = alert_labels(a)
    assert "site" not in labels and "supplier" not in labels and "vendor" not in labels and "analyte" not in labels
    assert labels["device"] == "dev-9"
    assert all(v for v in labels.values())


def test_labels_are_the_same_for_firing_and_resolved() -> None:
    """Alertmanager identifies an alert by its label set: the resolution must hit the same one."""
    firing = banned()
    resolved = banned(status=AlertStatus.resolved, ends_at=NOW)
    assert alert_labels(firing) == alert_labels(resolved)


# -- annotations and links ------------------------------------------------------------------------


def test_annotations_in_chinese_and_english_with_evidence_and_links() -> None:
    body = to_alertmanager(banned(evidence=("r-1", "r-2")), now=NOW, links=LINKS, firing_ttl_s=240)
    ann = body["annotations"]
    assert ann["summary"].startswith("Banned pesticide carbofuran")
    assert ann["summary_zh"].startswith("豇豆检出禁用农药克百威")
    assert "r-1, r-2" in ann["description"] and "serious" in ann["description"]
    assert "证据：2 条结果" in ann["description_zh"] and "严重" in ann["description_zh"]
    assert ann["evidence"] == "r-1, r-2" and ann["evidence_count"] == "2"
    assert orjson.loads(ann["details"]) == {"method": "lc_msms", "value_mg_kg": 0.08}  # nulls dropped
    assert ann["runbook_url"] == "https://wiki.example/rb#banned_pesticide"
    dash = urlsplit(ann["dashboard"])
    assert f"{dash.scheme}://{dash.netloc}{dash.path}" == LINKS.grafana_url
    q = parse_qs(dash.query)
    assert q["var-district"] == ["Tianhe"] and q["var-commodity"] == ["cowpea"]
    assert q["var-alert_id"] == ["a-banned-1"] and q["to"] == ["now"]
    assert int(q["from"][0]) == int((STARTS - timedelta(days=1)).timestamp() * 1000)
    assert body["generatorURL"] == ann["dashboard"]


def test_runbook_placeholder_and_no_links_when_not_configured() -> None:
    body = to_alertmanager(banned(), now=NOW, links=Links(runbook_url="https://rb.example/{kind}.html"),
                           firing_ttl_s=240)
    assert body["annotations"]["runbook_url"] == "https://rb.example/banned_pesticide.html"
    assert "dashboard" not in body["annotations"] and "generatorURL" not in body
    bare = to_alertmanager(banned(), now=NOW, links=Links(), firing_ttl_s=240)
    assert "runbook_url" not in bare["annotations"]


def test_evidence_is_cut_for_display_but_counted() -> None:
    ids = tuple(f"r-{i}" for i in range(MAX_EVIDENCE_IDS + 5))
    ann = to_alertmanager(banned(evidence=ids), now=NOW, links=LINKS, firing_ttl_s=240)["annotations"]
    assert ann["evidence_count"] == str(MAX_EVIDENCE_IDS + 5)
    assert ann["evidence"].endswith("(+5 more)") and f"r-{MAX_EVIDENCE_IDS}," not in ann["evidence"]


# -- times -----------------------------------------------------------------------------------------


def test_firing_alert_starts_at_event_time_and_ends_a_ttl_ahead() -> None:
    body = to_alertmanager(banned(), now=NOW, links=LINKS, firing_ttl_s=240)
    assert body["startsAt"] == "2026-11-20T07:30:00.000Z"
    assert body["endsAt"] == "2026-11-21T08:04:00.000Z"


def test_firing_alert_from_the_future_starts_now() -> None:
    body = to_alertmanager(banned(starts_at=NOW + timedelta(hours=1)), now=NOW, links=LINKS, firing_ttl_s=60)
    assert body["startsAt"] == "2026-11-21T08:00:00.000Z"


def test_resolved_alert_ends_at_its_end_never_in_the_future_nor_before_its_start() -> None:
    ended = NOW - timedelta(hours=2)
    body = to_alertmanager(banned(status="resolved", ends_at=ended), now=NOW, links=LINKS, firing_ttl_s=60)
    assert body["endsAt"] == "2026-11-21T06:00:00.000Z"
    future = to_alertmanager(banned(status="resolved", ends_at=NOW + timedelta(days=1)), now=NOW, links=LINKS,
                             firing_ttl_s=60)
    assert future["endsAt"] == "2026-11-21T08:00:00.000Z"
    no_end = to_alertmanager(banned(status="resolved"), now=NOW, links=LINKS, firing_ttl_s=60)
    assert no_end["endsAt"] == "2026-11-21T08:00:00.000Z"
    odd = to_alertmanager(banned(status="resolved", ends_at=STARTS - timedelta(hours=1)), now=NOW, links=LINKS,
                          firing_ttl_s=60)
    assert odd["startsAt"] <= odd["endsAt"]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        to_alertmanager(banned(), now=NOW.replace(tzinfo=None), links=LINKS, firing_ttl_s=60)


# -- properties ------------------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=20)
optional = st.none() | texts


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    status = draw(st.sampled_from(list(AlertStatus)))
    starts = draw(st.datetimes(min_value=MIN_TS, max_value=MAX_TS, timezones=st.just(UTC)))
    ends = draw(st.none() | st.datetimes(min_value=MIN_TS, max_value=MAX_TS, timezones=st.just(UTC)))
    return banned(
        alert_id=draw(texts), kind=draw(st.sampled_from(["banned_pesticide", "rate_surge", "device_silent"])),
        classification=draw(st.sampled_from(list(Classification))), risk=draw(st.sampled_from(list(Risk))),
        status=status, district=draw(optional), site_id=draw(optional), commodity=draw(optional),
        supplier_id=draw(optional), device_id=draw(optional), evidence=tuple(draw(st.lists(texts, max_size=30))),
        starts_at=starts, ends_at=ends,
    )


@settings(deadline=None, max_examples=200)
@given(alerts(), st.datetimes(min_value=MIN_TS, max_value=MAX_TS, timezones=st.just(UTC)))
def test_mapping_is_deterministic_unmutating_and_valid_for_alertmanager(alert: Alert, now: datetime) -> None:
    before = copy.deepcopy(alert)
    body = to_alertmanager(alert, now=now, links=LINKS, firing_ttl_s=240)
    assert alert == before
    assert to_alertmanager(alert, now=now, links=LINKS, firing_ttl_s=240) == body
    # What Alertmanager validates: a non-empty alertname, no empty label value, start <= end.
    assert body["labels"]["alertname"] and all(body["labels"].values())
    assert body["startsAt"] <= body["endsAt"]
    if alert.status is AlertStatus.firing:
        assert body["endsAt"] > now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    else:
        assert body["endsAt"] <= now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    orjson.dumps(body)  # JSON-serialisable as is


# -- URLs ------------------------------------------------------------------------------------------


def test_parse_urls_for_an_ha_pair() -> None:
    assert parse_urls(" http://am-a:9093/ ,http://am-b:9093,http://am-a:9093") == ("http://am-a:9093",
                                                                                    "http://am-b:9093")
    with pytest.raises(ValueError, match="bad Alertmanager URL 'am-a:9093'"):
        parse_urls("am-a:9093")
    with pytest.raises(ValueError, match="no Alertmanager URL"):
        parse_urls(" , ")
    assert api_endpoint("http://h:9093/prefix/") == "http://h:9093/prefix/api/v2/alerts"
    assert api_endpoint("http://h:9093/api/v2/alerts") == "http://h:9093/api/v2/alerts"


# -- webhook signature and body ----------------------------------------------------------------------

SECRET = b"s3cret-key"


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, 1700000000) == expected
    assert signature_header(SECRET, body, 1700000000) == f"t=1700000000,v1={expected}"
    assert verify_signature(SECRET, body, f"t=1700000000,v1={expected}", now=1700000100) == 1700000000


@pytest.mark.parametrize(
    ("header", "now", "message"),
    [
        (None, 1700000000, "no X-Foodrisk-Signature"),
        ("t=1700000000", 1700000000, "needs t=... and v1"),
        ("t=abc,v1=00", 1700000000, "not unix seconds"),
        ("garbage", 1700000000, "not key=value"),
        ("SIG", 1700000000 + 301, "more than 300s"),
        ("SIG_OTHER_SECRET", 1700000000, "does not match"),
        ("SIG_OTHER_BODY", 1700000000, "does not match"),
    ],
)
def test_signature_verification_refuses(header: str | None, now: float, message: str) -> None:
    body = b'{"a":1}'
    if header == "SIG":
        header = signature_header(SECRET, body, 1700000000)
    elif header == "SIG_OTHER_SECRET":
        header = signature_header(b"other", body, 1700000000)
    elif header == "SIG_OTHER_BODY":
        header = signature_header(SECRET, b'{"a":2}', 1700000000)
    with pytest.raises(InvalidSignature, match=message):
        verify_signature(SECRET, body, header, now=now)


def test_verification_accepts_any_of_several_v1_signatures() -> None:
    body = b"{}"
    good = sign(SECRET, body, 1700000000)
    assert verify_signature(SECRET, body, f"t=1700000000,v1=deadbeef,v1={good}", now=1700000000) == 1700000000


def test_webhook_body_is_deterministic_and_carries_labels_and_links() -> None:
    a, b = banned(), banned(alert_id="a-2", evidence=("r-2",))
    delivery_id, body = webhook_body([a, b], LINKS)
    assert webhook_body([a, b], LINKS) == (delivery_id, body)
    doc = orjson.loads(body)
    assert doc["version"] == 1 and doc["source"] == "foodrisk" and doc["delivery_id"] == delivery_id
    first = doc["alerts"][0]
    assert first["alert_id"] == "a-banned-1" and first["severity"] == "critical"
    assert first["labels"]["alertname"] == "banned_pesticide"
    assert first["links"]["runbook"] == "https://wiki.example/rb#banned_pesticide"
    assert Alert.model_validate({k: v for k, v in first.items() if k not in ("severity", "labels", "links")}) == a
    resolved_id, _ = webhook_body([banned(status="resolved", ends_at=NOW), b], LINKS)
    assert resolved_id != delivery_id


# -- the firing set behind the re-post timer ----------------------------------------------------------


def test_firing_set_keeps_firing_drops_resolved_and_expires() -> None:
    f = FiringAlerts(active_s=100)
    f.assign({0, 1})
    f.observe(banned(alert_id="x"), 0, now=1000)
    f.observe(banned(alert_id="y"), 1, now=1050)
    assert [a.alert_id for a in f.due(now=1060)] == ["x", "y"]
    f.observe(banned(alert_id="x", status="resolved", ends_at=NOW), 0, now=1070)
    assert "x" not in f
    assert [a.alert_id for a in f.due(now=1149)] == ["y"]
    assert f.due(now=1151) == [] and len(f) == 0


def test_firing_set_follows_partitions() -> None:
    f = FiringAlerts(active_s=100)
    f.assign({0, 1})
    f.observe(banned(alert_id="x"), 0, now=1000)
    f.observe(banned(alert_id="y"), 1, now=1000)
    f.revoke({1})
    assert [a.alert_id for a in f.due(now=1001)] == ["x"]
    assert f.partitions_to_load() == {0}  # 0 was never loaded; 1 is not ours any more


def test_load_merges_but_newer_observations_win() -> None:
    f = FiringAlerts(active_s=100)
    f.assign({0, 1})
    load = f.start_load(now=1000)
    assert load is not None and load.partitions == {0, 1}
    assert f.start_load(now=1000) is None  # one load at a time
    # While the load runs, the stream resolves "x" and updates "z".
    f.observe(banned(alert_id="x", status="resolved", ends_at=NOW), 0, now=1001)
    f.observe(banned(alert_id="z", evidence=("r-new",)), 1, now=1001)
    rows = [
        (banned(alert_id="x"), 0, 990.0),  # stale: firing in ClickHouse, resolved on the stream
        (banned(alert_id="z", evidence=("r-old",)), 1, 990.0),
        (banned(alert_id="w"), 1, 950.0),  # loaded
        (banned(alert_id="old"), 0, 800.0),  # older than active_s
        (banned(alert_id="done", status="resolved", ends_at=NOW), 0, 995.0),
    ]
    assert f.finish_load(load, rows) == 1
    due = {a.alert_id: a for a in f.due(now=1002)}
    assert set(due) == {"z", "w"}
    assert due["z"].evidence == ("r-new",)
    assert f.partitions_to_load() == frozenset()


def test_a_load_overlapping_a_reassignment_is_dropped_and_asked_again() -> None:
    f = FiringAlerts(active_s=100)
    f.assign({0})
    load = f.start_load(now=1000)
    assert load is not None
    f.revoke({0})
    f.assign({0})  # another worker may have resolved alerts of partition 0 meanwhile
    assert f.finish_load(load, [(banned(alert_id="x"), 0, 999.0)]) == 0
    assert "x" not in f and f.partitions_to_load() == {0}
    again = f.start_load(now=1001)
    assert again is not None and f.finish_load(again, [(banned(alert_id="x"), 0, 999.0)]) == 1


def test_an_aborted_load_leaves_its_partitions_pending() -> None:
    f = FiringAlerts(active_s=100)
    f.assign({2})
    load = f.start_load(now=1000)
    assert load is not None
    f.abort_load(load)
    assert f.partitions_to_load() == {2}
    with pytest.raises(ValueError, match="not the load in progress"):
        f.finish_load(load, [])


def test_urls_in_logs_and_metrics_carry_no_credentials_or_tokens() -> None:
    from sinks.http import safe_url
    from sinks.webhook import WebhookSink

    assert safe_url("http://admin:pw@am-1:9093/prefix?token=x#y") == "http://am-1:9093/prefix"
    assert safe_url("https://hooks.example/services/T0/B0/SECRET", keep_path=False) == "https://hooks.example/…"
    assert safe_url("https://bot.example", keep_path=False) == "https://bot.example"
    sink = WebhookSink("https://hooks.example/services/T0/B0/SECRET", b"k")
    assert "SECRET" not in sink.display_url
