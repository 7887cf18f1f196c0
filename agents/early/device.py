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

State per site (compact, issue 21). Days are counted relative to the site's base day ``b`` (a
local day index, days since the epoch; moved forward only once the history has passed it by
``REBASE_DAYS``), times in seconds relative to the start of day ``b``, hours relative to its first
hour; fields that would be empty are left out::

    {"b": base day,
     "d": {device_id: [last sampled_at, silent alert start (epoch s, 0: none),
                       [first day, results that day, ... (a negative number: that many days
                        without results), up to the last day with results],
                       [[day, judged, positives, drift step emitted (-1: none), positive id...]
                        per day not yet judged] (left out when none)]},
     "j": [day, judged, positives, ...] (the site's judged quick results per day holding any),
     "h": [first hour, the site's quick results in that hour, in the next, ...],
     "w": [district, site_type] (only while the site can raise an alert without records: a device
          that could fall silent, an open silent or drift alert; otherwise taken from the records),
     "z": wake}

The site's hours are kept only from the first hour a device that could still be found silent needs
(the hour after its last result), at most the history; a device's day is judged at most once: a day
with results but no open entry is one already judged.

A site is visited when its records arrive, or at its wake (``wake_of``): the hour a device becomes
a silence candidate (last result + ``silent_min_h``) when its peers' results since already make its
silence unlikely (otherwise the peers' next results visit the site), the close of a day with a drift
alert to resolve, and, while a device has the history to fall silent (>= 20 results), the day its
oldest history day leaves the window (its share changes). Otherwise days that left the history are
dropped at the next visit, and the site is visited without records only once its newest day has left
(a device with no results left and no open alert is deleted, the site with its last device). At a
site stored without ``w`` (nothing to watch) a visit looks only at the devices it changes, apart from
dropping what left the history; the others' newest day is read back from the wake. So a touch costs
the site's few devices, not its days. A day with no drift alert is judged at the site's
first visit after it closed (before issue 21 every site was visited every hour of watermark): a
result for it arriving by then still counts in its judgement, a later one does not.
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
    own,
)
from agents.early.lifecycle import KIND_DRIFT, KIND_SILENT, MAX_EVIDENCE, SUBJECT_DEVICE, Condition, fire, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk

MIN_HISTORY = 20  # results of a device before its share of the site's traffic is trusted
MIN_PEER_TESTS = 20  # peer results on the same day before a device is compared with them
REBASE_DAYS = 32  # the base day moves once the history starts this many days after it
# a device entry: [last, silent start, [day, results, ...], open drift days (left out when none)]
LAST, SILENT, DAYS, OPEN = 0, 1, 2, 3
# an open drift day: [day, judged, positives, step emitted, ids...]
O_DAY, O_N, O_K, O_FP = 0, 1, 2, 3
_NEVER = -(1 << 40)  # the last result of a device created by this visit, before its first record


def day_index(ts: int | float) -> int:
    return (int(ts) + LOCAL_OFFSET_S) // DAY


def day_start(di: int) -> int:
    return di * DAY - LOCAL_OFFSET_S


def open_days(entry: Sequence[Any]) -> list[list[Any]]:
    """A device entry's open drift days (none when the entry leaves them out)."""
    return entry[OPEN] if len(entry) > OPEN else []


def _bump_day(days: list[int], i: int) -> bool:
    """One more result on day ``i`` in ``[first day, count or -(empty days), ...]``; True when the
    day is new."""
    if not days:
        days.extend((i, 1))
        return True
    d = days[0]
    if i < d:
        days[0:1] = [i, 1, i + 1 - d] if d > i + 1 else [i, 1]
        return True
    pos, n = 1, len(days)
    while pos < n:
        x = days[pos]
        if x > 0:
            if d == i:
                days[pos] = x + 1
                return False
            d += 1
        elif i < d - x:  # inside this run of empty days: split it
            before, after = i - d, d - x - 1 - i
            days[pos:pos + 1] = [*([-before] if before else []), 1, *([-after] if after else [])]
            return True
        else:
            d -= x
        pos += 1
    days.extend((d - i, 1) if i > d else (1,))
    return True


def _drop_days_before(days: list[int], oldest: int) -> list[int]:
    """``days`` without the days before ``oldest``."""
    d, pos, n = days[0], 1, len(days)
    while pos < n and (d < oldest or days[pos] < 0):
        x = days[pos]
        d += 1 if x > 0 else -x
        pos += 1
    return [d, *days[pos:]] if pos < n else []


def _newest_day(days: list[int]) -> int:
    return days[0] - 1 + sum(1 if x > 0 else -x for x in days[1:])


def _results(days: list[int]) -> int:
    return sum(x for x in days[1:] if x > 0)


def _bump_judged(j: list[int], i: int, positive: bool) -> None:
    """One more judged result on day ``i`` in ``[day, judged, positives, ...]``."""
    pos = len(j)
    while pos and j[pos - 3] > i:
        pos -= 3
    if not pos or j[pos - 3] != i:
        j[pos:pos] = [i, 0, 0]
        pos += 3
    j[pos - 2] += 1
    if positive:
        j[pos - 1] += 1


def _judged_on(j: list[int], i: int) -> tuple[int, int]:
    for pos in range(len(j) - 3, -1, -3):
        if j[pos] == i:
            return j[pos + 1], j[pos + 2]
        if j[pos] < i:
            break
    return 0, 0


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    out = Step()
    state = own(state)  # each value read is this step's own: a visit changes it in place
    by_site: dict[str, list[Screened]] = {}
    for r in records:
        if r.quick:
            by_site.setdefault(r.site_id, []).append(r)
    if due is None:
        due = due_by_scan(state, watermark, params, wake_of)
    visit: list[tuple[str, Any]] = [(site, state.get(site)) for site in by_site]
    for site in due:
        if site not in by_site:
            cur = state.get(site)
            if isinstance(cur, dict):
                visit.append((site, cur))
            else:
                out.wake[site] = None
    clock = _Clock(watermark, params)
    for site, cur in visit:
        site_out = _Site(site, cur, watermark, params, clock)
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
            out.wake[site] = wake_of(site, new, params)
    return out


class _Clock:
    """What every visit of a step derives from its watermark (computed once a step)."""

    def __init__(self, watermark: int, params: EarlyParams) -> None:
        self.today = day_index(watermark)  # local day index; the days before it are closed
        self.first_day = self.today - params.silent_history_days  # the oldest day of the history
        self.first_hour = (watermark - params.silent_history_days * DAY) // HOUR  # its hours (epoch)
        self.floor_hour = (watermark - HOUR) // HOUR  # the hours a device reporting from now on needs


class _Site:
    """One site's state during a visit, changed in place: the value read is the step's own
    (``common.own``). ``owned`` holds the devices the visit changed."""

    def __init__(self, site: str, cur: JSON, watermark: int, params: EarlyParams, clock: _Clock) -> None:
        self.site = site
        self.clock = clock
        self.wm = watermark
        self.p = params
        if isinstance(cur, dict):
            self.b = int(cur["b"])
            self.w: list[str] | None = cur.get("w")
            self.h: list[int] = cur.get("h", [])
            self.j: list[int] = cur.get("j", [])
            self.d: dict[str, list[Any]] = cur["d"]
            # no device could fall silent and no alert was open at the last write: only the
            # devices this visit changes need looking at (the others hold < 20 results, no alert)
            self.quiet = "w" not in cur
            z = cur.get("z")
            # such a site's wake is when its newest day leaves the history: that day, back
            self.newest = None if z is None or not self.quiet else (
                day_index(day_start(self.b) + int(z)) - self.b - params.silent_history_days - 1)
        else:
            self.quiet, self.newest = True, None
            self.b, self.w, self.h, self.j, self.d = clock.first_day, None, [], [], {}
        self.t0 = day_start(self.b)  # times in the value are relative to this
        self.hb = self.t0 // HOUR  # hours too
        self.owned: set[str] = set()
        self.fresh_days: set[tuple[str, int]] = set()  # (device, day) first seen in this visit
        self.total: dict[str, int] = {}  # device -> its results in the history (``silence``)

    def _dev(self, dev: str) -> list[Any]:
        """The entry of ``dev`` (a new one if it has none), marked changed, with its open days."""
        e = self.d.get(dev)
        if e is None:
            e = self.d[dev] = [_NEVER, 0, [], []]
        elif len(e) <= OPEN:
            e.append([])
        self.owned.add(dev)
        return e

    def _prune(self, oldest: int) -> None:
        """Drop the days before ``oldest`` (relative) that left the history since the last visit."""
        for dev, e in self.d.items():
            days = e[DAYS]
            if days and days[0] < oldest:
                e = self._dev(dev)
                e[DAYS] = _drop_days_before(days, oldest)
        if self.j and self.j[0] < oldest:
            cut = 0
            while cut < len(self.j) and self.j[cut] < oldest:
                cut += 3
            del self.j[:cut]

    def add(self, records: Sequence[Screened]) -> dict[str, int]:
        """Count ``records``; the devices with an open silent alert that reported again (-> when)."""
        oldest = self.clock.first_day - self.b
        self._prune(oldest)
        returned: dict[str, int] = {}
        first_hour = self.clock.first_hour
        today = self.clock.today - self.b  # days before this one are closed
        t0 = self.t0
        for r in records:
            w = self.w
            if w is None or w[0] != r.district or w[1] != r.site_type:
                self.w = [r.district, r.site_type]
            e = self._dev(r.device_id)
            t = int(r.sampled_at)
            if t - t0 > e[LAST]:
                if e[SILENT]:
                    returned[r.device_id] = max(returned.get(r.device_id, 0), t)
                e[LAST] = t - t0
            hi = t // HOUR
            if hi >= first_hour:
                self._count_hour(hi - self.hb)
            di = day_index(t) - self.b
            if di < oldest:
                continue  # before the history: its day is gone
            if _bump_day(e[DAYS], di):
                self.fresh_days.add((r.device_id, di))
            if not r.judged:
                continue
            _bump_judged(self.j, di, r.non_compliant)
            entry = None
            for o in e[OPEN]:
                if o[O_DAY] == di:
                    entry = o
                    break
            if entry is None:
                if di < today and (r.device_id, di) not in self.fresh_days:
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
        """The site's results in hours >= ``after`` (hour index, epoch)."""
        h = self.h
        if not h:
            return 0
        return sum(h[max(1, after - self.hb - h[0] + 1):])

    def silence(self, returned: dict[str, int], out: Step) -> None:
        if self.quiet:
            total = {dev: _results(self.d[dev][DAYS]) for dev in self.owned}
            if all(n < MIN_HISTORY for n in total.values()):
                self.total = total
                return  # nobody to find silent, no alert to resolve
            self.quiet = False
        total = self.total = {dev: _results(e[DAYS]) for dev, e in self.d.items()}
        site_total = sum(total.values())
        for dev, e in list(self.d.items()):
            if e[SILENT] and dev in returned:
                out.alerts.append(resolve(self._silent_condition(dev, int(e[SILENT]), 0, 0.0), returned[dev]))
                self._dev(dev)[SILENT] = 0
                continue
            if e[SILENT] or total[dev] < MIN_HISTORY:
                continue
            last = int(e[LAST]) + self.t0
            if self.wm - last < self.p.silent_min_h * HOUR:
                continue
            m = self._peers_after(last // HOUR + 1)
            share = total[dev] / site_total if site_total else 0.0
            if self._silent(m, share):
                cond = self._silent_condition(dev, last, m, share)
                _, alert = fire(None, cond)
                if alert is not None:
                    out.alerts.append(alert)
                self._dev(dev)[SILENT] = last

    def _silent(self, m: int, share: float) -> bool:
        return m >= self.p.silent_min_peer_results and (1.0 - share) ** m <= self.p.silent_alpha

    def _where(self) -> tuple[str, str]:
        return (self.w[0], self.w[1]) if self.w else ("", "")

    def _silent_condition(self, dev: str, last: int, m: int, share: float) -> Condition:
        district, site_type = self._where()
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
        min_k = p.drift_min_positives
        today = self.clock.today - self.b  # the days before it are closed
        for dev, e0 in list(self.d.items()):
            if len(e0) <= OPEN or not e0[OPEN]:
                continue
            opened = e0[OPEN]
            keep: list[list[Any]] = []
            changed = False
            for o in opened:
                if int(o[O_FP]) < 0 and int(o[O_K]) < min_k:  # too few positives to compare
                    if int(o[O_DAY]) < today:
                        changed = True  # closed: judged, nothing to say
                    else:
                        keep.append(o)
                    continue
                di = self.b + int(o[O_DAY])
                closed = self.wm >= day_start(di + 1)
                n, k, emitted = int(o[O_N]), int(o[O_K]), int(o[O_FP])
                if emitted < 0 and k < p.drift_min_positives:
                    n_all = k_all = 0  # too few positives to compare: the peers do not matter
                else:
                    n_all, k_all = _judged_on(self.j, int(o[O_DAY]))
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
        district, site_type = self._where()
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
        """The value to store (None: nothing left), with its wake."""
        if self.quiet:
            return self._finish_quiet()
        p = self.p
        total = self.total
        for dev, e in list(self.d.items()):
            if not total[dev] and not e[SILENT] and not open_days(e):
                del self.d[dev]
        if not self.d:
            return None
        t0 = self.t0
        wakes: list[int] = []
        min_h_s = math.ceil(p.silent_min_h * HOUR)
        floor = self.clock.floor_hour  # the hours a device that reports from now on could need
        oldest_held: int | None = None
        newest_held: int | None = None
        watch = False  # a device that could still fall silent (or an open alert): keep the place
        share_moves = False  # a device that could fall silent: its share changes as days leave
        site_total = sum(total.values())
        for dev, e in self.d.items():
            days = e[DAYS]
            if days:
                if oldest_held is None or days[0] < oldest_held:
                    oldest_held = days[0]
                newest = _newest_day(days)
                if newest_held is None or newest > newest_held:
                    newest_held = newest
            if e[SILENT]:
                watch = True
            elif total[dev] >= MIN_HISTORY:
                watch = share_moves = True
                last = int(e[LAST]) + t0
                after = last // HOUR + 1
                floor = min(floor, after)
                candidate = last + min_h_s
                if candidate > self.wm and self._silent(self._peers_after(after), total[dev] / site_total):
                    # its peers already sent enough: looked at in the first step of the hour it
                    # becomes a candidate in, and in the next hour if that step came before it
                    # (checked once an hour of watermark, as sites always were); otherwise the
                    # peers' next results visit the site
                    hour = candidate // HOUR * HOUR
                    wakes.append(hour + HOUR if self.wm >= hour else hour)
            opened = open_days(e)
            if opened:
                # a day with a drift alert to resolve closes (other days are judged at the next visit)
                for o in opened:
                    if int(o[O_FP]) >= 0:
                        watch = True
                        wakes.append(day_start(self.b + int(o[O_DAY]) + 1))
            elif dev in self.owned and len(e) > OPEN:
                del e[OPEN]
        if oldest_held is not None:
            if share_moves:
                # a share that can change: visited when the oldest day with data leaves the history
                wakes.append(day_start(self.b + oldest_held + p.silent_history_days + 1))
            else:  # nothing to decide until the newest day has left too: then dropped
                wakes.append(day_start(self.b + (newest_held or 0) + p.silent_history_days + 1))
        return self._value(wakes, floor, watch)

    def _finish_quiet(self) -> dict[str, Any] | None:
        """``finish`` of a site where only the devices this visit changed can have anything to say:
        the others' newest day is the stored one (``newest``)."""
        p = self.p
        wakes: list[int] = []
        watch = False
        oldest = self.clock.first_day - self.b
        newest = self.newest if self.newest is not None and self.newest >= oldest else None
        for dev in self.owned:
            e = self.d[dev]
            opened = e[OPEN]
            if not e[DAYS] and not opened:
                del self.d[dev]
                continue
            if e[DAYS]:
                n = _newest_day(e[DAYS])
                if newest is None or n > newest:
                    newest = n
            if opened:
                for o in opened:
                    if int(o[O_FP]) >= 0:
                        watch = True
                        wakes.append(day_start(self.b + int(o[O_DAY]) + 1))
            else:
                del e[OPEN]
        if not self.d:
            return None
        if newest is not None:
            wakes.append(day_start(self.b + newest + p.silent_history_days + 1))
        return self._value(wakes, self.clock.floor_hour, watch)

    def _value(self, wakes: list[int], floor: int, watch: bool) -> dict[str, Any]:
        self._trim_hours(max(floor, self.clock.first_hour) - self.hb)
        first = self.clock.first_day
        if first - self.b >= REBASE_DAYS:
            self._rebase(first)
        out: dict[str, Any] = {"b": self.b, "d": self.d}
        if self.j:
            out["j"] = self.j
        if self.h:
            out["h"] = self.h
        if watch:
            out["w"] = self.w or ["", ""]
        if wakes:
            out["z"] = min(wakes) - self.t0
        return out

    def _rebase(self, first: int) -> None:
        """Move the base day forward to ``first`` (everything held is on or after it)."""
        cut = first - self.b
        for dev in list(self.d):
            e = self._dev(dev)
            e[LAST] -= cut * DAY
            if e[DAYS]:
                e[DAYS][0] -= cut
            for o in open_days(e):
                o[O_DAY] -= cut
        j = list(self.j)
        j[0::3] = [i - cut for i in j[0::3]]
        self.j = j
        if self.h:
            self.h = [self.h[0] - cut * 24, *self.h[1:]]
        self.b = first
        self.t0 = day_start(first)
        self.hb = self.t0 // HOUR

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
    return None if z is None else day_start(int(value["b"])) + int(z)


def from_v1(key: str, old: JSON) -> JSON | None:
    """A site's state in the format before issue 21 (``{"w", "ev", "d": {device: {"last", "hrs":
    {hour: n}, "days": {day start: [n, k, [ids]]}, "s": alert record, "dr": {day: record}}}}``) in
    today's; its wake is its hour of watermark ``ev`` (visited at the next step, which prunes it)."""
    if not isinstance(old, dict) or not isinstance(old.get("d"), dict):
        return None
    if "b" in old:  # already in today's form (an upgrade cut short and run again)
        return old
    ev = int(old.get("ev") or 0)
    devices: dict[str, Any] = old["d"]
    all_days = [day_index(int(day)) for d in devices.values() for day in d.get("days", {})]
    all_days += [day_index(int(h)) for d in devices.values() for h in d.get("hrs", {})]
    b = min(all_days) if all_days else day_index(ev)
    t0 = day_start(b)
    hours: dict[int, int] = {}
    j: list[int] = []
    new_d: dict[str, list[Any]] = {}
    for dev, d in devices.items():
        per_day: list[int] = []
        for h, n in sorted(d.get("hrs", {}).items(), key=lambda x: int(x[0])):
            hi = int(h) // HOUR - t0 // HOUR
            hours[hi] = hours.get(hi, 0) + int(n)
            for _ in range(int(n)):
                _bump_day(per_day, day_index(int(h)) - b)
        open_list: list[list[Any]] = []
        for day, c in d.get("days", {}).items():
            i = day_index(int(day)) - b
            for x in range(int(c[0])):
                _bump_judged(j, i, x < int(c[1]))
            rec = d.get("dr", {}).get(day)
            if isinstance(rec, dict) and rec.get("closed"):
                continue
            fp = str(rec.get("fp", "")) if isinstance(rec, dict) else ""
            open_list.append([i, int(c[0]), int(c[1]), int(fp) if fp.isdigit() else -1,
                              *[str(x) for x in c[2]][:MAX_EVIDENCE]])
        s = d.get("s")
        silent = int(s["start"]) if isinstance(s, dict) else 0
        entry: list[Any] = [int(d.get("last", 0)) - t0, silent, per_day]
        if open_list:
            entry.append(sorted(open_list, key=lambda o: int(o[O_DAY])))
        new_d[dev] = entry
    out: dict[str, Any] = {"b": b, "d": new_d}
    if j:
        out["j"] = j
    if hours:
        h0 = min(hours)
        out["h"] = [h0, *[hours.get(i, 0) for i in range(h0, max(hours) + 1)]]
    w = old.get("w") or ["", ""]
    out["w"] = [str(w[0]), str(w[1])]
    out["z"] = ev - t0
    return out
