"""The firing alerts one worker keeps current in Alertmanager (pure: no faust, no I/O, time is a parameter).

Alertmanager forgets an alert at its ``endsAt``; the delivery agent posts firing alerts with an
``endsAt`` a few re-post periods ahead and re-posts them on a timer until they resolve. This class
is the bookkeeping behind that timer:

- the agent calls :meth:`FiringAlerts.observe` for every alert it handed over (firing: kept;
  resolved: dropped);
- the set follows the worker's partitions of the alerts topic: :meth:`revoke` forgets a partition,
  :meth:`assign` marks it to be loaded from ClickHouse ``alerts`` (the archive of the same topic)
  by the caller (:meth:`start_load` / :meth:`finish_load`). An alert whose offset was committed is
  in that table (the archive agent acks only after its insert, and Faust commits an offset only
  when every agent on the topic acked it); an alert past the committed offset is read again from
  the topic. So ClickHouse plus the replay rebuild the set after a restart or a rebalance;
- :meth:`due` returns the alerts to re-post, after dropping those not seen for ``active_s``
  seconds: an alert that never resolves (a single result's finding) stays in Alertmanager for that
  long after its last update, then ends by itself.

Alerts observed while a load runs win over the loaded rows (they are newer), and a load that
overlapped a revoke and re-assign of its partition is dropped and asked for again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.alert import Alert, AlertStatus


@dataclass(frozen=True)
class Entry:
    alert: Alert
    partition: int
    seen_at: float  # unix seconds of the last update (processing time)


@dataclass(frozen=True)
class Load:
    """A load in progress: the partitions asked for, and the assignment epoch of each."""

    partitions: frozenset[int]
    epochs: tuple[tuple[int, int], ...]
    since: float  # oldest seen_at worth loading


class FiringAlerts:
    def __init__(self, *, active_s: float) -> None:
        if active_s <= 0:
            raise ValueError(f"active_s must be > 0, got {active_s}")
        self.active_s = active_s
        self._entries: dict[str, Entry] = {}
        self._assigned: set[int] = set()
        self._loaded: set[int] = set()
        self._epoch: dict[int, int] = {}
        self._load: Load | None = None
        self._touched: set[str] = set()

    # -- the stream ------------------------------------------------------------------------------
    def observe(self, alert: Alert, partition: int, now: float) -> None:
        """The agent handed ``alert`` over (or parked it): keep it if firing, drop it if resolved."""
        if self._load is not None:
            self._touched.add(alert.alert_id)
        if alert.status is AlertStatus.firing:
            self._entries[alert.alert_id] = Entry(alert, partition, now)
        else:
            self._entries.pop(alert.alert_id, None)

    def forget(self, alert_id: str) -> None:
        """Stop keeping ``alert_id`` current (e.g. Alertmanager refused it)."""
        if self._load is not None:
            self._touched.add(alert_id)
        self._entries.pop(alert_id, None)

    # -- partitions ------------------------------------------------------------------------------
    def assign(self, partitions: Iterable[int]) -> None:
        """These partitions are ours now (a full or an incremental assignment)."""
        for p in partitions:
            if p not in self._assigned:
                self._assigned.add(p)
                self._epoch[p] = self._epoch.get(p, 0) + 1

    def revoke(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self._assigned -= gone
        self._loaded -= gone
        for p in gone:
            self._epoch[p] = self._epoch.get(p, 0) + 1
        for alert_id in [k for k, e in self._entries.items() if e.partition in gone]:
            del self._entries[alert_id]

    @property
    def assigned(self) -> frozenset[int]:
        return frozenset(self._assigned)

    def partitions_to_load(self) -> frozenset[int]:
        return frozenset(self._assigned - self._loaded)

    def start_load(self, now: float) -> Load | None:
        """Begin loading the partitions that need it; None when none does (or a load runs)."""
        if self._load is not None:
            return None
        wanted = self.partitions_to_load()
        if not wanted:
            return None
        self._touched = set()
        self._load = Load(
            frozenset(wanted), tuple(sorted((p, self._epoch[p]) for p in wanted)), now - self.active_s
        )
        return self._load

    def finish_load(self, load: Load, rows: Iterable[tuple[Alert, int, float]]) -> int:
        """Merge the latest state per alert of ``load``'s partitions, as ``(alert, partition,
        seen_at)`` rows; returns how many firing alerts were added."""
        if self._load is not load:
            raise ValueError("finish_load: not the load in progress")
        valid = {p for p, epoch in load.epochs if p in self._assigned and self._epoch.get(p) == epoch}
        added = 0
        for alert, partition, seen_at in rows:
            if partition not in valid or alert.alert_id in self._touched:
                continue
            if alert.status is AlertStatus.firing and seen_at >= load.since:
                if alert.alert_id not in self._entries:
                    added += 1
                self._entries[alert.alert_id] = Entry(alert, partition, seen_at)
        self._loaded |= valid
        self._load = None
        self._touched = set()
        return added

    def abort_load(self, load: Load) -> None:
        """The load failed (ClickHouse away): its partitions stay to be loaded."""
        if self._load is load:
            self._load = None
            self._touched = set()

    # -- the timer -------------------------------------------------------------------------------
    def expire(self, now: float) -> list[Alert]:
        """Drop and return the alerts not updated for ``active_s`` seconds."""
        cutoff = now - self.active_s
        old = [k for k, e in self._entries.items() if e.seen_at < cutoff]
        return [self._entries.pop(k).alert for k in old]

    def due(self, now: float) -> list[Alert]:
        """The firing alerts to re-post now (after :meth:`expire`), oldest first."""
        self.expire(now)
        return [e.alert for e in sorted(self._entries.values(), key=lambda e: (e.seen_at, e.alert.alert_id))]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._entries
