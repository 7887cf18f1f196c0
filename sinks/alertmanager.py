"""Alerts to Prometheus Alertmanager (API v2): the payload of one alert, and the HTTP sink.

The payload (:func:`to_alertmanager`) is a pure function of an :class:`~schemas.alert.Alert`, the
time ``now`` and the links to put in. Its labels, severity and annotations are the shared alert
presentation (``sinks/presentation.py``, tables there); this module adds the times.

Times: ``startsAt`` is the alert's ``starts_at`` (event time; never later than ``now``). A firing
alert gets ``endsAt = now + firing_ttl_s``: Alertmanager keeps it active for that long and the
delivery agent re-posts it well before (agents/delivery/targets.py), so it ends by itself if foodrisk stops
caring for it. A resolved alert gets ``endsAt`` = its ``ends_at`` (never later than ``now``, never
before ``startsAt``). ``generatorURL`` is the dashboard link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import orjson

from schemas.alert import Alert, AlertStatus
from sinks.errors import AlertmanagerSinkError
from sinks.http import REJECTED_STATUSES, HttpSink, safe_url
from sinks.presentation import Links, alert_annotations, alert_labels, dashboard_link, rfc3339
from sinks.redact import redact

log = logging.getLogger(__name__)

__all__ = [
    "AlertmanagerSink",
    "api_endpoint",
    "parse_urls",
    "to_alertmanager",
]


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
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
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


class AlertmanagerSink(HttpSink):
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
        super().__init__(timeout_s=timeout_s)
        self.urls = tuple(u.rstrip("/") for u in urls)
        self._observer = observer

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
