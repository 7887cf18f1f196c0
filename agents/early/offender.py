"""Repeat offender and the red list (FDA import-alert style).

A vendor with >= ``offender_n`` non-compliant SAMPLES (a quick positive and its lab confirmation
are one sample, not two findings) sampled within ``offender_days`` goes on the red list and raises a
``repeat_offender`` alert; it comes off after ``offender_clean_k`` consecutive clean samples, and
the alert is resolved then. Each further non-compliant sample while listed updates the alert.

State per vendor: ``{"bad": {sample_id: [sampled_at, result_id, verdict, site_id]}, "clean":
[sample ids since the last bad one], "listed": listed_at | None, "a": alert record}``. Sample-id
sets make it idempotent to a result seen twice. ``Step.redlist`` holds the red-list rows to write.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.early.common import DAY, JSON, EarlyParams, Step, iso
from agents.early.lifecycle import KIND_OFFENDER, Condition, fire, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk


@dataclass(frozen=True)
class RedListEntry:
    vendor_id: str
    listed: bool
    listed_at: int  # event time the vendor went on the list
    changed_at: int  # event time of this change (listing, new finding, delisting)
    findings: int  # non-compliant samples in the look-back
    clean_run: int  # consecutive clean samples since the last finding
    site_id: str
    district: str
    alert_id: str
    evidence: tuple[str, ...]


@dataclass
class OffenderStep(Step):
    redlist: list[RedListEntry] = field(default_factory=list)


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> OffenderStep:
    out = OffenderStep()
    by_vendor: dict[str, list[Screened]] = {}
    for r in records:
        if r.vendor_id and r.judged:
            by_vendor.setdefault(r.vendor_id, []).append(r)
    horizon = params.offender_days * DAY
    for vendor, rs in by_vendor.items():
        cur = state.get(vendor)
        st: dict[str, Any] = (
            {"bad": {s: list(v) for s, v in cur["bad"].items()}, "clean": list(cur["clean"]),
             "listed": cur["listed"], "a": cur["a"], "where": list(cur["where"])}
            if isinstance(cur, dict) else {"bad": {}, "clean": [], "listed": None, "a": None, "where": ["", ""]}
        )
        before = repr(st)
        last_t = 0
        for r in sorted(rs, key=lambda x: (x.sampled_at, x.result_id)):
            last_t = max(last_t, r.sampled_at)
            if r.non_compliant:
                old = st["bad"].get(r.sample_id)
                if old is None or _worse(r.verdict, old[2]):
                    st["bad"][r.sample_id] = [r.sampled_at, r.result_id, r.verdict, r.site_id]
                st["clean"] = [s for s in st["clean"] if s != r.sample_id]
                if r.site_type != "testing_centre" or not st["where"][0]:
                    st["where"] = [r.site_id, r.district]
                if old is None:
                    st["clean"] = []
            elif r.sample_id not in st["bad"] and (st["listed"] or st["bad"]) and r.sample_id not in st["clean"]:
                st["clean"].append(r.sample_id)
        recent = {s: v for s, v in st["bad"].items() if v[0] >= watermark - horizon}
        if st["listed"] is None and len(recent) >= params.offender_n:
            st["listed"] = max(v[0] for v in recent.values())
        st["bad"] = recent if st["listed"] is None else st["bad"]
        if st["listed"] is not None:
            cond = _condition(vendor, st, params)
            if len(st["clean"]) >= params.offender_clean_k:
                if st["a"] is None:  # listed and cleared within one batch: announce it before resolving it
                    out.alerts.append(cond.alert())
                    out.redlist.append(_entry(vendor, st, cond, listed=True, at=int(st["listed"])))
                out.alerts.append(resolve(cond, last_t))
                out.redlist.append(_entry(vendor, st, cond, listed=False, at=last_t))
                st = {"bad": {}, "clean": [], "listed": None, "a": None, "where": st["where"]}
            else:
                st["a"], alert = fire(st["a"], cond)
                if alert is not None:
                    out.alerts.append(alert)
                if alert is not None or repr(st) != before:
                    out.redlist.append(_entry(vendor, st, cond, listed=True, at=last_t))
        if not st["bad"] and st["listed"] is None:
            if cur is not None:
                out.updates[vendor] = None
        elif repr(st) != before:
            out.updates[vendor] = st
    return out


_RANK = {"positive": 1, "exceeds": 2, "banned": 3}


def _worse(a: str, b: str) -> bool:
    return _RANK.get(a, 0) > _RANK.get(b, 0)


def _condition(vendor: str, st: dict[str, Any], params: EarlyParams) -> Condition:
    bad = sorted(st["bad"].values())
    banned = any(v[2] == "banned" for v in bad)
    listed = int(st["listed"] or (bad[-1][0] if bad else 0))
    site_id, district = st["where"]
    n = len(bad)
    en = (
        f"Repeat offender: vendor {vendor} had {n} non-compliant samples within {params.offender_days} days "
        f"(site {site_id}, {district}); on the red list until {params.offender_clean_k} consecutive clean samples."
    )
    zh = (
        f"重复违规：经营户 {vendor} 在 {params.offender_days} 天内有 {n} 批次不合格（{site_id}，{district}）；"
        f"列入重点监管名单，连续 {params.offender_clean_k} 批次合格后移出。"
    )
    return Condition(
        kind=KIND_OFFENDER,
        key=(vendor, iso(listed)),
        classification=Classification.alert if banned else Classification.follow_up,
        risk=Risk.serious if banned else Risk.potentially_serious,
        starts_at=listed,
        summary_en=en,
        summary_zh=zh,
        material=str(n),
        evidence=tuple(v[1] for v in bad),
        vendor_id=vendor,
        site_id=site_id or None,
        district=district or None,
        details={"findings": n, "clean_run": len(st["clean"]), "days": params.offender_days,
                 "clean_needed": params.offender_clean_k, "samples": ",".join(sorted(st["bad"]))},
    )


def _entry(vendor: str, st: dict[str, Any], cond: Condition, *, listed: bool, at: int) -> RedListEntry:
    return RedListEntry(
        vendor_id=vendor,
        listed=listed,
        listed_at=cond.starts_at,
        changed_at=at,
        findings=len(st["bad"]),
        clean_run=len(st["clean"]),
        site_id=st["where"][0],
        district=st["where"][1],
        alert_id=cond.alert_id,
        evidence=cond.evidence,
    )


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """Contract shim (issue 21): every stored key is due at every step, as before the schedule."""
    return 0
