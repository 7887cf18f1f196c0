"""When each detector key must next be visited without new records: a timer wheel per table.

A detector's ``Step.wake`` says, for every key it visited, the watermark time at which the key must
be visited again (a window closing, state expiring, an alert falling due) or None (never: only new
records touch it again). The schedule keeps those times so that the engine hands each detector the
keys due at the watermark (``due``) without scanning its state. Pure: plain dicts, sets and lists.

Per table: exact wake time -> the set of keys waking then, the distinct times in a sorted list
(bisect), and key -> its wake time (to move or drop a key in O(1) plus a bisect).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agents.early import cluster, device, gap, offender, surge, unconfirmed
from agents.early.common import JSON, EarlyParams, WakeOf

# each detector table's ``wake_of`` (the table is named after its detector)
WAKE_OF: Mapping[str, WakeOf] = {
    "surge": surge.wake_of,
    "offender": offender.wake_of,
    "cluster": cluster.wake_of,
    "unconfirmed": unconfirmed.wake_of,
    "device": device.wake_of,
    "gap": gap.wake_of,
}


@dataclass
class _Wheel:
    at: dict[int, set[str]] = field(default_factory=dict)  # wake time -> keys
    times: list[int] = field(default_factory=list)  # the keys of ``at``, sorted
    of: dict[str, int] = field(default_factory=dict)  # key -> its wake time

    def add(self, key: str, t: int) -> None:
        keys = self.at.get(t)
        if keys is None:
            keys = self.at[t] = set()
            insort(self.times, t)
        keys.add(key)
        self.of[key] = t

    def drop(self, key: str) -> None:
        t = self.of.pop(key, None)
        if t is None:
            return
        keys = self.at[t]
        keys.discard(key)
        if not keys:
            del self.at[t]
            i = bisect_left(self.times, t)
            del self.times[i]


class Schedule:
    """Per table: which keys wake at which watermark time."""

    def __init__(self) -> None:
        self._wheels: dict[str, _Wheel] = {}

    def _wheel(self, table: str) -> _Wheel:
        w = self._wheels.get(table)
        if w is None:
            w = self._wheels[table] = _Wheel()
        return w

    def due(self, table: str, upto: int) -> list[str]:
        """The keys of ``table`` whose wake time is <= ``upto``, earliest first (keys of one time in
        sorted order, so the order does not depend on how the schedule was built). Leaves them
        scheduled: ``apply`` moves them once the step's writes are done."""
        w = self._wheels.get(table)
        if w is None:
            return []
        out: list[str] = []
        for t in w.times[: bisect_right(w.times, upto)]:
            out.extend(sorted(w.at[t]))
        return out

    def wake_of(self, table: str, key: str) -> int | None:
        """The wake time of ``key`` (None: not scheduled)."""
        w = self._wheels.get(table)
        return None if w is None else w.of.get(key)

    def __len__(self) -> int:
        return sum(len(w.of) for w in self._wheels.values())

    def scheduled(self, table: str) -> dict[str, int]:
        """key -> wake time of every key scheduled in ``table`` (tests)."""
        w = self._wheels.get(table)
        return dict(w.of) if w else {}

    def apply(
        self, table: str, due_keys: Iterable[str], wake: Mapping[str, int | None], updates: Mapping[str, JSON]
    ) -> None:
        """After a step's writes: the keys that were ``due`` are unscheduled, then each key of
        ``wake`` is scheduled at its time (None: not), and every key ``updates`` deletes is
        unscheduled."""
        w = self._wheel(table)
        of = w.of
        for k, t in wake.items():
            if t is not None and of.get(k) == t:
                continue  # its wake did not move (most visits to a device site)
            w.drop(k)
            if t is not None:
                w.add(k, t)
        for k in due_keys:
            if k not in wake:
                w.drop(k)
        for k, v in updates.items():
            if v is None:
                w.drop(k)

    @classmethod
    def rebuild(
        cls, tables: Mapping[str, Mapping[str, JSON]], params: EarlyParams, wake_of: Mapping[str, WakeOf] = WAKE_OF
    ) -> Schedule:
        """The schedule of stored state, by one pass over each table in ``wake_of`` (table -> its
        detector's ``wake_of``): what recovery runs once, and what ``engine.step`` runs when it is
        given no memory."""
        s = cls()
        for table, fn in wake_of.items():
            state = tables.get(table)
            if not state:
                continue
            w = s._wheel(table)
            for k, v in state.items():
                t = fn(k, v, params)
                if t is not None:
                    w.add(k, t)
        return s
