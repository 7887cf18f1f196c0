"""Unconfirmed positive ("A not followed by B within T", Flink-CEP style).

A quick-test non-compliant result (positive, or exceeds/banned from a quick method) with no lab
result whose ``confirms`` is its result_id by ``sampled_at + unconfirmed_h`` (closed by the
watermark) -> ``unconfirmed_positive`` follow-up alert. A confirmation that arrives later resolves it
(ends_at = the confirmation's tested_at). A positive still unconfirmed ``unconfirmed_keep_days``
after its sample is forgotten (its alert stays firing).

State: ``p:<result_id>`` pending positive ``{"t", "r": record fields, "a": alert record | None}``;
``c:<result_id>`` a confirmation seen (kept so that a duplicate or late positive is not tracked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.early.common import DAY, HOUR, JSON, EarlyParams, Step, iso
from agents.early.lifecycle import KIND_UNCONFIRMED, Condition, fire, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk

_FIELDS = ("result_id", "site_id", "site_type", "district", "vendor_id", "supplier_id", "commodity", "analyte",
           "method", "device_id", "sample_id")


def step(state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams) -> Step:
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
            pending = get(pk)
            if isinstance(pending, dict):
                if pending.get("a"):
                    out.alerts.append(resolve(_condition(pending, params, confirmed_by=r.result_id), r.tested_at))
                view[pk] = None
        elif r.quick and r.non_compliant:
            pk = f"p:{r.result_id}"
            if get(pk) is None and get(f"c:{r.result_id}") is None:
                view[pk] = {"t": r.sampled_at, "r": {f: getattr(r, f) for f in _FIELDS}, "a": None}
    for k in set(state) | set(view):
        v = get(k)
        if not isinstance(v, dict):
            continue
        t = int(v["t"])
        if k.startswith("c:"):
            if watermark > t + keep:
                view[k] = None
        elif watermark > t + keep:
            view[k] = None
        elif v.get("a") is None and watermark >= t + t_wait:
            rec, alert = fire(None, _condition(v, params))
            view[k] = {**v, "a": rec}
            if alert is not None:
                out.alerts.append(alert)
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
    return Condition(
        kind=KIND_UNCONFIRMED,
        key=(r["result_id"],),
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
