"""The analyst query port: ``POST /v1/query`` and ``GET /openapi.json`` on their own small aiohttp
server, apart from the device port (Faust's web server), with analyst bearer tokens.

- Address: FOODRISK_QUERY_HOST / FOODRISK_QUERY_PORT (default 127.0.0.1:6067; port 0 takes a free
  port). The bound port is written to DATA_DIR/run/query.port.
- Credential: an analyst token (``fra_...``, `foodrisk analysts add NAME`; the worker also writes a
  local one at start, see pipeline/ingest/tokens.py). A device token is refused here.
- Apart from ingest: queries run on their own ClickHouse connection (chdb: a second session on the
  same path; a server: a second connection), in their own threads, never on the writer's thread.
  At most FOODRISK_QUERY_CONCURRENCY run and FOODRISK_QUERY_QUEUE wait; past that, 429 with
  Retry-After.
- Parsing never answers 500: the body is at most 64 KiB (413), must be a JSON object with a string
  ``sql``, an optional ``params`` object of scalars or flat arrays of scalars and an optional
  integer ``max_rows`` in 1..1,000,000 (else 400 with the reason).

Status codes, in the order they are checked: 401, 413, 400 (body), 429, 400 (the query is refused
by the guard or by ClickHouse), 503 (ClickHouse unavailable), 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import os
import queue
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson
from aiohttp import web
from mode import Service

from pipeline.ingest.tokens import ANALYSTS, DEVICES, TokenRegistry, bearer_token
from pipeline.query.guard import DEFAULT_MAX_ROWS, QueryLimits, QueryRejected, guard_select
from pipeline.query.render import jsonable
from sinks.clickhouse import ClickHouse, QueryResult, connect_clickhouse
from sinks.errors import ClickHouseUnavailable

if TYPE_CHECKING:
    from pipeline.runtime import Runtime
    from pipeline.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BODY_BYTES: Final = 64 * 1024
MAX_ROWS_LIMIT: Final = 1_000_000
MAX_PARAM_ITEMS: Final = 10_000
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_FIELDS = frozenset({"sql", "params", "max_rows"})


class Refused(Exception):
    """A request answered with an error status and a one-line reason."""

    def __init__(self, status: int, error: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = headers or {}


# -- request parsing (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryRequest:
    sql: str
    params: dict[str, Any] | None
    max_rows: int


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | bool | int) or (isinstance(v, float) and math.isfinite(v))


def parse_query_request(body: bytes) -> QueryRequest:
    """The request in ``body``, or :class:`Refused` (400) saying what is wrong with it."""
    try:
        doc = orjson.loads(body)  # refuses NaN, Infinity, 1e400, invalid UTF-8 and nesting past 1024
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise Refused(400, 'expected a JSON object {"sql": "SELECT ...", "params": {...}, "max_rows": N}')
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise Refused(400, f"unknown field {unknown[0][:64]!r}: the fields are sql, params and max_rows")
    sql = doc.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise Refused(400, "`sql` is required: one SELECT statement as a string")
    params = doc.get("params")
    if params is not None:
        if not isinstance(params, dict):
            raise Refused(400, "`params` is an object of name -> value")
        for name, value in params.items():
            if not _PARAM_NAME.match(name):
                raise Refused(400, f"parameter name {name[:64]!r}: letters, digits and _, at most 64")
            ok = _is_scalar(value) or (
                isinstance(value, list) and len(value) <= MAX_PARAM_ITEMS and all(_is_scalar(v) for v in value)
            )
            if not ok:
                raise Refused(400, f"parameter {name!r}: a string, number, boolean, null or a flat array of them")
    max_rows = doc.get("max_rows", DEFAULT_MAX_ROWS)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 1 <= max_rows <= MAX_ROWS_LIMIT:
        raise Refused(400, f"`max_rows` is an integer from 1 to {MAX_ROWS_LIMIT:,}")
    return QueryRequest(sql=sql, params=params or None, max_rows=max_rows)


_PLAN_FIELDS = frozenset({"date", "district", "seed"})
_DISTRICT = re.compile(r"^[^\x00-\x1f]{1,128}$")


def parse_plan_request(query: Mapping[str, str]) -> tuple[dt.date, str | None, int | None]:
    """``date`` (YYYY-MM-DD, required), ``district`` and ``seed`` of GET /v1/plan, or 400."""
    unknown = sorted(set(query) - _PLAN_FIELDS)
    if unknown:
        raise Refused(400, f"unknown parameter {unknown[0][:64]!r}: the parameters are date, district and seed")
    from pipeline.plan_cmd import FIRST_PLAN_DAY, LAST_PLAN_DAY, plan_day

    text = query.get("date", "")
    try:
        day = plan_day(text)
    except ValueError:
        raise Refused(
            400, f"`date` is required: the day to plan, YYYY-MM-DD, from {FIRST_PLAN_DAY} to {LAST_PLAN_DAY}"
        ) from None
    district = query.get("district") or None
    if district is not None and not _DISTRICT.match(district):
        raise Refused(400, "`district` is a district name (1-128 characters, no control characters)")
    seed_text = query.get("seed")
    seed: int | None = None
    if seed_text:
        if not seed_text.isdigit() or len(seed_text) > 18:
            raise Refused(400, "`seed` is a whole number >= 0")
        seed = int(seed_text)
    return day, district, seed


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, or 413 as soon as it is known to be over ``limit`` (declared or streamed)."""
    length = request.content_length
    if length is not None and length > limit:
        raise Refused(413, f"request body is {length} bytes, over the limit of {limit}")
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(16 * 1024):
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"request body is over the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


# -- running queries apart from the writer ------------------------------------------------------------


class AnalystQueries:
    """Analyst queries on their own ClickHouse connections and threads, behind a bounded queue.

    ``running`` threads, each with its own connection (opened on first use, reopened after the
    server went away); at most ``running`` queries run and ``waiting`` wait, the next one is
    refused with :class:`Refused` (429). A query whose client went away keeps its turn until
    ClickHouse is done with it, so the bound holds for the threads, not only for the requests."""

    def __init__(self, open_connection: Callable[[], ClickHouse], *, running: int, waiting: int) -> None:
        self._open = open_connection
        self.running, self.waiting = running, waiting
        self._executor = ThreadPoolExecutor(max_workers=running, thread_name_prefix="analyst-query")
        self._idle: queue.SimpleQueue[ClickHouse | None] = queue.SimpleQueue()
        for _ in range(running):
            self._idle.put(None)
        self._turns: asyncio.Semaphore | None = None
        self.admitted = 0  # running + waiting
        self._avg_s = 1.0
        self._closed = False

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the mean query time times the queue ahead."""
        return max(1, min(60, math.ceil(self._avg_s * self.admitted / self.running)))

    def _call(self, work: Callable[[ClickHouse], T]) -> T:
        conn = self._idle.get()
        try:
            if conn is None:
                conn = self._open()
            return work(conn)
        except ClickHouseUnavailable:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            conn = None
            raise
        finally:
            if self._closed and conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
            self._idle.put(conn)

    async def query(self, sql: str, params: dict[str, Any] | None) -> QueryResult:
        return await self.run(lambda conn: conn.query(sql, params))

    async def run(self, work: Callable[[ClickHouse], T]) -> T:
        """``work(connection)`` on one of the query threads, admitted like a query (429 past the queue)."""
        if self._closed:
            raise Refused(503, "the worker is stopping", headers={"Retry-After": "5"})
        if self.admitted >= self.running + self.waiting:
            secs = self.retry_after()
            raise Refused(429, f"{self.running} analyst queries running and {self.waiting} waiting, the most "
                          f"allowed (FOODRISK_QUERY_CONCURRENCY, FOODRISK_QUERY_QUEUE): retry after {secs} s",
                          headers={"Retry-After": str(secs)})
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.running)
        turns = self._turns
        self.admitted += 1
        try:
            await turns.acquire()
        except BaseException:
            self.admitted -= 1
            raise
        started = time.monotonic()
        try:
            fut = asyncio.get_running_loop().run_in_executor(self._executor, self._call, work)
        except RuntimeError:  # the executor is shut down
            turns.release()
            self.admitted -= 1
            raise Refused(503, "the worker is stopping", headers={"Retry-After": "5"}) from None

        def done(_: object) -> None:
            self._avg_s = 0.7 * self._avg_s + 0.3 * (time.monotonic() - started)
            turns.release()
            self.admitted -= 1

        fut.add_done_callback(done)
        return await asyncio.shield(fut)

    def close(self) -> None:
        """Stop taking queries; idle connections are closed now, busy ones when their query ends."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(queue.Empty):
            while True:
                conn = self._idle.get_nowait()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()


# -- the HTTP app --------------------------------------------------------------------------------------


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    try:
        body = orjson.dumps(payload)
    except TypeError:  # an integer past 64 bits (UInt128, Int256): the standard encoder has no limit
        body = json.dumps(payload, default=str).encode()
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own 404/405/... as JSON, like every other answer of this port."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return _json({"error": exc.reason}, exc.status, headers)
    return response


def query_limits(settings: Settings) -> QueryLimits:
    """The limits of the query port's queries: the guard's, with FOODRISK_QUERY_MAX_THREADS."""
    threads = settings.query_max_threads or max(1, (os.cpu_count() or 2) // 2)
    return QueryLimits(max_threads=threads)


def build_query_app(settings: Settings, queries: AnalystQueries, registry: TokenRegistry) -> web.Application:
    openapi = query_openapi_document(settings)
    limits = query_limits(settings)

    def authenticate(request: web.Request) -> str:
        token = bearer_token(request.headers)
        if token is None:
            raise Refused(401, "missing bearer token: send `Authorization: Bearer TOKEN` with an analyst token "
                          "(`foodrisk analysts add NAME`)")
        if token.startswith(DEVICES.prefix):
            raise Refused(401, "a device token is not accepted on the query port: use an analyst token "
                          "(`foodrisk analysts add NAME`)")
        analyst = registry.device_for(token)
        if analyst is None:
            why = "unknown or revoked analyst token"
            if registry.error:
                why += f" (the analyst registry could not be read: {registry.error})"
            raise Refused(401, why + ": `foodrisk analysts add NAME` issues one")
        return analyst

    async def handle(request: web.Request) -> web.Response:
        analyst = authenticate(request)
        req = parse_query_request(await read_body(request))
        try:
            # parsing a long statement takes milliseconds: off the event loop that ingest shares
            guarded = await asyncio.to_thread(guard_select, req.sql, req.params, database=settings.database,
                                              max_rows=req.max_rows, limits=limits)
        except QueryRejected as exc:
            raise Refused(400, str(exc)) from None
        try:
            res = await queries.query(guarded, None)  # the parameters are bound in it
        except Refused:
            raise
        except ClickHouseUnavailable as exc:
            log.warning("analyst query of %s: ClickHouse unavailable: %s", analyst, type(exc).__name__)
            raise Refused(503, f"ClickHouse is unavailable ({type(exc).__name__}); retry later",
                          headers={"Retry-After": "5"}) from None
        except Exception as exc:  # noqa: BLE001 - the analyst gets the engine's (or the binder's) message
            raise Refused(400, f"{type(exc).__name__}: {str(exc)[:2000]}") from None
        rows = [[jsonable(v) for v in r] for r in res.rows[: req.max_rows]]
        return _json({"columns": list(res.columns), "rows": rows, "truncated": len(res.rows) > req.max_rows})

    def refusal(r: Refused) -> web.Response:
        headers = dict(r.headers)
        if r.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="foodrisk-query"'
        return _json({"error": r.error}, r.status, headers)

    async def post_query(request: web.Request) -> web.Response:
        try:
            return await handle(request)
        except Refused as r:
            return refusal(r)

    async def get_openapi(request: web.Request) -> web.Response:
        return _json(openapi)

    async def get_plan(request: web.Request) -> web.Response:
        try:
            analyst = authenticate(request)
            day, district, seed = parse_plan_request(request.query)
            return _json(await make_plan_answer(day, district, seed, analyst))
        except Refused as r:
            return refusal(r)

    async def make_plan_answer(day: dt.date, district: str | None, seed: int | None, analyst: str) -> dict[str, Any]:
        from pipeline.plan_cmd import make_and_store
        from pipeline.refdata import load_configured_reference

        reference = await asyncio.to_thread(load_configured_reference, settings)
        now = dt.datetime.now(dt.UTC)
        try:
            return await queries.run(lambda conn: make_and_store(conn, settings, reference, day, district, seed, now))
        except Refused:
            raise
        except ClickHouseUnavailable as exc:
            log.warning("plan for %s: ClickHouse unavailable: %s", analyst, type(exc).__name__)
            raise Refused(503, f"ClickHouse is unavailable ({type(exc).__name__}); retry later",
                          headers={"Retry-After": "5"}) from None

    app = web.Application(middlewares=[_json_errors], client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/v1/query", post_query)
    app.router.add_get("/openapi.json", get_openapi)
    app.router.add_get("/v1/plan", get_plan)
    return app


# aiohttp logs a malformed request with the offending header line (a bearer token among them):
# the process-wide redaction of sinks/redact.py masks it, as on the device port.
HTTP_LOG = logging.getLogger("pipeline.query.server.http")
# How the query port's server runs: no access log, and aiohttp's own errors through HTTP_LOG.
RUNNER_OPTIONS: Final[dict[str, Any]] = {"access_log": None, "logger": HTTP_LOG}


def bound_port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


def register_query_server(rt: Runtime) -> None:
    """Start the query port with the worker (after table recovery) and stop it with the worker."""
    settings = rt.settings
    limits = query_limits(settings)

    def open_connection() -> ClickHouse:
        # A connection of its own (chdb: a second session on the same path), never the writer's. A
        # server also gets the limits as connection settings: Debian's 18.16 ignores the memory and
        # result-size caps in a query's own SETTINGS clause, but keeps them from the protocol.
        if settings.uses_chdb:
            return connect_clickhouse(settings.clickhouse_url, database=settings.database, create_database=False)
        return connect_clickhouse(settings.clickhouse_url, database=settings.database, create_database=False,
                                  settings=limits.connection_settings())

    class AnalystQueryServer(Service):
        runner: web.AppRunner | None = None
        queries: AnalystQueries | None = None

        async def on_start(self) -> None:
            self.queries = AnalystQueries(open_connection, running=settings.query_concurrency,
                                          waiting=settings.query_queue)
            registry = TokenRegistry(settings.analyst_tokens_path, kind=ANALYSTS)
            app = build_query_app(settings, self.queries, registry)
            self.runner = web.AppRunner(app, handle_signals=False, **RUNNER_OPTIONS)
            await self.runner.setup()
            try:
                await web.TCPSite(self.runner, settings.query_host, settings.query_port).start()
            except OSError as exc:
                raise RuntimeError(
                    f"cannot listen on the query port {settings.query_host}:{settings.query_port} ({exc}): set "
                    "FOODRISK_QUERY_PORT to a free port (0 picks one)"
                ) from None
            port = bound_port(self.runner)
            settings.query_port_file.parent.mkdir(parents=True, exist_ok=True)
            settings.query_port_file.write_text(f"{port}\n", encoding="utf-8")
            log.info("analyst queries on http://%s:%s/v1/query (analyst tokens: %s)",
                     settings.query_host, port, settings.analyst_tokens_path)

        async def on_stop(self) -> None:
            if self.runner is not None:
                await self.runner.cleanup()
            if self.queries is not None:
                self.queries.close()
            with contextlib.suppress(OSError):
                settings.query_port_file.unlink()

    rt.app.service(AnalystQueryServer)


# -- OpenAPI ---------------------------------------------------------------------------------------------


def query_openapi_document(settings: Settings) -> dict[str, Any]:
    """OpenAPI 3.1 description of the query port."""
    scalar: dict[str, Any] = {"type": ["string", "number", "integer", "boolean", "null"]}
    schemas: dict[str, Any] = {
        "QueryRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["sql"],
            "properties": {
                "sql": {"type": "string", "minLength": 1,
                        "description": "One read-only SELECT; `%(name)s` placeholders take `params`."},
                "params": {
                    "type": ["object", "null"],
                    "propertyNames": {"pattern": _PARAM_NAME.pattern},
                    "additionalProperties": {
                        "anyOf": [scalar, {"type": "array", "items": scalar, "maxItems": MAX_PARAM_ITEMS}]
                    },
                    "description": "Values bound to the placeholders (an array binds as a ClickHouse array).",
                },
                "max_rows": {"type": "integer", "minimum": 1, "maximum": MAX_ROWS_LIMIT, "default": DEFAULT_MAX_ROWS,
                             "description": "Most rows returned; `truncated` tells when there were more."},
            },
        },
        "QueryResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["columns", "rows", "truncated"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "rows": {"type": "array", "items": {"type": "array"},
                         "description": "One array per row, values in column order (times as ISO 8601 text)."},
                "truncated": {"type": "boolean"},
            },
        },
        "PlanResponse": {
            "type": "object",
            "required": ["date", "district", "seed", "planned_at", "sites", "budget", "tests_by_reason", "columns",
                         "rows", "deferred"],
            "properties": {
                "date": {"type": "string", "format": "date"},
                "district": {"type": ["string", "null"]},
                "seed": {"type": "integer"},
                "planned_at": {"type": "string", "format": "date-time",
                               "description": "the run's id in sampling_plans"},
                "sites": {"type": "integer"},
                "budget": {"type": "integer", "description": "tests of the day over all sites planned"},
                "tests_by_reason": {"type": "object", "additionalProperties": {"type": "integer"},
                                    "description": "tests per reason: unconfirmed_positive, supplier_cluster, "
                                    "redlist, priority, risk, random"},
                "columns": {"type": "array", "items": {"type": "string"},
                            "description": "district, site_id, line, commodity, method, analyte, vendor_id, "
                            "supplier_id, tests, reason, reason_text, score"},
                "rows": {"type": "array", "items": {"type": "array"}, "description": "one per plan line"},
                "deferred": {"type": "array", "items": {"type": "object"},
                             "description": "follow-ups past a site's budget (not planned, not dropped)"},
            },
        },
        "ErrorResponse": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "description": "What is wrong, and what to do."}},
        },
    }

    def answer(description: str, schema: str, *headers: str) -> dict[str, Any]:
        a: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
        if headers:
            a["headers"] = {h: {"description": "seconds to wait before retrying" if h == "Retry-After" else h,
                                "required": True, "schema": {"type": "integer"} if h == "Retry-After"
                                else {"type": "string"}} for h in headers}
        return a

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "foodrisk analyst query API",
            "version": "1",
            "description": "Read-only SELECTs on the foodrisk database, and the day's sampling plan, for analysts "
            "on the worker's host (the query port stays on loopback). In production analysts use ClickHouse users "
            "instead.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "analystToken": {"type": "http", "scheme": "bearer",
                                 "description": "Analyst token from `foodrisk analysts add NAME` (device tokens "
                                 "are refused)."}
            },
        },
        "paths": {
            "/v1/query": {
                "post": {
                    "summary": "Run one read-only SELECT",
                    "operationId": "postQuery",
                    "security": [{"analystToken": []}],
                    "requestBody": {
                        "required": True,
                        "description": f"At most {MAX_BODY_BYTES} bytes.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueryRequest"}}},
                    },
                    "responses": {
                        "200": answer("The rows.", "QueryResponse"),
                        "400": answer("The body is not a valid request, or the statement is refused (not one "
                                      "read-only SELECT, or ClickHouse refused it).", "ErrorResponse"),
                        "401": answer("Analyst token missing, malformed, unknown, revoked, or a device token.",
                                      "ErrorResponse", "WWW-Authenticate"),
                        "413": answer(f"Body over {MAX_BODY_BYTES} bytes.", "ErrorResponse"),
                        "429": answer(f"{settings.query_concurrency} queries running and {settings.query_queue} "
                                      "waiting already.", "ErrorResponse", "Retry-After"),
                        "503": answer("ClickHouse is unavailable, or the worker is stopping.", "ErrorResponse",
                                      "Retry-After"),
                    },
                }
            },
            "/v1/plan": {
                "get": {
                    "summary": "Make, store and return the sampling plan of a day",
                    "description": "Plans the day from the history in ClickHouse (schemas/plan.py): follow-ups first "
                    "(unconfirmed quick positives, open supplier clusters, red-listed vendors), the citizens' priority "
                    "categories, the highest shrunk non-compliance estimates, and a fixed random share drawn "
                    "uniformly; within each site's daily budget. Every call stores its plan in `sampling_plans` "
                    "under its `planned_at` (readers take the latest run per day and district: "
                    "`sampling_plans_latest`).",
                    "operationId": "getPlan",
                    "security": [{"analystToken": []}],
                    "parameters": [
                        {"name": "date", "in": "query", "required": True,
                         "description": "the day to plan, 2000-01-01 to 2100-12-31",
                         "schema": {"type": "string", "format": "date"}},
                        {"name": "district", "in": "query", "required": False, "description": "only this district",
                         "schema": {"type": "string", "minLength": 1, "maxLength": 128}},
                        {"name": "seed", "in": "query", "required": False,
                         "description": "seed of the random share (default: the date as YYYYMMDD)",
                         "schema": {"type": "integer", "minimum": 0}},
                    ],
                    "responses": {
                        "200": answer("The plan, as stored.", "PlanResponse"),
                        "400": answer("A parameter is missing or malformed.", "ErrorResponse"),
                        "401": answer("Analyst token missing, malformed, unknown, revoked, or a device token.",
                                      "ErrorResponse", "WWW-Authenticate"),
                        "429": answer(f"{settings.query_concurrency} queries running and {settings.query_queue} "
                                      "waiting already.", "ErrorResponse", "Retry-After"),
                        "503": answer("ClickHouse is unavailable, or the worker is stopping.", "ErrorResponse",
                                      "Retry-After"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "getQueryOpenApi",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1 (JSON)",
                                          "content": {"application/json": {"schema": {"type": "object"}}}}},
                }
            },
        },
    }
