"""The device port (Faust's web server): /metrics, /healthz, /readyz here; /v1/results, /openapi.json
and /docs in pipeline/ingest/views.py. Nothing else is served there: Faust's own pages are switched off
(pipeline.faust_config) and any other path answers 404 (``only_our_paths``). Analyst queries have
their own port and credential (pipeline/query/server.py)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.ingest.tokens import bearer_token
from sinks.redact import redact

if TYPE_CHECKING:
    from pipeline.runtime import Runtime

log = logging.getLogger(__name__)


async def _broker_reachable(urls: Any, timeout_s: float = 1.0) -> bool:
    """True when at least one bootstrap server accepts a TCP connection."""
    for url in urls or ():
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(url.host, url.port or 9092), timeout_s)
        except (OSError, TimeoutError):
            continue
        writer.close()
        return True
    return False


def _bearer_matches(request: Request, expected: bytes) -> bool:
    given = bearer_token(request.headers)
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), expected)


DEVICE_PORT_PATHS = frozenset({"/metrics", "/healthz", "/readyz", "/v1/results", "/openapi.json", "/docs"})


def only_our_paths(paths: frozenset[str] = DEVICE_PORT_PATHS) -> Any:
    """aiohttp middleware: 404 (JSON) for every path but ``paths``, whatever else got registered."""

    @web.middleware
    async def allow_list(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in paths:
            return web.json_response({"error": f"no such endpoint on this port: {request.path[:200]}"}, status=404)
        response: web.StreamResponse = await handler(request)
        return response

    return allow_list


def register_views(rt: Runtime) -> None:
    app = rt.app

    metrics_token = rt.settings.metrics_token.get_secret_value().encode() if rt.settings.metrics_token else None

    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            if metrics_token is not None and not _bearer_matches(request, metrics_token):
                return self.json({"error": "metrics need the operators' token: `Authorization: Bearer "
                                           "$FOODRISK_METRICS_TOKEN` (Prometheus: authorization.credentials_file)"},
                                 status=401, headers={"WWW-Authenticate": 'Bearer realm="foodrisk-metrics"'})
            # aiohttp refuses a charset inside content_type=; the exposition type carries one, so it
            # goes in as a header.
            return self.bytes(generate_latest(rt.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            checks: dict[str, Any] = {"clickhouse": rt.writer.ready}
            try:
                await rt.writer.query("SELECT 1")
                checks["clickhouse"] = True
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                checks["clickhouse"] = False
                checks["clickhouse_error"] = redact(f"{type(exc).__name__}: {exc}")
            consumer = getattr(app, "consumer", None)
            assigned = consumer.assignment() if consumer is not None else set()
            reachable = await _broker_reachable(app.conf.broker)
            # Joined the group: partitions assigned, or a rebalance has completed (a worker beyond
            # the partition count legitimately holds none). Before its first rebalance a worker is
            # not rebalancing yet, and not ready either.
            joined = bool(assigned) or (getattr(app, "rebalancing_count", 0) > 0 and app.rebalancing is False)
            checks["broker"] = reachable and joined
            if not reachable:
                checks["broker_error"] = "no bootstrap server accepts connections"
            ok = bool(checks["clickhouse"] and checks["broker"])
            return self.json({"ready": ok, **checks}, status=200 if ok else 503)

    app.page("/metrics")(MetricsView)
    app.page("/healthz")(HealthView)
    app.page("/readyz")(ReadyView)
