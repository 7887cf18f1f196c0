"""Agents that archive the alerts and dead-letter topics into ClickHouse (idempotent tables)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faust.types import AgentT, AppT, StreamT, TopicT
from mode import CrashingSupervisor

from agents.metrics import Metrics, count_alert
from agents.records import alert_values, as_row, deadletter_values
from agents.streams import event_batches, manual_ack
from schemas.alert import Alert
from sinks.ddl import ALERTS_COLUMNS, DEADLETTERS_COLUMNS
from sinks.writer import ClickHouseWriter

log = logging.getLogger(__name__)


def register_archivers(
    app: AppT,
    *,
    alerts_topic: TopicT,
    deadletter_topic: TopicT,
    writer: ClickHouseWriter,
    max_rows: int,
    max_age_s: float,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    metrics: Metrics | None = None,
) -> list[AgentT[Any]]:
    @app.agent(alerts_topic, name="archive_alerts", supervisor_strategy=CrashingSupervisor)
    async def archive_alerts(stream: StreamT[bytes]) -> None:
        s = manual_ack(stream)
        async for events in event_batches(s, max_rows, max_age_s):
            now = clock()
            rows = []
            seen: list[Alert] = []
            for e in events:
                m = e.message
                try:
                    alert = Alert.from_json(m.value or b"")
                except ValueError:
                    # Only foodrisk writes this topic; a foreign message is logged and skipped, not fatal.
                    log.warning("alerts topic %s[%s]@%s: not an alert, skipped", m.topic, m.partition, m.offset)
                    continue
                rows.append(
                    as_row(alert_values(alert, src_partition=m.partition, src_offset=m.offset, ingested_at=now),
                           ALERTS_COLUMNS)
                )
                seen.append(alert)
            if rows:
                await writer.insert("alerts", ALERTS_COLUMNS, rows)
            for e in events:
                await s.ack(e)
            if metrics is not None:  # every alert on the topic, whichever agent raised it
                for alert in seen:
                    count_alert(metrics, alert)

    @app.agent(deadletter_topic, name="archive_deadletters", supervisor_strategy=CrashingSupervisor)
    async def archive_deadletters(stream: StreamT[bytes]) -> None:
        s = manual_ack(stream)
        async for events in event_batches(s, max_rows, max_age_s):
            rows = []
            for e in events:
                m = e.message
                try:
                    rows.append(as_row(deadletter_values(m.value or b""), DEADLETTERS_COLUMNS))
                except ValueError as exc:
                    log.warning("dead-letter topic %s[%s]@%s: %s; skipped", m.topic, m.partition, m.offset, exc)
            if rows:
                await writer.insert("deadletters", DEADLETTERS_COLUMNS, rows)
            for e in events:
                await s.ack(e)

    return [archive_alerts, archive_deadletters]
