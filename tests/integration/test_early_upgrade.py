"""The early-warning tables of the version before issue 21 (detector tables in shards, values in
that version's form), as its changelogs hold them, upgraded by a worker of this version on the real
broker: the tables recover from those changelogs, the first batch unfolds the shards, and the
alerts continue (a listed vendor stays listed until its fifth clean sample, then its alert is
resolved; a quick positive left waiting still fires when its 48 h pass)."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.early.common import iso
from pipeline.localstack.kafka import KafkaBroker
from pipeline.settings import Settings
from pipeline.topics import ensure_topics
from schemas.alert import alert_id_for
from tests.integration.factories import encode, produce, result
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration

SHARDS = 4


def _shard(key: str) -> str:
    return str(zlib.crc32(key.encode()) % SHARDS)


def _alert_id(p: str, t0: int) -> str:
    """The id of the vendor's firing repeat_offender alert (over the vendor and its listing time)."""
    return alert_id_for("repeat_offender", f"{p}-BAD", iso(t0 + 2 * 3600))


def _old_state(p: str, t0: int) -> dict[str, dict[str, Any]]:
    """The tables (name -> key -> value) as the version before wrote them: vendor ``p-BAD`` listed
    after three positives; a quick positive of vendor ``p-U`` waiting for its lab result."""
    h = 3600
    bad = f"{p}-BAD"
    offender = {
        bad: {"bad": {f"s-{p}-b{i}": [t0 + i * h, f"{p}-b{i}", "positive", f"{p}-m"] for i in range(3)},
              "clean": [], "listed": t0 + 2 * h, "a": {"id": _alert_id(p, t0), "fp": "3", "start": t0 + 2 * h},
              "where": [f"{p}-m", "Tianhe"]},
    }
    fields = {"result_id": f"{p}-u1", "site_id": f"{p}-mu", "site_type": "farmers_market", "district": "Tianhe",
              "vendor_id": f"{p}-U", "supplier_id": f"{p}-su", "commodity": "cowpea", "analyte": "ache_inhibition",
              "method": "enzyme_inhibition", "device_id": f"{p}-dev-u", "sample_id": f"s-{p}-u1"}
    unconfirmed = {f"p:{p}-u1": {"by": {f"{p}-dev-u": {"t": t0 + 3 * h, "r": fields, "a": None}}}}
    out: dict[str, dict[str, Any]] = {"offender": {}, "unconfirmed": {}}
    for name, entries in (("offender", offender), ("unconfirmed", unconfirmed)):
        for k, v in entries.items():
            out[name].setdefault(_shard(k), {})[k] = v
    out["meta"] = {"wm": {"max": t0 + 3 * h, "pruned": ((t0 + 2 * h) // h) * h}, "layout": {"shards": SHARDS}}
    return out


def _write_changelogs(broker: KafkaBroker, app_id: str, tables: dict[str, dict[str, Any]]) -> None:
    from kafka import KafkaProducer

    topics = {name: f"{app_id}-early-{name}-changelog" for name in tables}
    ensure_topics(Settings(broker_url=broker.url), [broker.bootstrap], list(topics.values()), partitions=1)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for name, entries in tables.items():
        for k, v in entries.items():
            p.send(topics[name], key=orjson.dumps(k), value=orjson.dumps(v), partition=0)
    p.flush()
    p.close()


def test_the_sharded_tables_of_the_version_before_are_upgraded_and_alerts_continue(
    broker: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topics = {k: f"ewu.{k}.{unique}" for k in ("results", "alerts", "deadletter", "screened")}
    db = f"ewu_{unique}"
    app_id = f"ewu-{unique}"
    p = f"u{unique}"
    start = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    t0 = int(start.timestamp())
    _write_changelogs(broker, app_id, _old_state(p, t0))
    w = WorkerProcess(
        tmp_path / "worker", broker_url=broker.url, clickhouse_url=f"chdb://{tmp_path / 'chdb'}", app_id=app_id,
        topics=topics, FOODRISK_CLICKHOUSE_DATABASE=db, FOODRISK_SCREENED_TOPIC=topics["screened"],
    ).start()
    try:
        def clean(i: int, hours: float) -> bytes:
            return encode(result(f"{p}-c{i}", vendor_id=f"{p}-BAD", site_id=f"{p}-m", device_id=f"{p}-dev",
                                 supplier_id=f"{p}-sup{i}", value=10.0, sampled_at=start + timedelta(hours=hours)))

        # four clean samples: still listed (nothing resolved)
        produce(broker.bootstrap, topics["results"], [clean(i, 4 + i) for i in range(4)])
        w.wait_for(f"SELECT count() FROM {db}.results FINAL WHERE vendor_id = %(v)s", 4, v=f"{p}-BAD")
        # the fifth, and a result 50 h after the waiting positive (its 48 h pass the watermark)
        later = encode(result(f"{p}-z", vendor_id=f"{p}-Z", site_id=f"{p}-mz", device_id=f"{p}-dz",
                              supplier_id=f"{p}-sz", value=10.0, sampled_at=start + timedelta(hours=3 + 50)))
        produce(broker.bootstrap, topics["results"], [clean(4, 8), later])
        w.wait_for(f"SELECT count() FROM {db}.alerts FINAL WHERE alert_id = %(a)s AND status = 'resolved'", 1,
                   a=_alert_id(p, t0))
        w.wait_for(f"SELECT count() FROM {db}.alerts FINAL WHERE kind = 'unconfirmed_positive' AND vendor_id = %(v)s",
                   1, v=f"{p}-U")
        assert w.scalar(f"SELECT count() FROM {db}.redlist FINAL WHERE vendor_id = %(v)s AND listed = 0",
                        v=f"{p}-BAD") == 1
        # the resolution is the only repeat_offender news: the vendor was never listed anew
        assert w.scalar(f"SELECT count() FROM {db}.alerts FINAL WHERE kind = 'repeat_offender'") == 1
        assert w.metric("foodrisk_early_changelog_writes_total", table="offender") > 0
    finally:
        w.stop()
