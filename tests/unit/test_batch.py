"""The screening agent's pure batch step: every message ends as a result row or a dead letter."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.batch import Incoming, screen_batch
from agents.records import alert_values, as_row, deadletter_values
from schemas.alert import Alert
from schemas.reference import default_reference
from sinks.ddl import ALERTS_COLUMNS, DEADLETTERS_COLUMNS, RESULTS_COLUMNS
from tests.integration.factories import encode, mixed_batch, result

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def incoming(values: list[bytes], topic: str = "foodrisk.results") -> list[Incoming]:
    return [Incoming(topic, i % 3, i, 1_764_000_000.0 + i, f"k{i}".encode(), v) for i, v in enumerate(values)]


def run(items: list[Incoming]):  # type: ignore[no-untyped-def]
    return screen_batch(items, reference=default_reference(), columns=RESULTS_COLUMNS, watch_fraction=0.5, now=NOW)


def test_every_message_ends_as_a_row_or_a_dead_letter() -> None:
    valid, invalid, expected = mixed_batch("u", 120)
    out = run(incoming(valid + invalid))
    assert len(out.result_rows) == len(valid)
    assert len(out.dead_letters) == len(invalid)
    assert {a.kind for a in out.alerts} == set(expected.values())
    assert sorted(rid for a in out.alerts for rid in a.evidence) == sorted(expected)
    assert all(len(r) == len(RESULTS_COLUMNS) for r in out.result_rows)


def test_dead_letter_keeps_the_original_bytes_source_and_every_reason() -> None:
    bad = encode(result("d1", value=-1.0, unit="furlongs"))
    out = run(incoming([b"\xff\xfe binary", bad]))
    first, second = (orjson.loads(d.envelope) for d in out.dead_letters)
    assert first["payload_encoding"] == "base64" and first["src_offset"] == 0
    assert second["payload"] == bad.decode() and second["src_partition"] == 1 and second["src_offset"] == 1
    assert len(second["errors"]) >= 2  # the unit and the negative value, field by field
    row = dict(zip(DEADLETTERS_COLUMNS, as_row(deadletter_values(out.dead_letters[1].envelope),
                                               DEADLETTERS_COLUMNS), strict=True))
    assert row["src_offset"] == 1 and row["error_kind"] == "invalid_result"
    assert all(":" in e for e in row["errors"])
    assert row["received_at"].tzinfo is None  # naive UTC for DateTime('UTC')


def test_alert_row_round_trip() -> None:
    valid, _, _ = mixed_batch("r", 5)
    out = run(incoming(valid))
    alert = Alert.from_json(out.alerts[0].to_json())
    assert alert == out.alerts[0]
    row = as_row(alert_values(alert, src_partition=0, src_offset=9, ingested_at=NOW), ALERTS_COLUMNS)
    assert len(row) == len(ALERTS_COLUMNS)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), st.sampled_from(mixed_batch("h", 10)[0])), max_size=25))
def test_any_bytes_never_crash_and_nothing_is_lost(values: list[bytes]) -> None:
    items = incoming(values)
    before = copy.deepcopy(items)
    out = run(items)
    assert len(out.result_rows) + len(out.dead_letters) >= len(values)  # a batch message may carry several
    assert items == before
    assert run(items).result_rows == out.result_rows  # deterministic for a fixed `now`


def test_a_huge_message_is_dead_lettered_with_its_size_and_hash() -> None:
    import hashlib

    huge = b'{"result_id": "' + b"x" * 10_000_000 + b'"}'
    out = run(incoming([huge]))
    env = orjson.loads(out.dead_letters[0].envelope)
    assert len(out.dead_letters[0].envelope) < 200_000
    assert env["payload_truncated"] is True
    assert env["payload_size"] == len(huge)
    assert env["payload_sha256"] == hashlib.sha256(huge).hexdigest()
    assert env["errors"]


def test_batch_form_every_item_on_its_own() -> None:
    good = [result(f"b{i}", value=float(i)) for i in range(3)]
    bad = {**result("b-bad"), "unit": "furlongs"}
    batch = orjson.dumps([good[0], bad, good[1], 7, good[2]])
    out = run(incoming([batch]))
    assert [r[0] for r in out.result_rows] == ["b0", "b1", "b2"]
    envs = [orjson.loads(d.envelope) for d in out.dead_letters]
    assert [e["src_item"] for e in envs] == [1, 3]
    assert orjson.loads(envs[0]["payload"])["result_id"] == "b-bad"  # the item, not the whole batch
    assert "JSON object" in envs[1]["errors"][0]["reason"]


def test_batch_over_the_limit_is_dead_lettered_whole() -> None:
    batch = orjson.dumps([result(f"x{i}") for i in range(5)])
    out = screen_batch(incoming([batch]), reference=default_reference(), columns=RESULTS_COLUMNS,
                       watch_fraction=0.5, now=NOW, max_batch_items=4)
    assert not out.result_rows
    (env,) = (orjson.loads(d.envelope) for d in out.dead_letters)
    assert env["src_item"] == -1 and env["error_kind"] == "invalid_batch"
    assert "over the limit of 4" in env["errors"][0]["reason"]


def test_deeply_nested_batch_items_are_dead_lettered_not_fatal() -> None:
    nested = b"[" * 1000 + b"]" * 1000
    deeper = b"[" + b"{\"result_id\": \"n1\", \"value\": " + b"[" * 900 + b"]" * 900 + b"}]"
    out = run(incoming([nested, deeper, b"[" * 5000 + b"]" * 5000]))
    assert not out.result_rows
    assert len(out.dead_letters) == 3
    assert all(orjson.loads(d.envelope)["errors"] for d in out.dead_letters)


def test_an_empty_batch_is_dead_lettered_not_silently_dropped() -> None:
    out = run(incoming([b"[]", b"  [ ]"]))
    assert not out.result_rows
    envs = [orjson.loads(d.envelope) for d in out.dead_letters]
    assert [e["error_kind"] for e in envs] == ["invalid_batch", "invalid_batch"]
    assert "empty batch" in envs[0]["errors"][0]["reason"]
