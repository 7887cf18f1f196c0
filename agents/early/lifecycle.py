"""Alert lifecycle for the early-warning detectors.

* Deterministic ids: ``alert_id_for(kind, *key)`` over the condition's key (e.g. supplier,
  commodity and the episode's start), so a replay or a restart gives the same id.
* A condition that persists UPDATES its alert (same id, richer evidence), and only when something
  material changed (``Condition.material``, a fingerprint chosen by the detector), never once per
  event. What an update means (issue 21): a growing count enters the fingerprint only by its step
  on the update :func:`ladder` (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, ...), everything that
  changes the alert's severity (classification, risk: a lab confirmed it, a banned substance)
  enters as it is. So on-call staff get an update when a count crosses 1, 2, 3, 5, 10, 20, 50, ...
  or the severity changes, not at every further finding: a supplier cluster by its places and its
  results, a repeat offender by its findings, a rate surge by its positives. The alert between two
  updates carries the evidence as of its last update. A detector keeps the fingerprint it last
  emitted (:func:`update`), so the decision needs no copy of the alert.
* When it clears, the same id is emitted with ``status=resolved`` and ``ends_at``, always (whatever
  the ladder), with the counts and evidence at resolution. The ``alerts``
  table (ReplacingMergeTree ORDER BY (alert_id, status)) then holds the last firing row and the
  resolved row side by side.

Classification and risk per kind (docs/domain.md §4; a RASFF-like classification kept apart from risk):

| kind | subject | classification | risk |
|---|---|---|---|
| rate_surge | food | follow_up | undecided (quick method) / potentially_serious (lab) |
| repeat_offender | food | alert if a lab found anything banned, else follow_up | serious / potentially_serious |
| supplier_cluster | food | alert if a lab confirmed any of it, else follow_up | serious / undecided |
| unconfirmed_positive | food | follow_up | undecided |
| device_silent | device | attention | not_serious |
| device_drift | device | attention | not_serious |
| reference_gap | reference | attention | undecided |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from agents.early.common import JSON, utc
from schemas.alert import Alert, AlertStatus, Classification, Detail, Risk, alert_id_for

KIND_SURGE: Final = "rate_surge"
KIND_OFFENDER: Final = "repeat_offender"
KIND_CLUSTER: Final = "supplier_cluster"
KIND_UNCONFIRMED: Final = "unconfirmed_positive"
KIND_SILENT: Final = "device_silent"
KIND_DRIFT: Final = "device_drift"
KIND_GAP: Final = "reference_gap"  # a label the reference data does not know (agents/early/gap.py)
EARLY_KINDS: Final = (KIND_SURGE, KIND_OFFENDER, KIND_CLUSTER, KIND_UNCONFIRMED, KIND_SILENT, KIND_DRIFT, KIND_GAP)

SUBJECT_FOOD: Final = "food"
SUBJECT_DEVICE: Final = "device"
SUBJECT_REFERENCE: Final = "reference"  # the reference data, not food: for the data steward
MAX_EVIDENCE: Final = 200  # result ids carried by one alert (details say how many there were)


@dataclass(frozen=True)
class Condition:
    """What a detector says about one alert right now."""

    kind: str
    key: tuple[str, ...]
    classification: Classification
    risk: Risk
    starts_at: int  # event time, epoch seconds
    summary_en: str
    summary_zh: str
    material: str  # fingerprint of what matters: a change re-emits the (firing) alert
    evidence: tuple[str, ...] = ()
    subject: str = SUBJECT_FOOD
    district: str | None = None
    site_id: str | None = None
    site_type: str | None = None
    commodity: str | None = None
    analyte: str | None = None
    supplier_id: str | None = None
    vendor_id: str | None = None
    device_id: str | None = None
    details: dict[str, Detail] = field(default_factory=dict)
    evidence_total: int = 0  # how many there were when ``evidence`` holds only some (bounded state)

    @property
    def alert_id(self) -> str:
        return alert_id_for(self.kind, *self.key)

    def alert(self, *, ends_at: int | None = None) -> Alert:
        details: dict[str, Detail] = {"subject": self.subject, "detector": "early", **self.details}
        total = max(self.evidence_total, len(self.evidence))
        if total > min(len(self.evidence), MAX_EVIDENCE):
            details["evidence_total"] = total
        return Alert(
            alert_id=self.alert_id,
            kind=self.kind,
            classification=self.classification,
            risk=self.risk,
            status=AlertStatus.resolved if ends_at is not None else AlertStatus.firing,
            summary_en=self.summary_en,
            summary_zh=self.summary_zh,
            district=self.district,
            site_id=self.site_id,
            site_type=self.site_type,
            commodity=self.commodity,
            analyte=self.analyte,
            supplier_id=self.supplier_id,
            vendor_id=self.vendor_id,
            device_id=self.device_id,
            evidence=self.evidence[:MAX_EVIDENCE],
            starts_at=utc(self.starts_at),
            ends_at=utc(ends_at) if ends_at is not None else None,
            details=details,
        )


_LADDER: Final = (1, 2, 3, 5)


def ladder(n: int) -> int:
    """The step of the update ladder at or below ``n`` (0 below 1): 1, 2, 3, 5, 10, 20, 50, 100, 200,
    500, 1000, 2000, 5000, ... A growing alert (more places, samples, positives) is re-emitted when a
    count crosses the next step, not at every step: within 1-3 every change is news, from 5 on a
    step is 2-2.5 times the one before, so an alert growing to n sends O(log n) updates."""
    if n < 1:
        return 0
    if n < 10:
        return max(s for s in _LADDER if s <= n)
    decade = 10
    while decade * 10 <= n:
        decade *= 10
    return max(decade * m for m in (1, 2, 5) if decade * m <= n)


def fire(prev: JSON, cond: Condition) -> tuple[dict[str, JSON], Alert | None]:
    """The alert record to keep, and the firing alert to emit (None when nothing material changed).

    ``prev`` is the record kept from last time (None: not firing yet)."""
    rec: dict[str, JSON] = {"id": cond.alert_id, "fp": cond.material, "start": cond.starts_at}
    if isinstance(prev, dict) and prev.get("id") == cond.alert_id and prev.get("fp") == cond.material:
        return rec, None
    return rec, cond.alert()


def update(prev: str | None, cond: Condition) -> Alert | None:
    """The firing alert to emit when ``cond``'s fingerprint differs from ``prev`` (the fingerprint of
    the last emission kept by the detector, None: not emitted yet), else None."""
    return None if prev == cond.material else cond.alert()


def resolve(cond: Condition, ends_at: int) -> Alert:
    """The resolved event of a condition that cleared at ``ends_at`` (event time)."""
    return cond.alert(ends_at=max(ends_at, cond.starts_at))
