"""Supplier / origin cluster (RASFF-style recurrence across markets).

Non-compliant results for the same supplier and commodity (origin + commodity when the supplier is
missing) at >= ``cluster_min_sites`` different places within ``cluster_window_h`` -> ONE
traceability alert, id keyed by supplier, commodity and the episode's first finding. It grows
(update, same id) as more results and sites report; it is resolved when ``cluster_window_h`` passed
(by the watermark) after the episode's last finding.

A place is the site, except for results tested in a testing centre (the lab is not where the food
was sold): those count by the vendor they were sampled from.

State per ``supplier|commodity`` (or ``origin:CODE|commodity``): ``{"ev": [[sampled_at,
result_id, place, site_id, vendor_id, verdict, quick, device_id]], "ep": {"start", "last", "a"} | None,
"hv": hour of watermark it was last visited}``. A key without new findings is visited once per
hour of watermark (expiry and resolution; the resolution's time is exact, its emission up to an
hour of watermark late).

A finding is one result, (device_id, result_id): two devices' findings with one result_id are two.
An entry written before the device was kept (7 items) stands for its result_id from any device, so a
replay across that change is not taken twice.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from agents.early.common import HOUR, JSON, EarlyParams, Step, hour_start, iso
from agents.early.lifecycle import KIND_CLUSTER, Condition, fire, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk


def key_of(r: Screened) -> str | None:
    if r.supplier_id:
        return f"{r.supplier_id}|{r.commodity}"
    if r.origin:
        return f"origin:{r.origin}|{r.commodity}"
    return None


def _place(r: Screened) -> str:
    if r.site_type == "testing_centre" and r.vendor_id:
        return f"vendor:{r.vendor_id}"
    return r.site_id


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    out = Step()
    window = params.cluster_window_h * HOUR
    new: dict[str, list[Screened]] = {}
    for r in records:
        k = key_of(r) if r.non_compliant else None
        if k is not None:
            new.setdefault(k, []).append(r)
    hour = hour_start(watermark)
    # keys with new findings, and once per hour of watermark every other key (expiry, resolution)
    keys = set(new) | {k for k, v in state.items() if isinstance(v, dict) and v.get("hv", 0) < hour}
    for k in keys:
        cur = state.get(k)
        st: dict[str, Any] = (
            {"ev": [list(e) for e in cur["ev"]], "ep": dict(cur["ep"]) if cur["ep"] else None,
             "hv": cur.get("hv", 0)}
            if isinstance(cur, dict) else {"ev": [], "ep": None, "hv": 0}
        )
        before = repr(st)
        st["hv"] = hour
        seen = {(e[7] if len(e) > 7 else None, e[1]) for e in st["ev"]}
        for r in new.get(k, ()):
            if (r.device_id, r.result_id) not in seen and (None, r.result_id) not in seen:
                seen.add((r.device_id, r.result_id))
                st["ev"].append(
                    [r.sampled_at, r.result_id, _place(r), r.site_id, r.vendor_id, r.verdict, r.quick, r.device_id]
                )
        st["ev"].sort(key=_order)
        ep = st["ep"]
        if ep is None:
            start = _cluster_start(st["ev"], window, params.cluster_min_sites)
            if start is not None:
                ep = st["ep"] = {"start": start, "last": start, "a": None}
        if ep is not None:
            members = [e for e in st["ev"] if e[0] >= ep["start"]]
            ep["last"] = max(e[0] for e in members)
            cond = _condition(k, members, int(ep["start"]), params)
            if watermark > ep["last"] + window:
                out.alerts.append(resolve(cond, int(ep["last"]) + window))
                st = {"ev": [], "ep": None, "hv": hour}
            else:
                ep["a"], alert = fire(ep["a"], cond)
                if alert is not None:
                    out.alerts.append(alert)
        if st["ep"] is None:
            st["ev"] = [e for e in st["ev"] if e[0] >= watermark - window]
        if not st["ev"] and st["ep"] is None:
            if cur is not None:
                out.updates[k] = None
        elif repr(st) != before:
            out.updates[k] = st
    return out


def _order(e: list[Any]) -> tuple[Any, ...]:
    """Event time, result id, device (entries from before the device was kept: "")."""
    return (e[0], e[1], e[7] if len(e) > 7 else "")


def _cluster_start(events: list[list[Any]], window: int, min_sites: int) -> int | None:
    """Event time of the first finding that opens a window holding ``min_sites`` places."""
    for i, e in enumerate(events):
        places = {x[2] for x in events[i:] if x[0] <= e[0] + window}
        if len(places) >= min_sites:
            return int(e[0])
    return None


def _condition(key: str, members: list[list[Any]], start: int, params: EarlyParams) -> Condition:
    who, commodity = key.rsplit("|", 1)
    supplier = None if who.startswith("origin:") else who
    origin = who.removeprefix("origin:") if supplier is None else None
    places = sorted({e[2] for e in members})
    sites = sorted({e[3] for e in members})
    vendors = sorted({e[4] for e in members if e[4]})
    confirmed = any(not e[6] and e[5] in ("exceeds", "banned") for e in members)
    label = f"supplier {supplier}" if supplier else f"origin {origin}"
    en = (
        f"Supplier cluster: {commodity} from {label} non-compliant at {len(places)} places within "
        f"{params.cluster_window_h} h ({len(members)} results; sites {', '.join(sites)})"
        + ("; confirmed by a lab." if confirmed else "; quick tests only, not yet confirmed.")
        + " Trace the lot."
    )
    zh = (
        f"供货商聚集：{label} 的{commodity}在 {params.cluster_window_h} 小时内于 {len(places)} 处不合格"
        f"（{len(members)} 条结果；站点 {', '.join(sites)}）"
        + ("，已经实验室确证。" if confirmed else "，仅快检结果，尚待确证。")
        + "请追溯该批次。"
    )
    return Condition(
        kind=KIND_CLUSTER,
        key=(who, commodity, iso(start)),
        classification=Classification.alert if confirmed else Classification.follow_up,
        risk=Risk.serious if confirmed else Risk.undecided,
        starts_at=start,
        summary_en=en,
        summary_zh=zh,
        material=f"{len(places)}:{len(members)}:{confirmed}",
        evidence=tuple(e[1] for e in members),
        commodity=commodity,
        supplier_id=supplier,
        details={
            "origin": origin,
            "places": len(places),
            "sites": ",".join(sites),
            "vendors": ",".join(vendors),
            "results": len(members),
            "confirmed": int(confirmed),
            "window_h": params.cluster_window_h,
        },
    )


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """Contract shim (issue 21): every stored key is due at every step, as before the schedule."""
    return 0
