"""Rate surge: per district x commodity x method, the share of non-compliant results in a sliding
window (default 24 h, step 1 h) against the method's baseline.

Two tests per key, evaluated on the window that ends at the last step boundary the watermark passed
(and again when late results for that window arrive):

* exact binomial test of the window's positives against the baseline, Bonferroni-corrected over the
  keys held (``surge_alpha / keys``, keys = the keys with an entry, the keys counted in the hour
  chunks and the keys this batch creates, taken when a key is evaluated: a change in the number of
  keys alone does not re-evaluate a key), with a
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
(before, the hours jumped over stayed out). A key with no entry (below) was never evaluated: its
CUSUM is 0, and the entry its first positive gives it takes every closed hour of its window in.

Keys without positives (issue 21, third pass). Nothing can fire for a key with no positive in its
window, no alert and a CUSUM of 0 (both tests need ``surge_min_positives``), and on national traffic
most keys hold a result or two a day: such a key has no entry of its own. Its results are counted
in the **hour chunks**: a step writes, per sampled hour it counted such results in, one key
``"<hour index>:<n>"`` -> ``{key: results}`` (``n`` one more than the highest chunk number held, so
a chunk is never rewritten), and deletes an hour's chunks whole once the hour has left the window.
``Counts`` holds what the chunks count (the engine keeps it in its memory, rebuilt from the chunks
at recovery). A key's first positive gives it an entry holding the results counted so far; from
then on its results go to its entry, which lives as any entry does (deleted once every bucket has
left the window), and the chunks' counts of it are forgotten (``build`` leaves out every key stored
with an entry: its older chunks are all older than its entry's buckets). So a step costs per
result without a positive one count in memory and a share of one chunk write, no read, rewrite,
wake or deletion of a key of its own.

State per key ``district|commodity|<method code>`` (``METHOD_CODES``: one digit per method; a key
written by an earlier version with the method written out is read alike and, when records touch
it, its state moves to the coded key and the old key is deleted): one flat list, ``[last boundary
evaluated in hours, (hour - that, results, non-compliant[, count of ids, id...])..., tail]``, the
buckets oldest first, the ids only when non-compliant > 0 (at most ``MAX_IDS_PER_HOUR``), the tail
``[CUSUM]`` or ``[CUSUM, episode start, positives step emitted]`` only when the CUSUM is not 0 or an
alert is open. ``unpack`` reads a value as a dict. A key with one result, a positive, is
``[493391,0,1,1,1,"r-1"]``. A due key whose buckets have all left the window, with no alert open, is
deleted without evaluation. Entries written before the chunks (a key with no positive among them)
are read and live as before, until they expire.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from agents.early.common import HOUR, JSON, EarlyParams, Step, binom_sf, due_by_scan, iso
from agents.early.lifecycle import KIND_SURGE, Condition, ladder
from agents.screened import Screened
from schemas.alert import Classification, Risk

RESOLVE_P = 0.05
MAX_IDS_PER_HOUR = 50
QUICK_METHODS = ("enzyme_inhibition", "colloidal_gold", "xrf")


# a method in a key by a one-digit code (fixed: stored keys use it; a method not listed is written out)
METHOD_CODES: Final[Mapping[str, str]] = {
    "enzyme_inhibition": "0", "colloidal_gold": "1", "xrf": "2", "lc_msms": "3", "gc_ms": "4", "gc_msms": "5",
    "icp_ms": "6", "aas": "7", "afs": "8",
}
CODE_METHODS: Final[Mapping[str, str]] = {c: m for m, c in METHOD_CODES.items()}


def key_of(r: Screened) -> str:
    return f"{r.district}|{r.commodity}|{METHOD_CODES.get(r.method, r.method)}"


def _long_key(r: Screened) -> str | None:
    """The key before methods were coded (state from earlier versions), None when it is the same."""
    return f"{r.district}|{r.commodity}|{r.method}" if r.method in METHOD_CODES else None


def split_key(key: str) -> tuple[str, str, str]:
    """District, commodity and method of a key (coded or written out)."""
    district, commodity, m = key.split("|", 2)
    return district, commodity, CODE_METHODS.get(m, m)


def counts(r: Screened) -> bool:
    return r.judged


def material(k: int) -> int:
    """The positives step an alert was emitted at: every positive up to 9, then the ladder."""
    return k if k < 10 else ladder(k)


def is_chunk(key: str) -> bool:
    """A table key holding the counts of one hour (``"<hour>:<seq>"``), not a district x commodity x method."""
    return ":" in key and "|" not in key


def chunk_key(hour: int, seq: int) -> str:
    return f"{hour}:{seq}"


class Counts:
    """The results per hour of the keys held only in the hour chunks (no entry of their own: no
    positive, alert or CUSUM in their window), read from the chunk keys of the table. The engine keeps
    one in its memory (``apply`` after each step's writes, ``build`` at recovery); ``step`` builds one
    from the table when given none (a scan: unit tests, offline runs). A key that has an entry is
    never counted here (its entry holds its results): ``build`` leaves out the keys stored with an
    entry, ``apply`` forgets a key when its entry is written."""

    __slots__ = ("chunks", "held", "hours", "refs", "seq")

    def __init__(self) -> None:
        self.hours: dict[int, dict[str, int]] = {}  # hour index -> key -> results
        self.refs: dict[str, int] = {}  # key -> the hours holding it (its count in the Bonferroni keys)
        self.chunks: dict[int, list[str]] = {}  # hour index -> its chunk keys in the table
        self.seq = 0  # the highest chunk number held (a step writes its chunks as seq + 1)
        self.held = 0  # the chunk keys in the table

    @classmethod
    def build(cls, state: Mapping[str, JSON]) -> Counts:
        out = cls()
        entries = []
        for k, v in state.items():
            if is_chunk(k):
                out._add(k, v)
            else:
                entries.append(k)
        for k in entries:
            out.forget(k)
        return out

    def apply(self, updates: Mapping[str, JSON]) -> None:
        """Take in a step's surge writes (after the table's): chunks added or deleted (whole hours),
        keys given an entry forgotten."""
        for k, v in updates.items():
            if not is_chunk(k):
                if v is not None:
                    self.forget(k)
            elif v is None:
                self.drop_hour(int(k.split(":", 1)[0]))
        for k, v in updates.items():
            if v is not None and is_chunk(k):
                self._add(k, v)

    def _add(self, ck: str, value: JSON) -> None:
        h, seq = (int(x) for x in ck.split(":", 1))
        if seq > self.seq:
            self.seq = seq
        self.chunks.setdefault(h, []).append(ck)
        self.held += 1
        counts = self.hours.get(h)
        if counts is None:
            counts = self.hours[h] = {}
        refs = self.refs
        for k, n in value.items():
            held = counts.get(k)
            if held is None:
                counts[k] = int(n)
                refs[k] = refs.get(k, 0) + 1
            else:
                counts[k] = held + int(n)

    def drop_hour(self, h: int) -> None:
        self.held -= len(self.chunks.pop(h, ()))
        counts = self.hours.pop(h, None)
        if not counts:
            return
        refs = self.refs
        for k in counts:
            r = refs.get(k, 0) - 1
            if r > 0:
                refs[k] = r
            else:
                refs.pop(k, None)

    def forget(self, k: str) -> None:
        """``k`` has an entry now (which took its counts in)."""
        if self.refs.pop(k, None) is None:
            return
        for counts in self.hours.values():
            counts.pop(k, None)

    def of(self, k: str, lo_hour: int) -> dict[int, int]:
        """The results of ``k`` per hour from ``lo_hour`` on."""
        if k not in self.refs:
            return {}
        return {h: counts[k] for h, counts in self.hours.items() if h >= lo_hour and k in counts}


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None, memory: Counts | None = None,
) -> Step:
    """``memory``: the chunks' counts as the engine keeps them; None: read from ``state`` (a scan)."""
    out = Step()
    counts = memory if memory is not None else Counts.build(state)
    step_s = params.surge_step_h * HOUR
    window_s = params.surge_window_h * HOUR
    boundary = (watermark // step_s) * step_s
    lo_hour = (boundary - window_s) // HOUR
    touched: dict[str, _State] = {}
    moved: set[str] = set()  # keys of an earlier version whose state a touched key took over
    pending: dict[str, dict[int, int]] = {}  # keys with no entry and no positive yet: hour -> results
    refs = counts.refs
    created = 0
    for r in records:
        if not r.judged:
            continue
        hi = int(r.sampled_at) // HOUR
        if hi < lo_hour:
            continue  # older than every window still open or re-evaluated
        k = key_of(r)
        st = touched.get(k)
        if st is None:
            held = pending.get(k)
            if held is not None:  # counted for this step's chunk so far
                if not r.non_compliant:
                    held[hi] = held.get(hi, 0) + 1
                    continue
                st = _first_positive(k, counts, pending.pop(k), lo_hour)
            else:
                cur = state.get(k)
                if cur is None:
                    old_k = _long_key(r)
                    if old_k is not None:
                        cur = state.get(old_k)
                    if cur is not None and old_k is not None:  # held under the key of an earlier version
                        moved.add(old_k)
                        out.updates[old_k] = None
                        out.wake[old_k] = None
                if cur is not None:
                    st = _State.of(k, cur)  # a copy: the stored value is never changed
                else:
                    if k not in refs:
                        created += 1
                    if not r.non_compliant:  # counted in this step's chunk, unless a positive follows
                        pending[k] = {hi: 1}
                        continue
                    st = _first_positive(k, counts, {}, lo_hour)
            touched[k] = st
        b = st.h.get(hi)
        if b is None:
            b = st.h[hi] = [0, 0]
        b[0] += 1
        if r.non_compliant:
            b[1] += 1
            if len(b) - 2 < MAX_IDS_PER_HOUR:
                b.append(r.result_id)
    # the keys held: entries (the table's keys but the chunks), the keys counted in chunks, new ones
    entries = len(state) - counts.held
    threshold = params.surge_alpha / max(1, entries + len(refs) + created)
    if due is None:
        due = due_by_scan(state, watermark, params, wake_of)
    for k in due:
        if k in touched or k in moved:
            continue
        cur = state.get(k)
        if cur is None:
            out.wake[k] = None
            continue
        st = None if isinstance(cur, list) else _State.of(k, cur)  # (a dict: state not upgraded)
        if (st.e if st is not None else int(cur[0]) * HOUR) >= boundary:  # evaluated at this boundary
            out.wake[k] = wake_of(k, cur, params)
            continue
        if _expired(st.pack() if st is not None else cur, lo_hour):
            # every bucket has left the window and no alert is open: nothing can fire or resolve
            out.updates[k] = None
            out.wake[k] = None
            continue
        touched[k] = st if st is not None else _State.of(k, cur)
    for k, st in touched.items():
        if _evaluate(k, st, boundary, window_s, threshold, params, out):
            out.updates[k] = st.pack()
            out.wake[k] = st.wake(step_s, window_s, params.surge_min_positives)
        else:
            out.updates[k] = None
            out.wake[k] = None
    _write_chunks(counts, pending, lo_hour, out)
    return out


def _first_positive(k: str, counts: Counts, held: Mapping[int, int], lo_hour: int) -> _State:
    """The entry a key without one gets at its first positive: the results the chunks counted
    (``counts``) and this step so far (``held``), never evaluated (its CUSUM is 0)."""
    hours = counts.of(k, lo_hour)
    for h, n in held.items():
        hours[h] = hours.get(h, 0) + n
    return _State(0, 0.0, None, {h: [n, 0] for h, n in hours.items()})


def _write_chunks(counts: Counts, pending: Mapping[str, Mapping[int, int]], lo_hour: int, out: Step) -> None:
    """This step's chunk of each hour it counted keys without an entry in, and the deletion of the
    hours that left the window (whole hours: every chunk of the hour)."""
    for h in [h for h in counts.hours if h < lo_hour]:
        for ck in counts.chunks.get(h, ()):
            out.updates[ck] = None
            out.wake[ck] = None
    by_hour: dict[int, dict[str, int]] = {}
    for k, hours in pending.items():
        for h, n in hours.items():
            c = by_hour.get(h)
            if c is None:
                c = by_hour[h] = {}
            c[k] = n
    seq = counts.seq + 1
    for h, c in by_hour.items():
        ck = chunk_key(h, seq)
        out.updates[ck] = c
        out.wake[ck] = None


def _expired(v: list[Any], lo_hour: int) -> bool:
    """A stored value with no alert whose buckets are all older than ``lo_hour`` (read in place)."""
    newest = None
    i, end = 1, len(v)
    while i < end:
        x = v[i]
        if isinstance(x, list):
            if len(x) > 1:
                return False  # an alert is open
            break
        newest = x  # buckets are stored oldest first
        i += 4 + v[i + 3] if v[i + 2] else 3
    return newest is None or int(v[0]) + newest < lo_hour


class _State:
    """A key's state while a step works on it: ``e`` the last boundary evaluated (epoch seconds),
    ``s`` the CUSUM, ``a`` [episode start, positives step emitted] or None, ``h`` hour index ->
    [results, non-compliant, positive id...]. Built from the stored value (a copy), packed back."""

    __slots__ = ("a", "e", "h", "s")

    def __init__(self, e: int, s: float, a: list[int] | None, h: dict[int, list[Any]]) -> None:
        self.e = e
        self.s = s
        self.a = a
        self.h = h

    @classmethod
    def of(cls, key: str, v: JSON) -> _State:
        if v is None:
            return cls(0, 0.0, None, {})
        if isinstance(v, dict):  # an earlier form (state not upgraded): read through the converter
            v = from_v1(key, v)
            if v is None:
                return cls(0, 0.0, None, {})
        base = int(v[0])
        s, a = 0.0, None
        h: dict[int, list[Any]] = {}
        i, end = 1, len(v)
        while i < end:
            x = v[i]
            if isinstance(x, list):  # the tail: [CUSUM] or [CUSUM, episode start, positives step]
                s = float(x[0])
                if len(x) > 1:
                    a = [int(x[1]), int(x[2])]
                break
            hour, n, k = base + x, v[i + 1], v[i + 2]
            i += 3
            if k:
                c = v[i]
                h[hour] = [n, k, *v[i + 1:i + 1 + c]]
                i += 1 + c
            else:
                h[hour] = [n, k]
        return cls(base * HOUR, s, a, h)

    def pack(self) -> list[Any]:
        base = self.e // HOUR
        out: list[Any] = [base]
        for hour in sorted(self.h):
            b = self.h[hour]
            out += (hour - base, b[0], b[1])
            if b[1]:
                out.append(len(b) - 2)
                out += b[2:]
        if self.a is not None:
            out.append([self.s if self.s else 0, *self.a])
        elif self.s:
            out.append([self.s])
        return out

    def wake(self, step_s: int, window_s: int, min_positives: int) -> int | None:
        if not self.h:
            return None
        if self.a is None and sum(b[1] for b in self.h.values()) < min_positives:
            # no window can fire before new records (each needs min_positives): only the deletion, when
            # the newest bucket leaves the window; the CUSUM takes the hours in at the next evaluation
            return (max(self.h) * HOUR + window_s) // step_s * step_s + step_s
        # the oldest bucket leaves the window at the first boundary after its hour + window
        wake = ((min(self.h) * HOUR + window_s) // step_s + 1) * step_s
        young = [h for h in self.h if h * HOUR >= self.e]  # hours not yet closed at the last evaluation
        if young:
            wake = min(wake, (min(young) * HOUR // step_s + 1) * step_s)
        return wake


def _evaluate(
    key: str, st: _State, boundary: int, window_s: int, threshold: float, params: EarlyParams, out: Step
) -> bool:
    """Evaluate ``st`` at ``boundary`` in place (alerts into ``out``); False: the key is to be deleted."""
    buckets = st.h
    lo = boundary - window_s
    first = st.e  # the last evaluation took in the hours before its boundary; every later hour still
    # held goes in once (also one that has left the window since: a key not visited)
    s = st.s
    district = commodity = method = ""
    quick = False
    p0 = 0.0
    if first < boundary:
        closed = sorted(h for h in buckets if first <= h * HOUR < boundary)
        # from 0, hours without positives leave the CUSUM at 0 (each adds a negative step)
        if closed and (s or any(buckets[h][1] for h in closed)):
            district, commodity, method = split_key(key)
            quick = method in QUICK_METHODS
            p0 = params.baseline(method, quick, commodity)
            p1 = min(0.5, p0 * params.cusum_shift)
            up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
            for hi in closed:
                b = buckets[hi]
                s = max(0.0, s + b[1] * up + (b[0] - b[1]) * down)
    # Binomial test on the window [boundary - window, boundary); hours before it are dropped.
    lo_hour = lo // HOUR
    b_hour = boundary // HOUR
    n = k = 0
    for hi in [h for h in buckets if h < lo_hour]:
        del buckets[hi]
    for hi, b in buckets.items():
        if hi < b_hour:
            n += b[0]
            k += b[1]
    st.e = boundary
    st.s = s
    prev = st.a
    if k < params.surge_min_positives and prev is None:
        return bool(buckets)  # nothing can fire (both tests need min_positives)
    if not method:
        district, commodity, method = split_key(key)
        quick = method in QUICK_METHODS
        p0 = params.baseline(method, quick, commodity)
    p = binom_sf(k, n, p0) if n else 1.0
    significant = n >= params.surge_min_n and k >= params.surge_min_positives and p <= threshold
    cusum_alarm = s > params.cusum_h and k >= params.surge_min_positives
    if significant or cusum_alarm or (prev is not None and not _cleared(n, k, p, s, params)):
        start = prev[0] if prev is not None else lo
        mat = material(k)
        if prev is None or prev[1] != mat:
            cond = _condition(district, commodity, method, quick, start, n, k, p0, p, s, _ids(buckets, b_hour), params,
                              "binomial" if significant else "cusum")
            out.alerts.append(cond.alert())
        st.a = [start, mat]
    else:
        if prev is not None:
            cond = _condition(district, commodity, method, quick, prev[0], n, k, p0, p, s, _ids(buckets, b_hour),
                              params, "cleared")
            out.alerts.append(cond.alert(ends_at=max(boundary, cond.starts_at)))
        st.a = None
    return bool(buckets) or st.a is not None


def _ids(buckets: Mapping[int, list[Any]], b_hour: int) -> list[str]:
    return sorted(i for h, b in buckets.items() if h < b_hour for i in b[2:])


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """The boundary at which a stored key's window next changes without records (None: never)."""
    if value is None or is_chunk(key):
        return None
    return _State.of(key, value).wake(params.surge_step_h * HOUR, params.surge_window_h * HOUR,
                                      params.surge_min_positives)


def unpack(value: JSON) -> dict[str, Any]:
    """A stored value as a dict (tests, reading): ``{"h": {hour index: [results, non-compliant, id...]},
    "e": last boundary evaluated, "s": CUSUM (left out at 0), "a": [episode start, positives step]
    (left out when no alert)}``."""
    st = _State.of("", value)
    out: dict[str, Any] = {"h": {str(h): b for h, b in st.h.items()}, "e": st.e}
    if st.s:
        out["s"] = st.s
    if st.a is not None:
        out["a"] = st.a
    return out


def from_v1(key: str, old: JSON) -> JSON | None:
    """A key's state in the format before issue 21 (``{"h": {hour epoch: [n, k, [ids]]}, "S", "cu",
    "ev", "a": {"id", "fp", "start"}}``) in today's; None when it holds nothing but a CUSUM (dropped,
    as this version drops a key whose buckets have left the window). A value in today's form (a
    list: an upgrade cut short and run again) comes back unchanged; one in the dict form written
    during issue 21's development (``unpack``'s) is packed."""
    if isinstance(old, list) or is_chunk(key):
        return old
    if not isinstance(old, dict):
        return None
    if "e" in old:  # the dict form of issue 21's development
        h = {int(k): [int(b[0]), int(b[1]), *b[2:]] for k, b in dict(old.get("h") or {}).items()}
        a = old.get("a")
        st = _State(-(-int(old["e"]) // HOUR) * HOUR, float(old.get("s") or 0.0),
                    [int(a[0]), int(a[1])] if a else None, h)
        return st.pack() if h or st.a is not None else None
    buckets: dict[int, list[Any]] = {}
    for hk, b in dict(old.get("h") or {}).items():
        ids = [str(i) for i in b[2]][:MAX_IDS_PER_HOUR] if len(b) > 2 else []
        buckets[int(hk) // HOUR] = [int(b[0]), int(b[1]), *ids]
    alert: list[int] | None = None
    a = old.get("a")
    if isinstance(a, dict):
        fp = str(a.get("fp", ""))
        alert = [int(a["start"]), material(int(fp)) if fp.isdigit() else -1]
    if not buckets and alert is None:
        return None
    ev = int(old.get("ev") or 0)
    return _State(-(-ev // HOUR) * HOUR, float(old.get("S") or 0.0), alert, buckets).pack()


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
