"""The screening agent's work on one batch, as a pure function (no faust, no I/O, time is a parameter)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from agents.records import as_row, broker_time, deadletter_envelope, result_values
from agents.screened import Screened, screened_record
from schemas.alert import Alert, alert_for_verdict
from schemas.reference import Reference
from schemas.result import InvalidResult, parse_result
from schemas.rules import screen

DEFAULT_MAX_BATCH_ITEMS = 1000


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
    alert_sources: list[float | None] = field(default_factory=list)  # broker timestamp of each alert's message
    dead_letters: list[DeadLetter] = field(default_factory=list)
    verdicts: list[tuple[str, str]] = field(default_factory=list)  # (verdict, method) per accepted result
    screened: list[Screened] = field(default_factory=list)  # compact records for the early-warning agent


def screen_batch(
    items: Sequence[Incoming],
    *,
    reference: Reference,
    columns: Sequence[str],
    watch_fraction: float,
    now: datetime,
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
) -> BatchOutcome:
    """Validate and screen every message; each result ends as a result row or a dead letter.

    A message is one result (a JSON object) or, in the batch form, a JSON array of results: every
    item of a batch is validated, stored or dead-lettered on its own (``src_item`` says which).
    """
    out = BatchOutcome()
    for msg in items:
        received = broker_time(msg.timestamp, now)

        def dead(payload: bytes | None, errors: list[tuple[str, str]], item: int = -1, kind: str = "invalid_result",
                 msg: Incoming = msg, received: datetime = received) -> None:
            out.dead_letters.append(
                DeadLetter(
                    msg.key,
                    deadletter_envelope(
                        payload=payload, key=msg.key, src_topic=msg.topic, src_partition=msg.partition,
                        src_offset=msg.offset, src_item=item, src_timestamp=received, failed_at=now,
                        error_kind=kind, errors=errors,
                    ),
                    "empty" if not payload else _reason_code(errors),
                )
            )

        def accept(raw: bytes | Mapping[str, Any], item: int, msg: Incoming = msg) -> None:
            try:
                result = parse_result(raw, reference=reference, now=now)
            except InvalidResult as exc:
                payload = raw if isinstance(raw, bytes) else item_bytes(raw)
                dead(payload, [(e.field, e.reason) for e in exc.errors], item)
                return
            except (RecursionError, TypeError, ValueError, OverflowError) as exc:
                # Input so odd that decoding itself failed (e.g. nesting past every parser's limit):
                # a poison message must end as a dead letter, never crash-loop the worker.
                payload = raw if isinstance(raw, bytes) else item_bytes(raw)
                dead(payload, [("$", f"cannot be decoded: {type(exc).__name__}: {str(exc)[:200]}")], item)
                return
            verdict = screen(result, reference, watch_fraction=watch_fraction)
            out.result_rows.append(
                as_row(
                    result_values(result, verdict, src_topic=msg.topic, src_partition=msg.partition,
                                  src_offset=msg.offset, ingested_at=now),
                    columns,
                )
            )
            out.verdicts.append((str(verdict.verdict), str(result.method)))
            out.screened.append(screened_record(result, verdict))
            alert = alert_for_verdict(result, verdict)
            if alert is not None:
                out.alerts.append(alert)
                out.alert_sources.append(msg.timestamp)

        value = msg.value or b""
        if value.lstrip()[:1] != b"[":
            accept(value, -1)
            continue
        try:
            batch = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            dead(value, [("$", f"malformed JSON batch: {exc}")], kind="invalid_batch")
            continue
        if not batch:
            dead(value, [("$", "empty batch: the array carries no results")], kind="invalid_batch")
            continue
        if len(batch) > max_batch_items:
            dead(value, [("$", f"batch of {len(batch)} results is over the limit of {max_batch_items}; split it")],
                 kind="invalid_batch")
            continue
        for i, entry in enumerate(batch):
            if isinstance(entry, dict):
                accept(entry, i)
            else:
                why = f"a batch item must be a JSON object, not {type(entry).__name__}"
                dead(item_bytes(entry), [(f"[{i}]", why)], i)
    return out


def item_bytes(entry: object) -> bytes:
    """A batch item as JSON for its dead letter; a placeholder when it cannot be written back
    (nested deeper than the encoder allows, or not JSON at all)."""
    try:
        return orjson.dumps(entry)
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        return f"(a {type(entry).__name__} that cannot be re-encoded as JSON, e.g. nested too deeply)".encode()


def _reason_code(errors: Sequence[tuple[str, str]]) -> str:
    """A bounded label for metrics: the first failing field's name (or `malformed` for bad JSON)."""
    if not errors:
        return "unknown"
    fld = errors[0][0]
    if fld == "$":
        return "malformed"
    return fld.split(".")[0][:32]
