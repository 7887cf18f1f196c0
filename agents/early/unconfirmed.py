"""Unconfirmed positive ("A not followed by B within T", Flink-CEP style).

A quick-test non-compliant result (positive, or exceeds/banned from a quick method) with no lab
result whose ``confirms`` is its result_id by ``sampled_at + unconfirmed_h`` (closed by the
watermark) -> ``unconfirmed_positive`` follow-up alert. A confirmation that arrives later resolves it
(ends_at = the confirmation's tested_at). A positive still unconfirmed ``unconfirmed_keep_days``
after its sample is forgotten (its alert stays firing).

A result is (device_id, result_id): two devices' quick positives with one result_id are two
pending positives with two alerts. ``confirms`` is a bare result_id, so a confirmation settles the
quick positives of every device that used that id.

State: ``p:<result_id>`` the pending positives with that id, ``{"by": {device_id: {"t", "r": record
fields, "a": alert record | None}}}``; ``c:<result_id>`` a confirmation seen (kept so that a duplicate
or late positive is not tracked). A ``p:`` value written before positives were kept per device is
one pending positive ``{"t", "r", "a"}``: it is read as that device's entry and keeps its alert id
(over the bare result_id), so an alert it fired is still resolved under its own id.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from agents.early.common import DAY, HOUR, JSON, EarlyParams, Step, iso
from agents.early.lifecycle import KIND_UNCONFIRMED, Condition, fire, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk
from schemas.result import result_key

_FIELDS = ("result_id", "site_id", "site_type", "district", "vendor_id", "supplier_id", "commodity", "analyte",
           "method", "device_id", "sample_id")


def _entries(v: Any) -> dict[str, dict[str, Any]]:
    """The pending positives (device -> entry) of a ``p:`` value, in either stored form."""
    if not isinstance(v, dict):
        return {}
    if "by" in v:
        return dict(v["by"])
    return {str(v["r"]["device_id"]): {**v, "legacy": 1}}  # one positive, written before the device key


def _stored(entries: dict[str, dict[str, Any]]) -> JSON:
    return {"by": entries} if entries else None


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    out = Step()
    t_wait = int(params.unconfirmed_h * HOUR)
    keep = params.unconfirmed_keep_days * DAY
    view: dict[str, Any] = {}

    def get(k: str) -> Any:
        return view[k] if k in view else state.get(k)

    for r in sorted(records, key=lambda x: (x.quick, x.sampled_at)):  # confirmations first
        if r.confirms and not r.quick:
            ck, pk = f"c:{r.confirms}", f"p:{r.confirms}"
            if get(ck) is None:
                view[ck] = {"t": r.sampled_at}
            pending = _entries(get(pk))
            for _, entry in sorted(pending.items()):
                if entry.get("a"):
                    out.alerts.append(resolve(_condition(entry, params, confirmed_by=r.result_id), r.tested_at))
            if pending:
                view[pk] = None
        elif r.quick and r.non_compliant:
            pk = f"p:{r.result_id}"
            pending = _entries(get(pk))
            if r.device_id not in pending and get(f"c:{r.result_id}") is None:
                pending[r.device_id] = {"t": r.sampled_at, "r": {f: getattr(r, f) for f in _FIELDS}, "a": None}
                view[pk] = _stored(pending)
    for k in set(state) | set(view):
        v = get(k)
        if not isinstance(v, dict):
            continue
        if k.startswith("c:"):
            if watermark > int(v["t"]) + keep:
                view[k] = None
            continue
        pending = _entries(v)
        changed = False
        for device, entry in sorted(pending.items()):
            t = int(entry["t"])
            if watermark > t + keep:
                del pending[device]
                changed = True
            elif entry.get("a") is None and watermark >= t + t_wait:
                rec, alert = fire(None, _condition(entry, params))
                pending[device] = {**entry, "a": rec}
                changed = True
                if alert is not None:
                    out.alerts.append(alert)
        if changed:
            view[k] = _stored(pending)
    for k, v in view.items():
        if v is None and k not in state:
            continue
        out.updates[k] = v
    return out


def _condition(p: dict[str, Any], params: EarlyParams, confirmed_by: str | None = None) -> Condition:
    r = p["r"]
    t = int(p["t"])
    en = (
        f"Unconfirmed quick-test positive: {r['analyte']} on {r['commodity']} ({r['method']}, result "
        f"{r['result_id']}) has no lab confirmation {params.unconfirmed_h:g} h after sampling; "
        f"site {r['site_id']}, {r['district']}."
    )
    zh = (
        f"快检阳性未确证：{r['commodity']} {r['analyte']}（{r['method']}，结果 {r['result_id']}）"
        f"抽样后 {params.unconfirmed_h:g} 小时仍无实验室确证结果；{r['site_id']}，{r['district']}。"
    )
    details: dict[str, str | int | float | None] = {
        "method": r["method"], "sample_id": r["sample_id"], "wait_h": params.unconfirmed_h,
        "due_at": iso(t + int(params.unconfirmed_h * HOUR)),
    }
    if confirmed_by:
        details["confirmed_by"] = confirmed_by
    # the result's identity (device, id); a positive pending from before that keeps its bare-id key
    key = r["result_id"] if p.get("legacy") else result_key(r["device_id"], r["result_id"])
    return Condition(
        kind=KIND_UNCONFIRMED,
        key=(key,),
        classification=Classification.follow_up,
        risk=Risk.undecided,
        starts_at=t,
        summary_en=en,
        summary_zh=zh,
        material="due",
        evidence=(r["result_id"],) + ((confirmed_by,) if confirmed_by else ()),
        district=r["district"],
        site_id=r["site_id"],
        site_type=r["site_type"],
        commodity=r["commodity"],
        analyte=r["analyte"],
        supplier_id=r["supplier_id"],
        vendor_id=r["vendor_id"],
        device_id=r["device_id"],
        details=details,
    )


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """Contract shim (issue 21): every stored key is due at every step, as before the schedule."""
    return 0
