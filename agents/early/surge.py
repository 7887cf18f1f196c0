"""Rate surge: per district x commodity x method, the share of non-compliant results in a sliding
window (default 24 h, step 1 h) against the method's baseline.

Two tests per key, evaluated on the window that ends at the last step boundary the watermark passed
(and again when late results for that window arrive):

* exact binomial test of the window's positives against the baseline, Bonferroni-corrected over the
  keys held (``surge_alpha / keys``, keys = the keys stored plus the keys this batch creates, taken
  when a key is evaluated: a change in the number of keys alone does not re-evaluate a key), with a
  minimum sample size and a minimum number of positives;
* a binomial CUSUM over closed hours, tuned to a ``cusum_shift``-fold rate, for small sustained shifts.

One alert per episode (id: key + first window start); it is updated when the window's positives
cross the next step (every positive up to 9, then the ladder 10, 20, 50, 100, ...:
``lifecycle.ladder``), and resolved when neither test holds (binomial p > 0.05 uncorrected, CUSUM
under h/2).

A key is visited when records touch it or when its window changes without records (``wake_of``):
at the first step boundary after its newest hour bucket's hour (the hour closes: the CUSUM takes it
in and the binomial window gains it), or when its oldest bucket leaves the window. Nothing else
changes either test (an empty hour adds nothing; an open alert can only resolve when the window
changes). A key with no alert and fewer than ``surge_min_positives`` positives held cannot fire
before records touch it again: it is visited only when its newest bucket leaves the window. A key
whose buckets have all left the window is deleted with its CUSUM (the CUSUM restarts from 0 after a
whole window without results).

The CUSUM takes an hour in at the key's first evaluation after the hour closed, with the results
seen by then; a result later than that stays out of it (it counts in the binomial windows). Before
issue 21 every key was evaluated at every step boundary, so a result for an hour that closed with
no results of its key, arriving after the next step, stayed out of the CUSUM too; now it counts if
the key was not evaluated since (``tests/early/test_surge_bounded.py`` shows both cases). Every
closed hour enters the CUSUM once, also when the watermark jumps more than a window in one step
(before, the hours jumped over stayed out).

State per key ``district|commodity|method`` (compact, issue 21): ``{"h": {hour index: [results,
non-compliant, positive id...]}, "e": last boundary evaluated, "s": CUSUM (left out at 0), "a":
[episode start, positives step emitted] (left out when no alert)}``; an hour index is epoch seconds
// 3600; at most ``MAX_IDS_PER_HOUR`` ids per hour.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from agents.early.common import HOUR, JSON, EarlyParams, Step, binom_sf, due_by_scan, hour_start, iso
from agents.early.lifecycle import KIND_SURGE, Condition, ladder
from agents.screened import Screened
from schemas.alert import Classification, Risk

RESOLVE_P = 0.05
MAX_IDS_PER_HOUR = 50
QUICK_METHODS = ("enzyme_inhibition", "colloidal_gold", "xrf")


def key_of(r: Screened) -> str:
    return f"{r.district}|{r.commodity}|{r.method}"


def counts(r: Screened) -> bool:
    return r.judged


def material(k: int) -> int:
    """The positives step an alert was emitted at: every positive up to 9, then the ladder."""
    return k if k < 10 else ladder(k)


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    out = Step()
    step_s = params.surge_step_h * HOUR
    window_s = params.surge_window_h * HOUR
    boundary = (watermark // step_s) * step_s
    lo_hour = (boundary - window_s) // HOUR
    touched: dict[str, dict[str, Any]] = {}
    fresh_buckets: set[tuple[str, str]] = set()  # buckets this step already copied
    for r in records:
        if not r.judged:
            continue
        hi = hour_start(r.sampled_at) // HOUR
        if hi < lo_hour:
            continue  # older than every window still open or re-evaluated
        k = key_of(r)
        st = touched.get(k)
        if st is None:
            st = touched[k] = _own(state.get(k))
        hk = str(hi)
        buckets = st["h"]
        b = buckets.get(hk)
        if (k, hk) not in fresh_buckets:
            b = buckets[hk] = [0, 0] if b is None else list(b)  # copy on write: the stored one stays
            fresh_buckets.add((k, hk))
        b[0] += 1
        if r.non_compliant:
            b[1] += 1
            if len(b) - 2 < MAX_IDS_PER_HOUR:
                b.append(r.result_id)
    n_keys = max(1, len(state) + sum(1 for k in touched if k not in state))
    threshold = params.surge_alpha / n_keys
    if due is None:
        due = due_by_scan(state, watermark, params, wake_of)
    for k in due:
        if k in touched:
            continue
        cur = state.get(k)
        if not isinstance(cur, dict):
            out.wake[k] = None
            continue
        if int(cur.get("e", 0)) >= boundary:
            out.wake[k] = wake_of(k, cur, params)  # already evaluated at this boundary
            continue
        touched[k] = _own(cur)
    for k, st in touched.items():
        new = _evaluate(k, st, boundary, window_s, threshold, params, out)
        out.updates[k] = new
        out.wake[k] = None if new is None else _wake(new, step_s, window_s, params.surge_min_positives)
    return out


def _own(v: JSON) -> dict[str, Any]:
    """A new dict for a key's state; its hour buckets are shared with ``v`` until one changes."""
    if not isinstance(v, dict):
        return {"h": {}, "e": 0}
    out = dict(v)
    out["h"] = dict(v["h"])
    return out


def _evaluate(
    key: str, st: dict[str, Any], boundary: int, window_s: int, threshold: float, params: EarlyParams, out: Step
) -> dict[str, Any] | None:
    district, commodity, method = key.split("|", 2)
    buckets: dict[str, list[Any]] = st["h"]
    quick = method in QUICK_METHODS
    p0 = params.baseline(method, quick, commodity)
    lo = boundary - window_s
    ev = int(st.get("e", 0))
    # CUSUM over hours closed since the last evaluation (missing hours carry no results).
    s = float(st.get("s", 0.0))
    first = ev  # the last evaluation took in the hours before its boundary ``ev``; every later
    # hour still held goes in once (also one that has left the window since: a key not visited)
    if first < boundary:
        p1 = min(0.5, p0 * params.cusum_shift)
        up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
        for hi in sorted(int(h) for h in buckets):
            h = hi * HOUR
            if first <= h < boundary:
                b = buckets[str(hi)]
                s = max(0.0, s + b[1] * up + (b[0] - b[1]) * down)
    # Binomial test on the window [boundary - window, boundary); hours before it are dropped.
    n = k = 0
    keep: dict[str, list[Any]] = {}
    in_window: list[list[Any]] = []
    for hk, b in buckets.items():
        h = int(hk) * HOUR
        if h < lo:
            continue
        keep[hk] = b
        if h < boundary:
            n += b[0]
            k += b[1]
            in_window.append(b)
    p = binom_sf(k, n, p0) if n else 1.0
    significant = n >= params.surge_min_n and k >= params.surge_min_positives and p <= threshold
    cusum_alarm = s > params.cusum_h and k >= params.surge_min_positives
    prev = st.get("a")
    new: dict[str, Any] = {"h": keep, "e": boundary}
    if s != 0.0:
        new["s"] = s
    if significant or cusum_alarm or (prev and not _cleared(n, k, p, s, params)):
        start = int(prev[0]) if prev else lo
        mat = material(k)
        if not prev or int(prev[1]) != mat:
            cond = _condition(district, commodity, method, quick, start, n, k, p0, p, s, _ids(in_window), params,
                              "binomial" if significant else "cusum")
            out.alerts.append(cond.alert())
        new["a"] = [start, mat]
    elif prev:
        cond = _condition(district, commodity, method, quick, int(prev[0]), n, k, p0, p, s, _ids(in_window), params,
                          "cleared")
        out.alerts.append(cond.alert(ends_at=max(boundary, cond.starts_at)))
    if not keep and "a" not in new:
        return None
    return new


def _ids(buckets: list[list[Any]]) -> list[str]:
    return sorted(i for b in buckets for i in b[2:])


def _wake(value: Mapping[str, Any], step_s: int, window_s: int, min_positives: int) -> int | None:
    buckets: Mapping[str, list[Any]] = value["h"]
    hours = [int(h) * HOUR for h in buckets]
    if not hours:
        return None
    if "a" not in value and sum(b[1] for b in buckets.values()) < min_positives:
        # no window can fire before new records (each needs min_positives): only the deletion, when
        # the newest bucket leaves the window; the CUSUM takes the hours in at the next evaluation
        return (max(hours) + window_s) // step_s * step_s + step_s
    ev = int(value.get("e", 0))
    # the oldest bucket leaves the window at the first boundary after its hour + window
    oldest = min(hours) + window_s
    wake = (oldest // step_s + 1) * step_s
    young = [h for h in hours if h >= ev]  # hours not yet closed at the last evaluation
    if young:
        wake = min(wake, (min(young) // step_s + 1) * step_s)
    return wake


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """The boundary at which a stored key's window next changes without records (None: never)."""
    if not isinstance(value, dict):
        return None
    return _wake(value, params.surge_step_h * HOUR, params.surge_window_h * HOUR, params.surge_min_positives)


def from_v1(key: str, old: JSON) -> JSON | None:
    """A key's state in the format before issue 21 (``{"h": {hour epoch: [n, k, [ids]]}, "S", "cu",
    "ev", "a": {"id", "fp", "start"}}``) in today's; None when it holds nothing but a CUSUM (dropped,
    as this version drops a key whose buckets have left the window)."""
    if not isinstance(old, dict):
        return None
    if "e" in old:  # already in today's form (an upgrade cut short and run again)
        return old
    buckets: dict[str, list[Any]] = {}
    for h, b in dict(old.get("h") or {}).items():
        ids = [str(i) for i in b[2]][:MAX_IDS_PER_HOUR] if len(b) > 2 else []
        buckets[str(int(h) // HOUR)] = [int(b[0]), int(b[1]), *ids]
    new: dict[str, Any] = {"h": buckets, "e": int(old.get("ev") or 0)}
    s = float(old.get("S") or 0.0)
    if s:
        new["s"] = s
    a = old.get("a")
    if isinstance(a, dict):
        fp = str(a.get("fp", ""))
        new["a"] = [int(a["start"]), material(int(fp)) if fp.isdigit() else -1]
    if not buckets and "a" not in new:
        return None
    return new


def _cleared(n: int, k: int, p: float, s: float, params: EarlyParams) -> bool:
    binomial_clear = n < params.surge_min_n or p > RESOLVE_P
    return binomial_clear and (s < params.cusum_h / 2 or k < params.surge_min_positives)


def _condition(
    district: str, commodity: str, method: str, quick: bool, start: int, n: int, k: int, p0: float, p: float,
    s: float, ids: list[str], params: EarlyParams, test: str,
) -> Condition:
    expected = n * p0
    hours = params.surge_window_h
    en = (
        f"Rate surge: {k} non-compliant of {n} {commodity} results by {method} in {district} in {hours} h "
        f"(expected {expected:.2f} at {p0:.2%}; binomial p={p:.2g}, CUSUM {s:.1f})."
    )
    zh = (
        f"不合格率异常升高：{district} {commodity}（{method}）{hours} 小时内 {n} 批次中 {k} 批次不合格"
        f"（预期 {expected:.2f}，基线 {p0:.2%}；二项检验 p={p:.2g}）。"
    )
    return Condition(
        kind=KIND_SURGE,
        key=(district, commodity, method, iso(start)),
        classification=Classification.follow_up,
        risk=Risk.undecided if quick else Risk.potentially_serious,
        starts_at=start,
        summary_en=en,
        summary_zh=zh,
        material=str(material(k)),
        evidence=tuple(ids),
        district=district,
        commodity=commodity,
        details={
            "method": method,
            "observed": k,
            "tested": n,
            "expected": round(expected, 4),
            "baseline": p0,
            "p_value": p,
            "cusum": round(s, 3),
            "test": test,
            "window_h": hours,
        },
    )
