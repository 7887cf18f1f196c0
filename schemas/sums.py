"""The components of residue sums seen per sample, so that a sum is judged whole (pure: no clock).

Where GB 2763 defines a residue as a sum (carbofuran = carbofuran + 3-hydroxycarbofuran), a lab
reports each component as its own result. The book gathers them per (sample, food, definition):
- components of one sample in one batch message are all judged on the sum of the message's parts;
- components arriving in later messages are judged on the sum of everything gathered so far (the
  earlier results keep the verdicts they were stored with: results are never rewritten);
- a part counts with its value times the definition's factor when quantified (at or above its
  LOQ, or with no LOQ given); a part not detected or below its LOQ adds nothing;
- a replayed result replaces its own earlier part (keyed by device and result id): never counted twice;
- a sample's parts are kept for ``window`` of test time after its first part (default 24 h) and
  for at most ``max_samples`` samples (the least recently touched go first), so the state is
  bounded; a part arriving later is judged with what is left, and its basis says which parts.
The book lives in one worker's memory: results are keyed by device, so one instrument's components
reach the same worker; after a restart or a rebalance a later part is judged with the parts the
new owner has seen (at worst alone, as a lower bound of the sum, which its basis says).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Final, NamedTuple

from schemas.reference.model import Reference
from schemas.result import Result, result_key

__all__ = ["DEFAULT_MAX_SAMPLES", "DEFAULT_WINDOW", "SumBook", "SumSoFar"]

DEFAULT_WINDOW: Final = timedelta(hours=24)
DEFAULT_MAX_SAMPLES: Final = 50_000


class SumSoFar(NamedTuple):
    definition: str
    total_mg_kg: float
    parts: tuple[tuple[str, float], ...]  # (component, amount as the definition) per counted part


class _Sample:
    __slots__ = ("first", "parts")

    def __init__(self, first: datetime) -> None:
        self.first = first
        self.parts: dict[str, tuple[str, float]] = {}  # result key -> (component, amount)


def _quantified_amount(result: Result, factor: float) -> float:
    value = result.value_mg_kg
    if value is None or value <= 0.0:
        return 0.0
    lod, loq = result.lod_mg_kg, result.loq_mg_kg
    if (lod is not None and value < lod) or (loq is not None and value < loq):
        return 0.0
    return value * factor


class SumBook:
    """Parts of residue sums per (sample_id, commodity, definition), bounded in time and count."""

    def __init__(self, *, window: timedelta = DEFAULT_WINDOW, max_samples: int = DEFAULT_MAX_SAMPLES) -> None:
        if max_samples < 1:
            raise ValueError("max_samples must be >= 1")
        self.window = window
        self.max_samples = max_samples
        self._samples: OrderedDict[tuple[str, str, str], _Sample] = OrderedDict()

    def __len__(self) -> int:
        return len(self._samples)

    @staticmethod
    def _definition(result: Result, reference: Reference) -> tuple[str, float] | None:
        part = reference.definition_of(result.analyte)
        if part is not None:
            return part.definition, part.factor
        for own in reference.sum_components(result.analyte):
            if own.component == result.analyte:
                return own.definition, own.factor
        return None

    def add(self, result: Result, reference: Reference) -> bool:
        """Record ``result`` if it is a component of a sum (a confirmatory reading in mg/kg);
        True when it was recorded."""
        if result.is_quick or result.value_mg_kg is None:
            return False
        found = self._definition(result, reference)
        if found is None:
            return False
        definition, factor = found
        key = (result.sample_id, result.commodity, definition)
        samples = self._samples
        sample = samples.get(key)
        if sample is None or abs(result.tested_at - sample.first) > self.window:
            sample = _Sample(result.tested_at)
            samples[key] = sample
        samples.move_to_end(key)
        sample.parts[result_key(result.device_id, result.result_id)] = (
            result.analyte,
            _quantified_amount(result, factor),
        )
        while len(samples) > self.max_samples:
            samples.popitem(last=False)
        return True

    def so_far(self, result: Result, reference: Reference) -> SumSoFar | None:
        """The sum ``result`` belongs to, when at least two parts of it are known and one counts."""
        found = self._definition(result, reference)
        if found is None:
            return None
        definition = found[0]
        sample = self._samples.get((result.sample_id, result.commodity, definition))
        if sample is None or len(sample.parts) < 2:
            return None
        parts = tuple(sorted(p for p in sample.parts.values() if p[1] > 0.0))
        if not parts:
            return None
        return SumSoFar(definition, sum(amount for _, amount in parts), parts)
