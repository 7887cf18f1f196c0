"""Wire format v1: decoding, normalisation, every rejection reason, round trips, JSON Schema files."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.codes import Method, Qualitative, SiteType, Unit, is_quick
from schemas.export import JSON_DIR, render, schema_documents
from schemas.reference import default_reference
from schemas.result import MAX_MESSAGE_BYTES, FieldError, InvalidResult, Result, parse_result
from tests.bench.bench_screen import example_message, generate_messages

REF = default_reference()
NOW = datetime(2025, 6, 16, tzinfo=UTC)


def parse(msg: Any, now: datetime = NOW) -> Result:
    raw = msg if isinstance(msg, bytes | str) else orjson.dumps(msg)
    return parse_result(raw, reference=REF, now=now)


def errors_of(msg: Any, now: datetime = NOW) -> list[FieldError]:
    with pytest.raises(InvalidResult) as info:
        parse(msg, now)
    return info.value.errors


def fields_of(msg: Any) -> set[str]:
    return {e.field for e in errors_of(msg)}


# --- valid input ----------------------------------------------------------------------------------------


def test_valid_lab_result() -> None:
    r = parse(example_message())
    assert r.schema_version == 1
    assert (r.result_id, r.commodity, r.analyte, r.method) == ("r-1", "cowpea", "clothianidin", Method.lc_msms)
    assert r.site.type is SiteType.testing_centre
    assert (r.value_mg_kg, r.lod_mg_kg, r.loq_mg_kg, r.percent) == (0.004, 0.001, 0.003, None)
    assert r.sampled_at == datetime(2025, 6, 15, 1, 30, tzinfo=UTC)
    assert r.sampled_at.tzinfo is UTC
    assert not r.is_quick


def test_input_forms_agree() -> None:
    msg = example_message()
    raw = orjson.dumps(msg)
    assert parse(raw) == parse(raw.decode()) == parse_result(msg, reference=REF, now=NOW)
    assert parse_result(bytearray(raw), reference=REF, now=NOW) == parse(raw)


def test_input_mapping_is_not_mutated() -> None:
    msg = example_message(commodity="豇豆", unit="ug/kg", value=4)
    before = copy.deepcopy(msg)
    parse_result(msg, reference=REF, now=NOW)
    assert msg == before


@pytest.mark.parametrize(
    ("sent", "expected_utc"),
    [
        ("2025-06-15T09:30:00", datetime(2025, 6, 15, 1, 30, tzinfo=UTC)),  # naive = Asia/Shanghai
        ("2025-06-15 09:30:00", datetime(2025, 6, 15, 1, 30, tzinfo=UTC)),
        ("2025-06-15T09:30:00+08:00", datetime(2025, 6, 15, 1, 30, tzinfo=UTC)),
        ("2025-06-15T01:30:00Z", datetime(2025, 6, 15, 1, 30, tzinfo=UTC)),
        ("2025-06-14T20:30:00-05:00", datetime(2025, 6, 15, 1, 30, tzinfo=UTC)),
    ],
)
def test_times_become_utc_naive_is_shanghai(sent: str, expected_utc: datetime) -> None:
    r = parse(example_message(sampled_at=sent, tested_at="2025-06-15T18:00:00+08:00"))
    assert r.sampled_at == expected_utc
    assert r.sampled_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("unit", "value", "canonical", "mg_kg", "percent"),
    [
        ("mg/kg", 0.02, Unit.mg_kg, 0.02, None),
        ("MG/KG", 0.02, Unit.mg_kg, 0.02, None),
        ("µg/kg", 20, Unit.ug_kg, 0.02, None),
        ("μg/kg", 20, Unit.ug_kg, 0.02, None),  # Greek mu
        ("ug/kg", 20, Unit.ug_kg, 0.02, None),
        (" ug/kg ", 3.3, Unit.ug_kg, 0.0033, None),
        ("mg/L", 0.5, Unit.mg_l, 0.5, None),
        ("mg/l", 0.5, Unit.mg_l, 0.5, None),
        ("%", 47.5, Unit.percent, None, 47.5),
    ],
)
def test_units_normalised(unit: str, value: float, canonical: Unit, mg_kg: float | None, percent: float | None) -> None:
    r = parse(example_message(unit=unit, value=value, lod=None, loq=None))
    assert r.unit is canonical
    assert r.value == value
    assert r.value_mg_kg == mg_kg
    assert r.percent == percent


def test_lod_loq_normalised_with_the_value_unit() -> None:
    r = parse(example_message(unit="µg/kg", value=12, lod=1, loq=3))
    assert (r.value_mg_kg, r.lod_mg_kg, r.loq_mg_kg) == (0.012, 0.001, 0.003)


def test_normalised_fields_on_input_are_ignored() -> None:
    r = parse(example_message(value_mg_kg=99.0, percent=12.0, loq_mg_kg=5.0))
    assert (r.value_mg_kg, r.percent, r.loq_mg_kg) == (0.004, None, 0.003)


def test_names_are_normalised_unknown_kept_as_snake() -> None:
    r = parse(example_message(commodity="豇豆", analyte="克百威"))
    assert (r.commodity, r.analyte) == ("cowpea", "carbofuran")
    r = parse(example_message(commodity="Pak Choi", analyte="Spinosad"))
    assert (r.commodity, r.analyte) == ("pak_choi", "spinosad")  # unknown is valid (screens as no_limit)


def test_qualitative_only_and_optional_fields() -> None:
    r = parse(
        example_message(
            method="colloidal_gold",
            value=None,
            unit=None,
            lod=None,
            loq=None,
            qualitative="positive",
            vendor_id="v-9",
            supplier_id="sup-2",
            origin="460000",
            confirms=None,
        )
    )
    assert r.qualitative is Qualitative.positive
    assert r.value is None and r.value_mg_kg is None
    assert (r.vendor_id, r.supplier_id, r.origin) == ("v-9", "sup-2", "460000")
    assert r.is_quick


def test_unknown_fields_are_ignored() -> None:
    assert parse(example_message(firmware="1.2.3")).result_id == "r-1"


def test_method_is_quick() -> None:
    assert {m for m in Method if m.is_quick} == {Method.enzyme_inhibition, Method.colloidal_gold, Method.xrf}
    assert is_quick("xrf") and not is_quick(Method.icp_ms)


# --- rejections: every reason, field by field ------------------------------------------------------------


LONG = "x" * 129
REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing result_id", {"result_id": None}, "result_id", "required"),
    ("empty result_id", {"result_id": ""}, "result_id", "at least 1"),
    ("long result_id", {"result_id": LONG}, "result_id", "at most 128"),
    ("long sample_id", {"sample_id": LONG}, "sample_id", "at most 128"),
    ("long device_id", {"device_id": LONG}, "device_id", "at most 128"),
    ("long vendor_id", {"vendor_id": LONG}, "vendor_id", "at most 128"),
    ("long supplier_id", {"supplier_id": LONG}, "supplier_id", "at most 128"),
    ("long origin", {"origin": "4" * 33}, "origin", "at most 32"),
    ("long confirms", {"confirms": LONG}, "confirms", "at most 128"),
    ("long commodity", {"commodity": "c" * 65}, "commodity", "at most 64"),
    ("long analyte", {"analyte": "a" * 300}, "analyte", "at most 64"),
    (
        "long site name",
        {"site": {"id": "s", "type": "supermarket", "district": "d", "name": "n" * 257}},
        "site.name",
        "at most 256",
    ),
    (
        "long district",
        {"site": {"id": "s", "type": "supermarket", "district": "d" * 65}},
        "site.district",
        "at most 64",
    ),
    ("unknown site type", {"site": {"id": "s", "type": "bazaar", "district": "d"}}, "site.type", "Input should be"),
    ("missing site", {"site": None}, "site", "required"),
    ("unknown method", {"method": "nose"}, "method", "Input should be"),
    ("negative value", {"value": -0.1}, "value", "greater than or equal to 0"),
    ("negative lod", {"lod": -1}, "lod", "greater than or equal to 0"),
    ("negative loq", {"loq": -1}, "loq", "greater than or equal to 0"),
    ("value as text", {"value": "0.1"}, "value", "valid number"),
    ("value as bool", {"value": True}, "value", "valid number"),
    ("unknown unit", {"unit": "g/kg"}, "unit", "unknown unit"),
    ("no unit with value", {"unit": None}, "unit", "required with value"),
    ("value and qualitative missing", {"value": None, "lod": None, "loq": None, "unit": None}, "value", "both missing"),
    ("unknown qualitative", {"qualitative": "maybe"}, "qualitative", "Input should be"),
    ("lod above loq", {"lod": 0.01, "loq": 0.005}, "lod", "above loq"),
    ("sampled after tested", {"sampled_at": "2025-06-15T17:00:00+08:00"}, "sampled_at", "after tested_at"),
    (
        "sampled in the future",
        {"sampled_at": "2025-06-17T09:00:00+08:00", "tested_at": "2025-06-18T09:00:00+08:00"},
        "sampled_at",
        "more than 1 day in the future",
    ),
    ("tested in the future", {"tested_at": "2025-06-18T09:00:00+08:00"}, "tested_at", "more than 1 day in the future"),
    ("bad time", {"sampled_at": "yesterday"}, "sampled_at", "datetime"),
    ("missing time", {"tested_at": None}, "tested_at", "required"),
    ("schema version 2", {"schema_version": 2}, "schema_version", "version 1"),
]


@pytest.mark.parametrize(("case", "overrides", "field", "reason"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejection(case: str, overrides: dict[str, Any], field: str, reason: str) -> None:
    errors = errors_of(example_message(**overrides))
    matching = [e for e in errors if e.field == field]
    assert matching, f"{case}: {errors}"
    assert any(reason in e.reason for e in matching), f"{case}: {errors}"


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (b'{"result_id": "r", "value": NaN}', "value", "finite"),
        (b'{"result_id": "r", "value": Infinity}', "value", "finite"),
        (b'{"result_id": "r", "value": -Infinity}', "value", "finite"),
        (b'{"result_id": "r", "value": 1e400}', "value", "finite"),
        (b'{"result_id": "r", "lod": NaN}', "lod", "finite"),
        (b'{"result_id": ', "$", "malformed JSON"),
        (b"\xff\xfe", "$", "malformed JSON"),
        (b"", "$", "malformed JSON"),
        (b"[1, 2]", "$", "expected a JSON object, got list"),
        (b'"text"', "$", "expected a JSON object"),
        (b"null", "$", "expected a JSON object"),
    ],
)
def test_rejection_of_raw_text(raw: bytes, field: str, reason: str) -> None:
    errors = errors_of(raw)
    assert any(e.field == field and reason in e.reason for e in errors), errors


def test_nan_in_a_mapping() -> None:
    assert "value" in fields_of(example_message(value=float("nan")))
    assert "value" in fields_of(example_message(value=float("inf")))


def test_oversized_message() -> None:
    msg = example_message(site={"id": "s", "type": "supermarket", "district": "d", "name": "n" * MAX_MESSAGE_BYTES})
    [error] = errors_of(msg)
    assert error.field == "$" and "bytes" in error.reason


def test_not_a_message_type() -> None:
    with pytest.raises(InvalidResult) as info:
        parse_result(42, reference=REF, now=NOW)  # type: ignore[arg-type]  # the point of the test
    assert info.value.errors[0].field == "$"


def test_every_reason_is_reported_at_once() -> None:
    msg = example_message(
        result_id=None,
        value=-1,
        unit="stones",
        site={"id": "s", "type": "bazaar", "district": "d"},
        sampled_at="2025-06-20T09:00:00",
        tested_at="2025-06-19T09:00:00",
    )
    errors = errors_of(msg)
    fields = [e.field for e in errors]
    assert {"result_id", "value", "unit", "site.type", "sampled_at", "tested_at"} <= set(fields)
    # sampled after tested AND both too far in the future, even though other fields failed
    reasons = {(e.field, e.reason) for e in errors}
    assert ("sampled_at", "is after tested_at") in reasons
    assert ("tested_at", "is more than 1 day in the future") in reasons
    assert all(e.reason for e in errors)
    assert "result_id: required" in str(InvalidResult(errors))


def test_cross_checks_skip_fields_that_failed() -> None:
    errors = errors_of(example_message(sampled_at="garbage"))
    assert [e.field for e in errors] == ["sampled_at"]


def test_future_tolerance_is_one_day() -> None:
    parse(example_message(sampled_at="2025-06-16T23:59:00Z", tested_at="2025-06-17T00:00:00Z"))
    assert "tested_at" in fields_of(example_message(tested_at="2025-06-17T00:00:01Z"))


def test_direct_construction_checks_consistency() -> None:
    msg = example_message(sampled_at="2025-06-16T09:00:00", tested_at="2025-06-15T09:00:00")
    with pytest.raises(ValidationError, match="sampled_at: is after tested_at"):
        Result.model_validate(msg)
    r = Result.model_validate(example_message(unit="ug/kg", value=5, commodity="Long Bean"))
    assert r.value_mg_kg == 0.005
    assert r.commodity == "long_bean"  # without the reference: snake case only


# --- round trips ------------------------------------------------------------------------------------------


def test_round_trip_through_json() -> None:
    for msg in generate_messages(300, seed=4):
        r = parse(msg, now=datetime(2027, 1, 1, tzinfo=UTC))
        again = parse(r.model_dump_json().encode(), now=datetime(2027, 1, 1, tzinfo=UTC))
        assert again == r


amounts = st.decimals(min_value=0, max_value=10_000, places=4, allow_nan=False).map(float)


@settings(deadline=None, max_examples=150)
@given(
    value=amounts,
    unit=st.sampled_from(["mg/kg", "µg/kg", "ug/kg", "mg/L", "%"]),
    minutes=st.integers(min_value=0, max_value=60 * 24 * 365 * 3),
    naive=st.booleans(),
    commodity=st.sampled_from([c.code for c in REF.foods] + ["豇豆", "Okra"]),
)
def test_round_trip_property(value: float, unit: str, minutes: int, naive: bool, commodity: str) -> None:
    sampled = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    sent = sampled.replace(tzinfo=None).isoformat() if naive else sampled.isoformat()
    msg = example_message(
        value=min(value, 100.0) if unit == "%" else value,
        unit=unit,
        lod=None,
        loq=None,
        sampled_at=sent,
        tested_at=(sampled + timedelta(days=1)).isoformat(),
        commodity=commodity,
    )
    now = datetime(2027, 1, 1, tzinfo=UTC)
    r = parse(msg, now=now)
    assert parse(r.model_dump_json(), now=now) == r
    assert json.loads(r.model_dump_json())["schema_version"] == 1


# --- JSON Schema files --------------------------------------------------------------------------------


def test_json_schema_files_match_the_models() -> None:
    docs = schema_documents()
    assert set(docs) == {"result.v1.json", "alert.v1.json"}
    for name, doc in docs.items():
        path = JSON_DIR / name
        assert path.exists(), f"run: python -m schemas.export ({name} missing)"
        assert orjson.loads(path.read_bytes()) == doc, f"{name} is stale: run python -m schemas.export"
        assert path.read_bytes() == render(doc)


def test_result_schema_describes_the_wire_format() -> None:
    doc = schema_documents()["result.v1.json"]
    assert set(doc["required"]) >= {
        "result_id",
        "sample_id",
        "device_id",
        "site",
        "commodity",
        "analyte",
        "method",
        "sampled_at",
        "tested_at",
    }
    assert "ug/kg" in doc["properties"]["unit"]["anyOf"][0]["enum"]
    assert doc["properties"]["sampled_at"]["format"] == "date-time"
