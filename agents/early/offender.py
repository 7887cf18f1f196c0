"""Repeat offender and the red list (FDA import-alert style).

A vendor with >= ``offender_n`` non-compliant SAMPLES (a quick positive and its lab confirmation
are one sample, not two findings) sampled within ``offender_days`` goes on the red list and raises a
``repeat_offender`` alert; it comes off after ``offender_clean_k`` consecutive clean samples, and
the alert is resolved then. Further non-compliant samples while listed update the alert when their
count crosses a step of the update ladder, or when a lab finds something banned (``lifecycle``);
the red list gets a row at every change.

State per vendor, a JSON array ``[site_id, district, findings, listed_at | None, n, banned 0|1,
clean, fp]``:

* ``findings``: the non-compliant samples ``[sampled_at, result_id, sample_id, rank]`` (rank 1
  positive, 2 exceeds, 3 banned: the worst result of the sample), in event-time order. Not listed:
  those within ``offender_days`` of the watermark, so fewer than ``offender_n`` (the key is due when
  the oldest leaves the look-back, and deleted with the last). Listed: every finding since the
  listing counts, the :data:`MAX_KEPT` earliest are kept (the alert's evidence).
* ``n``: the exact count of findings, ``banned`` whether a lab found anything banned, ``clean``
  the sample ids clean since the last finding (listed only: fewer than ``offender_clean_k``),
  ``fp`` the fingerprint of the alert last emitted (None: not yet).

A sample is taken once by its id among the findings kept; past the cap (a vendor listed with more
than :data:`MAX_KEPT` non-compliant samples) the lab confirmation of a quick positive not kept counts
as a further finding. ``Step.redlist`` holds the red-list rows to write.

Clean samples change nothing for a vendor that is not listed (its findings leave the look-back at
its wake, a visit of its own). So, given the engine's memory of which vendors are listed
(``Listed``), a step reads a vendor whose judged results in the batch are all clean only when it is
listed or due: on the national soak nine reads in ten were such reads (8,595 vendor values read on
day 30, 1,055 now). Without that memory (unit tests, offline runs) every vendor with judged results
is read, with the same outcome.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agents.early.common import DAY, JSON, EarlyParams, Step, due_by_scan, iso
from agents.early.lifecycle import KIND_OFFENDER, MAX_EVIDENCE, Condition, ladder, resolve, update
from agents.screened import Screened
from schemas.alert import Classification, Risk

MAX_KEPT: Final = MAX_EVIDENCE  # findings kept per listed vendor (the alert's evidence)

_SITE, _DISTRICT, _FINDINGS, _LISTED, _N, _BANNED, _CLEAN, _FP = range(8)
_RANK: Final = {"positive": 1, "exceeds": 2, "banned": 3}
_BANNED_RANK: Final = 3


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


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """Not listed: when the oldest finding leaves the look-back (the first watermark past
    ``sampled_at + offender_days``). Listed: never (only samples move it)."""
    v = value if isinstance(value, list) else from_v1(key, value)
    if not v or v[_LISTED] is not None or not v[_FINDINGS]:
        return None
    return int(v[_FINDINGS][0][0]) + params.offender_days * DAY + 1


class Listed:
    """The vendors on the red list: what the engine keeps in its memory of the offender table
    (``build`` at recovery, ``apply`` after each step's writes), so that a step can leave out the
    vendors not listed whose judged results are all clean."""

    __slots__ = ("vendors",)

    def __init__(self, vendors: set[str] | None = None) -> None:
        self.vendors: set[str] = vendors if vendors is not None else set()

    @classmethod
    def build(cls, state: Mapping[str, JSON]) -> Listed:
        return cls({k for k, v in state.items() if is_listed(v)})

    def apply(self, updates: Mapping[str, JSON]) -> None:
        for k, v in updates.items():
            if v is not None and is_listed(v):
                self.vendors.add(k)
            else:
                self.vendors.discard(k)


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None, memory: Listed | None = None,
) -> OffenderStep:
    """``memory`` None: every vendor with judged results in the batch is read."""
    out = OffenderStep()
    by_vendor: dict[str, list[Screened]] = {}
    finding: set[str] = set()  # the vendors with a non-compliant result in the batch
    for r in records:
        if r.vendor_id and r.judged:
            by_vendor.setdefault(r.vendor_id, []).append(r)
            if r.non_compliant:
                finding.add(r.vendor_id)
    if due is None:
        due = due_by_scan(state, watermark, params, wake_of)
    if memory is None:
        visit = list(by_vendor)
    else:
        listed, due_set = memory.vendors, set(due)
        visit = [v for v in by_vendor if v in finding or v in listed or v in due_set]
    visit.extend(k for k in due if k not in by_vendor)
    for vendor in visit:
        cur = state.get(vendor)
        rs = by_vendor.get(vendor, ())
        if cur is None and not any(r.non_compliant for r in rs):
            out.wake[vendor] = None  # clean samples of a vendor with no findings: nothing to keep
            continue
        if cur is not None and not isinstance(cur, list):
            cur = from_v1(vendor, cur)  # a value written before issue 21 (the engine converts at upgrade)
        value, changed = _visit(vendor, cur, rs, watermark, params, out)
        if value is None:
            if vendor in state:
                out.updates[vendor] = None
            out.wake[vendor] = None
        else:
            if changed:
                out.updates[vendor] = value
            out.wake[vendor] = wake_of(vendor, value, params)
    return out


def _visit(
    vendor: str, cur: list[Any] | None, rs: Sequence[Screened], watermark: int, params: EarlyParams,
    out: OffenderStep,
) -> tuple[list[Any] | None, bool]:
    st: list[Any] = list(cur) if cur is not None else ["", "", [], None, 0, 0, [], None]
    changed = False
    last_t = 0
    if rs:
        findings: list[list[Any]] = list(st[_FINDINGS])
        by_sample = {f[2]: i for i, f in enumerate(findings)}
        listed = st[_LISTED] is not None
        # clean samples matter only while listed: not listed, the listing needs a new finding, which
        # starts the clean run afresh
        clean: list[str] = list(st[_CLEAN]) if listed else []
        for r in sorted(rs, key=lambda x: (x.sampled_at, x.result_id)):
            last_t = max(last_t, r.sampled_at)
            if r.non_compliant:
                rank = _RANK.get(r.verdict, 0)
                i = by_sample.get(r.sample_id)
                if i is None:
                    row = [r.sampled_at, r.result_id, r.sample_id, rank]
                    full = len(findings) >= MAX_KEPT
                    if not full or row[:2] < findings[-1][:2]:
                        insort(findings, row, key=lambda f: (f[0], f[1]))
                        del findings[MAX_KEPT:]
                        by_sample = {f[2]: j for j, f in enumerate(findings)}
                    st[_N] += 1
                    clean = []
                    changed = True
                elif rank > findings[i][3]:
                    findings[i] = [r.sampled_at, r.result_id, r.sample_id, rank]
                    findings.sort(key=lambda f: (f[0], f[1]))
                    by_sample = {f[2]: j for j, f in enumerate(findings)}
                    changed = True
                if r.sample_id in clean:
                    clean = [s for s in clean if s != r.sample_id]
                    changed = True
                if rank >= _BANNED_RANK and not st[_BANNED]:
                    st[_BANNED] = 1
                    changed = True
                if (r.site_type != "testing_centre" or not st[_SITE]) and [st[_SITE], st[_DISTRICT]] != [
                        r.site_id, r.district]:
                    st[_SITE], st[_DISTRICT] = r.site_id, r.district
                    changed = True
            elif r.sample_id not in by_sample and (listed or findings) and r.sample_id not in clean:
                clean.append(r.sample_id)
                changed = changed or listed
        st[_FINDINGS] = findings
        st[_CLEAN] = clean
    if st[_LISTED] is None:
        horizon = watermark - params.offender_days * DAY
        findings = st[_FINDINGS]
        if findings and findings[0][0] < horizon:
            st[_FINDINGS] = findings = [f for f in findings if f[0] >= horizon]
            st[_N] = len(findings)
            st[_BANNED] = int(any(f[3] >= _BANNED_RANK for f in findings))
            changed = True
        if len(findings) >= params.offender_n:
            st[_LISTED] = max(f[0] for f in findings)
            changed = True
        else:
            st[_CLEAN] = []
            if not findings:
                return None, True
            return st, changed
    if not changed and st[_FP] == material(int(st[_N]), bool(st[_BANNED])):
        return st, False  # listed, nothing new (a resend): no alert, no red-list row
    cond = _condition(vendor, st, params)
    if len(st[_CLEAN]) >= params.offender_clean_k:
        if st[_FP] is None:  # listed and cleared within one batch: announce it before resolving it
            out.alerts.append(cond.alert())
            out.redlist.append(_entry(vendor, st, cond, listed=True, at=int(st[_LISTED])))
        out.alerts.append(resolve(cond, last_t))
        out.redlist.append(_entry(vendor, st, cond, listed=False, at=last_t))
        return None, True
    alert = update(st[_FP], cond)
    if alert is not None:
        out.alerts.append(alert)
        st[_FP] = cond.material
    if alert is not None or changed:
        out.redlist.append(_entry(vendor, st, cond, listed=True, at=last_t))
        changed = True
    return st, changed


def material(findings: int, banned: bool) -> str:
    """What re-emits a listed vendor's alert: its findings by their step on the ladder, and a lab
    finding something banned (severity)."""
    return f"{ladder(findings)}:{int(banned)}"


def _condition(vendor: str, st: list[Any], params: EarlyParams) -> Condition:
    findings = st[_FINDINGS]
    banned = bool(st[_BANNED])
    listed = int(st[_LISTED] if st[_LISTED] is not None else (findings[-1][0] if findings else 0))
    site_id, district = st[_SITE], st[_DISTRICT]
    n = int(st[_N])
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
        material=material(n, banned),
        evidence=tuple(f[1] for f in findings),
        evidence_total=n,
        vendor_id=vendor,
        site_id=site_id or None,
        district=district or None,
        details={"findings": n, "clean_run": len(st[_CLEAN]), "days": params.offender_days,
                 "clean_needed": params.offender_clean_k, "samples": ",".join(sorted(f[2] for f in findings))},
    )


def _entry(vendor: str, st: list[Any], cond: Condition, *, listed: bool, at: int) -> RedListEntry:
    return RedListEntry(
        vendor_id=vendor,
        listed=listed,
        listed_at=cond.starts_at,
        changed_at=at,
        findings=int(st[_N]),
        clean_run=len(st[_CLEAN]),
        site_id=st[_SITE],
        district=st[_DISTRICT],
        alert_id=cond.alert_id,
        evidence=cond.evidence,
    )


def is_listed(value: JSON) -> bool:
    """Whether a stored value (either form) is a vendor on the red list."""
    v = value if isinstance(value, list) else from_v1("", value)
    return bool(v) and v[_LISTED] is not None


def from_v1(key: str, old: JSON) -> JSON:
    """A value in the form written before issue 21 (``{"bad": {sample_id: [sampled_at, result_id,
    verdict, site_id]}, "clean": [...], "listed": listed_at | None, "a": alert record | None,
    "where": [site_id, district]}``) in this module's form; None when it holds nothing. The
    fingerprint of an alert already emitted is carried over on the ladder (the count it was emitted
    with), so the upgrade itself re-emits nothing."""
    if isinstance(old, list) or old is None:
        return old
    if not isinstance(old, dict):
        return None
    bad = old.get("bad") or {}
    findings = sorted(([int(v[0]), v[1], s, _RANK.get(v[2], 0)] for s, v in bad.items()),
                      key=lambda f: (f[0], f[1]))
    listed = old.get("listed")
    if not findings and listed is None:
        return None
    where = old.get("where") or ["", ""]
    banned = int(any(f[3] >= _BANNED_RANK for f in findings))
    fp = None
    a = old.get("a")
    if listed is not None and isinstance(a, dict):
        try:
            fp = material(int(a.get("fp", "")), bool(banned))
        except ValueError:
            fp = None
    clean = list(old.get("clean") or ()) if listed is not None else []
    return [where[0], where[1], findings[:MAX_KEPT], listed, len(findings), banned, clean, fp]
