"""How an alert is shown to people, shared by both delivery targets (pure: no I/O, no clock).

The Alertmanager payload (``sinks/alertmanager.py``) and the webhook body (``sinks/webhook.py``)
carry the same labels, severity and links; the parked-alerts table stores the same severity
(``agents/delivery/policy.py``). It is what on-call staff see, so it is documented here and in the
README ("Alert delivery").

Labels (Alertmanager identifies an alert by its label set, so these never change for one alert):

| label | from |
|---|---|
| ``alertname`` | ``kind`` (``banned_pesticide``, ``banned_substance``, ``vet_drug_exceedance``, ...) |
| ``alert_id`` | ``alert_id`` (deterministic: one Alertmanager alert per foodrisk alert) |
| ``severity`` | classification and risk, table :data:`SEVERITY` below |
| ``classification``, ``risk`` | as they are |
| ``district``, ``site`` (``site_id``), ``site_type``, ``commodity``, ``analyte`` | the alert's fields, only when set |
| ``supplier``, ``vendor``, ``device`` | ``supplier_id``, ``vendor_id``, ``device_id``, only when set |
| ``family`` | ``details.family`` of a single-result alert (``pesticide``, ``veterinary_drug``, ...) |
| ``limit_confidence`` | ``details.confidence`` when ``unverified`` or ``old`` (absent when ``checked``) |
| ``field`` | a ``reference_gap`` alert's ``details.field`` (``commodity`` or ``analyte``) |

``limit_confidence`` says that the limit a finding was judged against was not checked against the
standard's text (``unverified``) or comes from an older edition (``old``); ``family`` is the analyte's
family (schemas/alert.py ``FAMILIES``: ``pesticide``, ``contaminant``, ``veterinary_drug``,
``banned_compound``, ``additive``, ``screen`` for the enzyme screen, ``unknown``: route banned
compounds or veterinary drugs apart, say); ``field`` names the field whose label the reference data
does not know (the data steward's alert, agents/early/gap.py).

Severity (``SEVERITY``), what routing and paging key on:

| classification | serious | potentially_serious | not_serious | undecided |
|---|---|---|---|---|
| ``alert`` (act now) | critical | critical | warning | warning |
| ``follow_up`` | warning | warning | warning | warning |
| ``attention`` | info | info | info | info |

A confirmed banned pesticide or a two-fold exceedance (alert/serious) pages; a confirmed small
exceedance (alert/potentially_serious) pages too, since the product is on the market; quick-test
positives (follow_up/undecided) go to the district team's chat; device findings (attention) to a
ticket queue.

Annotations: ``summary`` / ``summary_zh`` (one line), ``description`` / ``description_zh`` (the
summary, classification, risk, evidence and first-seen time), ``evidence`` (result ids, at most
:data:`MAX_EVIDENCE_IDS` listed) and ``evidence_count``, ``details`` (the alert's details as JSON,
nulls dropped, cut to :data:`MAX_DETAILS_CHARS`), ``dashboard`` (the Grafana board with
``var-district``, ``var-commodity``, ``var-alert_id`` and a time range, when a board URL is configured)
and ``runbook_url``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import quote, urlencode, urlsplit

import orjson

from schemas.alert import Alert, Classification, Risk

__all__ = [
    "MAX_DETAILS_CHARS",
    "MAX_EVIDENCE_IDS",
    "SEVERITY",
    "UNSURE_CONFIDENCE",
    "Links",
    "alert_annotations",
    "alert_labels",
    "dashboard_link",
    "rfc3339",
    "runbook_link",
    "severity_for",
]

SEVERITY: Final[Mapping[tuple[Classification, Risk], str]] = {
    **{(Classification.alert, r): "critical" for r in (Risk.serious, Risk.potentially_serious)},
    **{(Classification.alert, r): "warning" for r in (Risk.not_serious, Risk.undecided)},
    **{(Classification.follow_up, r): "warning" for r in Risk},
    **{(Classification.attention, r): "info" for r in Risk},
}

# details.confidence values that say so in a label (``limit_confidence``): a limit nobody checked
# against the standard's text, or one from an older edition.
UNSURE_CONFIDENCE: Final = frozenset({"unverified", "old"})
SUBJECT_REFERENCE: Final = "reference"  # details.subject of a reference_gap alert

# (label, Alert field): set only when the field is set.
_LABEL_FIELDS: Final = (
    ("district", "district"),
    ("site", "site_id"),
    ("site_type", "site_type"),
    ("commodity", "commodity"),
    ("analyte", "analyte"),
    ("supplier", "supplier_id"),
    ("vendor", "vendor_id"),
    ("device", "device_id"),
)

MAX_EVIDENCE_IDS: Final = 20
MAX_DETAILS_CHARS: Final = 2000
DASHBOARD_WINDOW: Final = timedelta(days=1)

_CLASSIFICATION_ZH: Final = {
    Classification.alert: "预警（需立即处置）",
    Classification.follow_up: "跟进",
    Classification.attention: "关注",
}
_RISK_ZH: Final = {
    Risk.serious: "严重",
    Risk.potentially_serious: "可能严重",
    Risk.not_serious: "不严重",
    Risk.undecided: "待定",
}


@dataclass(frozen=True)
class Links:
    """Where an alert points people. ``grafana_url``: the Grafana alerts board (its URL as opened
    in a browser, e.g. ``https://grafana.example/d/foodrisk-alerts/alerts``); query parameters for
    the district, commodity, alert and time range are added. ``runbook_url``: the runbook; a
    ``{kind}`` in it is replaced by the alert kind, else ``#kind`` is appended."""

    grafana_url: str | None = None
    runbook_url: str | None = None


def severity_for(classification: Classification, risk: Risk) -> str:
    """``critical``, ``warning`` or ``info`` (table :data:`SEVERITY`)."""
    return SEVERITY[(Classification(classification), Risk(risk))]


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_labels(alert: Alert) -> dict[str, str]:
    """The identifying label set (see the module table). Empty values are left out."""
    labels = {
        "alertname": alert.kind,
        "alert_id": alert.alert_id,
        "severity": severity_for(alert.classification, alert.risk),
        "classification": str(alert.classification),
        "risk": str(alert.risk),
    }
    for label, attr in _LABEL_FIELDS:
        value = getattr(alert, attr)
        if value is not None and str(value).strip():
            labels[label] = str(value).strip()
    family = alert.details.get("family")
    if isinstance(family, str) and family.strip():
        labels["family"] = family.strip()
    confidence = alert.details.get("confidence")
    if confidence in UNSURE_CONFIDENCE:
        labels["limit_confidence"] = str(confidence)
    field = alert.details.get("field")
    if alert.details.get("subject") == SUBJECT_REFERENCE and isinstance(field, str) and field:
        labels["field"] = field
    return labels


def dashboard_link(alert: Alert, grafana_url: str | None) -> str | None:
    """The Grafana board with this alert's district, commodity and id as variables, around its start
    (the shipped board, deploy/grafana/dashboards/alerts.json, uses district and commodity)."""
    if not grafana_url:
        return None
    params: list[tuple[str, str]] = []
    if alert.district:
        params.append(("var-district", alert.district))
    if alert.commodity:
        params.append(("var-commodity", alert.commodity))
    params.append(("var-alert_id", alert.alert_id))
    start = alert.starts_at - DASHBOARD_WINDOW
    params.append(("from", str(int(start.timestamp() * 1000))))
    if alert.ends_at is not None:
        params.append(("to", str(int((alert.ends_at + DASHBOARD_WINDOW).timestamp() * 1000))))
    else:
        params.append(("to", "now"))
    sep = "&" if urlsplit(grafana_url).query else "?"
    return f"{grafana_url}{sep}{urlencode(params, quote_via=quote)}"


def runbook_link(alert: Alert, runbook_url: str | None) -> str | None:
    if not runbook_url:
        return None
    if "{kind}" in runbook_url:
        return runbook_url.replace("{kind}", quote(alert.kind))
    return f"{runbook_url.split('#', 1)[0]}#{quote(alert.kind)}"


def _evidence_text(evidence: Sequence[str]) -> str:
    shown = ", ".join(evidence[:MAX_EVIDENCE_IDS])
    more = len(evidence) - MAX_EVIDENCE_IDS
    return f"{shown} (+{more} more)" if more > 0 else shown


def alert_annotations(alert: Alert, links: Links) -> dict[str, str]:
    """Human-facing text (see the module docstring). Empty values are left out."""
    starts = rfc3339(alert.starts_at)
    n = len(alert.evidence)
    evidence = _evidence_text(alert.evidence)
    evidence_en = f" Evidence: {n} result(s): {evidence}." if n else ""
    evidence_zh = f"证据：{n} 条结果：{evidence}。" if n else ""
    description = (
        f"{alert.summary_en} Classification: {alert.classification}, risk: {alert.risk}.{evidence_en} "
        f"Alert {alert.alert_id}, since {starts}."
    )
    description_zh = (
        f"{alert.summary_zh}分类：{_CLASSIFICATION_ZH[alert.classification]}，风险：{_RISK_ZH[alert.risk]}。"
        f"{evidence_zh}告警 {alert.alert_id}，始于 {starts}。"
    )
    annotations = {
        "summary": alert.summary_en,
        "summary_zh": alert.summary_zh,
        "description": description,
        "description_zh": description_zh,
        "evidence": evidence,
        "evidence_count": str(n),
    }
    details = {k: v for k, v in sorted(alert.details.items()) if v is not None}
    if details:
        text = orjson.dumps(details).decode()
        annotations["details"] = text if len(text) <= MAX_DETAILS_CHARS else text[: MAX_DETAILS_CHARS - 1] + "…"
    dashboard = dashboard_link(alert, links.grafana_url)
    if dashboard:
        annotations["dashboard"] = dashboard
    runbook = runbook_link(alert, links.runbook_url)
    if runbook:
        annotations["runbook_url"] = runbook
    return {k: v for k, v in annotations.items() if v}
