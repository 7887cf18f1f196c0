"""Alerts: one per finding, deterministic ids, summaries in English and Chinese, JSON round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.alert import (
    KIND_BANNED,
    KIND_CONTAMINANT,
    KIND_MRL,
    KIND_QUICK_POSITIVE,
    Alert,
    AlertStatus,
    Classification,
    Risk,
    alert_for_verdict,
    alert_id_for,
)
from schemas.reference import default_reference
from schemas.result import Result, result_key
from schemas.rules import screen
from schemas.verdict import VerdictKind
from tests.unit.test_schemas_rules import make

REF = default_reference()


def alert_of(result: Result) -> Alert | None:
    return alert_for_verdict(result, screen(result, REF), reference=REF)


def test_banned_pesticide_alert() -> None:
    r = make("carbofuran", "豇豆", value=0.03, loq=0.005, day=date(2026, 6, 20))
    a = alert_of(r)
    assert a is not None
    assert (a.kind, a.classification, a.risk, a.status) == (
        KIND_BANNED,
        Classification.alert,
        Risk.serious,
        AlertStatus.firing,
    )
    assert a.alert_id == alert_id_for(KIND_BANNED, result_key(r.device_id, r.result_id))
    assert a.evidence == (r.result_id,)
    assert a.starts_at == r.sampled_at and a.ends_at is None
    assert (a.commodity, a.analyte, a.district, a.site_id, a.site_type) == (
        "cowpea",
        "carbofuran",
        "tianhe",
        "tc-1",
        "testing_centre",
    )
    assert (a.device_id, a.schema_version) == ("lab-7", 1)
    assert "Carbofuran" in a.summary_en and "Cowpea" in a.summary_en and "0.03 mg/kg" in a.summary_en
    assert "豇豆" in a.summary_zh and "克百威" in a.summary_zh and "禁用农药" in a.summary_zh
    assert "MARA announcement 736" in a.summary_en
    assert a.details["value_mg_kg"] == 0.03 and a.details["verdict"] == "banned"
    assert a.details["basis"] == screen(r, REF).basis


@pytest.mark.parametrize(("factor", "risk"), [(1.5, Risk.potentially_serious), (2.0, Risk.serious), (5, Risk.serious)])
def test_mrl_exceedance_risk_by_ratio(factor: float, risk: Risk) -> None:
    r = make("clothianidin", "cowpea", value=0.01 * factor)
    a = alert_of(r)
    assert a is not None
    assert (a.kind, a.classification, a.risk) == (KIND_MRL, Classification.alert, risk)
    assert "噻虫胺" in a.summary_zh and "超过限量 0.01 mg/kg" in a.summary_zh
    assert "exceeds the limit 0.01 mg/kg" in a.summary_en and "GB 2763-2021" in a.summary_en
    assert a.details["limit_mg_kg"] == 0.01


def test_contaminant_exceedance() -> None:
    a = alert_of(make("cadmium", "rice", value=0.5))
    assert a is not None
    assert (a.kind, a.risk) == (KIND_CONTAMINANT, Risk.serious)
    assert "镉" in a.summary_zh and "大米" in a.summary_zh


def test_quick_positive_is_follow_up_undecided() -> None:
    r = make("ache_inhibition", "韭菜", value=62, unit="%", method="enzyme_inhibition")
    a = alert_of(r)
    assert a is not None
    assert (a.kind, a.classification, a.risk) == (KIND_QUICK_POSITIVE, Classification.follow_up, Risk.undecided)
    assert "62% inhibition" in a.summary_en and "Not a legal finding" in a.summary_en
    assert "抑制率 62%" in a.summary_zh and "韭菜" in a.summary_zh and "酶抑制法" in a.summary_zh
    assert "false positives" in a.summary_en and "假阳性" in a.summary_zh  # leek is known for them
    assert a.details["percent"] == 62


def test_xrf_over_the_limit_is_a_quick_positive() -> None:
    a = alert_of(make("lead", "rice", value=0.5, method="xrf"))
    assert a is not None and a.kind == KIND_QUICK_POSITIVE and "X射线荧光" in a.summary_zh


def test_strip_positive() -> None:
    a = alert_of(make("carbofuran", "cowpea", qualitative="positive", method="colloidal_gold"))
    assert a is not None and a.kind == KIND_QUICK_POSITIVE
    assert "read positive" in a.summary_en and "判读阳性" in a.summary_zh


def test_a_quick_test_can_never_raise_a_banned_alert() -> None:
    r = make("carbofuran", "cowpea", qualitative="positive", method="colloidal_gold")
    forged = screen(make("carbofuran", "cowpea", value=0.5), REF)
    assert forged.verdict is VerdictKind.banned
    a = alert_for_verdict(r, forged, reference=REF)
    assert a is not None and a.kind == KIND_QUICK_POSITIVE and a.risk is Risk.undecided


@pytest.mark.parametrize(
    "result",
    [
        make("clothianidin", "cowpea", value=0.001),  # compliant
        make("clothianidin", "cowpea", value=0.008),  # watch
        make("spinosad", "cowpea", value=1.0),  # no_limit
        make("carbofuran", "cowpea", qualitative="invalid", method="colloidal_gold"),
        make("ache_inhibition", "leek", value=45, unit="%", method="enzyme_inhibition"),  # watch band
    ],
)
def test_no_alert_below_a_finding(result: Result) -> None:
    assert alert_of(result) is None


def test_same_cause_same_alert() -> None:
    r = make("carbofuran", "cowpea", value=0.03, loq=0.005)
    assert alert_of(r) == alert_of(r)
    assert alert_for_verdict(r, screen(r, REF)) == alert_of(r)  # default reference


def test_single_result_alert_ids_differ_per_device() -> None:
    # lab-B's banned finding and lab-A's finding under the same result_id are two alerts: one can
    # never replace the other in the alerts table; the same device's resend keeps its id
    b = make("carbofuran", "cowpea", value=0.5, loq=0.005)
    a = b.model_copy(update={"device_id": "lab-A"})
    assert b.device_id != "lab-A" and a.result_id == b.result_id
    alert_a, alert_b = alert_of(a), alert_of(b)
    assert alert_a is not None and alert_b is not None
    assert alert_a.alert_id != alert_b.alert_id
    again = alert_of(b.model_copy())
    assert again is not None and again.alert_id == alert_b.alert_id


def test_result_key_is_one_to_one_whatever_the_ids_hold() -> None:
    # ids may hold any character, separators included: the length prefix keeps pairs apart
    pairs = [("a", "b:c"), ("a:b", "c"), ("a\x1fb", "c"), ("a", "b\x1fc"), ("", "a:b"), ("é", "x"), ("ab", "x")]
    keys = [result_key(d, r) for d, r in pairs]
    assert len(set(keys)) == len(pairs)
    assert result_key("lab-B", "lab-B-2026-000777") == "5:lab-B:lab-B-2026-000777"
    assert result_key("é", "x") == "2:é:x"  # bytes, as ClickHouse's length() counts them


def test_alert_id_for() -> None:
    assert alert_id_for("k", "a", "b") == alert_id_for("k", "a", "b")
    assert alert_id_for("k", "ab", "c") != alert_id_for("k", "a", "bc")
    assert alert_id_for("k", "a") != alert_id_for("j", "a")
    assert len(alert_id_for("k")) == 36


def test_alert_json_round_trip() -> None:
    a = alert_of(make("carbofuran", "cowpea", value=0.03, loq=0.005))
    assert a is not None
    assert Alert.from_json(a.to_json()) == a
    assert Alert.from_json(a.to_json().decode()) == a


def test_alert_needs_aware_times() -> None:
    with pytest.raises(ValidationError):
        Alert(
            alert_id="x",
            kind="k",
            classification=Classification.attention,
            risk=Risk.not_serious,
            summary_en="",
            summary_zh="",
            starts_at=datetime(2026, 1, 1),  # noqa: DTZ001  # naive on purpose
        )


detail_values = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(deadline=None, max_examples=150)
@given(
    kind=st.text(min_size=1, max_size=20),
    parts=st.lists(st.text(max_size=10), max_size=3),
    details=st.dictionaries(st.text(max_size=10), detail_values, max_size=6),
    evidence=st.lists(st.text(max_size=12), max_size=4),
    seconds=st.integers(0, 10**9),
    status=st.sampled_from(list(AlertStatus)),
    summary=st.text(max_size=40),
)
def test_alert_round_trip_property(
    kind: str,
    parts: list[str],
    details: dict[str, str | int | float | None],
    evidence: list[str],
    seconds: int,
    status: AlertStatus,
    summary: str,
) -> None:
    start = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    a = Alert(
        alert_id=alert_id_for(kind, *parts),
        kind=kind,
        classification=Classification.follow_up,
        risk=Risk.undecided,
        status=status,
        summary_en=summary,
        summary_zh=summary,
        evidence=tuple(evidence),
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        details=details,
    )
    back = Alert.from_json(a.to_json())
    assert back == a
    assert {k: type(v) for k, v in back.details.items()} == {k: type(v) for k, v in details.items()}
