"""The delivery agents' work without faust or servers: retries, the give-up horizon and parking,
the split of a refused batch, interruption at shutdown, the re-post timer and the rebuild from
ClickHouse. In-memory implementations of *our* interfaces (the sink, the ClickHouse protocol);
the real Alertmanager and worker are in tests/integration/test_alertmanager.py."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agents.delivery import AlertmanagerDelivery, DeliveryConfig, DeliveryInterrupted, Item
from agents.metrics import Metrics, create
from agents.records import alert_values
from schemas.alert import Alert
from sinks.alertmanager import AlertmanagerSink
from sinks.clickhouse import Features, QueryResult
from sinks.ddl import ALERTS_COLUMNS, PARKED_ALERTS_COLUMNS
from sinks.errors import AlertmanagerSinkError
from sinks.presentation import Links
from sinks.writer import ClickHouseWriter

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


class MemoryClickHouse:
    """Keeps inserted rows; answers the firing-set rebuild query from ``alerts_rows``."""

    def __init__(self) -> None:
        self.inserted: dict[str, list[tuple[Any, ...]]] = {}
        self.alerts_rows: list[dict[str, Any]] = []
        self.queries: list[str] = []

    @property
    def database(self) -> str:
        return "foodrisk"

    @property
    def server_version(self) -> tuple[int, int, int]:
        return (26, 9, 2)

    @property
    def features(self) -> Features:
        return Features.for_version((26, 9, 2))

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        raise AssertionError("no DDL here")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        self.queries.append(sql)
        cols = ["alert_id", "kind", "classification", "risk", "status", "summary_en", "summary_zh", "district",
                "site_id", "site_type", "commodity", "analyte", "supplier_id", "vendor_id", "device_id", "evidence",
                "starts_at", "ends_at", "details", "src_partition", "ingested_at"]
        return QueryResult(cols, [tuple(r[c] for c in cols) for r in self.alerts_rows])

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
               settings: Mapping[str, Any] | None = None) -> int:
        self.inserted.setdefault(table, []).extend(tuple(r) for r in rows)
        return len(rows)

    def close(self) -> None:
        pass


class ScriptedSink(AlertmanagerSink):
    """Fails the first ``fail`` posts (unreachable); refuses any post holding an alert id in
    ``refuse`` (like Alertmanager's 400); records what it accepted."""

    def __init__(self, *, fail: int = 0, refuse: frozenset[str] = frozenset()) -> None:
        super().__init__(["http://am.test:9093"])
        self.fail = fail
        self.refuse = refuse
        self.posts = 0
        self.accepted: list[dict[str, Any]] = []

    async def post(self, alerts: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
        self.posts += 1
        if self.posts <= self.fail:
            raise AlertmanagerSinkError("Alertmanager http://am.test:9093 unreachable", url="http://am.test:9093")
        if any(a["labels"]["alert_id"] in self.refuse for a in alerts):
            raise AlertmanagerSinkError("HTTP 400: start time must be before end time", url="http://am.test:9093",
                                        status=400, retriable=False)
        self.accepted.extend(dict(a) for a in alerts)
        return self.urls


def an_alert(alert_id: str, **changes: Any) -> Alert:
    data: dict[str, Any] = {
        "alert_id": alert_id, "kind": "quick_test_positive", "classification": "follow_up", "risk": "undecided",
        "summary_en": "Quick test positive", "summary_zh": "快检阳性", "district": "Tianhe", "commodity": "cowpea",
        "evidence": (f"r-{alert_id}",), "starts_at": NOW - timedelta(hours=1),
    }
    data.update(changes)
    return Alert.model_validate(data)


def items(*alerts: Alert) -> list[Item]:
    return [Item(a, a.to_json(), "foodrisk.alerts", i % 2, 100 + i) for i, a in enumerate(alerts)]


def config(**changes: Any) -> DeliveryConfig:
    base: dict[str, Any] = {
        "alertmanager_urls": ("http://am.test:9093",), "webhook_url": None, "webhook_secret": None,
        "links": Links(), "resend_s": 60.0, "active_s": 3600.0, "alertmanager_give_up_s": 30.0,
        "webhook_give_up_s": 30.0, "timeout_s": 5.0, "retry_cap_s": 0.02, "max_rows": 100, "max_age_s": 0.1,
        "database": "foodrisk",
    }
    base.update(changes)
    return DeliveryConfig(**base)


def delivery(sink: ScriptedSink, ch: MemoryClickHouse, **kw: Any) -> tuple[AlertmanagerDelivery, Metrics]:
    metrics = create(CollectorRegistry())
    interrupted = kw.pop("interrupted", lambda: False)
    d = AlertmanagerDelivery(sink, writer=ClickHouseWriter(ch, database="foodrisk"), metrics=metrics,
                             config=config(**kw), clock=lambda: NOW, interrupted=interrupted)
    return d, metrics


def value(metrics: Metrics, name: str, **labels: str) -> float:
    registry_value = getattr(metrics, name)
    return float(registry_value.labels(**labels)._value.get() if labels else registry_value._value.get())


def test_retries_until_accepted_then_keeps_firing_alerts_current() -> None:
    sink, ch = ScriptedSink(fail=3), MemoryClickHouse()
    d, m = delivery(sink, ch)
    parked = asyncio.run(d.deliver(items(an_alert("a"), an_alert("b", status="resolved", ends_at=NOW))))
    assert parked == []
    assert sink.posts == 4 and [a["labels"]["alert_id"] for a in sink.accepted] == ["a", "b"]
    assert "foodrisk.parked_alerts" not in ch.inserted
    assert value(m, "delivery_failures", target="alertmanager", reason="unavailable") == 3
    assert value(m, "delivered_alerts", target="alertmanager", status="firing") == 1
    assert value(m, "delivered_alerts", target="alertmanager", status="resolved") == 1
    assert "a" in d.firing and "b" not in d.firing
    # The timer re-posts the firing one with a fresh endsAt.
    assert asyncio.run(d.repost()) == 1
    assert sink.accepted[-1]["labels"]["alert_id"] == "a"
    assert sink.accepted[-1]["endsAt"] == "2026-11-21T08:04:00.000Z"  # now + 4 x 60 s


def test_give_up_parks_every_alert_and_keeps_firing_ones_for_the_timer() -> None:
    sink, ch = ScriptedSink(fail=10**6), MemoryClickHouse()
    d, m = delivery(sink, ch, alertmanager_give_up_s=0.3)
    batch = items(an_alert("a"), an_alert("b", status="resolved", ends_at=NOW))
    parked = asyncio.run(d.deliver(batch))
    assert {p.item.alert.alert_id for p in parked} == {"a", "b"}
    rows = [dict(zip(PARKED_ALERTS_COLUMNS, r, strict=True)) for r in ch.inserted["foodrisk.parked_alerts"]]
    assert {(r["target"], r["alert_id"], r["reason"]) for r in rows} == {("alertmanager", "a", "unavailable"),
                                                                         ("alertmanager", "b", "unavailable")}
    assert all(r["attempts"] >= 2 and "unreachable" in r["error"] for r in rows)
    assert Alert.from_json(rows[0]["alert"]).alert_id == rows[0]["alert_id"]
    assert (rows[0]["src_topic"], rows[0]["src_offset"]) == ("foodrisk.alerts", 100)
    assert value(m, "parked_alerts", target="alertmanager", reason="unavailable") == 2
    assert "a" in d.firing  # still re-posted: it reaches Alertmanager once it is back
    sink.fail = 0
    assert asyncio.run(d.repost()) == 1


def test_a_refused_batch_is_split_and_only_the_refused_alert_parked() -> None:
    sink, ch = ScriptedSink(refuse=frozenset({"bad"})), MemoryClickHouse()
    d, m = delivery(sink, ch)
    parked = asyncio.run(d.deliver(items(an_alert("a"), an_alert("bad"), an_alert("c"))))
    assert [(p.item.alert.alert_id, p.reason) for p in parked] == [("bad", "rejected")]
    assert sorted(a["labels"]["alert_id"] for a in sink.accepted) == ["a", "c"]
    assert "bad" not in d.firing and "a" in d.firing
    assert value(m, "parked_alerts", target="alertmanager", reason="rejected") == 1
    assert value(m, "delivered_alerts", target="alertmanager", status="firing") == 2


def test_shutdown_interrupts_the_retries_without_parking() -> None:
    sink, ch = ScriptedSink(fail=10**6), MemoryClickHouse()
    stopping = {"now": False}

    def interrupted() -> bool:
        return stopping["now"]

    d, _ = delivery(sink, ch, interrupted=interrupted)

    async def go() -> None:
        task = asyncio.ensure_future(d.deliver(items(an_alert("a"))))
        await asyncio.sleep(0.2)
        assert not task.done()  # retrying: the horizon is 30 s
        stopping["now"] = True
        with pytest.raises(DeliveryInterrupted):
            await asyncio.wait_for(task, timeout=2)

    asyncio.run(go())
    assert "foodrisk.parked_alerts" not in ch.inserted and "a" not in d.firing


def test_rebuild_from_clickhouse_for_assigned_partitions() -> None:
    sink, ch = ScriptedSink(), MemoryClickHouse()
    d, m = delivery(sink, ch)
    for alert_id, status, partition in (("f1", "firing", 0), ("r1", "resolved", 1), ("f2", "firing", 1)):
        a = an_alert(alert_id, status=status, ends_at=NOW if status == "resolved" else None, details={"n": 1})
        row = alert_values(a, src_partition=partition, src_offset=1, ingested_at=NOW - timedelta(minutes=5))
        row["starts_at"] = row["starts_at"].replace(tzinfo=UTC)  # as the backends return DateTime('UTC')
        row["ingested_at"] = row["ingested_at"].replace(tzinfo=UTC)
        ch.alerts_rows.append({c: row[c] for c in ALERTS_COLUMNS if c in row})
    d.set_assignment({0, 1})
    assert asyncio.run(d.load()) is True
    assert "src_partition IN (0, 1)" in ch.queries[-1] and "LIMIT 1 BY alert_id" in ch.queries[-1]
    assert "f1" in d.firing and "f2" in d.firing and "r1" not in d.firing
    assert value(m, "alertmanager_firing_alerts") == 2
    assert asyncio.run(d.repost()) == 2
    got = {a["labels"]["alert_id"]: a for a in sink.accepted}
    assert orjson.loads(got["f1"]["annotations"]["details"]) == {"n": 1}
    # A partition taken away: its alerts are no longer this worker's to keep current.
    d.set_assignment({0})
    assert "f2" not in d.firing and "f1" in d.firing
