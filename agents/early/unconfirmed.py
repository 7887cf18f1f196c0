"""Unconfirmed positive ("A not followed by B within T", Flink-CEP style).

A quick-test non-compliant result (positive, or exceeds/banned from a quick method) with no lab
result whose ``confirms`` is its result_id by ``sampled_at + unconfirmed_h`` (closed by the
watermark) -> ``unconfirmed_positive`` follow-up alert. A confirmation that arrives later resolves it
(ends_at = the confirmation's tested_at). A positive still unconfirmed ``unconfirmed_keep_days``
after its sample is forgotten (its alert stays firing).

A result is (device_id, result_id): two devices' quick positives with one result_id are two
pending positives with two alerts. ``confirms`` is a bare result_id, so a confirmation settles the
quick positives of every device that used that id.

State (JSON arrays, no field names): ``p:<result_id>`` the pending positives with that id, one
``[device_id, sampled_at, flags, site_id, site_type, district, vendor_id, supplier_id, commodity,
analyte, method, sample_id]`` per device in device order (flags: 1 its alert fired, 2 kept from
before positives were keyed by device: its alert id is over the bare result_id, as it was);
``c:<result_id>`` the event time of a confirmation seen, kept ``unconfirmed_keep_days`` so that a
duplicate or late positive is not tracked. Wake times: a positive is due at ``sampled_at +
unconfirmed_h`` (its alert) and at ``sampled_at + unconfirmed_keep_days`` (forgotten); a
confirmation at its ``sampled_at + unconfirmed_keep_days`` (forgotten). No step scans the pending
positives.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from agents.early.common import DAY, HOUR, JSON, EarlyParams, Step, due_by_scan, iso
from agents.early.lifecycle import KIND_UNCONFIRMED, Condition, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk
from schemas.result import result_key

# the record fields an entry keeps after its device, time and flags (result_id is in the key)
_FIELDS: Final = ("site_id", "site_type", "district", "vendor_id", "supplier_id", "commodity", "analyte",
                  "method", "sample_id")
_DEV, _T, _FLAGS = 0, 1, 2
FIRED: Final = 1
LEGACY: Final = 2


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    v = value if not isinstance(value, dict) else from_v1(key, value)
    keep = params.unconfirmed_keep_days * DAY
    if isinstance(v, int):  # c: a confirmation, forgotten past keep
        return v + keep + 1
    if not isinstance(v, list) or not v:
        return None
    t_wait = int(params.unconfirmed_h * HOUR)
    return min((int(e[_T]) + keep + 1) if e[_FLAGS] & FIRED else int(e[_T]) + t_wait for e in v)


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    out = Step()
    t_wait = int(params.unconfirmed_h * HOUR)
    keep = params.unconfirmed_keep_days * DAY
    if due is None:
        due = due_by_scan(state, watermark, params, wake_of)
    view: dict[str, Any] = {}  # keys this step visits -> their value now (None: gone)

    def get(k: str) -> Any:
        if k in view:
            return view[k]
        v = state.get(k)
        return from_v1(k, v) if isinstance(v, dict) else v

    for r in sorted(records, key=lambda x: (x.quick, x.sampled_at)):  # confirmations first
        if r.confirms and not r.quick:
            ck, pk = f"c:{r.confirms}", f"p:{r.confirms}"
            if get(ck) is None:
                view[ck] = r.sampled_at
            pending = get(pk) or []
            for entry in pending:
                if entry[_FLAGS] & FIRED:
                    cond = _condition(r.confirms, entry, params, confirmed_by=r.result_id)
                    out.alerts.append(resolve(cond, r.tested_at))
            if pending or pk in state:
                view[pk] = None
        elif r.quick and r.non_compliant:
            pk = f"p:{r.result_id}"
            pending = get(pk) or []
            if all(e[_DEV] != r.device_id for e in pending) and get(f"c:{r.result_id}") is None:
                row = [r.device_id, r.sampled_at, 0, *(getattr(r, f) for f in _FIELDS)]
                view[pk] = sorted([*pending, row], key=lambda e: str(e[_DEV]))
    for k in due:
        if k not in view:
            view[k] = get(k)
    for k, v in view.items():
        if isinstance(v, int):  # a confirmation
            if watermark > v + keep:
                view[k] = v = None
        elif isinstance(v, list):
            kept: list[list[Any]] = []
            for entry in v:
                t = int(entry[_T])
                if watermark > t + keep:
                    continue
                if not entry[_FLAGS] & FIRED and watermark >= t + t_wait:
                    out.alerts.append(_condition(k[2:], entry, params).alert())
                    entry = [*entry[:_FLAGS], entry[_FLAGS] | FIRED, *entry[_FLAGS + 1:]]
                kept.append(entry)
            if kept != v:
                view[k] = v = kept or None
        if v is None:
            out.wake[k] = None
            if k in state:
                out.updates[k] = None
            continue
        out.wake[k] = wake_of(k, v, params)
        if v is not state.get(k):
            out.updates[k] = v
    return out


def _condition(result_id: str, e: list[Any], params: EarlyParams, confirmed_by: str | None = None) -> Condition:
    r = dict(zip(_FIELDS, e[_FLAGS + 1:], strict=True))
    device = str(e[_DEV])
    t = int(e[_T])
    en = (
        f"Unconfirmed quick-test positive: {r['analyte']} on {r['commodity']} ({r['method']}, result "
        f"{result_id}) has no lab confirmation {params.unconfirmed_h:g} h after sampling; "
        f"site {r['site_id']}, {r['district']}."
    )
    zh = (
        f"快检阳性未确证：{r['commodity']} {r['analyte']}（{r['method']}，结果 {result_id}）"
        f"抽样后 {params.unconfirmed_h:g} 小时仍无实验室确证结果；{r['site_id']}，{r['district']}。"
    )
    details: dict[str, str | int | float | None] = {
        "method": r["method"], "sample_id": r["sample_id"], "wait_h": params.unconfirmed_h,
        "due_at": iso(t + int(params.unconfirmed_h * HOUR)),
    }
    if confirmed_by:
        details["confirmed_by"] = confirmed_by
    # the result's identity (device, id); a positive pending from before that keeps its bare-id key
    key = result_id if e[_FLAGS] & LEGACY else result_key(device, result_id)
    return Condition(
        kind=KIND_UNCONFIRMED,
        key=(key,),
        classification=Classification.follow_up,
        risk=Risk.undecided,
        starts_at=t,
        summary_en=en,
        summary_zh=zh,
        material="due",
        evidence=(result_id,) + ((confirmed_by,) if confirmed_by else ()),
        district=r["district"],
        site_id=r["site_id"],
        site_type=r["site_type"],
        commodity=r["commodity"],
        analyte=r["analyte"],
        supplier_id=r["supplier_id"],
        vendor_id=r["vendor_id"],
        device_id=device,
        details=details,
    )


def is_pending(value: JSON) -> int:
    """How many quick positives a stored value (either form) holds pending."""
    v = value if not isinstance(value, dict) else from_v1("p:", value)
    return len(v) if isinstance(v, list) else 0


def from_v1(key: str, old: JSON) -> JSON:
    """A value in the form written before issue 21 in this module's form (None: drop it).
    ``c:``: ``{"t": sampled_at}`` -> the time. ``p:``: ``{"by": {device_id: {"t", "r": record
    fields, "a": alert record | None}}}``, or the form before positives were keyed by device, one
    ``{"t", "r", "a"}`` (kept with its bare-id alert key) -> the entries."""
    if not isinstance(old, dict):
        return old
    if key.startswith("c:") or ("t" in old and "r" not in old):
        return int(old["t"]) if "t" in old else None
    if "by" in old:
        by = old["by"] if isinstance(old["by"], dict) else {}
    elif "r" in old:
        by = {str(old["r"].get("device_id")): {**old, "legacy": 1}}
    else:
        return None
    rows = []
    for device, e in sorted(by.items()):
        flags = (FIRED if e.get("a") else 0) | (LEGACY if e.get("legacy") else 0)
        r = e.get("r") or {}
        rows.append([device, int(e["t"]), flags, *(r.get(f) for f in _FIELDS)])
    return rows or None
