"""One early-warning step over a batch of screened records: de-duplication, the watermark, and
every detector. Pure (the Faust agent in agents/early_agent.py holds the tables and does the I/O).

Tables (``TABLES``): ``meta`` (the watermark), ``seen`` (the results seen, per sampled hour, in
``SEEN_SHARDS`` shards, kept ``seen_days``: what makes every detector idempotent to a result seen
twice), and one per detector. A result is (device_id, result_id) (``schemas.result.result_key``):
two devices' results with one result_id are two results and both count; the same device's resend
is skipped. ``seen`` keys ``"<hour>:d<shard>"`` hold those keys. Keys ``"<hour>:<shard>"`` are
state written before results were keyed by device (bare result ids): they are still read, never
written, so a result replayed across the upgrade is not counted twice, but until they expire
(``SEEN_DAYS``) a result whose bare id is in one of them counts as seen whichever device sent it.

A record sampled before the de-duplication horizon cannot be checked against ``seen``: it goes only
to the detectors that are idempotent by themselves (offender, cluster, unconfirmed keep result or
sample ids), not to the counting ones (surge, device).

The detectors see their state keyed by their own keys (vendor, site, ...), but the agent stores the
``SHARDED`` tables in a fixed number of shards (``shard_of``; ``ShardedView`` reads them,
``fold_into_shards`` writes a step's updates): every table write is one changelog record, and a
batch of 500 results touches hundreds of vendors, sites and surge keys but at most ``shards`` shards
per table. More shards mean more, smaller changelog records per batch; fewer, the reverse.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from agents.early import cluster, device, gap, offender, surge, unconfirmed
from agents.early.common import DAY, HOUR, JSON, EarlyParams, hour_start
from agents.early.offender import RedListEntry
from agents.screened import Screened
from schemas.alert import Alert
from schemas.result import result_key

TABLES: Final = ("meta", "seen", "surge", "offender", "cluster", "unconfirmed", "device", "gap")
SEEN_SHARDS: Final = 8
SEEN_DAYS: Final = 8  # > the device history (7 days) and every counting window
SHARDED: Final = ("surge", "offender", "cluster", "unconfirmed", "device")


def shard_of(key: str, shards: int) -> str:
    return str(zlib.crc32(key.encode()) % shards)


class ShardedView(Mapping[str, JSON]):
    """A detector's state by its own keys, read from a table of shards (shard -> {key: state})."""

    def __init__(self, shards: Mapping[str, JSON], n: int) -> None:
        self._shards = shards
        self._n = n

    def __getitem__(self, key: str) -> JSON:
        shard = self._shards.get(shard_of(key, self._n))
        if not isinstance(shard, dict) or key not in shard:
            raise KeyError(key)
        return shard[key]

    def __iter__(self) -> Iterator[str]:
        for shard in list(self._shards.values()):
            if isinstance(shard, dict):
                yield from shard

    def __len__(self) -> int:
        return sum(len(v) for v in self._shards.values() if isinstance(v, dict))


def fold_into_shards(shards: Mapping[str, JSON], updates: Mapping[str, JSON], n: int) -> dict[str, JSON]:
    """The shard writes for a step's ``updates`` (key -> state, None = delete): each touched shard
    once, as a new dict (the current one is never changed in place), None for a shard left empty."""
    by_shard: dict[str, dict[str, JSON]] = {}
    for key, value in updates.items():
        by_shard.setdefault(shard_of(key, n), {})[key] = value
    out: dict[str, JSON] = {}
    for sid, ups in by_shard.items():
        cur = shards.get(sid)
        new = dict(cur) if isinstance(cur, dict) else {}
        for key, value in ups.items():
            if value is None:
                new.pop(key, None)
            else:
                new[key] = value
        if new:
            out[sid] = new
        elif cur is not None:
            out[sid] = None
    return out


@dataclass
class EngineStep:
    updates: dict[str, dict[str, JSON]] = field(default_factory=lambda: {t: {} for t in TABLES})
    alerts: list[Alert] = field(default_factory=list)
    redlist: list[RedListEntry] = field(default_factory=list)
    fresh: int = 0
    duplicates: int = 0
    watermark: int = 0


def _seen_key(r: Screened) -> str:
    return f"{hour_start(r.sampled_at)}:d{zlib.crc32(r.result_id.encode()) % SEEN_SHARDS}"


def _legacy_seen_key(r: Screened) -> str:
    """The bucket of bare result ids that held ``r`` before results were keyed by device."""
    return f"{hour_start(r.sampled_at)}:{zlib.crc32(r.result_id.encode()) % SEEN_SHARDS}"


def step(tables: Mapping[str, Mapping[str, JSON]], records: Sequence[Screened], params: EarlyParams) -> EngineStep:
    out = EngineStep()
    meta = tables["meta"].get("wm")
    max_event = int(meta["max"]) if isinstance(meta, dict) else 0
    horizon = max_event - params.grace_s - SEEN_DAYS * DAY
    seen_tab = tables["seen"]
    seen_new: dict[str, list[str]] = {}
    seen_sets: dict[str, set[str]] = {}  # the same ids as sets: membership without scanning the lists
    stored_len: dict[str, int] = {}
    fresh: list[Screened] = []
    old: list[Screened] = []
    legacy: dict[str, set[str]] = {}  # bare ids of the buckets written before the device key
    batch_keys: set[str] = set()
    for r in records:
        rk = result_key(r.device_id, r.result_id)
        if rk in batch_keys:
            out.duplicates += 1
            continue
        batch_keys.add(rk)
        if max_event and r.sampled_at < horizon:
            old.append(r)
            continue
        k = _seen_key(r)
        ids = seen_new.get(k)
        if ids is None:
            cur = seen_tab.get(k)
            ids = seen_new[k] = list(cur) if isinstance(cur, list) else []
            seen_sets[k] = set(ids)
            stored_len[k] = len(ids)
        known = seen_sets[k]
        lk = _legacy_seen_key(r)
        bare = legacy.get(lk)
        if bare is None:
            cur = seen_tab.get(lk)
            bare = legacy[lk] = set(cur) if isinstance(cur, list) else set()
        if rk in known or r.result_id in bare:
            out.duplicates += 1
            continue
        known.add(rk)
        ids.append(rk)
        fresh.append(r)
    out.fresh = len(fresh)
    new_max = max([max_event, *(r.sampled_at for r in fresh)])
    watermark = new_max - params.grace_s
    out.watermark = watermark
    out.updates["seen"].update({k: ids for k, ids in seen_new.items() if len(ids) > stored_len[k]})
    # expire de-duplication buckets once per hour of watermark
    last_prune = int(meta.get("pruned", 0)) if isinstance(meta, dict) else 0
    pruned = last_prune
    if hour_start(watermark) > last_prune:
        limit = watermark - SEEN_DAYS * DAY - HOUR
        for k in list(seen_tab):
            if int(k.split(":", 1)[0]) < limit:
                out.updates["seen"][k] = None
        pruned = hour_start(watermark)
    if new_max != max_event or pruned != last_prune:
        out.updates["meta"]["wm"] = {"max": new_max, "pruned": pruned}
    if not fresh and not old:
        return out
    everything = fresh + old
    for name, mod, recs in (
        ("surge", surge, fresh),
        ("cluster", cluster, everything),
        ("unconfirmed", unconfirmed, everything),
        ("device", device, fresh),
        ("gap", gap, fresh),
    ):
        s = mod.step(tables[name], recs, watermark, params)
        out.updates[name].update(s.updates)
        out.alerts.extend(s.alerts)
    o = offender.step(tables["offender"], everything, watermark, params)
    out.updates["offender"].update(o.updates)
    out.alerts.extend(o.alerts)
    out.redlist.extend(o.redlist)
    return out


def apply_all(tables: dict[str, dict[str, JSON]], updates: Mapping[str, Mapping[str, JSON]]) -> None:
    """Apply an ``EngineStep.updates`` to plain dict tables in place (tests, offline simulation)."""
    for name, ups in updates.items():
        t = tables.setdefault(name, {})
        for k, v in ups.items():
            if v is None:
                t.pop(k, None)
            else:
                t[k] = v


def empty_tables() -> dict[str, dict[str, JSON]]:
    return {t: {} for t in TABLES}
