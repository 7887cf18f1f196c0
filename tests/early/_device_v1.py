"""Device health: silent devices and drifting devices (findings about devices, not food).

Quick-test devices only (a testing centre's instruments run different analytes and have no peers
doing the same work). State per site: ``{"w": [district, site_type], "d": {device_id: {"last": last
sampled_at, "hrs": {hour: results}, "days": {local day: [results, positives, [positive ids]]},
"s": silent alert record, "dr": {day: drift alert record}}}}``. Counts rely on the engine's
de-duplication (a result id is counted once).

* ``device_silent``: the device's last result is >= ``silent_min_h`` old (watermark) while its
  site's peers sent m >= ``silent_min_peer_results`` results in later hours, and its usual share s
  of the site's traffic (last ``silent_history_days``, >= 20 results) makes zero of m unlikely:
  (1 - s)^m <= ``silent_alpha``. So "its usual hours" are the hours its site works. Resolved when
  it reports again.
* ``device_drift``: on one local day, the device's positives vs its peers' at the same site:
  P(X >= k | n, p0) <= ``drift_alpha`` with k >= ``drift_min_positives``, where p0 is the peers'
  rate shrunk towards the quick-test baseline (``drift_prior_n`` pseudo-results), once the peers
  have >= 20 results that day (no peers, no comparison). Updated as its
  positives grow, resolved when the day closes. A day first seen after it closed (late data, a
  replay, a worker that was down) is judged once: a drift fires and resolves in the same step.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from agents.early.common import DAY, HOUR, JSON, EarlyParams, Step, binom_sf, hour_start, local_date, local_day
from agents.early.lifecycle import KIND_DRIFT, KIND_SILENT, SUBJECT_DEVICE, Condition, fire, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk

MIN_HISTORY = 20  # results of a device before its share of the site's traffic is trusted
MIN_PEER_TESTS = 20  # peer results on the same day before a device is compared with them
CLOSED = {"closed": 1}  # drift record of a day already judged and closed: never looked at again


def _copy(v: JSON) -> dict[str, Any]:
    """A copy of a site's state whose device dicts are new but share their containers with ``v``:
    whatever is changed in place goes through ``_own`` (records) or is replaced (``_drift``,
    ``_prune``), so the stored value is never changed under the table."""
    if not isinstance(v, dict):
        return {"w": ["", ""], "d": {}, "ev": 0}
    return {"w": list(v["w"]), "ev": v["ev"], "d": {dev: dict(d) for dev, d in v["d"].items()}}


def _own(d: dict[str, Any]) -> None:
    """Give a device copied by ``_copy`` its own hour and day counters before they change."""
    d["hrs"] = dict(d["hrs"])
    d["days"] = {day: [c[0], c[1], list(c[2])] for day, c in d["days"].items()}


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    out = Step()
    by_site: dict[str, list[Screened]] = {}
    for r in records:
        if r.quick:
            by_site.setdefault(r.site_id, []).append(r)
    hour = hour_start(watermark)
    for site in set(by_site) | set(state):
        cur = state.get(site)
        if site not in by_site and isinstance(cur, dict) and cur["ev"] >= hour:
            continue  # untouched and already looked at in this hour of watermark
        st = _copy(cur)
        st["ev"] = hour
        returned: dict[str, int] = {}
        owned: set[str] = set()
        for r in by_site.get(site, ()):
            st["w"] = [r.district, r.site_type]
            d = st["d"].setdefault(r.device_id, {"last": 0, "hrs": {}, "days": {}, "s": None, "dr": {}})
            if r.device_id not in owned:
                _own(d)
                owned.add(r.device_id)
            if r.sampled_at > d["last"]:
                if d["s"]:
                    returned[r.device_id] = max(returned.get(r.device_id, 0), r.sampled_at)
                d["last"] = r.sampled_at
            h = str(hour_start(r.sampled_at))
            d["hrs"][h] = d["hrs"].get(h, 0) + 1
            if r.judged:
                c = d["days"].setdefault(str(local_day(r.sampled_at)), [0, 0, []])
                c[0] += 1
                if r.non_compliant:
                    c[1] += 1
                    c[2].append(r.result_id)
        _silence(site, st, returned, watermark, params, out)
        _drift(site, st, watermark, params, out)
        if not isinstance(cur, dict) or cur["ev"] < hour:
            _prune(st, watermark, params)  # once per hour of watermark
        if not st["d"]:
            if cur is not None:
                out.updates[site] = None
        else:  # visited means changed: new records, or a new hour of watermark ("ev")
            out.updates[site] = st
    return out


def _silence(site: str, st: dict[str, Any], returned: dict[str, int], watermark: int, params: EarlyParams,
             out: Step) -> None:
    devices = st["d"]
    total = {dev: sum(d["hrs"].values()) for dev, d in devices.items()}
    site_total = sum(total.values())
    for dev, d in devices.items():
        if d["s"] and dev in returned:
            out.alerts.append(resolve(_silent_condition(site, st, dev, int(d["s"]["start"]), 0, 0.0, params),
                                      returned[dev]))
            d["s"] = None
            continue
        if d["s"] or total[dev] < MIN_HISTORY or watermark - d["last"] < params.silent_min_h * HOUR:
            continue
        after = hour_start(d["last"]) + HOUR
        m = sum(n for other, o in devices.items() if other != dev for h, n in o["hrs"].items() if int(h) >= after)
        share = total[dev] / site_total if site_total else 0.0
        if m >= params.silent_min_peer_results and (1.0 - share) ** m <= params.silent_alpha:
            cond = _silent_condition(site, st, dev, int(d["last"]), m, share, params)
            d["s"], alert = fire(None, cond)
            if alert is not None:
                out.alerts.append(alert)


def _silent_condition(site: str, st: dict[str, Any], dev: str, last: int, m: int, share: float,
                      params: EarlyParams) -> Condition:
    district, site_type = st["w"]
    return Condition(
        kind=KIND_SILENT,
        key=(dev, str(last)),
        classification=Classification.attention,
        risk=Risk.not_serious,
        starts_at=last,
        summary_en=(f"Device {dev} at site {site} ({district}) is silent since its last result while its peers "
                    f"sent {m} results (it usually does {share:.0%} of the site's tests). Check the device."),
        summary_zh=(f"设备 {dev}（{site}，{district}）自上次结果后无数据，而同站点其他设备已上报 {m} 条"
                    f"（该设备通常占 {share:.0%}）。请检查设备。"),
        material="silent",
        subject=SUBJECT_DEVICE,
        district=district or None,
        site_id=site,
        site_type=site_type or None,
        device_id=dev,
        details={"peer_results": m, "usual_share": round(share, 4), "silent_min_h": params.silent_min_h},
    )


def _drift(site: str, st: dict[str, Any], watermark: int, params: EarlyParams, out: Step) -> None:
    devices = st["d"]
    days = {day for d in devices.values() for day in d["days"]}
    for day in days:
        closed = watermark >= int(day) + DAY
        counts = [d["days"][day] for d in devices.values() if day in d["days"]]
        n_all = sum(c[0] for c in counts)
        k_all = sum(c[1] for c in counts)
        for dev, d in devices.items():
            mine = d["days"].get(day)
            rec = d["dr"].get(day)
            if mine is None or rec == CLOSED:
                continue
            n_p, k_p = n_all - mine[0], k_all - mine[1]  # the peers: everyone else at the site that day
            p0 = (k_p + params.baseline_quick * params.drift_prior_n) / (n_p + params.drift_prior_n)
            n, k = mine[0], mine[1]
            if rec is None and (k < params.drift_min_positives or n_p < MIN_PEER_TESTS):
                if closed:
                    d["dr"] = {**d["dr"], day: CLOSED}
                continue
            p = binom_sf(k, n, p0)
            cond = _drift_condition(site, st, dev, int(day), n, k, n_p, k_p, p0, p, mine[2], params)
            if p <= params.drift_alpha or rec is not None:
                rec, alert = fire(rec, cond)
                if alert is not None:
                    out.alerts.append(alert)
            if closed:
                if rec is not None:
                    out.alerts.append(resolve(cond, int(day) + DAY))
                rec = CLOSED
            if rec is not None:
                d["dr"] = {**d["dr"], day: rec}  # a new dict: the stored one is shared (``_copy``)


def _drift_condition(site: str, st: dict[str, Any], dev: str, day: int, n: int, k: int, n_p: int, k_p: int,
                     p0: float, p: float, ids: list[str], params: EarlyParams) -> Condition:
    district, site_type = st["w"]
    date = local_date(day)
    return Condition(
        kind=KIND_DRIFT,
        key=(dev, date),
        classification=Classification.attention,
        risk=Risk.not_serious,
        starts_at=day,
        summary_en=(f"Device drift: {dev} at site {site} ({district}) gave {k} positives of {n} on {date}, its peers "
                    f"{k_p} of {n_p} (p={p:.2g}). Check or recalibrate the device; its positives are suspect."),
        summary_zh=(f"设备漂移：{dev}（{site}，{district}）{date} {n} 次检测中 {k} 次阳性，同站点其他设备 {n_p} 次中 "
                    f"{k_p} 次（p={p:.2g}）。请检查或校准设备，其阳性结果存疑。"),
        material=str(k),
        evidence=tuple(ids),
        subject=SUBJECT_DEVICE,
        district=district or None,
        site_id=site,
        site_type=site_type or None,
        device_id=dev,
        details={"positives": k, "tests": n, "peer_positives": k_p, "peer_tests": n_p,
                 "expected_rate": round(p0, 6), "p_value": p, "day": date},
    )


def _prune(st: dict[str, Any], watermark: int, params: EarlyParams) -> None:
    keep_from = watermark - params.silent_history_days * DAY
    for dev in list(st["d"]):
        d = st["d"][dev]
        d["hrs"] = {h: n for h, n in d["hrs"].items() if int(h) >= keep_from}
        d["days"] = {day: c for day, c in d["days"].items() if int(day) + DAY >= keep_from}
        d["dr"] = {day: r for day, r in d["dr"].items() if r is not None and day in d["days"]}
        if not d["hrs"] and not d["s"]:
            del st["d"][dev]


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """Contract shim (issue 21): every stored key is due at every step, as before the schedule."""
    return 0
