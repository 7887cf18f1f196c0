"""Device health: silent devices and drifting devices (findings about devices, not food).

Quick-test devices only (a testing centre's instruments run different analytes and have no peers
doing the same work). Counts rely on the engine's de-duplication (a result id is counted once).

* ``device_silent``: the device's last result is >= ``silent_min_h`` old (watermark) while its
  site's peers sent m >= ``silent_min_peer_results`` results in later hours, and its usual share s
  of the site's traffic (the last ``silent_history_days`` local days and today, >= 20 results) makes
  zero of m unlikely: (1 - s)^m <= ``silent_alpha``. So "its usual hours" are the hours its site
  works. Resolved when it reports again.
* ``device_drift``: on one local day, the device's positives vs its peers' at the same site:
  P(X >= k | n, p0) <= ``drift_alpha`` with k >= ``drift_min_positives``, where p0 is the peers'
  rate shrunk towards the quick-test baseline (``drift_prior_n`` pseudo-results), once the peers
  have >= 20 results that day (no peers, no comparison). Updated as its
  positives grow, resolved when the day closes. A day first seen after it closed (late data, a
  replay, a worker that was down) is judged once: a drift fires and resolves in the same step.

State per site (compact, issue 21; day indexes are local days since the epoch, hour indexes epoch
seconds // 3600): ``{"w": [district, site_type], "b": first day index held, "h": [first hour index,
the site's quick results in that hour, in the next, ...], "j": [judged, positives of day b, of day
b + 1, ...], "d": {device_id: [last sampled_at, silent alert start (0: none), [results of day b,
b + 1, ...], [[day index, judged, positives, drift step emitted (-1: none), positive id...] per day
not yet judged]]}, "z": wake}``. The site's hours are kept only from the first hour a device that
could still be found silent needs (the hour after its last result), at most the history; a device's
day is judged at most once: a day with results but no open entry is one already judged.

A site is visited when its records arrive, or at its wake (``wake_of``): the hour a device becomes
a silence candidate (last result + ``silent_min_h``) when its peers' results since already make its
silence unlikely (otherwise the peers' next results visit the site), the close of a day with a drift
alert to resolve, and the day its oldest history day leaves the window (a device with no results
left and no open alert is deleted, the site with its last device). A day with no drift alert is
judged at the site's first visit after it closed (before issue 21 every site was visited every hour
of watermark): a result for it arriving by then still counts in its judgement, a later one does not.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from agents.early.common import (
    DAY,
    HOUR,
    JSON,
    LOCAL_OFFSET_S,
    EarlyParams,
    Step,
    binom_sf,
    due_by_scan,
    local_date,
)
from agents.early.lifecycle import KIND_DRIFT, KIND_SILENT, MAX_EVIDENCE, SUBJECT_DEVICE, Condition, fire, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk

MIN_HISTORY = 20  # results of a device before its share of the site's traffic is trusted
MIN_PEER_TESTS = 20  # peer results on the same day before a device is compared with them
# a device entry: [last, silent start, results per day from "b", open drift days]
LAST, SILENT, DAYS, OPEN = 0, 1, 2, 3
# an open drift day: [day index, judged, positives, step emitted, ids...]
O_DAY, O_N, O_K, O_FP = 0, 1, 2, 3


def day_index(ts: int | float) -> int:
    return (int(ts) + LOCAL_OFFSET_S) // DAY


def day_start(di: int) -> int:
    return di * DAY - LOCAL_OFFSET_S


def _first_day(watermark: int, params: EarlyParams) -> int:
    """The oldest local day still in the history at ``watermark``."""
    return day_index(watermark) - params.silent_history_days


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    out = Step()
    by_site: dict[str, list[Screened]] = {}
    for r in records:
        if r.quick:
            by_site.setdefault(r.site_id, []).append(r)
    if due is None:
        due = due_by_scan(state, watermark, params, wake_of)
    for site in due:
        if site not in by_site and not isinstance(state.get(site), dict):
            out.wake[site] = None
    visit = list(by_site)
    visit.extend(s for s in due if s not in by_site and isinstance(state.get(s), dict))
    for site in visit:
        cur = state.get(site)
        site_out = _Site(site, cur, watermark, params)
        returned = site_out.add(by_site.get(site, ()))
        site_out.silence(returned, out)
        site_out.drift(out)
        new = site_out.finish()
        if new is None:
            if cur is not None:
                out.updates[site] = None
            out.wake[site] = None
        else:
            out.updates[site] = new
            out.wake[site] = new["z"]
    return out


class _Site:
    """One site's state during a visit: a new dict whose device entries are shared with the stored
    value until one changes (``_dev`` copies it then)."""

    def __init__(self, site: str, cur: JSON, watermark: int, params: EarlyParams) -> None:
        self.site = site
        self.wm = watermark
        self.p = params
        if isinstance(cur, dict):
            self.w: list[str] = cur["w"]
            self.b = int(cur["b"])
            self.h: list[int] = cur["h"]
            self.j: list[int] = cur["j"]
            self.d: dict[str, list[Any]] = dict(cur["d"])
        else:
            self.w, self.b, self.h, self.j, self.d = ["", ""], day_index(watermark), [], [], {}
        self.owned: set[str] = set()
        self.h_owned = self.j_owned = False
        self.fresh_days: set[tuple[str, int]] = set()  # (device, day) first seen in this visit
        self.total: dict[str, int] = {}  # device -> its results in the history (``silence``)

    def _dev(self, dev: str) -> list[Any]:
        if dev in self.owned:
            return self.d[dev]
        e = self.d.get(dev)
        new = [0, 0, [], []] if e is None else [e[LAST], e[SILENT], list(e[DAYS]), [list(o) for o in e[OPEN]]]
        self.d[dev] = new
        self.owned.add(dev)
        return new

    def _rebase(self, first: int) -> None:
        """Move the first day held to ``first``: later drops the days before it, earlier adds empty
        days in front."""
        if first == self.b:
            return
        cut = first - self.b
        self.j = self.j[2 * cut:] if cut > 0 else [0] * (-2 * cut) + self.j
        self.j_owned = True
        for dev, e in list(self.d.items()):
            if e[DAYS]:
                e = self._dev(dev)
                e[DAYS] = e[DAYS][cut:] if cut > 0 else [0] * -cut + e[DAYS]
        self.b = first

    def add(self, records: Sequence[Screened]) -> dict[str, int]:
        """Count ``records``; the devices with an open silent alert that reported again (-> when)."""
        oldest = _first_day(self.wm, self.p)
        if self.b < oldest:
            self._rebase(oldest)
        returned: dict[str, int] = {}
        first_hour = (self.wm - self.p.silent_history_days * DAY) // HOUR
        closed_before = day_index(self.wm)  # days before this one are closed
        for r in records:
            w = self.w
            if w[0] != r.district or w[1] != r.site_type:
                self.w = [r.district, r.site_type]
            e = self.d[r.device_id] if r.device_id in self.owned else self._dev(r.device_id)
            t = int(r.sampled_at)
            if t > e[LAST]:
                if e[SILENT]:
                    returned[r.device_id] = max(returned.get(r.device_id, 0), t)
                e[LAST] = t
            hi = t // HOUR
            if hi >= first_hour:
                self._count_hour(hi)
            di = day_index(t)
            if di < oldest:
                continue  # before the history: its day is gone
            if di < self.b:
                self._rebase(di)
            i = di - self.b
            days: list[int] = e[DAYS]
            if i >= len(days) or not days[i]:
                self.fresh_days.add((r.device_id, di))
            if i >= len(days):
                days.extend([0] * (i + 1 - len(days)))
            days[i] += 1
            if not r.judged:
                continue
            if not self.j_owned:
                self.j = list(self.j)
                self.j_owned = True
            if 2 * i + 1 >= len(self.j):
                self.j.extend([0] * (2 * i + 2 - len(self.j)))
            self.j[2 * i] += 1
            if r.non_compliant:
                self.j[2 * i + 1] += 1
            entry = None
            for o in e[OPEN]:
                if o[O_DAY] == di:
                    entry = o
                    break
            if entry is None:
                if di < closed_before and (r.device_id, di) not in self.fresh_days:
                    continue  # a day already judged and closed: counted, never judged again
                entry = [di, 0, 0, -1]
                e[OPEN].append(entry)
            entry[O_N] += 1
            if r.non_compliant:
                entry[O_K] += 1
                if len(entry) - 4 < MAX_EVIDENCE:
                    entry.append(r.result_id)
        return returned

    def _count_hour(self, hi: int) -> None:
        if not self.h_owned:
            self.h = list(self.h)
            self.h_owned = True
        h = self.h
        if not h:
            h.extend([hi, 0])
        elif hi < h[0]:
            h[1:1] = [0] * (h[0] - hi)
            h[0] = hi
        elif hi - h[0] + 1 >= len(h):
            h.extend([0] * (hi - h[0] + 2 - len(h)))
        h[hi - h[0] + 1] += 1

    def _peers_after(self, after: int) -> int:
        """The site's results in hours >= ``after`` (hour index)."""
        h = self.h
        if not h:
            return 0
        return sum(h[max(1, after - h[0] + 1):])

    def silence(self, returned: dict[str, int], out: Step) -> None:
        total = self.total = {dev: sum(e[DAYS]) for dev, e in self.d.items()}
        site_total = sum(total.values())
        for dev, e in list(self.d.items()):
            if e[SILENT] and dev in returned:
                out.alerts.append(resolve(self._silent_condition(dev, int(e[SILENT]), 0, 0.0), returned[dev]))
                self._dev(dev)[SILENT] = 0
                continue
            if e[SILENT] or total[dev] < MIN_HISTORY or self.wm - e[LAST] < self.p.silent_min_h * HOUR:
                continue
            m = self._peers_after(int(e[LAST]) // HOUR + 1)
            share = total[dev] / site_total if site_total else 0.0
            if self._silent(m, share):
                cond = self._silent_condition(dev, int(e[LAST]), m, share)
                _, alert = fire(None, cond)
                if alert is not None:
                    out.alerts.append(alert)
                self._dev(dev)[SILENT] = int(e[LAST])

    def _silent(self, m: int, share: float) -> bool:
        return m >= self.p.silent_min_peer_results and (1.0 - share) ** m <= self.p.silent_alpha

    def _silent_condition(self, dev: str, last: int, m: int, share: float) -> Condition:
        district, site_type = self.w
        site = self.site
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
            details={"peer_results": m, "usual_share": round(share, 4), "silent_min_h": self.p.silent_min_h},
        )

    def drift(self, out: Step) -> None:
        p = self.p
        for dev, e0 in list(self.d.items()):
            if not e0[OPEN]:
                continue
            keep: list[list[Any]] = []
            changed = False
            for o in e0[OPEN]:
                di = int(o[O_DAY])
                closed = self.wm >= day_start(di + 1)
                i = di - self.b
                n_all, k_all = (self.j[2 * i], self.j[2 * i + 1]) if i >= 0 and 2 * i + 1 < len(self.j) else (0, 0)
                n, k, emitted = int(o[O_N]), int(o[O_K]), int(o[O_FP])
                n_p, k_p = n_all - n, k_all - k  # the peers: everyone else at the site that day
                if emitted < 0 and (k < p.drift_min_positives or n_p < MIN_PEER_TESTS):
                    if closed:
                        changed = True  # judged: nothing to say
                    else:
                        keep.append(o)
                    continue
                p0 = (k_p + p.baseline_quick * p.drift_prior_n) / (n_p + p.drift_prior_n)
                pv = binom_sf(k, n, p0)
                cond = self._drift_condition(dev, di, n, k, n_p, k_p, p0, pv, o[4:])
                if pv <= p.drift_alpha or emitted >= 0:
                    if emitted != k:
                        out.alerts.append(cond.alert())
                    emitted = k
                if closed:
                    if emitted >= 0:
                        out.alerts.append(resolve(cond, day_start(di + 1)))
                    changed = True
                    continue
                if emitted != o[O_FP]:
                    o = [*o[:O_FP], emitted, *o[O_FP + 1:]]
                    changed = True
                keep.append(o)
            if changed:
                self._dev(dev)[OPEN] = keep

    def _drift_condition(self, dev: str, di: int, n: int, k: int, n_p: int, k_p: int, p0: float, p: float,
                         ids: list[str]) -> Condition:
        district, site_type = self.w
        site = self.site
        day = day_start(di)
        date = local_date(day)
        return Condition(
            kind=KIND_DRIFT,
            key=(dev, date),
            classification=Classification.attention,
            risk=Risk.not_serious,
            starts_at=day,
            summary_en=(f"Device drift: {dev} at site {site} ({district}) gave {k} positives of {n} on {date}, "
                        f"its peers {k_p} of {n_p} (p={p:.2g}). Check or recalibrate the device; its positives "
                        f"are suspect."),
            summary_zh=(f"设备漂移：{dev}（{site}，{district}）{date} {n} 次检测中 {k} 次阳性，"
                        f"同站点其他设备 {n_p} 次中 {k_p} 次（p={p:.2g}）。请检查或校准设备，其阳性结果存疑。"),
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

    def finish(self) -> dict[str, Any] | None:
        """The value to store (None: nothing left), with its wake; drops what left the history."""
        p = self.p
        total = self.total
        for dev, e in list(self.d.items()):
            if not total[dev] and not e[SILENT] and not e[OPEN]:
                del self.d[dev]
        if not self.d:
            return None
        wakes: list[int] = []
        min_h_s = math.ceil(p.silent_min_h * HOUR)
        floor = (self.wm - HOUR) // HOUR  # the hours a device that reports from now on could need
        first_data: int | None = None
        site_total = sum(total.values())
        for dev, e in self.d.items():
            days = e[DAYS]
            if total[dev] and (first_data is None or first_data > 0):
                i0 = 0
                while not days[i0]:
                    i0 += 1
                if first_data is None or i0 < first_data:
                    first_data = i0
            if not e[SILENT] and total[dev] >= MIN_HISTORY:
                after = int(e[LAST]) // HOUR + 1
                floor = min(floor, after)
                candidate = int(e[LAST]) + min_h_s
                if candidate > self.wm and self._silent(self._peers_after(after), total[dev] / site_total):
                    # its peers already sent enough: looked at in the first step of the hour it
                    # becomes a candidate in, and in the next hour if that step came before it
                    # (checked once an hour of watermark, as sites always were); otherwise the
                    # peers' next results visit the site
                    hour = candidate // HOUR * HOUR
                    wakes.append(hour + HOUR if self.wm >= hour else hour)
            # a day with a drift alert to resolve closes (other days are dropped at the next visit)
            wakes.extend(day_start(int(o[O_DAY]) + 1) for o in e[OPEN] if int(o[O_FP]) >= 0)
        if first_data is not None:
            # the oldest day with data leaves the history when the watermark reaches this
            wakes.append(day_start(self.b + first_data + p.silent_history_days + 1))
        if first_data:  # leading empty days: dropped (a late result for one of them puts it back)
            self._rebase(self.b + first_data)
        self._trim_hours(max(floor, (self.wm - p.silent_history_days * DAY) // HOUR))
        return {"w": self.w, "b": self.b, "h": self.h, "j": self.j, "d": self.d,
                "z": min(wakes) if wakes else None}

    def _trim_hours(self, floor: int) -> None:
        h = self.h
        if not h:
            return
        if floor > h[0]:
            cut = floor - h[0]
            rest = h[1 + cut:]
            h = [floor, *rest] if rest else []
        while len(h) > 1 and not h[1]:  # leading empty hours
            h = [h[0] + 1, *h[2:]] if len(h) > 2 else []
        self.h = h


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """The watermark time a stored site must next be visited without records (None: never)."""
    if not isinstance(value, dict):
        return None
    z = value.get("z")
    return None if z is None else int(z)


def from_v1(key: str, old: JSON) -> JSON | None:
    """A site's state in the format before issue 21 (``{"w", "ev", "d": {device: {"last", "hrs":
    {hour: n}, "days": {day start: [n, k, [ids]]}, "s": alert record, "dr": {day: record}}}}``) in
    today's; its wake is its hour of watermark ``ev`` (visited at the next step, which prunes it)."""
    if not isinstance(old, dict) or not isinstance(old.get("d"), dict):
        return None
    if "z" in old:  # already in today's form (an upgrade cut short and run again)
        return old
    ev = int(old.get("ev") or 0)
    devices: dict[str, Any] = old["d"]
    all_days = [day_index(int(day)) for d in devices.values() for day in d.get("days", {})]
    all_days += [day_index(int(h)) for d in devices.values() for h in d.get("hrs", {})]
    b = min(all_days) if all_days else day_index(ev)
    hours: dict[int, int] = {}
    j: list[int] = []
    new_d: dict[str, list[Any]] = {}
    for dev, d in devices.items():
        per_day: list[int] = []
        for h, n in d.get("hrs", {}).items():
            hi = int(h) // HOUR
            hours[hi] = hours.get(hi, 0) + int(n)
            i = day_index(int(h)) - b
            per_day.extend([0] * (i + 1 - len(per_day)))
            per_day[i] += int(n)
        open_days: list[list[Any]] = []
        for day, c in d.get("days", {}).items():
            di = day_index(int(day))
            i = di - b
            j.extend([0] * (2 * i + 2 - len(j)))
            j[2 * i] += int(c[0])
            j[2 * i + 1] += int(c[1])
            rec = d.get("dr", {}).get(day)
            if isinstance(rec, dict) and rec.get("closed"):
                continue
            fp = str(rec.get("fp", "")) if isinstance(rec, dict) else ""
            open_days.append([di, int(c[0]), int(c[1]), int(fp) if fp.isdigit() else -1,
                              *[str(x) for x in c[2]][:MAX_EVIDENCE]])
        s = d.get("s")
        silent = int(s["start"]) if isinstance(s, dict) else 0
        new_d[dev] = [int(d.get("last", 0)), silent, per_day, open_days]
    site_hours: list[int] = []
    if hours:
        h0 = min(hours)
        site_hours = [h0, *[hours.get(i, 0) for i in range(h0, max(hours) + 1)]]
    w = old.get("w") or ["", ""]
    return {"w": [str(w[0]), str(w[1])], "b": b, "h": site_hours, "j": j, "d": new_d, "z": ev}
