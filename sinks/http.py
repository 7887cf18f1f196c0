"""The HTTP parts both delivery sinks share: which statuses mean "refused", the session, safe URLs."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import aiohttp

__all__ = ["REJECTED_STATUSES", "HttpSink", "safe_url"]

# Statuses meaning "this payload is wrong", not "try later": Alertmanager answers 400 for an alert
# that fails validation (and still stores the valid ones of the same request).
REJECTED_STATUSES: Final = frozenset({400, 413, 422})


class HttpSink:
    """Holds the sink's HTTP session: opened on first use (and again after :meth:`close`)."""

    def __init__(self, *, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": "foodrisk-alert-delivery"}
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


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
