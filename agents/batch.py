"""The screening agent's work on one batch, as a pure function (no faust, no I/O, time is a parameter)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from agents.records import as_row, broker_time, deadletter_envelope, result_values
from schemas.alert import Alert, alert_for_verdict
from schemas.reference import Reference
from schemas.result import InvalidResult, parse_result
from schemas.rules import screen


class Incoming(NamedTuple):
    """One message as the broker handed it over."""

    topic: str
    partition: int
    offset: int
    timestamp: float | None
    key: bytes | None
    value: bytes | None


class DeadLetter(NamedTuple):
    key: bytes | None
    envelope: bytes
    reason: str


@dataclass
class BatchOutcome:
    result_rows: list[tuple[Any, ...]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    verdicts: list[tuple[str, str]] = field(default_factory=list)  # (verdict, method) per accepted result


def screen_batch(
    items: Sequence[Incoming],
    *,
    reference: Reference,
    columns: Sequence[str],
    watch_fraction: float,
    now: datetime,
) -> BatchOutcome:
    """Validate and screen every message; each one ends as a result row or a dead letter."""
    out = BatchOutcome()
    for msg in items:
        received = broker_time(msg.timestamp, now)
        try:
            result = parse_result(msg.value or b"", reference=reference, now=now)
        except InvalidResult as exc:
            errors = [(e.field, e.reason) for e in exc.errors]
            reason = "empty" if msg.value is None else _reason_code(errors)
            out.dead_letters.append(
                DeadLetter(
                    msg.key,
                    deadletter_envelope(
                        payload=msg.value,
                        key=msg.key,
                        src_topic=msg.topic,
                        src_partition=msg.partition,
                        src_offset=msg.offset,
                        src_timestamp=received,
                        failed_at=now,
                        error_kind="invalid_result",
                        errors=errors,
                    ),
                    reason,
                )
            )
            continue
        verdict = screen(result, reference, watch_fraction=watch_fraction)
        out.result_rows.append(
            as_row(
                result_values(
                    result,
                    verdict,
                    src_topic=msg.topic,
                    src_partition=msg.partition,
                    src_offset=msg.offset,
                    ingested_at=now,
                ),
                columns,
            )
        )
        out.verdicts.append((str(verdict.verdict), str(result.method)))
        alert = alert_for_verdict(result, verdict)
        if alert is not None:
            out.alerts.append(alert)
    return out


def _reason_code(errors: Sequence[tuple[str, str]]) -> str:
    """A bounded label for metrics: the first failing field's name (or `malformed` for bad JSON)."""
    if not errors:
        return "unknown"
    fld = errors[0][0]
    if fld == "$":
        return "malformed"
    return fld.split(".")[0][:32]
