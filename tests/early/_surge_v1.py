"""Rate surge: per district x commodity x method, the share of non-compliant results in a sliding
window (default 24 h, step 1 h) against the method's baseline.

Two tests per key, evaluated on the window that ends at the last step boundary the watermark passed
(and again when late results for that window arrive):

* exact binomial test of the window's positives against the baseline, Bonferroni-corrected over the
  keys held (``surge_alpha / keys``), with a minimum sample size and a minimum number of positives;
* a binomial CUSUM over closed hours, tuned to a ``cusum_shift``-fold rate, for small sustained shifts.

One alert per episode (id: key + first window start); it is updated when the window's positives
change, and resolved when neither test holds (binomial p > 0.05 uncorrected, CUSUM under h/2).

State per key ``district|commodity|method``: ``{"h": {hour: [n, k, [positive ids]]}, "S": cusum,
"cu": last hour the CUSUM took in, "ev": last boundary evaluated, "a": alert record}``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from agents.early.common import HOUR, JSON, EarlyParams, Step, binom_sf, hour_start, iso
from agents.early.lifecycle import KIND_SURGE, Condition, fire, resolve
from agents.screened import Screened
from schemas.alert import Classification, Risk

RESOLVE_P = 0.05
MAX_IDS_PER_HOUR = 50


def key_of(r: Screened) -> str:
    return f"{r.district}|{r.commodity}|{r.method}"


def counts(r: Screened) -> bool:
    return r.judged


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    out = Step()
    step_s = params.surge_step_h * HOUR
    window_s = params.surge_window_h * HOUR
    boundary = (watermark // step_s) * step_s
    touched: dict[str, dict[str, Any]] = {}
    quick_of: dict[str, bool] = {}
    for r in records:
        if not counts(r):
            continue
        k = key_of(r)
        hour = hour_start(r.sampled_at)
        if hour < boundary - window_s:
            continue  # older than every window still open or re-evaluated
        st = touched.get(k)
        if st is None:
            st = touched[k] = _copy(state.get(k))
        quick_of[k] = r.quick
        bucket = st["h"].setdefault(str(hour), [0, 0, []])
        bucket[0] += 1
        if r.non_compliant:
            bucket[1] += 1
            if len(bucket[2]) < MAX_IDS_PER_HOUR:
                bucket[2].append(r.result_id)
    n_keys = max(1, len(set(state) | set(touched)))
    threshold = params.surge_alpha / n_keys
    for k in set(state) | set(touched):
        if k in touched:
            st = touched[k]
        else:
            cur = state[k]
            if not isinstance(cur, dict) or cur.get("ev", 0) >= boundary:
                continue
            st = _copy(cur)
        new = _evaluate(k, st, boundary, window_s, threshold, params, out)
        out.updates[k] = new
    return out


def _copy(v: JSON) -> dict[str, Any]:
    if not isinstance(v, dict):
        return {"h": {}, "S": 0.0, "cu": None, "ev": 0, "a": None}
    return {
        "h": {h: [b[0], b[1], list(b[2])] for h, b in v["h"].items()},
        "S": v["S"],
        "cu": v["cu"],
        "ev": v["ev"],
        "a": v["a"],
    }


def _evaluate(
    key: str, st: dict[str, Any], boundary: int, window_s: int, threshold: float, params: EarlyParams, out: Step
) -> dict[str, Any] | None:
    district, commodity, method = key.split("|", 2)
    buckets: dict[str, list[Any]] = st["h"]
    quick = method in ("enzyme_inhibition", "colloidal_gold", "xrf")
    p0 = params.baseline(method, quick, commodity)
    # CUSUM over hours closed since the last time (missing hours carry no results).
    p1 = min(0.5, p0 * params.cusum_shift)
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    first = boundary - window_s if st["cu"] is None else max(int(st["cu"]) + HOUR, boundary - window_s)
    s = float(st["S"])
    for h in range(first, boundary, HOUR):
        b = buckets.get(str(h))
        if b:
            s = max(0.0, s + b[1] * up + (b[0] - b[1]) * down)
    st["S"], st["cu"] = s, boundary - HOUR
    # Binomial test on the window [boundary - window, boundary).
    lo = boundary - window_s
    n = k = 0
    ids: list[str] = []
    for hk, b in buckets.items():
        if lo <= int(hk) < boundary:
            n += b[0]
            k += b[1]
            ids.extend(b[2])
    p = binom_sf(k, n, p0) if n else 1.0
    significant = n >= params.surge_min_n and k >= params.surge_min_positives and p <= threshold
    cusum_alarm = s > params.cusum_h and k >= params.surge_min_positives
    prev = st["a"]
    if significant or cusum_alarm or (prev and not _cleared(n, k, p, s, params)):
        start = int(prev["start"]) if prev else lo
        cond = _condition(district, commodity, method, quick, start, n, k, p0, p, s, sorted(ids), params,
                          "binomial" if significant else "cusum")
        st["a"], alert = fire(prev, cond)
        if alert is not None:
            out.alerts.append(alert)
    elif prev:
        cond = _condition(district, commodity, method, quick, int(prev["start"]), n, k, p0, p, s, sorted(ids),
                          params, "cleared")
        out.alerts.append(resolve(cond, boundary))
        st["a"] = None
    st["ev"] = boundary
    keep_from = boundary - window_s
    st["h"] = {h: b for h, b in buckets.items() if int(h) >= keep_from}
    if not st["h"] and not st["a"] and st["S"] == 0.0:
        return None
    return st


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
        material=f"{k}",
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


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """Contract shim (issue 21): every stored key is due at every step, as before the schedule."""
    return 0
