"""The ingest API's contract: the response models, the OpenAPI 3.1 document built from them and
from the wire format's pydantic model (``GET /openapi.json``), and the human docs page (``GET /docs``).
The views that serve them are in ``pipeline/ingest/views.py``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from schemas.result import Result

if TYPE_CHECKING:
    from pipeline.settings import Settings


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
