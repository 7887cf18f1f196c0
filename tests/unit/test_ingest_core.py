"""Pure parts of ingest: rate limiter, item checks, chunking, OpenAPI; the token registry; the importer."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest import tokens
from pipeline.ingest.csv_mapping import ColumnMapping, CsvImportError
from pipeline.ingest.importer import IdSet, run_import
from pipeline.ingest.openapi import docs_page, openapi_document
from pipeline.ingest.tokens import (
    ANALYSTS,
    DEVICES,
    RegistryError,
    TokenRegistry,
    add_device,
    add_token,
    load_entries,
    revoke_device,
    token_hash,
)
from pipeline.ingest.views import RateLimiter, check_items, chunk_values
from pipeline.settings import Settings
from schemas.reference import default_reference
from schemas.result import parse_result
from tests.bench.bench_import import write_csv
from tests.integration.factories import result

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 28, tzinfo=UTC)
REF = default_reference()


# -- rate limiter -------------------------------------------------------------------------------


def test_rate_limiter_spends_refills_and_says_how_long_to_wait() -> None:
    rl = RateLimiter(rate_per_s=10, burst=100)
    assert rl.take("a", 100, now=0.0) == 0
    assert rl.take("a", 1, now=0.0) == pytest.approx(0.1)
    assert rl.take("b", 50, now=0.0) == 0  # buckets are per key
    assert rl.take("a", 20, now=1.0) == pytest.approx(1.0)  # 10 refilled, 20 asked
    assert rl.take("a", 20, now=2.0) == 0
    assert rl.take("a", 1, now=1000.0) == 0  # never above burst
    assert rl.take("a", 100, now=1000.0) == pytest.approx(0.1)


# -- item checks ----------------------------------------------------------------------------------


def test_check_items_sorts_out_valid_invalid_foreign_and_repeated() -> None:
    good = result("r1", device_id="d1")
    items: list[Any] = [good, result("r2", device_id="d1", unit="furlongs"), result("r3", device_id="d2"), 7, good,
                        result("r4", device_id="d1", site_id="x" * 70_000)]
    before = json.dumps(items)
    out = check_items(items, device_id="d1", reference=REF, now=NOW)
    assert json.dumps(items) == before  # input untouched
    assert [rid for rid, _ in out.accepted] == ["r1"]
    assert orjson.loads(out.accepted[0][1]) == good
    assert out.duplicates == ["r1"]
    assert out.foreign == [(2, "d2")]
    by_index = {r.index: r for r in out.rejected}
    assert set(by_index) == {1, 3, 5}
    assert by_index[1].result_id == "r2" and by_index[1].errors[0].field == "unit"
    assert by_index[3].errors[0].reason == "a result must be a JSON object, not a number"
    assert "over 65536" in by_index[5].errors[0].reason


def test_chunks_respect_item_and_byte_limits_and_keep_every_item() -> None:
    encoded = [orjson.dumps({"i": i, "pad": "x" * (i % 300)}) for i in range(2500)]
    chunks = chunk_values(encoded, max_items=1000, max_bytes=64 * 1024)
    decoded = [orjson.loads(c) for c in chunks]
    assert all(len(d) <= 1000 for d in decoded)
    assert all(len(c) <= 64 * 1024 for c in chunks)
    assert [d["i"] for chunk in decoded for d in chunk] == list(range(2500))
    assert len(chunk_values(encoded, max_items=1000, max_bytes=10**9)) == 3


def test_openapi_refs_resolve_and_docs_page_lists_fields() -> None:
    s = Settings(ingest_max_items=500, ingest_burst=500)
    doc = openapi_document(s)
    text = json.dumps(doc)
    schemas = doc["components"]["schemas"]
    for ref in re.findall(r'"#/components/schemas/([^"]+)"', text):
        assert ref in schemas
    body = doc["paths"]["/v1/results"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][1]["maxItems"] == 500
    page = docs_page(s)
    for name in ("result_id", "site.district", "sampled_at", "429", "Retry-After", "/openapi.json"):
        assert name in page
    assert "value_mg_kg" not in page  # computed fields are not input


# -- token registry ---------------------------------------------------------------------------------


def test_registry_add_list_revoke_and_lookup(tmp_path: Path) -> None:
    path = tmp_path / "reg" / "devices.json"
    token = add_device(path, "lab-07", note="Tianhe")
    assert re.fullmatch(r"frk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", token)  # a 64-bit id
    assert token not in path.read_text() and token.split("_", 2)[2] not in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(RegistryError, match="--replace"):
        add_device(path, "lab-07")
    reg = TokenRegistry(path, check_every_s=0)
    assert reg.device_for(token) == "lab-07"
    for wrong in ("", "frk_", token[:-1] + ("A" if token[-1] != "A" else "B"), "Bearer " + token,
                  "frk_0000000000000000_" + token.split("_", 2)[2], "fra_" + token[4:]):
        assert reg.device_for(wrong) is None
    new = add_device(path, "lab-07", replace=True)
    assert reg.device_for(token) is None and reg.device_for(new) == "lab-07"
    revoke_device(path, "lab-07")
    assert reg.device_for(new) is None
    assert not load_entries(path)["lab-07"].active
    with pytest.raises(RegistryError, match="devices list"):
        revoke_device(path, "nope")


def test_registry_keeps_the_last_good_tokens_when_the_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    token = add_device(path, "d1")
    reg = TokenRegistry(path, check_every_s=0)
    assert reg.device_for(token) == "d1"
    path.write_text("{not json")
    assert reg.device_for(token) == "d1"
    assert reg.error and "not a foodrisk registry" in reg.error


def test_a_new_token_id_that_collides_is_drawn_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "devices.json"
    first = add_device(path, "d1")
    first_id = first.split("_")[1]
    draws = iter([first_id, first_id, "0123456789abcdef"])
    monkeypatch.setattr(tokens, "new_token", lambda kind: f"{kind.prefix}{next(draws)}_{'s' * 43}")
    second = add_device(path, "d2")
    assert second.split("_")[1] == "0123456789abcdef"
    reg = TokenRegistry(path, check_every_s=0)
    assert (reg.device_for(first), reg.device_for(second)) == ("d1", "d2")


def test_old_8_hex_tokens_still_work_even_when_their_ids_collide(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    old_a, old_b = "frk_9f2c01ab_" + "a" * 43, "frk_9f2c01ab_" + "b" * 43  # issued before, same 32-bit id
    doc = {"version": 1, "devices": {
        name: {"token_id": "9f2c01ab", "token_sha256": token_hash(tok), "created_at": "", "revoked_at": None}
        for name, tok in (("old-a", old_a), ("old-b", old_b))}}
    path.write_bytes(orjson.dumps(doc))
    reg = TokenRegistry(path, check_every_s=0)
    assert (reg.device_for(old_a), reg.device_for(old_b)) == ("old-a", "old-b")
    assert reg.device_for("frk_9f2c01ab_" + "c" * 43) is None
    new = add_device(path, "new")
    assert len(new.split("_")[1]) == 16 and reg.device_for(new) == "new" and reg.device_for(old_a) == "old-a"


def test_device_and_analyst_tokens_never_open_each_other(tmp_path: Path) -> None:
    dev_path, ana_path = tmp_path / "devices.json", tmp_path / "analysts.json"
    device = add_device(dev_path, "same-name")
    analyst = add_token(ana_path, ANALYSTS, "same-name")
    assert analyst.startswith("fra_") and device.startswith("frk_")
    assert TokenRegistry(dev_path, kind=DEVICES, check_every_s=0).device_for(analyst) is None
    assert TokenRegistry(ana_path, kind=ANALYSTS, check_every_s=0).device_for(device) is None
    assert TokenRegistry(ana_path, kind=ANALYSTS, check_every_s=0).device_for(analyst) == "same-name"
    # Each kind has its own collection: the analyst registry is no device registry.
    with pytest.raises(RegistryError, match="not a foodrisk registry"):
        load_entries(ana_path, DEVICES)


def test_a_device_bound_to_a_site_keeps_the_binding_on_replace(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    add_device(path, "lab-07", site="gz-th-lab1")
    token = add_device(path, "lab-07", replace=True)
    entry = TokenRegistry(path, check_every_s=0).entry_for(token)
    assert entry is not None and entry.site == "gz-th-lab1"
    add_device(path, "lab-07", replace=True, site="gz-th-lab2")
    assert load_entries(path)["lab-07"].site == "gz-th-lab2"
    assert load_entries(path)["lab-07"].active


def test_check_items_refuses_a_bound_device_naming_another_site() -> None:
    here, there = result("r1", device_id="d1", site_id="site-a"), result("r2", device_id="d1", site_id="site-b")
    out = check_items([here, there], device_id="d1", reference=REF, now=NOW, site_id="site-a")
    assert out.off_site == [(1, "site-b")]
    assert [rid for rid, _ in out.accepted] == ["r1"]
    unbound = check_items([here, there], device_id="d1", reference=REF, now=NOW)  # unbound: any site, as before
    assert unbound.off_site == [] and [rid for rid, _ in unbound.accepted] == ["r1", "r2"]


# -- importer ---------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=3000))
def test_idset_agrees_with_a_set(keys: list[str]) -> None:
    ids, ref = IdSet(capacity=8), set()
    for k in keys:
        assert ids.add(k) == (k not in ref)
        ref.add(k)
    assert len(ids) == len(ref)
    assert ids.nbytes <= max(64, 32 * len(ref))


class ListPublisher:
    """An in-memory publisher (our Publisher interface); ``fail`` makes every send fail."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        self.fail = fail

    class _Done:
        def __init__(self, error: Exception | None) -> None:
            self.error = error

        @property
        def is_done(self) -> bool:
            return True

        def get(self, timeout: float | None = None) -> Any:
            if self.error:
                raise self.error
            return None

    def send(self, key: bytes, value: bytes) -> ListPublisher._Done:
        self.sent.append((key, value))
        return self._Done(RuntimeError("broker said no") if self.fail else None)

    def flush(self) -> None:
        pass


def test_import_publishes_batches_and_accounts_for_every_row(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    exp = write_csv(path, 2500, invalid_every=100, duplicate_every=50, devices=1)
    pub = ListPublisher()
    s = run_import(path, mapping=ColumnMapping.wire_format(), reference=REF, publisher=pub,
                   rejects_path=tmp_path / "rej.csv", max_batch_items=1000, now=NOW)
    assert (s.rows, s.accepted, s.rejected, s.duplicates) == (exp.rows, exp.accepted, exp.rejected, exp.duplicates)
    items = [d for _, v in pub.sent for d in orjson.loads(v)]
    assert len(items) == exp.accepted == len({d["result_id"] for d in items})
    assert [len(orjson.loads(v)) for _, v in pub.sent] == [1000, 1000, exp.accepted - 2000]
    assert {k for k, _ in pub.sent} == {b"dev-000"}  # one device per chunk: keyed by it
    rows = list(csv.reader((tmp_path / "rej.csv").open(encoding="utf-8")))
    assert rows[0] == ["line", "outcome", "result_id", "reasons"]
    assert len(rows) - 1 == exp.rejected + exp.duplicates
    assert rows[1][:3] == ["51", "duplicate", "b-00000048"]  # line 51 = data row 50


def test_import_counts_undelivered_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write_csv(path, 30, invalid_every=0, duplicate_every=0)
    s = run_import(path, mapping=ColumnMapping.wire_format(), reference=REF, publisher=ListPublisher(fail=True),
                   rejects_path=tmp_path / "rej.csv", max_batch_items=10, now=NOW)
    assert (s.rows, s.accepted, s.not_delivered, s.ok) == (30, 0, 30, False)
    lines = (tmp_path / "rej.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 31 and "not_delivered" in lines[1] and "broker said no" in lines[1]


def test_lims_example_mapping_dry_run(tmp_path: Path) -> None:
    mapping = ColumnMapping.from_yaml(REPO / "deploy/import/lims-mapping.example.yaml")
    s = run_import(REPO / "deploy/import/lims-export.example.csv", mapping=mapping, reference=REF, publisher=None,
                   rejects_path=tmp_path / "rej.csv", max_batch_items=1000, now=NOW)
    assert (s.rows, s.accepted, s.rejected, s.duplicates) == (6, 3, 2, 1)


def test_mapping_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("columns: {A: result_ids}\n")
    with pytest.raises(CsvImportError, match=r"unknown field.*result_ids"):
        ColumnMapping.from_yaml(bad)
    bad.write_text("colums: {}\n")
    with pytest.raises(CsvImportError, match=r"unknown key.*colums"):
        ColumnMapping.from_yaml(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("columns: {ID: result_id}\ntemplates: {sample_id: '{Lot}-{ID}'}\n")
    with pytest.raises(CsvImportError, match="does not have: Lot"):
        ColumnMapping.from_yaml(ok).bind(["ID"])
    to_result = ColumnMapping.from_yaml(ok).bind(["ID", "Lot"])
    assert to_result(["r1", "L9"]) == {"result_id": "r1", "sample_id": "L9-r1"}
    with pytest.raises(CsvImportError, match="no column"):
        ColumnMapping.wire_format().bind(["result_id", "value"])


def test_a_result_without_site_name_gives_an_empty_site_name_column() -> None:
    """site.name is optional in the wire format but `results.site_name` is a plain String: None
    there crashed the worker on every restart (found by the wire-format CSV import test)."""
    from agents.records import result_values
    from schemas.rules import screen

    d = result("r-noname")
    del d["site"]["name"]
    r = parse_result(d, reference=REF, now=NOW)
    row = result_values(r, screen(r, REF), src_topic="t", src_partition=0, src_offset=0, ingested_at=NOW)
    assert row["site_name"] == ""
