"""Compact screened records: what the screening agent hands the early-warning agent.

One message per screened batch goes to the internal topic ``screened_topic`` (one partition); its
value is a JSON array of records (``encode_batch``), one per accepted result. A record is written
as a JSON array of its fields in ``Screened._fields`` order; ``decode_batch`` also reads the older
form, a JSON object per record keyed by field name, and records without the last field (``rule``,
added for the data-steward alert), so messages already in the topic still decode.
Pure: no faust, no I/O. Times are whole epoch seconds (UTC), which is all the detectors need and
keeps the message small.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from operator import itemgetter
from typing import Any, Final, NamedTuple

import orjson

from schemas.codes import QUICK_METHODS
from schemas.result import Result
from schemas.verdict import Verdict

NON_COMPLIANT = frozenset({"positive", "exceeds", "banned"})
"""Verdicts that count as a finding against the food (docs/domain.md §3)."""
NOT_JUDGED = frozenset({"no_limit", "unclassified", "inconclusive"})  # verdicts of severity -1

UNCLASSIFIED: Final = "unclassified"
# Which label of a result the reference data did not know, by the rule of its ``unclassified``
# verdict (schemas.verdict.Rule): the ``field`` of foodrisk_unclassified_results_total, of
# `foodrisk reference gaps` and of the data-steward alert.
GAP_FIELDS: Final[dict[str, str]] = {"unknown_food": "commodity", "unknown_analyte": "analyte"}


def gap_field(rule: str | None) -> str:
    """The field (``commodity`` or ``analyte``) an ``unclassified`` verdict's rule names; a rule this
    code does not know counts as the commodity (the food is looked up first)."""
    return GAP_FIELDS.get(rule or "", "commodity")


class Screened(NamedTuple):
    result_id: str
    sample_id: str
    sampled_at: int  # epoch seconds, UTC (event time)
    tested_at: int
    device_id: str
    site_id: str
    site_type: str
    district: str
    vendor_id: str | None
    supplier_id: str | None
    origin: str | None
    commodity: str
    analyte: str
    method: str
    quick: bool
    verdict: str
    value_mg_kg: float | None
    percent: float | None
    ratio: float | None
    confirms: str | None
    rule: str | None = None  # the verdict's rule (schemas.verdict.Rule); None in records written before it

    @property
    def non_compliant(self) -> bool:
        return self.verdict in NON_COMPLIANT

    @property
    def judged(self) -> bool:
        """A verdict about the food (``no_limit``, ``unclassified`` and ``inconclusive`` are not)."""
        return self.verdict not in NOT_JUDGED


_FIELD_COUNT: Final = len(Screened._fields)
_OLD_FIELD_COUNT: Final = _FIELD_COUNT - 1  # records written before ``rule``: every field but the last
# ``_new_tuple(Screened, fields)`` is a record straight from a sequence of its fields, in order: what
# ``Screened._make`` does, without its Python frame; callers check the length themselves.
_new_tuple: Final = tuple.__new__
_from_object: Final = itemgetter(*Screened._fields[:-1])  # the old wire form: a JSON object per record


def screened_record(result: Result, verdict: Verdict) -> Screened:
    # Field values straight from the models' __dict__ (cheaper than pydantic attribute access).
    r, site = result.__dict__, result.site.__dict__
    method = r["method"]
    return _new_tuple(Screened, (
        r["result_id"],
        r["sample_id"],
        int(r["sampled_at"].timestamp()),
        int(r["tested_at"].timestamp()),
        r["device_id"],
        site["id"],
        str(site["type"]),
        site["district"],
        r["vendor_id"],
        r["supplier_id"],
        r["origin"],
        r["commodity"],
        r["analyte"],
        str(method),
        method in QUICK_METHODS,
        str(verdict.verdict),
        r["value_mg_kg"],
        r["percent"],
        verdict.ratio,
        r["confirms"],
        verdict.rule,
    ))


def encode_batch(records: Iterable[Screened]) -> bytes:
    # orjson does not serialise a NamedTuple by itself; ``default=tuple`` writes each as a JSON array.
    return orjson.dumps(records if isinstance(records, list) else list(records), default=tuple)


def decode_batch(data: bytes) -> list[Screened]:
    """The records of one screened message (ValueError if it is not one)."""
    try:
        items: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a screened batch: {exc}") from exc
    if not isinstance(items, list):
        raise ValueError("not a screened batch: not a JSON array")  # noqa: TRY004 - callers catch ValueError
    # The current form, checked for the whole message at once: every record an array of every field.
    if set(map(type, items)) <= {list} and set(map(len, items)) <= {_FIELD_COUNT}:
        return list(map(_new_tuple, repeat(Screened, len(items)), items))
    if set(map(type, items)) <= {list} and set(map(len, items)) <= {_OLD_FIELD_COUNT}:
        return [_new_tuple(Screened, (*item, None)) for item in items]
    try:
        return [_decode_record(item) for item in items]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a screened batch: {exc}") from exc


def _decode_record(item: Any) -> Screened:
    if type(item) is list:
        if len(item) == _OLD_FIELD_COUNT:
            return _new_tuple(Screened, (*item, None))
        if len(item) != _FIELD_COUNT:
            raise TypeError(f"a record has {_FIELD_COUNT} fields, not {len(item)}")
        return _new_tuple(Screened, item)
    # an object per record (older writers); KeyError if one is missing
    return _new_tuple(Screened, (*_from_object(item), item.get("rule")))
