"""Supplier / origin cluster (RASFF-style recurrence across markets).

Non-compliant results for the same supplier and commodity (origin + commodity when the supplier is
missing) at >= ``cluster_min_sites`` different places within ``cluster_window_h`` -> ONE
traceability alert, id keyed by supplier, commodity and the episode's first finding. It grows
(update, same id) as more results and places report, re-emitted only when the count of places or of
results crosses a step of the update ladder or a lab confirms it (``lifecycle``); it is resolved
when ``cluster_window_h`` passed (by the watermark) after the episode's last finding.

A place is the site, except for results tested in a testing centre (the lab is not where the food
was sold): those count by the vendor they were sampled from.

State per ``supplier|commodity`` (or ``origin:CODE|commodity``), a JSON array, one of two forms:

* no episode yet: ``[0, pending]``, the findings within the window, ``[sampled_at, result_id,
  place, site_id, vendor_id, lab_confirmed 0|1, device_id]`` in event-time order (at most
  :data:`MAX_PENDING`: past it the oldest go first). Due when its oldest finding leaves the window.
* an episode: ``[1, start, last, places, results, confirmed 0|1, sites, vendors, evidence, fp]``:
  ``places`` every place (exact: it is the count, so an episode's value grows with its places, at
  most the sites the supplier delivers to), ``results`` the exact count of its findings,
  ``sites``/``vendors`` the first :data:`MAX_LISTED` of each (what the summary lists),
  ``evidence`` the :data:`MAX_KEPT` earliest findings ``[sampled_at, result_id, device_id]``
  (the alert shows those, ``details.evidence_total`` the count), ``fp`` the fingerprint last
  emitted. Due at ``last + window`` (resolution, exact by the watermark).

A finding is one result, (device_id, result_id): two devices' findings with one result_id are two.
A finding is taken once: by the ids kept (pending findings, the episode's evidence) and, past the
evidence cap, by the engine's de-duplication (``seen``, 8 days): a result of an episode older than
that, resent and not among the kept evidence, would count twice in ``results`` (never in places).
A finding kept without its device (from state written before the device was kept: device null)
stands for its result_id from any device.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from agents.early.common import HOUR, JSON, EarlyParams, Step, due_by_scan, iso
from agents.early.lifecycle import KIND_CLUSTER, MAX_EVIDENCE, Condition, ladder, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk

MAX_KEPT: Final = MAX_EVIDENCE  # evidence ids kept per episode (the alert carries at most these)
MAX_PENDING: Final = 2 * MAX_EVIDENCE  # findings kept per key before an episode opens
MAX_LISTED: Final = 50  # sites and vendors named in an episode's summary and details

_PENDING: Final = 0
_EPISODE: Final = 1
# episode fields
_START, _LAST, _PLACES, _RESULTS, _CONF, _SITES, _VENDORS, _EV, _FP = range(1, 10)


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


def _confirmed(r: Screened) -> int:
    return int(not r.quick and r.verdict in ("exceeds", "banned"))


def _finding(r: Screened) -> list[Any]:
    return [r.sampled_at, r.result_id, _place(r), r.site_id, r.vendor_id, _confirmed(r), r.device_id]


def _order(e: list[Any]) -> tuple[Any, ...]:
    """Event time, result id, device (a finding kept without its device: "")."""
    return (e[0], e[1], e[-1] or "")


def _ev_order(e: list[Any]) -> tuple[Any, ...]:
    return (e[0], e[1], e[2] or "")


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """When the key must be visited without new findings: its oldest pending finding leaves the
    window, or its episode resolves (the first watermark past ``last + window``)."""
    window = params.cluster_window_h * HOUR
    v = value if isinstance(value, list) else from_v1(key, value)
    if not v:
        return None
    if v[0] == _EPISODE:
        return int(v[_LAST]) + window + 1
    pending = v[1]
    return int(pending[0][0]) + window + 1 if pending else None


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
    if due is None:
        due = due_by_scan(state, watermark, params, wake_of)
    visit = list(new)
    visit.extend(k for k in due if k not in new)
    for k in visit:
        cur = state.get(k)
        if cur is not None and not isinstance(cur, list):
            cur = from_v1(k, cur)  # a value written before issue 21 (the engine converts at upgrade)
        value, changed = _visit(k, cur, new.get(k, ()), watermark, window, params, out)
        if value is None:
            if k in state:
                out.updates[k] = None
            out.wake[k] = None
        else:
            if changed:
                out.updates[k] = value
            out.wake[k] = wake_of(k, value, params)
    return out


def _visit(
    k: str, cur: list[Any] | None, rs: Sequence[Screened], watermark: int, window: int, params: EarlyParams,
    out: Step,
) -> tuple[list[Any] | None, bool]:
    """The key's new value (None: delete) and whether it changed; alerts go to ``out``."""
    changed = False
    if cur is None or cur[0] == _PENDING:
        pending: list[list[Any]] = list(cur[1]) if cur is not None else []
        if rs:
            seen = {(e[6], e[1]) for e in pending}
            for r in rs:
                if (r.device_id, r.result_id) not in seen and (None, r.result_id) not in seen:
                    seen.add((r.device_id, r.result_id))
                    pending.append(_finding(r))
                    changed = True
            if changed:
                pending.sort(key=_order)
        start = _cluster_start(pending, window, params.cluster_min_sites) if changed else None
        if start is None:
            kept = [e for e in pending if e[0] >= watermark - window][-MAX_PENDING:]
            if not kept:
                return None, True
            if len(kept) != len(pending):
                changed = True
            return [_PENDING, kept], changed
        ep = _open(pending, start)
        rs = ()
        changed = True
    else:
        ep = list(cur)
    if rs:
        changed = _grow(ep, rs) or changed
    if watermark > ep[_LAST] + window:
        out.alerts.append(resolve(_condition(k, ep, params), int(ep[_LAST]) + window))
        return None, True
    if material(len(ep[_PLACES]), ep[_RESULTS], bool(ep[_CONF])) != ep[_FP]:
        cond = _condition(k, ep, params)
        out.alerts.append(cond.alert())
        ep[_FP] = cond.material
        changed = True
    return ep, changed


def _cluster_start(events: list[list[Any]], window: int, min_sites: int) -> int | None:
    """Event time of the first finding that opens a window holding ``min_sites`` places (events in
    event-time order; one pass with a sliding window)."""
    counts: dict[str, int] = {}
    j = 0
    for i, e in enumerate(events):
        while j < len(events) and events[j][0] <= e[0] + window:
            p = events[j][2]
            counts[p] = counts.get(p, 0) + 1
            j += 1
        if len(counts) >= min_sites:
            return int(e[0])
        p = e[2]
        counts[p] -= 1
        if not counts[p]:
            del counts[p]
        if j <= i:
            j = i + 1
    return None


def _open(pending: list[list[Any]], start: int) -> list[Any]:
    """An episode from the pending findings at or after ``start``."""
    members = [e for e in pending if e[0] >= start]
    places: list[str] = []
    sites: list[str] = []
    vendors: list[str] = []
    for e in members:
        _add(places, e[2], None)
        _add(sites, e[3], MAX_LISTED)
        if e[4]:
            _add(vendors, e[4], MAX_LISTED)
    return [
        _EPISODE, start, max(e[0] for e in members), places, len(members), int(any(e[5] for e in members)),
        sites, vendors, [[e[0], e[1], e[6]] for e in members[:MAX_KEPT]], None,
    ]


def _add(xs: list[str], x: str, cap: int | None) -> bool:
    if x in xs or (cap is not None and len(xs) >= cap):
        return False
    xs.append(x)
    return True


def _grow(ep: list[Any], rs: Sequence[Screened]) -> bool:
    """Take the new findings of an open episode into ``ep`` (copying only the lists it changes)."""
    changed = False
    ev: list[list[Any]] = ep[_EV]
    seen = {(e[2], e[1]) for e in ev}
    full = len(ev) >= MAX_KEPT
    for r in rs:
        if r.sampled_at < ep[_START]:
            continue  # before the episode: not one of its findings
        if (r.device_id, r.result_id) in seen or (None, r.result_id) in seen:
            continue
        seen.add((r.device_id, r.result_id))
        if not changed:
            ev = list(ev)
            changed = True
        row = [r.sampled_at, r.result_id, r.device_id]
        if not full or _ev_order(row) < _ev_order(ev[-1]):
            insort(ev, row, key=_ev_order)
            del ev[MAX_KEPT:]
        ep[_RESULTS] += 1
        ep[_LAST] = max(ep[_LAST], r.sampled_at)
        if _confirmed(r):
            ep[_CONF] = 1
        place = _place(r)
        if place not in ep[_PLACES]:
            ep[_PLACES] = [*ep[_PLACES], place]
        if r.site_id not in ep[_SITES] and len(ep[_SITES]) < MAX_LISTED:
            ep[_SITES] = [*ep[_SITES], r.site_id]
        if r.vendor_id and r.vendor_id not in ep[_VENDORS] and len(ep[_VENDORS]) < MAX_LISTED:
            ep[_VENDORS] = [*ep[_VENDORS], r.vendor_id]
    if changed:
        ep[_EV] = ev
    return changed


def findings_of(value: JSON) -> int:
    """How many findings a stored value counts (pending, or the episode's results)."""
    if not isinstance(value, list):
        return 0
    return len(value[1]) if value[0] == _PENDING else int(value[_RESULTS])


def evidence_of(value: JSON) -> tuple[str, ...]:
    """The result ids a stored value keeps (pending findings, or the episode's kept evidence)."""
    if not isinstance(value, list):
        return ()
    return tuple(e[1] for e in (value[1] if value[0] == _PENDING else value[_EV]))


def material(places: int, results: int, confirmed: bool) -> str:
    """What re-emits a cluster's alert: its places and results by their step on the ladder, and a
    lab's confirmation (severity)."""
    return f"{ladder(places)}:{ladder(results)}:{int(confirmed)}"


def _condition(key: str, ep: list[Any], params: EarlyParams) -> Condition:
    who, commodity = key.rsplit("|", 1)
    supplier = None if who.startswith("origin:") else who
    origin = who.removeprefix("origin:") if supplier is None else None
    start = int(ep[_START])
    n_places, results, confirmed = len(ep[_PLACES]), int(ep[_RESULTS]), bool(ep[_CONF])
    sites = sorted(ep[_SITES])
    vendors = sorted(ep[_VENDORS])
    listed = ", ".join(sites) + (", ..." if len(sites) >= MAX_LISTED else "")
    label = f"supplier {supplier}" if supplier else f"origin {origin}"
    en = (
        f"Supplier cluster: {commodity} from {label} non-compliant at {n_places} places within "
        f"{params.cluster_window_h} h ({results} results; sites {listed})"
        + ("; confirmed by a lab." if confirmed else "; quick tests only, not yet confirmed.")
        + " Trace the lot."
    )
    zh = (
        f"供货商聚集：{label} 的{commodity}在 {params.cluster_window_h} 小时内于 {n_places} 处不合格"
        f"（{results} 条结果；站点 {listed}）"
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
        material=material(n_places, results, confirmed),
        evidence=tuple(e[1] for e in ep[_EV]),
        evidence_total=results,
        commodity=commodity,
        supplier_id=supplier,
        details={
            "origin": origin,
            "places": n_places,
            "sites": ",".join(sites),
            "vendors": ",".join(vendors),
            "results": results,
            "confirmed": int(confirmed),
            "window_h": params.cluster_window_h,
        },
    )


def from_v1(key: str, old: JSON) -> JSON:
    """A value in the form written before issue 21 (``{"ev": [[sampled_at, result_id, place,
    site_id, vendor_id, verdict, quick(, device_id)]], "ep": {"start", "last", "a"} | None, "hv"}``)
    in this module's form; None when it holds nothing. The fingerprint of an alert already emitted
    is carried over on the ladder, so the upgrade itself re-emits nothing."""
    if isinstance(old, list) or old is None:
        return old
    if not isinstance(old, dict):
        return None
    rows = []
    for e in old.get("ev") or ():
        device = e[7] if len(e) > 7 else None
        rows.append([int(e[0]), e[1], e[2], e[3], e[4], int(not e[6] and e[5] in ("exceeds", "banned")), device])
    rows.sort(key=_order)
    ep = old.get("ep")
    if not isinstance(ep, dict):
        return [_PENDING, rows[-MAX_PENDING:]] if rows else None
    members = [e for e in rows if e[0] >= int(ep["start"])]
    if not members:
        return None
    new = _open(members, int(ep["start"]))
    new[_LAST] = max(int(ep["last"]), new[_LAST])
    a = ep.get("a")
    if isinstance(a, dict) and isinstance(a.get("fp"), str):
        parts = a["fp"].split(":")
        try:
            new[_FP] = material(int(parts[0]), int(parts[1]), parts[2] == "True")
        except (IndexError, ValueError):
            new[_FP] = None
    return new
