"""What another reference edition would change: stored results screened again, compared with what
was stored. Pure: rows, the reference and "now" are parameters (``foodrisk rescreen`` reads the rows
from ClickHouse and prints the tally, pipeline/rescreen_cmd.py).

A stored ``results`` row holds the result as validated (codes, normalised amounts, UTC times), so the
result is rebuilt from it in the wire format, with the amounts in mg/kg (or %) they were judged in,
and parsed again with the other reference (a food or analyte label it knows by another alias is
resolved as a new result would be). Each result then falls in one of:

- ``newly_exceeding``: a finding now (positive, exceeds, banned), not one as stored;
- ``newly_compliant``: compliant now, not compliant as stored (a finding withdrawn, a watch that
  drops, a food or limit that was not known);
- ``other_change``: another verdict (compliant -> watch, exceeds -> banned, compliant -> no_limit ...);
- ``limit_changed``: the same verdict against another limit;
- ``unchanged``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from schemas.reference import Reference
from schemas.result import InvalidResult, Result, parse_result
from schemas.rules import screen, screen_sum
from schemas.sums import SumBook
from schemas.verdict import Verdict, VerdictKind

# The ``results`` columns a result is rebuilt from, and those of its stored verdict.
STORED_COLUMNS: Final[tuple[str, ...]] = (
    "result_id", "sample_id", "device_id", "site_id", "site_type", "district", "site_name", "vendor_id",
    "supplier_id", "origin", "commodity", "analyte", "method", "value_mg_kg", "percent", "qualitative",
    "lod_mg_kg", "loq_mg_kg", "sampled_at", "tested_at", "confirms", "verdict", "limit_mg_kg",
    "reference_edition",
)  # fmt: skip

FINDINGS: Final = frozenset({VerdictKind.positive, VerdictKind.exceeds, VerdictKind.banned})


class Change(StrEnum):
    newly_exceeding = "newly_exceeding"
    newly_compliant = "newly_compliant"
    other_change = "other_change"
    limit_changed = "limit_changed"
    unchanged = "unchanged"


def _utc(value: Any) -> datetime:
    """A stored time (a datetime, or ISO text as the query port answers) as aware UTC: stored times
    are UTC, a naive one included (the wire format would read a naive time as Beijing time)."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def wire_result(row: Mapping[str, Any]) -> dict[str, Any]:
    """The wire-format v1 result of a stored row (``STORED_COLUMNS``): amounts in mg/kg, or % for
    inhibition, as they were judged; ids, site, times and codes as stored."""
    out: dict[str, Any] = {
        "schema_version": 1,
        "result_id": row["result_id"],
        "sample_id": row["sample_id"],
        "device_id": row["device_id"],
        "site": {"id": row["site_id"], "type": row["site_type"], "district": row["district"],
                 "name": row["site_name"] or None},
        "vendor_id": row["vendor_id"],
        "supplier_id": row["supplier_id"],
        "origin": row["origin"],
        "commodity": row["commodity"],
        "analyte": row["analyte"],
        "method": row["method"],
        "sampled_at": _utc(row["sampled_at"]),
        "tested_at": _utc(row["tested_at"]),
        "confirms": row["confirms"],
    }
    if row["percent"] is not None:
        out["value"], out["unit"] = float(row["percent"]), "%"
    elif row["value_mg_kg"] is not None:
        out["value"], out["unit"] = float(row["value_mg_kg"]), "mg/kg"
    for name in ("lod", "loq"):
        amount = row[f"{name}_mg_kg"]
        if amount is not None:
            out[name] = float(amount)
            out.setdefault("unit", "mg/kg")
    if row["qualitative"] is not None:
        out["qualitative"] = row["qualitative"]
    return out


def classify(stored_verdict: str, stored_limit: float | None, new: Verdict) -> Change:
    """How ``new`` differs from the stored verdict and limit."""
    before = VerdictKind(stored_verdict)
    after = new.verdict
    if after in FINDINGS and before not in FINDINGS:
        return Change.newly_exceeding
    if after is VerdictKind.compliant and before is not VerdictKind.compliant:
        return Change.newly_compliant
    if after is not before:
        return Change.other_change
    if (stored_limit is None) != (new.limit_mg_kg is None) or (
        stored_limit is not None and new.limit_mg_kg is not None and abs(stored_limit - new.limit_mg_kg) > 1e-12
    ):
        return Change.limit_changed
    return Change.unchanged


@dataclass
class Tally:
    """Results by (commodity, analyte) and change; transitions ``(stored, new)`` verdict pairs."""

    by_key: dict[tuple[str, str], Counter[Change]] = field(default_factory=dict)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    stored_editions: Counter[str] = field(default_factory=Counter)
    not_rebuilt: int = 0  # stored rows the other reference's parsing refused (listed by id)
    not_rebuilt_ids: list[str] = field(default_factory=list)

    @property
    def results(self) -> int:
        return sum(sum(c.values()) for c in self.by_key.values()) + self.not_rebuilt

    def total(self) -> Counter[Change]:
        out: Counter[Change] = Counter()
        for c in self.by_key.values():
            out.update(c)
        return out


MAX_LISTED = 20


def rescreen(
    rows: Iterable[Mapping[str, Any]],
    reference: Reference,
    *,
    now: datetime,
    watch_fraction: float = 0.5,
    tally: Tally | None = None,
    sums: SumBook | None = None,
) -> Tally:
    """Screen each stored row again with ``reference`` and count the changes (into ``tally`` when
    given, so that pages of rows add up). Keys are the commodity and analyte codes of the result as
    parsed with ``reference``.

    With ``sums``, the components of a residue sum (schemas/sums.py) are gathered per sample over
    the rows given (and, with the same book, over earlier calls) and each is judged on what its
    sample has gathered by the end of these rows, as the parts of one message are: a component
    that was stored judged alone because its parts came in separate messages may show as a change.
    """
    out = tally if tally is not None else Tally()
    parsed: list[tuple[Mapping[str, Any], Result]] = []
    for row in rows:
        out.stored_editions[str(row["reference_edition"] or "")] += 1
        try:
            parsed.append((row, parse_result(wire_result(row), reference=reference, now=now)))
        except InvalidResult:
            out.not_rebuilt += 1
            if len(out.not_rebuilt_ids) < MAX_LISTED:
                out.not_rebuilt_ids.append(f"{row['device_id']}/{row['result_id']}")
    in_sum = [r for _, r in parsed if sums.add(r, reference)] if sums is not None else []
    for row, result in parsed:
        so_far = sums.so_far(result, reference) if in_sum and sums is not None else None
        if so_far is None:
            verdict = screen(result, reference, watch_fraction=watch_fraction)
        else:
            verdict = screen_sum(result, reference, so_far.total_mg_kg, so_far.parts, watch_fraction=watch_fraction)
        limit = row["limit_mg_kg"]
        change = classify(str(row["verdict"]), None if limit is None else float(limit), verdict)
        key = (result.commodity, result.analyte)
        counts = out.by_key.get(key)
        if counts is None:
            counts = out.by_key[key] = Counter()
        counts[change] += 1
        if change is not Change.unchanged and change is not Change.limit_changed:
            out.transitions[(str(row["verdict"]), str(verdict.verdict))] += 1
    return out
