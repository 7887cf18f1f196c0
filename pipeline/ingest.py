"""HTTP ingest on the worker's web port: ``POST /v1/results``, ``GET /openapi.json``, ``GET /docs``.

A device (or the gateway in front of it) posts one result (a JSON object) or a batch (a JSON array)
with its bearer token. Every item is validated with the same decoder the screening agent uses; the
valid ones are published to the results topic in the batch form (one message per chunk, keyed by
the device id) and the answer (202) comes only after the broker acknowledged every chunk (acks=all).
Invalid items are answered per item with field-level reasons, and 422 when none is valid.

Status codes, in the order they are checked: 401 (token missing, malformed, unknown or revoked),
413 (body over FOODRISK_INGEST_MAX_BYTES, or more than FOODRISK_INGEST_MAX_ITEMS results), 429 (the
device's token bucket is empty; Retry-After says when to come back), 400 (not JSON, or neither an
object nor an array), 403 (an item names another device, or a device bound to a site sends a result
naming another site), 422 (no valid item), 202 (accepted), 503 (the broker did not acknowledge in
time: re-post, result ids make that safe). A 403 publishes nothing of the request.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import orjson
from aiohttp import web
from faust.web import Request, Response, View
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from pipeline.devices import DEVICES, TokenEntry, TokenRegistry
from schemas.reference import Reference
from schemas.result import MAX_MESSAGE_BYTES, InvalidResult, Result, parse_result

if TYPE_CHECKING:
    from pipeline.runtime import Runtime
    from pipeline.settings import Settings

log = logging.getLogger(__name__)

CHUNK_BYTES: Final = 512 * 1024  # a published chunk stays well under Kafka's default 1 MB message limit
ACK_TIMEOUT_S: Final = 30.0  # longest wait for the broker's acknowledgement before answering 503
_READ_CHUNK: Final = 64 * 1024


# -- response models (also the OpenAPI schemas) --------------------------------------------------


class ItemError(BaseModel):
    field: str = Field(description="Dotted path of the failing field (`site.type`); `$` = the whole item.")
    reason: str


class RejectedItem(BaseModel):
    index: int = Field(description="Position in the posted array (0 for a single object).")
    result_id: str | None = Field(default=None, description="The item's result_id, when it has a usable one.")
    errors: list[ItemError]


class IngestResponse(BaseModel):
    """Answer to POST /v1/results (202 and 422)."""

    accepted: list[str] = Field(description="result_id of every result now acknowledged by the broker.")
    rejected: list[RejectedItem] = Field(description="Invalid items, each with every reason, field by field.")
    duplicates: list[str] = Field(
        default_factory=list, description="result_ids given twice in this request (the first one counts)."
    )


class ErrorResponse(BaseModel):
    """Answer to a request refused as a whole (400, 401, 403, 413, 429, 503)."""

    error: str
    detail: list[Any] = Field(default_factory=list)


# -- pure parts ------------------------------------------------------------------------------------


class RateLimiter:
    """Per-key token buckets: ``rate`` results per second, at most ``burst`` banked."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, cost: float, now: float) -> float:
        """Spend ``cost`` tokens and return 0, or spend nothing and return the seconds to wait."""
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (min(cost, self.burst) - tokens) / self.rate


@dataclass
class Checked:
    """The items of one request, sorted out."""

    accepted: list[tuple[str, bytes]] = field(default_factory=list)  # (result_id, item as JSON)
    rejected: list[RejectedItem] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    foreign: list[tuple[int, str]] = field(default_factory=list)  # (index, device_id) of other devices' items
    off_site: list[tuple[int, str]] = field(default_factory=list)  # (index, site.id) of items naming another site


def _item_id(item: Any) -> str | None:
    rid = item.get("result_id") if isinstance(item, Mapping) else None
    return rid if isinstance(rid, str) and 0 < len(rid) <= 128 else None


def _claimed_site(item: Mapping[str, Any]) -> Any:
    site = item.get("site")
    return site.get("id") if isinstance(site, Mapping) else None


def check_items(
    items: Sequence[Any], *, device_id: str, reference: Reference, now: datetime, site_id: str | None = None
) -> Checked:
    """Validate each item as the screening agent will; note other devices' items, items naming
    another site than the device's (when it is bound to ``site_id``) and repeated ids."""
    out = Checked()
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            why = f"a result must be a JSON object, not {_json_type(item)}"
            out.rejected.append(RejectedItem(index=i, errors=[ItemError(field="$", reason=why)]))
            continue
        claimed = item.get("device_id")
        if isinstance(claimed, str) and claimed != device_id:
            out.foreign.append((i, claimed[:128]))
            continue
        site = _claimed_site(item)
        if site_id is not None and isinstance(site, str) and site != site_id:
            out.off_site.append((i, site[:128]))
            continue
        try:
            encoded = orjson.dumps(item)
        except (TypeError, orjson.JSONEncodeError) as exc:  # e.g. an integer past 64 bits
            out.rejected.append(RejectedItem(index=i, result_id=_item_id(item),
                                             errors=[ItemError(field="$", reason=f"cannot be re-encoded: {exc}")]))
            continue
        if len(encoded) > MAX_MESSAGE_BYTES:
            why = f"result is {len(encoded)} bytes, over {MAX_MESSAGE_BYTES}"
            out.rejected.append(
                RejectedItem(index=i, result_id=_item_id(item), errors=[ItemError(field="$", reason=why)])
            )
            continue
        try:
            result = parse_result(item, reference=reference, now=now)
        except InvalidResult as exc:
            out.rejected.append(
                RejectedItem(
                    index=i,
                    result_id=_item_id(item),
                    errors=[ItemError(field=e.field, reason=e.reason) for e in exc.errors],
                )
            )
            continue
        if result.result_id in seen:
            out.duplicates.append(result.result_id)
            continue
        seen.add(result.result_id)
        out.accepted.append((result.result_id, encoded))
    return out


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(v), type(v).__name__
    )


def chunk_values(encoded: Sequence[bytes], *, max_items: int, max_bytes: int = CHUNK_BYTES) -> list[bytes]:
    """Encoded results joined into JSON arrays (the batch form) of at most ``max_items`` items and
    about ``max_bytes`` bytes (one item over that goes alone)."""
    out: list[bytes] = []
    part: list[bytes] = []
    size = 2
    for e in encoded:
        if part and (len(part) >= max_items or size + len(e) + 1 > max_bytes):
            out.append(b"[" + b",".join(part) + b"]")
            part, size = [], 2
        part.append(e)
        size += len(e) + 1
    if part:
        out.append(b"[" + b",".join(part) + b"]")
    return out


# -- OpenAPI and the docs page -------------------------------------------------------------------


def openapi_document(settings: Settings) -> dict[str, Any]:
    """OpenAPI 3.1 description of the ingest API, with schemas generated from the pydantic models."""
    _, defs = models_json_schema(
        [(Result, "validation"), (IngestResponse, "serialization"), (ErrorResponse, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    schemas = defs.get("$defs", {})

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def answer(description: str, schema: str, **headers: str) -> dict[str, Any]:
        a: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": ref(schema)}}}
        if headers:
            a["headers"] = {h: {"description": d, "schema": {"type": "integer"}} for h, d in headers.items()}
        return a

    def simple(summary: str, *, ok: str, unavailable: str | None = None) -> dict[str, Any]:
        responses = {"200": {"description": ok}}
        if unavailable:
            responses["503"] = {"description": unavailable}
        return {"get": {"summary": summary, "responses": responses}}

    max_items, max_bytes = settings.ingest_max_items, settings.ingest_max_bytes
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "foodrisk ingest API",
            "version": "1",
            "description": "Lab instruments, quick-test devices and LIMS gateways post test results (wire format v1). "
            "Human-readable docs: /docs.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "deviceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Per-device token from `foodrisk devices add DEVICE_ID`; every posted result's "
                    "device_id must be that device.",
                }
            },
        },
        "paths": {
            "/v1/results": {
                "post": {
                    "summary": "Submit one result or a batch",
                    "operationId": "postResults",
                    "security": [{"deviceToken": []}],
                    "requestBody": {
                        "required": True,
                        "description": f"One result, or an array of 1 to {max_items} results; "
                        f"at most {max_bytes} bytes.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        ref("Result"),
                                        {"type": "array", "items": ref("Result"), "minItems": 1, "maxItems": max_items},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": answer("Every accepted result is acknowledged by the broker (acks=all). Invalid items "
                                      "are listed under `rejected` with their reasons.", "IngestResponse"),
                        "400": answer("The body is not JSON, or neither an object nor an array.", "ErrorResponse"),
                        "401": answer("Token missing, malformed, unknown or revoked.", "ErrorResponse"),
                        "403": answer("An item's device_id is not the token's device, or the device is bound "
                                      "to a site and an item's site.id is another one.", "ErrorResponse"),
                        "413": answer(f"Body over {max_bytes} bytes or more than {max_items} results.",
                                      "ErrorResponse"),
                        "422": answer("No item is valid; each is listed with its reasons.", "IngestResponse"),
                        "429": answer("The device is over its rate limit.", "ErrorResponse",
                                      **{"Retry-After": "seconds to wait before retrying"}),
                        "503": answer("The broker did not acknowledge in time; re-post (result ids make it "
                                      "idempotent).", "ErrorResponse",
                                      **{"Retry-After": "seconds to wait before retrying"}),
                    },
                }
            },
            "/healthz": simple("The worker process answers", ok="alive"),
            "/readyz": simple("Broker and ClickHouse reachable", ok="ready",
                               unavailable="not ready: the body says why"),
            "/openapi.json": simple("This document", ok="OpenAPI 3.1 (JSON)"),
            "/docs": simple("Human-readable API docs", ok="HTML"),
        },
    }


def _type_text(prop: Mapping[str, Any]) -> str:
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "enum" in prop:
        return " | ".join(str(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type_text(p) for p in prop["anyOf"])
    t = prop.get("type", "any")
    if prop.get("format"):
        return f"{t} ({prop['format']})"
    return str(t)


def docs_page(settings: Settings) -> str:
    """The human-readable docs page, generated from the same schemas as /openapi.json."""
    doc = openapi_document(settings)
    schemas = doc["components"]["schemas"]
    rows = []
    for model in ("Result", "Site"):
        sch = schemas.get(model, {})
        required = set(sch.get("required", []))
        for name, prop in sch.get("properties", {}).items():
            if name in ("value_mg_kg", "lod_mg_kg", "loq_mg_kg", "percent"):
                continue  # computed by the decoder, ignored on input
            shown = f"site.{name}" if model == "Site" else name
            rows.append(
                f"<tr><td><code>{html.escape(shown)}</code></td><td>{html.escape(_type_text(prop))}</td>"
                f"<td>{'yes' if name in required else ''}</td>"
                f"<td>{html.escape(str(prop.get('description', '')))}</td></tr>"
            )
    statuses = doc["paths"]["/v1/results"]["post"]["responses"]
    status_rows = "".join(
        f"<tr><td>{code}</td><td>{html.escape(a['description'])}</td></tr>" for code, a in statuses.items()
    )
    example = orjson.dumps(
        {
            "result_id": "lab07-2026-000123",
            "sample_id": "S-2026-0451",
            "device_id": "lab-07",
            "site": {"id": "gz-th-lab1", "type": "testing_center", "district": "Tianhe"},
            "commodity": "cowpea",
            "analyte": "carbofuran",
            "method": "lc_msms",
            "value": 0.012,
            "unit": "mg/kg",
            "loq": 0.005,
            "sampled_at": "2026-11-20T07:30:00+08:00",
            "tested_at": "2026-11-20T10:05:00+08:00",
        },
        option=orjson.OPT_INDENT_2,
    ).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>foodrisk ingest API</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;line-height:1.45}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25rem .5rem;vertical-align:top}}
pre{{background:#f4f4f4;padding:.75rem;overflow:auto}}</style></head><body>
<h1>foodrisk ingest API</h1>
<p>Post test results (wire format v1) to <code>POST /v1/results</code>: one JSON object, or a JSON array of
1 to {settings.ingest_max_items} of them, at most {settings.ingest_max_bytes} bytes per request.
Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
<h2>Authentication</h2>
<p>Every request carries <code>Authorization: Bearer TOKEN</code>, the device's token from
<code>foodrisk devices add DEVICE_ID</code> (shown once; the server keeps only its hash). Every result's
<code>device_id</code> must be that device; a device registered with <code>--site SITE</code> may only send
results whose <code>site.id</code> is SITE (else 403).</p>
<h2>Example</h2>
<pre>curl -sS -X POST http://WORKER:{settings.web_port}/v1/results \\
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
  --data-binary @result.json</pre>
<pre>{html.escape(example)}</pre>
<p>202 answers <code>{{"accepted": ["lab07-2026-000123"], "rejected": [], "duplicates": []}}</code> once the
broker has the result. Re-posting the same <code>result_id</code> is safe: it is stored once.</p>
<h2>Answers</h2>
<table><tr><th>status</th><th>meaning</th></tr>{status_rows}</table>
<p>Rate limit: {settings.ingest_rate_per_s:g} results per second per device, bursts up to
{settings.ingest_burst}. On 429 and 503 wait for <code>Retry-After</code> seconds and post again.</p>
<h2>Fields of a result</h2>
<p>Times without an offset are Asia/Shanghai. Unknown fields are ignored.</p>
<table><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>{"".join(rows)}</table>
</body></html>
"""


# -- the views -------------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, error: str, *, detail: list[Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail or []
        self.headers = headers or {}


async def _read_body(request: Request, limit: int) -> bytes:
    req = cast(web.Request, request)  # faust's aiohttp driver hands aiohttp's request over
    length = req.content_length
    if length is not None and length > limit:
        raise _Refused(413, f"request body is {length} bytes, over the limit of {limit}: split the batch")
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await req.content.read(_READ_CHUNK)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"request body is over the limit of {limit} bytes: split the batch")
        parts.append(chunk)


def _bearer(request: Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def register_ingest_views(rt: Runtime) -> None:
    """Add /v1/results, /openapi.json and /docs to the worker's web server."""
    app, settings = rt.app, rt.settings
    registry = TokenRegistry(settings.ingest_tokens_path, kind=DEVICES)
    limiter = RateLimiter(settings.ingest_rate_per_s, settings.ingest_burst)
    requests_total = rt.metrics.ingest_requests  # foodrisk_ingest_requests_total{status} (agents/metrics.py)
    results_total = rt.metrics.ingest_results  # foodrisk_ingest_results_total{outcome}
    openapi = openapi_document(settings)
    page = docs_page(settings)

    def authenticate(request: Request) -> TokenEntry:
        token = _bearer(request)
        if token is None:
            raise _Refused(401, "missing bearer token: send `Authorization: Bearer TOKEN` "
                           "(a device token from `foodrisk devices add DEVICE_ID`)")
        entry = registry.entry_for(token)
        if entry is None:
            why = "unknown or revoked token"
            if token.startswith("fra_"):
                why = "an analyst token is not accepted here (it is for the query port)"
            if registry.error:
                why += f" (the token registry could not be read: {registry.error})"
            raise _Refused(401, why + ": ask the operator for a new one (`foodrisk devices add DEVICE_ID --replace`)")
        return entry

    async def publish(device: str, values: list[bytes]) -> None:
        key = device.encode()
        pending = [await rt.results_topic.send(key=key, value=v, force=True) for v in values]
        await asyncio.gather(*pending)

    async def handle(request: Request) -> tuple[int, Any, dict[str, str]]:
        entry = authenticate(request)
        device = entry.name
        body = await _read_body(request, settings.ingest_max_bytes)
        doc: Any = None
        bad_json: str | None = None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            try:  # orjson refuses NaN, Infinity and integers past 64 bits: let them reach their field's check
                doc = json.loads(body)
            except (ValueError, RecursionError):
                bad_json = f"body is not JSON: {exc}"
        if isinstance(doc, list) and len(doc) > settings.ingest_max_items:
            raise _Refused(413, f"{len(doc)} results in one request, over the limit of "
                           f"{settings.ingest_max_items}: split the batch")
        cost = max(1, len(doc)) if isinstance(doc, list) else 1
        wait = limiter.take(device, cost, time.monotonic())
        if wait > 0:
            secs = max(1, math.ceil(wait))
            raise _Refused(429, f"device {device} is over its rate limit of {settings.ingest_rate_per_s:g} results/s "
                           f"(bursts up to {settings.ingest_burst}): retry after {secs} s",
                           headers={"Retry-After": str(secs)})
        if bad_json is not None:
            raise _Refused(400, bad_json)
        if isinstance(doc, dict):
            items: list[Any] = [doc]
        elif isinstance(doc, list):
            items = doc
            if not items:
                return 422, IngestResponse(accepted=[], rejected=[RejectedItem(
                    index=0, errors=[ItemError(field="$", reason="empty batch: send at least one result")])]), {}
        else:
            raise _Refused(400, f"expected a result (JSON object) or a batch (JSON array), got {_json_type(doc)}")

        checked = check_items(items, device_id=device, reference=rt.reference, now=datetime.now(UTC),
                              site_id=entry.site)
        if checked.foreign:
            raise _Refused(
                403, f"this token belongs to device {device}; it may only send that device's results",
                detail=[{"index": i, "device_id": d} for i, d in checked.foreign[:100]],
            )
        if checked.off_site:
            raise _Refused(
                403, f"device {device} is bound to site {entry.site}; every result it sends must have "
                f"site.id {entry.site!r} (`foodrisk devices add {device} --replace --site SITE` rebinds it)",
                detail=[{"index": i, "site_id": sid} for i, sid in checked.off_site[:100]],
            )
        results_total.labels("rejected").inc(len(checked.rejected))
        results_total.labels("duplicate").inc(len(checked.duplicates))
        ids = [rid for rid, _ in checked.accepted]
        if not ids:
            return 422, IngestResponse(accepted=[], rejected=checked.rejected, duplicates=checked.duplicates), {}
        if isinstance(doc, dict):
            values = [checked.accepted[0][1]]
        else:
            values = chunk_values([e for _, e in checked.accepted], max_items=settings.max_batch_items)
        try:
            await asyncio.wait_for(publish(device, values), timeout=ACK_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - any failure to get the ack is the broker's, not the client's
            log.warning("ingest: %d results of %s not acknowledged by the broker: %s: %s",
                        len(ids), device, type(exc).__name__, exc)
            raise _Refused(503, "the broker did not acknowledge the results in time; post the same request "
                           "again (result ids make a re-post safe)", headers={"Retry-After": "5"}) from None
        results_total.labels("accepted").inc(len(ids))
        return 202, IngestResponse(accepted=ids, rejected=checked.rejected, duplicates=checked.duplicates), {}

    class ResultsView(View):
        async def post(self, request: Request) -> Response:
            try:
                status, body, headers = await handle(request)
                payload = body.model_dump(mode="json")
            except _Refused as r:
                status, headers = r.status, r.headers
                payload = ErrorResponse(error=r.error, detail=r.detail).model_dump(mode="json")
                if status == 401:
                    headers = {**headers, "WWW-Authenticate": 'Bearer realm="foodrisk"'}
            requests_total.labels(str(status)).inc()
            return self.bytes(orjson.dumps(payload), content_type="application/json", status=status, headers=headers)

    class OpenApiView(View):
        async def get(self, request: Request) -> Response:
            return self.json(openapi)

    class DocsView(View):
        async def get(self, request: Request) -> Response:
            return self.html(page)

    app.page("/v1/results")(ResultsView)
    app.page("/openapi.json")(OpenApiView)
    app.page("/docs")(DocsView)
