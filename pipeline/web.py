"""The worker's HTTP endpoints: /metrics, /healthz, /readyz and the read-only /v1/query."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.query import DEFAULT_MAX_ROWS, QueryRejected, guard_select, jsonable

if TYPE_CHECKING:
    from pipeline.app import Runtime

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


def register_views(rt: Runtime) -> None:
    app = rt.app

    class MetricsView(View):
        async def get(self, request: Request) -> Response:
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
                checks["clickhouse_error"] = f"{type(exc).__name__}: {exc}"
            consumer = getattr(app, "consumer", None)
            assigned = consumer.assignment() if consumer is not None else set()
            reachable = await _broker_reachable(app.conf.broker)
            checks["broker"] = reachable and (bool(assigned) or app.rebalancing is False)
            if not reachable:
                checks["broker_error"] = "no bootstrap server accepts connections"
            ok = bool(checks["clickhouse"] and checks["broker"])
            return self.json({"ready": ok, **checks}, status=200 if ok else 503)

    class QueryView(View):
        async def post(self, request: Request) -> Response:
            try:
                body = await request.json()
                sql = str(body["sql"])
                params = body.get("params") or None
                max_rows = min(int(body.get("max_rows", DEFAULT_MAX_ROWS)), 1_000_000)
                guarded = guard_select(sql, params, database=rt.settings.database, max_rows=max_rows)
            except QueryRejected as exc:
                return self.json({"error": str(exc)}, status=400)
            except (KeyError, TypeError, ValueError) as exc:
                return self.json({"error": f"expected a JSON body {{'sql': ...}}: {exc}"}, status=400)
            try:
                res = await rt.writer.query(guarded)  # parameters are bound in it
            except Exception as exc:  # noqa: BLE001 - the analyst gets the server's message
                return self.json({"error": f"{type(exc).__name__}: {exc}"}, status=400)
            rows = [[jsonable(v) for v in r] for r in res.rows[:max_rows]]
            return self.json(
                {"columns": res.columns, "rows": rows, "truncated": len(res.rows) > max_rows}
            )

    app.page("/metrics")(MetricsView)
    app.page("/healthz")(HealthView)
    app.page("/readyz")(ReadyView)
    app.page("/v1/query")(QueryView)
