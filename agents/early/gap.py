"""Reference gaps: a label the reference data does not know, told to the data steward.

A result the screening could not judge because its commodity label (rule ``unknown_food``) or its
analyte label (rule ``unknown_analyte``) is not in the reference data has verdict ``unclassified``.
The first such result of a (field, label) on a local day (Asia/Shanghai, event time) raises a
``reference_gap`` alert: classification ``attention`` (information for attention, the lowest),
risk ``undecided`` (nobody judged the food), ``details.subject = "reference"``. Its labels carry
``field`` (commodity | analyte), the unknown label in that field, and where it was first seen
(district, site, device), so Alertmanager routes it to the data steward (deploy/alertmanager:
``alertname="reference_gap"``), never to food-safety on-call. It is raised once per label per day
(id over kind, field, label and day) and never resolved: Alertmanager ends it after
FOODRISK_ALERTMANAGER_ACTIVE_S. `foodrisk reference gaps` lists every unknown label with counts.

State (bounded): ``"<local day start>"`` -> the ``"field:label"`` keys alerted that day, for the
watermark's day and the day before; older days are dropped, and a record sampled before them raises
nothing (it is still counted and listed). At most :data:`MAX_LABELS_PER_DAY` labels are alerted a
day (a device sending made-up labels cannot flood the steward or the state); the rest are listed by
`foodrisk reference gaps`. A day's key is due (``wake_of``) when the watermark's local day is
``KEEP_DAYS`` after it, and deleted then; no step scans the days held.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Final

from agents.early.common import DAY, JSON, EarlyParams, Step, due_by_scan, iso, local_date, local_day
from agents.early.lifecycle import KIND_GAP, SUBJECT_REFERENCE, Condition, fire
from agents.screened import UNCLASSIFIED, Screened, gap_field
from schemas.alert import Classification, Risk

MAX_LABELS_PER_DAY: Final = 200
KEEP_DAYS: Final = 2  # the watermark's local day and the one before

_WHAT: Final = {
    "commodity": ("food", "食品", "an alias of a food in schemas/reference/foods.csv, or add the food",
                  "在 schemas/reference/foods.csv 中将其添加为某食品的别名，或新增该食品"),
    "analyte": ("analyte", "检测项目", "an alias of an analyte in schemas/reference/analytes.csv, or add the analyte",
                "在 schemas/reference/analytes.csv 中将其添加为某检测项目的别名，或新增该检测项目"),
}


def step(
    state: Mapping[str, JSON], records: Sequence[Screened], watermark: int, params: EarlyParams,
    due: Collection[str] | None = None,
) -> Step:
    out = Step()
    oldest = local_day(watermark) - (KEEP_DAYS - 1) * DAY
    days: dict[str, list[str]] = {}  # the days this step read: the stored list plus what it alerted
    grown: set[str] = set()
    for r in records:
        if r.verdict != UNCLASSIFIED:
            continue
        day = local_day(r.sampled_at)
        if day < oldest:
            continue  # too late to tell apart from what was already told; `reference gaps` lists it
        field = gap_field(r.rule)
        label = r.commodity if field == "commodity" else r.analyte
        key, dk = f"{field}:{label}", str(day)
        seen = days.get(dk)
        if seen is None:
            cur = state.get(dk)
            seen = days[dk] = list(cur) if isinstance(cur, list) else []
        if key in seen or len(seen) >= MAX_LABELS_PER_DAY:
            continue
        seen.append(key)
        grown.add(dk)
        _, alert = fire(None, condition(r, field, label, day))
        if alert is not None:
            out.alerts.append(alert)
    if due is None:
        due = due_by_scan(state, watermark, params, wake_of)
    for dk in due:
        if dk in days:
            continue
        if int(dk) < oldest:
            if dk in state:
                out.updates[dk] = None
            out.wake[dk] = None
        else:
            out.wake[dk] = wake_of(dk, state.get(dk), params)
    for dk, seen in days.items():
        if dk in grown:
            out.updates[dk] = seen
        out.wake[dk] = wake_of(dk, seen, params)
    return out


def wake_of(key: str, value: JSON, params: EarlyParams) -> int | None:
    """A day's labels are dropped once the watermark's local day is ``KEEP_DAYS`` days after it."""
    return int(key) + KEEP_DAYS * DAY if isinstance(value, list) else None


def condition(r: Screened, field: str, label: str, day: int) -> Condition:
    """The data-steward alert for ``label`` in ``field``, first seen in ``r`` on local ``day``."""
    what_en, what_zh, todo_en, todo_zh = _WHAT[field]
    where_en = f"site {r.site_id} ({r.site_type}), {r.district}"
    where_zh = f"站点 {r.site_id}（{r.site_type}），{r.district}"
    en = (
        f"Unknown {what_en} label {label!r} ({field}): not in the reference data, so results carrying it are "
        f"not judged (verdict unclassified). First seen on {local_date(day)} in result {r.result_id} "
        f"({r.method}) from device {r.device_id} at {where_en}. To do: add {label!r} as {todo_en}; "
        "`foodrisk reference gaps` lists every unknown label."
    )
    zh = (
        f"未知{what_zh}名称“{label}”（{field}）：参考数据中没有，带此名称的结果未作判定（unclassified）。"
        f"{local_date(day)} 首次见于结果 {r.result_id}（{r.method}），设备 {r.device_id}，{where_zh}。"
        f"处理：{todo_zh}；`foodrisk reference gaps` 列出全部未知名称。"
    )
    return Condition(
        kind=KIND_GAP,
        key=(field, label, local_date(day)),
        classification=Classification.attention,
        risk=Risk.undecided,
        starts_at=r.sampled_at,
        summary_en=en,
        summary_zh=zh,
        material="seen",
        evidence=(r.result_id,),
        subject=SUBJECT_REFERENCE,
        district=r.district,
        site_id=r.site_id,
        site_type=r.site_type,
        commodity=r.commodity if field == "commodity" else None,
        analyte=r.analyte if field == "analyte" else None,
        device_id=r.device_id,
        details={"field": field, "label": label, "day": local_date(day), "method": r.method,
                 "sample_id": r.sample_id, "first_result_id": r.result_id, "first_seen_at": iso(r.sampled_at),
                 "rule": r.rule},
    )



def from_v1(key: str, old: JSON) -> JSON:
    """The form written before issue 21 is this one (a day's list of ``field:label``)."""
    return old if isinstance(old, list) else None
