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

from pipeline.ingest.openapi import ErrorResponse, IngestResponse, ItemError, RejectedItem, docs_page, openapi_document
from pipeline.ingest.tokens import DEVICES, TokenEntry, TokenRegistry, bearer_token
from schemas.reference import Reference
from schemas.result import MAX_MESSAGE_BYTES, InvalidResult, parse_result

if TYPE_CHECKING:
    from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

CHUNK_BYTES: Final = 512 * 1024  # a published chunk stays well under Kafka's default 1 MB message limit
ACK_TIMEOUT_S: Final = 30.0  # longest wait for the broker's acknowledgement before answering 503
_READ_CHUNK: Final = 64 * 1024


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
        token = bearer_token(request.headers)
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
