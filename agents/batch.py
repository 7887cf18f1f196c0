"""The screening agent's work on one batch, as a pure function (no faust, no I/O, time is a parameter)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple

import orjson

from agents.records import broker_time, deadletter_envelope, naive_utc, result_row, result_row_layout
from agents.screened import Screened, gap_field, screened_record
from schemas.alert import Alert, alert_for_verdict
from schemas.codes import Method
from schemas.reference import Reference
from schemas.result import InvalidResult, Result, parse_result
from schemas.rules import screen, screen_sum
from schemas.sums import SumBook
from schemas.verdict import VerdictKind

DEFAULT_MAX_BATCH_ITEMS = 1000

# (verdict, method) as plain strings for every pair, built once: the outcome shares these tuples
# instead of allocating one per result.
_VERDICT_METHOD: Final[Mapping[VerdictKind, Mapping[Method, tuple[str, str]]]] = {
    kind: {method: (str(kind), str(method)) for method in Method} for kind in VerdictKind
}


_UNCLASSIFIED: Final = VerdictKind.unclassified


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
    unclassified: dict[str, int] = field(default_factory=dict)  # field (commodity, analyte) -> unclassified results


def screen_batch(
    items: Sequence[Incoming],
    *,
    reference: Reference,
    columns: Sequence[str],
    watch_fraction: float,
    now: datetime,
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
    sums: SumBook | None = None,
) -> BatchOutcome:
    """Validate and screen every message; each result ends as a result row or a dead letter.

    A message is one result (a JSON object) or, in the batch form, a JSON array of results: every
    item of a batch is validated, stored or dead-lettered on its own (``src_item`` says which).
    With ``sums``, the components of a residue sum are judged on the sum of their sample's parts
    (schemas/sums.py says how far apart they may arrive).
    """
    out = BatchOutcome()
    layout = result_row_layout(columns)  # None: rows are built in the columns' order already
    ingested_at = naive_utc(now)  # the same for every row of the batch
    edition = reference.edition  # stored with every verdict (results.reference_edition)
    add_row, add_verdict, add_screened = out.result_rows.append, out.verdicts.append, out.screened.append
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

        value = msg.value or b""
        entries: list[Any] | tuple[bytes]
        if value.lstrip()[:1] != b"[":
            entries, first = (value,), -1  # one result; its src_item is -1
        else:
            try:
                entries = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                dead(value, [("$", f"malformed JSON batch: {exc}")], kind="invalid_batch")
                continue
            if not entries:
                dead(value, [("$", "empty batch: the array carries no results")], kind="invalid_batch")
                continue
            if len(entries) > max_batch_items:
                why = f"batch of {len(entries)} results is over the limit of {max_batch_items}; split it"
                dead(value, [("$", why)], kind="invalid_batch")
                continue
            first = 0
        topic, partition, offset = msg.topic, msg.partition, msg.offset
        parsed: list[Result] = []
        for i, raw in enumerate(entries, first):
            if first == 0 and not isinstance(raw, dict):
                why = f"a batch item must be a JSON object, not {type(raw).__name__}"
                dead(item_bytes(raw), [(f"[{i}]", why)], i)
                continue
            try:
                parsed.append(parse_result(raw, reference=reference, now=now))
            except InvalidResult as exc:
                payload = raw if isinstance(raw, bytes) else item_bytes(raw)
                dead(payload, [(e.field, e.reason) for e in exc.errors], i)
            except (RecursionError, TypeError, ValueError, OverflowError) as exc:
                # Input so odd that decoding itself failed (e.g. nesting past every parser's limit):
                # a poison message must end as a dead letter, never crash-loop the worker.
                payload = raw if isinstance(raw, bytes) else item_bytes(raw)
                dead(payload, [("$", f"cannot be decoded: {type(exc).__name__}: {str(exc)[:200]}")], i)
        # the components of a residue sum in this message are all judged on the sum they make
        in_sum = [r for r in parsed if sums.add(r, reference)] if sums is not None and parsed else ()
        for result in parsed:
            so_far = sums.so_far(result, reference) if in_sum and sums is not None else None
            if so_far is None:
                verdict = screen(result, reference, watch_fraction=watch_fraction)
            else:
                verdict = screen_sum(
                    result, reference, so_far.total_mg_kg, so_far.parts, watch_fraction=watch_fraction
                )
            row = result_row(result, verdict, topic, partition, offset, ingested_at, edition)
            add_row(row if layout is None else layout(row))
            add_verdict(_VERDICT_METHOD[verdict.verdict][result.method])
            add_screened(screened_record(result, verdict))
            if verdict.verdict is _UNCLASSIFIED:
                f = gap_field(verdict.rule)
                out.unclassified[f] = out.unclassified.get(f, 0) + 1
            alert = alert_for_verdict(result, verdict)
            if alert is not None:
                out.alerts.append(alert)
                out.alert_sources.append(msg.timestamp)
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
