"""Alerts to a signed webhook (chat bots, ticket systems): the body, the signature, the HTTP sink.

Every delivery is one ``POST`` of a JSON object (``Content-Type: application/json``)::

    {"version": 1, "source": "foodrisk", "delivery_id": "<32 hex>",
     "alerts": [{<the alert, as on the alerts topic>, "severity": "critical",
                 "labels": {<the Alertmanager labels>}, "links": {"dashboard": ..., "runbook": ...}}]}

``delivery_id`` is a hash of the alerts in the body: the same alerts in the same state give the same
id, so a receiver can drop a repeat (deliveries are at least once: a retry, a worker restart).
The body holds nothing time-dependent, so a retry resends the same bytes.

Headers: ``X-Foodrisk-Delivery: <delivery_id>`` and
``X-Foodrisk-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + body)>``.

To verify (any language): split the header at ``,`` into ``key=value`` pairs; take ``t`` and every
``v1``; refuse when ``|now - t|`` exceeds your tolerance (5 minutes: it stops replays of an old
request); compute ``HMAC-SHA256(key=secret, msg=t + "." + raw request body bytes)`` as lowercase
hex and compare it with a ``v1`` in constant time. Use the raw bytes as received, before any JSON
parsing. :func:`verify_signature` does exactly this.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
import orjson

from schemas.alert import Alert
from sinks.errors import WebhookSinkError
from sinks.http import REJECTED_STATUSES, HttpSink, safe_url
from sinks.presentation import Links, alert_labels, dashboard_link, runbook_link, severity_for

log = logging.getLogger(__name__)

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "WEBHOOK_VERSION",
    "InvalidSignature",
    "WebhookSink",
    "sign",
    "signature_header",
    "verify_signature",
    "webhook_body",
]

SIGNATURE_HEADER: Final = "X-Foodrisk-Signature"
DELIVERY_HEADER: Final = "X-Foodrisk-Delivery"
WEBHOOK_VERSION: Final = 1
DEFAULT_TOLERANCE_S: Final = 300.0


class InvalidSignature(ValueError):
    """A webhook request whose signature header is missing, malformed, stale or wrong."""


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """Lowercase hex HMAC-SHA256 of ``f"{timestamp}."`` followed by ``body``."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={sign(secret, body, timestamp)}"


def verify_signature(
    secret: bytes, body: bytes, header: str | None, *, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> int:
    """Check a ``X-Foodrisk-Signature`` header against the raw ``body``; returns its timestamp.

    Raises :class:`InvalidSignature` saying what is wrong.
    """
    if not header:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header: {item!r} is not key=value")
        if key == "t":
            if not value.isdigit():
                raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header: t={value!r} is not unix seconds")
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header: needs t=... and v1=...")
    if abs(now - timestamp) > tolerance_s:
        raise InvalidSignature(f"signature timestamp {timestamp} is more than {tolerance_s:g}s from now")
    expected = sign(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise InvalidSignature("signature does not match the body (wrong secret, or the body was changed)")
    return timestamp


def _alert_entry(alert: Alert, links: Links) -> dict[str, Any]:
    entry: dict[str, Any] = alert.model_dump(mode="json")
    entry["severity"] = severity_for(alert.classification, alert.risk)
    entry["labels"] = alert_labels(alert)
    entry["links"] = {
        "dashboard": dashboard_link(alert, links.grafana_url),
        "runbook": runbook_link(alert, links.runbook_url),
    }
    return entry


def webhook_body(alerts: Sequence[Alert], links: Links) -> tuple[str, bytes]:
    """``(delivery_id, body)`` for ``alerts``. Pure and deterministic (sorted keys, no clock)."""
    entries = [_alert_entry(a, links) for a in alerts]
    canonical = orjson.dumps(entries, option=orjson.OPT_SORT_KEYS)
    delivery_id = hashlib.sha256(canonical).hexdigest()[:32]
    body = orjson.dumps(
        {"version": WEBHOOK_VERSION, "source": "foodrisk", "delivery_id": delivery_id, "alerts": entries},
        option=orjson.OPT_SORT_KEYS,
    )
    return delivery_id, body


class WebhookSink(HttpSink):
    """POSTs signed bodies to one URL. One :meth:`post` is one attempt; it raises
    :class:`~sinks.errors.WebhookSinkError` (``retriable`` False for HTTP 400, 413, 422: the body
    itself was refused). Retries are the caller's (``sinks.retry``)."""

    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 10.0) -> None:
        if not secret:
            raise ValueError("WebhookSink needs a non-empty secret")
        super().__init__(timeout_s=timeout_s)
        self.url = url
        self.display_url = safe_url(url, keep_path=False)  # for logs and metrics: no token in the path
        self._secret = secret

    async def post(self, delivery_id: str, body: bytes, *, timestamp: int) -> None:
        """Sign ``body`` at ``timestamp`` (unix seconds: signed fresh at every attempt) and POST it."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(self._secret, body, timestamp),
            DELIVERY_HEADER: delivery_id,
        }
        try:
            async with self._client().post(self.url, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    await resp.read()
                    return
                text = (await resp.text(errors="replace")).strip()[:300]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WebhookSinkError(
                f"webhook {self.display_url} unreachable ({type(exc).__name__}: {exc or 'timeout'}); "
                "is the receiver running? check FOODRISK_WEBHOOK_URL",
                url=self.url,
                retriable=True,
            ) from exc
        rejected = resp.status in REJECTED_STATUSES
        hint = " (check FOODRISK_WEBHOOK_SECRET)" if resp.status in (401, 403) else ""
        raise WebhookSinkError(
            f"webhook {self.display_url} answered HTTP {resp.status}: {text or resp.reason}{hint}",
            url=self.url,
            status=resp.status,
            retriable=not rejected,
        )
