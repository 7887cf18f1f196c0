"""Alerts to Prometheus Alertmanager (API v2): the pure mapping, and the HTTP sink.

The mapping (:func:`to_alertmanager`) is a pure function of an :class:`~schemas.alert.Alert`, the
time ``now`` and the links to put in; it is what on-call staff see, so it is documented here and in
the README ("Alert delivery").

Labels (Alertmanager identifies an alert by its label set, so these never change for one alert):

| label | from |
|---|---|
| ``alertname`` | ``kind`` (``banned_pesticide``, ``mrl_exceedance``, ``quick_test_positive``, ...) |
| ``alert_id`` | ``alert_id`` (deterministic: one Alertmanager alert per foodrisk alert) |
| ``severity`` | classification and risk, table :data:`SEVERITY` below |
| ``classification``, ``risk`` | as they are |
| ``district``, ``site`` (``site_id``), ``site_type``, ``commodity``, ``analyte`` | the alert's fields, only when set |
| ``supplier``, ``vendor``, ``device`` | ``supplier_id``, ``vendor_id``, ``device_id``, only when set |

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

Times: ``startsAt`` is the alert's ``starts_at`` (event time; never later than ``now``). A firing
alert gets ``endsAt = now + firing_ttl_s``: Alertmanager keeps it active for that long and the
delivery agent re-posts it well before (agents/delivery.py), so it ends by itself if foodrisk stops
caring for it. A resolved alert gets ``endsAt`` = its ``ends_at`` (never later than ``now``, never
before ``startsAt``). ``generatorURL`` is the dashboard link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

from schemas.alert import Alert, AlertStatus, Classification, Risk
from sinks.errors import AlertmanagerSinkError
from sinks.redact import redact

log = logging.getLogger(__name__)

__all__ = [
    "MAX_DETAILS_CHARS",
    "MAX_EVIDENCE_IDS",
    "REJECTED_STATUSES",
    "SEVERITY",
    "AlertmanagerSink",
    "Links",
    "alert_annotations",
    "alert_labels",
    "api_endpoint",
    "dashboard_link",
    "parse_urls",
    "runbook_link",
    "safe_url",
    "severity_for",
    "to_alertmanager",
]

SEVERITY: Final[Mapping[tuple[Classification, Risk], str]] = {
    **{(Classification.alert, r): "critical" for r in (Risk.serious, Risk.potentially_serious)},
    **{(Classification.alert, r): "warning" for r in (Risk.not_serious, Risk.undecided)},
    **{(Classification.follow_up, r): "warning" for r in Risk},
    **{(Classification.attention, r): "info" for r in Risk},
}

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

# Statuses meaning "this payload is wrong", not "try later": Alertmanager answers 400 for an alert
# that fails validation (and still stores the valid ones of the same request).
REJECTED_STATUSES: Final = frozenset({400, 413, 422})

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


def _rfc3339(ts: datetime) -> str:
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
    starts = _rfc3339(alert.starts_at)
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


def to_alertmanager(alert: Alert, *, now: datetime, links: Links, firing_ttl_s: float) -> dict[str, Any]:
    """One element of the ``POST /api/v2/alerts`` body. Pure: same inputs, same output."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if alert.status is AlertStatus.firing:
        starts = min(alert.starts_at, now)
        ends = now + timedelta(seconds=firing_ttl_s)
    else:
        ends = min(alert.ends_at or now, now)
        starts = min(alert.starts_at, ends)
    body: dict[str, Any] = {
        "labels": alert_labels(alert),
        "annotations": alert_annotations(alert, links),
        "startsAt": _rfc3339(starts),
        "endsAt": _rfc3339(ends),
    }
    dashboard = dashboard_link(alert, links.grafana_url)
    if dashboard:
        body["generatorURL"] = dashboard
    return body


def parse_urls(text: str) -> tuple[str, ...]:
    """Comma-separated Alertmanager base URLs (``http(s)://host:port[/prefix]``), without the
    trailing slash. Raises ValueError naming the bad one."""
    urls: list[str] = []
    for part in text.split(","):
        url = part.strip().rstrip("/")
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"bad Alertmanager URL {redact(part.strip())!r}: use http(s)://host:port[,http(s)://host:port]"
            )
        if url not in urls:
            urls.append(url)
    if not urls:
        raise ValueError("no Alertmanager URL given")
    return tuple(urls)


def open_session(session: aiohttp.ClientSession | None, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
    """``session`` while it is open, else a new one (the delivery sinks' HTTP client)."""
    if session is None or session.closed:
        session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "foodrisk-alert-delivery"})
    return session


def safe_url(url: str, *, keep_path: bool = True) -> str:
    """``url`` fit for logs and metric labels: no user:password, no query or fragment, and with
    ``keep_path=False`` no path either (chat webhooks often carry their token in the path)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = parts.path if keep_path else ("/…" if parts.path not in ("", "/") else "")
    return f"{parts.scheme}://{netloc}{path}"


def split_credentials(url: str) -> tuple[str, aiohttp.BasicAuth | None]:
    """``url`` without its ``user:password@`` part, and those credentials as HTTP basic auth
    (an Alertmanager behind a reverse proxy with basic auth: the credentials go in the
    Authorization header, never in a log line or a metric label)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    auth = aiohttp.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=netloc)), auth


def api_endpoint(base_url: str) -> str:
    """``BASE/api/v2/alerts`` (a URL that already ends so is kept)."""
    base = base_url.rstrip("/")
    return base if base.endswith("/api/v2/alerts") else f"{base}/api/v2/alerts"


AttemptObserver = Callable[[str, AlertmanagerSinkError | None], None]
"""``observer(url, error)``: called after each attempt on each URL (error None: accepted)."""


class AlertmanagerSink:
    """Posts alert payloads to one or more Alertmanagers (an HA pair) at once.

    One :meth:`post` is one attempt on every URL. It succeeds when at least one Alertmanager
    accepted the alerts (the members of an HA pair share silences and notification logs, not
    alerts: the delivery agent re-posts firing alerts to all of them, which brings one that was
    away up to date). It raises :class:`~sinks.errors.AlertmanagerSinkError` when none did:
    ``retriable`` False when the payload itself was rejected (HTTP 400, 413, 422), True otherwise
    (unreachable, 5xx, timeouts, and also 401/403/404, which are configuration a person can fix).
    Retries are the caller's (``sinks.retry``).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float = 10.0,
        observer: AttemptObserver | None = None,
    ) -> None:
        if not urls:
            raise ValueError("AlertmanagerSink needs at least one URL")
        self.urls = tuple(u.rstrip("/") for u in urls)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._observer = observer
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        self._session = open_session(self._session, self._timeout)
        return self._session

    async def _post_one(self, url: str, body: bytes) -> AlertmanagerSinkError | None:
        target, auth = split_credentials(api_endpoint(url))
        endpoint = safe_url(target)
        try:
            async with self._client().post(
                target, data=body, headers={"Content-Type": "application/json"}, auth=auth
            ) as resp:
                if 200 <= resp.status < 300:
                    await resp.read()
                    return None
                text = (await resp.text(errors="replace")).strip()[:300]
                rejected = resp.status in REJECTED_STATUSES
                hint = "" if rejected else "; check FOODRISK_ALERTMANAGER_URL"
                return AlertmanagerSinkError(
                    f"Alertmanager {endpoint} answered HTTP {resp.status}: {text or resp.reason}{hint}",
                    url=url,
                    status=resp.status,
                    retriable=not rejected,
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return AlertmanagerSinkError(
                f"Alertmanager {endpoint} unreachable ({type(exc).__name__}: {redact(str(exc)) or 'timeout'}); "
                "is it running? check FOODRISK_ALERTMANAGER_URL",
                url=url,
                retriable=True,
            )

    async def post(self, alerts: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
        """Post ``alerts`` (elements built by :func:`to_alertmanager`) to every URL; returns the
        URLs that accepted them (at least one), or raises ``AlertmanagerSinkError``."""
        if not alerts:
            return self.urls
        body = orjson.dumps(list(alerts))
        outcomes = await asyncio.gather(*(self._post_one(url, body) for url in self.urls))
        accepted: list[str] = []
        errors: list[AlertmanagerSinkError] = []
        for url, err in zip(self.urls, outcomes, strict=True):
            if self._observer is not None:
                self._observer(url, err)
            if err is None:
                accepted.append(url)
            else:
                errors.append(err)
        if accepted:
            for err in errors:
                log.warning("%s (alerts accepted by %s)", err, ", ".join(accepted))
            return tuple(accepted)
        rejected = [e for e in errors if not e.retriable]
        if rejected:
            raise rejected[0]
        if len(errors) == 1:
            raise errors[0]
        raise AlertmanagerSinkError(
            "no Alertmanager accepted the alerts: " + "; ".join(str(e) for e in errors),
            url=",".join(self.urls),
            status=None,
            retriable=True,
        )

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
