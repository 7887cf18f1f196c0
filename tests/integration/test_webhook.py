"""The signed webhook against a local aiohttp receiver that verifies every signature, and a real
worker's guarantees: retries while the receiver fails, a refused alert set aside (not the batch),
and alerts parked in ClickHouse when a target (here Alertmanager) stays away past the horizon."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pipeline.localstack.kafka import KafkaBroker
from pipeline.localstack.process import free_port
from pipeline.settings import Settings
from pipeline.topics import group_lag
from schemas.alert import Alert, alert_id_for
from schemas.result import result_key
from sinks.errors import WebhookSinkError
from sinks.presentation import Links
from sinks.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    InvalidSignature,
    WebhookSink,
    verify_signature,
    webhook_body,
)
from tests.integration.factories import mixed_batch, produce
from tests.integration.workers import WorkerProcess, metrics_text, sample

pytestmark = pytest.mark.integration

SECRET = "whsec-test-0123456789"


class Receiver:
    """A webhook receiver on a free port, in its own thread: verifies each signature (401 if bad),
    answers 503 to the first ``fail_first`` posts, 400 to a body holding an alert of
    ``reject_kind``, and 200 otherwise, keeping what it accepted."""

    def __init__(self, secret: str, *, fail_first: int = 0, reject_kind: str | None = None) -> None:
        self.secret = secret.encode()
        self.fail_first = fail_first
        self.reject_kind = reject_kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/foodrisk"
        self.attempts = 0
        self.bad_signatures: list[str] = []
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        try:
            verify_signature(self.secret, body, request.headers.get(SIGNATURE_HEADER), now=time.time())
        except InvalidSignature as exc:
            self.bad_signatures.append(str(exc))
            return web.Response(status=401, text=str(exc))
        if self.attempts <= self.fail_first:
            return web.Response(status=503, text="receiver warming up")
        doc = json.loads(body)
        assert request.headers[DELIVERY_HEADER] == doc["delivery_id"]
        if self.reject_kind and any(a["kind"] == self.reject_kind for a in doc["alerts"]):
            self.refused.append(doc)
            return web.Response(status=400, text=f"{self.reject_kind} not accepted here")
        self.accepted.append(doc)
        return web.Response(status=204)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/foodrisk", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def alert_ids(self) -> set[str]:
        return {a["alert_id"] for doc in list(self.accepted) for a in doc["alerts"]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    yield r
    r.stop()


def an_alert(alert_id: str, kind: str = "banned_pesticide") -> Alert:
    return Alert(
        alert_id=alert_id, kind=kind, classification="alert", risk="serious", summary_en="Banned pesticide found",
        summary_zh="检出禁用农药", district="Tianhe", commodity="cowpea", evidence=("r-1",),
        starts_at=datetime(2026, 11, 20, 7, 30, tzinfo=UTC),
    )


def test_sink_signs_each_post_and_classifies_failures(receiver: Receiver) -> None:
    delivery_id, body = webhook_body([an_alert("w-1"), an_alert("w-2")], Links())

    async def go() -> None:
        sink = WebhookSink(receiver.url, SECRET.encode(), timeout_s=5)
        try:
            await sink.post(delivery_id, body, timestamp=int(time.time()))
            receiver.fail_first = receiver.attempts + 1  # the next post gets a 503
            with pytest.raises(WebhookSinkError, match="HTTP 503") as unavailable:
                await sink.post(delivery_id, body, timestamp=int(time.time()))
            assert unavailable.value.retriable is True
            receiver.reject_kind = "banned_pesticide"
            with pytest.raises(WebhookSinkError, match="HTTP 400") as refused:
                await sink.post(delivery_id, body, timestamp=int(time.time()))
            assert refused.value.retriable is False
            receiver.reject_kind = None
            with pytest.raises(WebhookSinkError, match=r"HTTP 401.*FOODRISK_WEBHOOK_SECRET") as stale:
                await sink.post(delivery_id, body, timestamp=int(time.time()) - 3600)
            assert stale.value.retriable is True  # a configuration a person can fix: retried until the horizon
        finally:
            await sink.close()
        wrong = WebhookSink(receiver.url, b"not-the-secret", timeout_s=5)
        try:
            with pytest.raises(WebhookSinkError, match="HTTP 401"):
                await wrong.post(delivery_id, body, timestamp=int(time.time()))
        finally:
            await wrong.close()
        dead = WebhookSink(f"http://127.0.0.1:{free_port()}/x", SECRET.encode(), timeout_s=5)
        try:
            with pytest.raises(WebhookSinkError, match="unreachable") as down:
                await dead.post(delivery_id, body, timestamp=int(time.time()))
            assert down.value.retriable is True
        finally:
            await dead.close()

    asyncio.run(go())
    assert receiver.alert_ids() == {"w-1", "w-2"}
    assert receiver.accepted[0]["delivery_id"] == delivery_id
    assert len(receiver.bad_signatures) == 2
    assert "more than 300s" in receiver.bad_signatures[0] and "does not match" in receiver.bad_signatures[1]



def wait_until(check: Any, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_worker_retries_the_webhook_sets_refused_alerts_aside_and_parks_what_alertmanager_never_took(
    broker: KafkaBroker, tmp_path: Path, unique: str
) -> None:
    r = Receiver(SECRET, fail_first=3, reject_kind="contaminant_exceedance").start()
    topics = {k: f"wh.{k}.{unique}" for k in ("results", "alerts", "deadletter")}
    group, db = f"wh-{unique}", f"wh_{unique}"
    dead_am = f"http://127.0.0.1:{free_port()}"  # nothing listens: Alertmanager stays away
    w = WorkerProcess(
        tmp_path / "worker", broker_url=broker.url, clickhouse_url=f"chdb://{tmp_path / 'chdb'}", app_id=group,
        topics=topics, FOODRISK_CLICKHOUSE_DATABASE=db, FOODRISK_WEBHOOK_URL=r.url, FOODRISK_WEBHOOK_SECRET=SECRET,
        FOODRISK_ALERTMANAGER_URL=dead_am, FOODRISK_ALERTMANAGER_GIVE_UP_S="4", FOODRISK_SINK_RETRY_CAP_S="1",
    ).start()
    try:
        valid, _, expected = mixed_batch(f"w{unique}", 100)
        produce(broker.bootstrap, topics["results"], valid)
        ids: dict[str, set[str]] = {}
        for rid, kind in expected.items():
            ids.setdefault(kind, set()).add(alert_id_for(kind, result_key("dev-01", rid)))  # mixed_batch's device
        refused_ids = ids["contaminant_exceedance"]
        taken_ids = ids["banned_pesticide"] | ids["quick_test_positive"]
        every = taken_ids | refused_ids

        # The webhook: every alert but the refused kind arrives, signed, after the receiver's 503s.
        wait_until(lambda: taken_ids <= r.alert_ids(), timeout_s=90, what="the webhook deliveries")
        assert not r.alert_ids() & refused_ids
        assert r.bad_signatures == []
        assert r.attempts > 3
        for doc in r.accepted:
            for a in doc["alerts"]:
                Alert.model_validate({k: v for k, v in a.items() if k not in ("severity", "labels", "links")})

        # Parked: Alertmanager's share after the 4 s horizon, and the webhook's refused alerts.
        def parked(target: str, reason: str) -> set[str]:
            rows = w.query(f"SELECT DISTINCT alert_id FROM {db}.parked_alerts WHERE target = %(t)s AND reason = %(r)s",
                           t=target, r=reason)
            return {row[0] for row in rows}

        wait_until(lambda: every <= parked("alertmanager", "unavailable"), timeout_s=60,
                   what="Alertmanager's alerts parked")
        wait_until(lambda: parked("webhook", "rejected") == refused_ids, timeout_s=60,
                   what="the refused alerts parked")
        assert parked("webhook", "unavailable") == set()
        # (the early-warning agent parks pattern alerts of its own too: look at a single-result one)
        row = w.query(f"SELECT error, attempts, alert FROM {db}.parked_alerts WHERE target = 'alertmanager' "
                      "AND alert_id IN %(ids)s LIMIT 1", ids=tuple(sorted(every)))[0]
        assert "unreachable" in row[0] and row[1] >= 2
        assert Alert.from_json(row[2]).alert_id in every

        # Everything was taken or parked, so the alerts topic is committed.
        settings = Settings(broker_url=broker.url)
        wait_until(lambda: group_lag(settings, [broker.bootstrap], group, topics["alerts"]) == 0, timeout_s=60,
                   what="the alerts topic committed")
        text = metrics_text(w.port)
        assert sample(text, "foodrisk_parked_alerts_total", target="alertmanager", reason="unavailable") >= len(every)
        assert sample(text, "foodrisk_parked_alerts_total", target="webhook", reason="rejected") == len(refused_ids)
        assert sample(text, "foodrisk_delivered_alerts_total", target="webhook") >= len(taken_ids)
        assert sample(text, "foodrisk_delivery_failures_total", target="webhook", reason="unavailable") >= 3
        assert sample(text, "foodrisk_delivery_target_up", target="alertmanager") == 0
        assert "PARKED in ClickHouse parked_alerts" in w.log_tail(400_000)
    finally:
        w.stop()
        r.stop()
