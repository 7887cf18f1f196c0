"""Confidence reaches the alert (issue 19 item 7): an exceedance of a limit nobody checked against
the standard's text says so in its summaries (en, zh) and in the ``limit_confidence`` label that
Alertmanager and the webhook receive; one of a checked limit does not."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest

from schemas.alert import CONFIDENCE_NOTE, KIND_MRL, Alert, alert_for_verdict
from schemas.reference import default_reference
from schemas.rules import screen
from schemas.verdict import Verdict
from sinks.alertmanager import to_alertmanager
from sinks.presentation import Links, alert_labels
from sinks.webhook import webhook_body
from tests.unit.test_schemas_rules import make

REF = default_reference()
NOW = datetime(2026, 11, 28, tzinfo=UTC)


def exceedance(day: date) -> tuple[Verdict, Alert]:
    # lambda-cyhalothrin on cowpea, 0.2 mg/kg: checked in GB 2763-2021, carried forward unverified into 2026
    r = make("lambda_cyhalothrin", "cowpea", value=0.5, loq=0.01, day=day)
    v = screen(r, REF)
    a = alert_for_verdict(r, v, reference=REF)
    assert a is not None and a.kind == KIND_MRL
    return v, a


def test_an_unverified_limit_exceedance_says_so_in_labels_and_text() -> None:
    v, a = exceedance(date(2026, 6, 20))
    assert v.confidence == "unverified"
    en, zh = CONFIDENCE_NOTE["unverified"]
    assert a.summary_en.endswith(en) and "unverified" in a.summary_en
    assert a.summary_zh.endswith(zh) and "未经核实" in a.summary_zh
    assert a.details["confidence"] == "unverified"  # the alerts table keeps it in details
    assert alert_labels(a)["limit_confidence"] == "unverified"
    body = to_alertmanager(a, now=NOW, links=Links(), firing_ttl_s=600)
    assert body["labels"]["limit_confidence"] == "unverified"
    assert en in body["annotations"]["summary"] and zh in body["annotations"]["summary_zh"]
    _, raw = webhook_body([a], Links())
    assert orjson.loads(raw)["alerts"][0]["labels"]["limit_confidence"] == "unverified"


def test_a_checked_limit_exceedance_does_not_say_unverified() -> None:
    v, a = exceedance(date(2025, 6, 20))
    assert v.confidence == "checked"
    assert "unverified" not in a.summary_en and "older edition" not in a.summary_en
    assert "未经核实" not in a.summary_zh and "旧版" not in a.summary_zh
    assert "limit_confidence" not in alert_labels(a)


@pytest.mark.parametrize(("confidence", "label"), [("old", "old"), ("unverified", "unverified"),
                                                   ("checked", None), (None, None)])
def test_the_label_follows_the_verdicts_confidence(confidence: str | None, label: str | None) -> None:
    _, a = exceedance(date(2025, 6, 20))
    a = a.model_copy(update={"details": {**a.details, "confidence": confidence}})
    assert alert_labels(a).get("limit_confidence") == label
