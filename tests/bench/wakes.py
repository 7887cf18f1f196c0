"""A wake schedule for the detector benches: wake time -> keys, earliest first (a heap with lazy
deletion). The engine has its own (``agents.early.schedule``); the benches keep this one because
they also drive detector trees of earlier versions, which have none."""

from __future__ import annotations

import heapq
from collections.abc import Mapping


class WakeHeap:
    """One table's keys by the watermark time they are next due (``Step.wake``)."""

    def __init__(self) -> None:
        self.at: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []

    def due(self, upto: int) -> list[str]:
        """The keys due at ``upto``, unscheduled (the step's ``wake`` schedules them again)."""
        out = []
        while self.heap and self.heap[0][0] <= upto:
            t, k = heapq.heappop(self.heap)
            if self.at.get(k) == t:
                out.append(k)
                del self.at[k]
        return out

    def apply(self, wake: Mapping[str, int | None]) -> None:
        for k, t in wake.items():
            if t is None:
                self.at.pop(k, None)
            elif self.at.get(k) != t:
                self.at[k] = t
                heapq.heappush(self.heap, (t, k))
