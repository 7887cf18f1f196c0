"""One early-warning step over a batch of screened records: de-duplication, the watermark, and
every detector. Pure (the Faust agent in agents/early_agent.py holds the tables and does the I/O).

Tables (``TABLES``): ``meta`` (the watermark, the seen chunk counter, the layout), ``seen`` (the
results seen, per sampled hour, kept ``SEEN_DAYS``: what makes every detector idempotent to a
result seen twice), and one per detector, stored by the detector's own keys (vendor, site, ...): a
step writes each key it changed once, nothing else. A result is (device_id, result_id)
(``schemas.result.result_key``): two devices' results with one result_id are two results and both
count; the same device's resend is skipped.

``seen`` is written by delta: each step adds one chunk per sampled hour it saw new results of, key
``"<hour>:d<chunk>"`` -> the result keys it added (``<chunk>`` from the counter ``meta["wm"]["n"]``),
and never rewrites a chunk. Keys ``"<hour>:d<shard>"`` written before (whole shards of an hour)
hold the same result keys and are read alike; keys ``"<hour>:<shard>"`` are older still (bare
result ids, from before results were keyed by device): still read, never written, so a result
replayed across the upgrade is not counted twice, but until they expire (``SEEN_DAYS``) a result
whose bare id is in one of them counts as seen whichever device sent it. Once per hour of watermark
the hours older than the horizon are deleted whole.

A record sampled before the de-duplication horizon cannot be checked against ``seen``: it goes only
to the detectors that are idempotent by themselves (offender, cluster, unconfirmed keep result or
sample ids), not to the counting ones (surge, device).

No step scans a table. ``EngineMemory`` (kept by the agent, rebuilt from the tables by one pass at
recovery) holds what a scan would find: the ``Schedule`` of each detector's keys by wake time (the
engine hands each detector the keys due at the watermark), the seen index (hour -> result keys,
hour -> chunk keys) and each detector's own memory (``DETECTOR_MEMORY``, handed to its ``step``:
what surge's hour chunks count, ``surge.Counts``; the vendors on the red list, ``offender.Listed``).
``step(..., memory=None)`` builds it from the tables (unit tests, offline runs); the caller applies
the step to its memory after writing the tables (``EngineMemory.apply``).

The agent's tables hold each value as its changelog record, the encoded bytes (``stored``):
one small object per key instead of a tree of lists and dicts, which is what a read, a rewrite
and the garbage collector pay for per object. Every read goes through ``common.Stored`` (a
read-only view that decodes a value when it is read), so a detector gets a fresh value of its own
each time; tables of plain JSON values (tests, offline runs) read alike, each read a copy.
``apply_stored`` writes a step into tables of bytes as the agent does, ``apply_all`` into tables
of JSON values.

``upgrade`` turns state stored by earlier versions into this layout once (the agent runs it at its
first batch): detector tables in shards (``meta["layout"] == {"shards": n}``) are unfolded into
per-key entries, each value through its detector's ``from_v1`` when it has one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Final, Protocol

import orjson

from agents.early import cluster, device, gap, offender, surge, unconfirmed
from agents.early.common import DAY, HOUR, JSON, EarlyParams, Stored, hour_start, own
from agents.early.offender import RedListEntry
from agents.early.schedule import Schedule
from agents.screened import Screened
from schemas.alert import Alert
from schemas.result import result_key

TABLES: Final = ("meta", "seen", "surge", "offender", "cluster", "unconfirmed", "device", "gap")
SEEN_DAYS: Final = 8  # > the device history (7 days) and every counting window
SEEN_SHARDS: Final = 8  # the shards of an hour's seen keys written before the chunks (read, never written)
# the detector tables, their modules (``step``, ``wake_of``, optional ``from_v1``)
DETECTORS: Final[Mapping[str, ModuleType]] = {
    "surge": surge, "offender": offender, "cluster": cluster, "unconfirmed": unconfirmed, "device": device, "gap": gap,
}


class DetectorMemory(Protocol):
    """What a detector keeps in the engine's memory besides its table (built from the table at
    recovery, given each step's writes to the table after they are made)."""

    def apply(self, updates: Mapping[str, JSON]) -> None: ...


# the detectors that keep a memory: table -> its builder from the table; their ``step`` takes it as
# ``memory`` (given none, surge builds it from the table, offender reads every vendor it is given)
DETECTOR_MEMORY: Final[Mapping[str, Callable[[Mapping[str, JSON]], DetectorMemory]]] = {
    "surge": surge.Counts.build, "offender": offender.Listed.build}
LAYOUT: Final = 2  # meta["layout"] == {"v": 2}: every detector table by key, values in this version's form
V1_SHARDED: Final = ("surge", "offender", "cluster", "unconfirmed", "device")  # stored in shards by v1


@dataclass
class EngineStep:
    updates: dict[str, dict[str, JSON]] = field(default_factory=lambda: {t: {} for t in TABLES})
    alerts: list[Alert] = field(default_factory=list)
    redlist: list[RedListEntry] = field(default_factory=list)
    fresh: int = 0
    duplicates: int = 0
    watermark: int = 0
    # per detector table: the keys handed to it as due, and the wake time of every key it visited
    due: dict[str, list[str]] = field(default_factory=dict)
    wake: dict[str, dict[str, int | None]] = field(default_factory=dict)


def readable(tables: Mapping[str, Mapping[str, JSON]]) -> dict[str, Stored]:
    """Every table through ``Stored``."""
    return {t: own(m) for t, m in tables.items()}


def _hour_of(seen_key: str) -> int:
    return int(seen_key.split(":", 1)[0])


def _keyed(seen_key: str) -> bool:
    """A seen key holding result keys (device and result id), not bare result ids."""
    return seen_key.split(":", 1)[1].startswith("d")


@dataclass
class SeenIndex:
    """What ``seen`` holds, by sampled hour: the result keys, the bare ids (state from before results
    were keyed by device), and the table keys (what expiry deletes)."""

    keys: dict[int, set[str]] = field(default_factory=dict)
    bare: dict[int, set[str]] = field(default_factory=dict)
    chunks: dict[int, list[str]] = field(default_factory=dict)

    def add(self, seen_key: str, value: JSON) -> None:
        h = _hour_of(seen_key)
        target = self.keys if _keyed(seen_key) else self.bare
        ids = target.get(h)
        if ids is None:
            ids = target[h] = set()
        if isinstance(value, list):
            ids.update(value)
        self.chunks.setdefault(h, []).append(seen_key)

    def drop_hour(self, h: int) -> None:
        self.keys.pop(h, None)
        self.bare.pop(h, None)
        self.chunks.pop(h, None)

    def seen(self, h: int, rk: str, result_id: str) -> bool:
        keys = self.keys.get(h)
        if keys is not None and rk in keys:
            return True
        bare = self.bare.get(h)
        return bare is not None and result_id in bare

    @classmethod
    def rebuild(cls, seen: Mapping[str, JSON]) -> SeenIndex:
        out = cls()
        for k, v in seen.items():
            out.add(k, v)
        return out


@dataclass
class EngineMemory:
    """What the engine would otherwise find by scanning the tables: the detectors' schedule and the
    seen index. Built by one pass over the tables (``build``); kept up to date by ``apply`` after
    each step's table writes. It must match the tables: a batch that fails between its writes and
    ``apply`` must not be followed by another step on the same memory (the agent crashes and builds
    it again at recovery)."""

    schedule: Schedule
    seen: SeenIndex
    detectors: dict[str, DetectorMemory] = field(default_factory=dict)  # ``DETECTOR_MEMORY``'s, by table

    @classmethod
    def build(cls, tables: Mapping[str, Mapping[str, JSON]], params: EarlyParams) -> EngineMemory:
        wake_of = {name: mod.wake_of for name, mod in DETECTORS.items()}
        tables = readable(tables)
        return cls(Schedule.rebuild(tables, params, wake_of), SeenIndex.rebuild(tables.get("seen", {})),
                   {name: build(tables.get(name, {})) for name, build in DETECTOR_MEMORY.items()})

    def apply(self, out: EngineStep) -> None:
        """Take in a step whose updates were written to the tables."""
        for name, due in out.due.items():
            self.schedule.apply(name, due, out.wake.get(name, {}), out.updates.get(name, {}))
        for name, m in self.detectors.items():
            m.apply(out.updates.get(name, {}))
        for k, v in out.updates.get("seen", {}).items():
            if v is None:
                self.seen.drop_hour(_hour_of(k))  # the engine deletes whole hours only
        for k, v in out.updates.get("seen", {}).items():
            if v is not None:
                self.seen.add(k, v)


def step(
    tables: Mapping[str, Mapping[str, JSON]], records: Sequence[Screened], params: EarlyParams,
    memory: EngineMemory | None = None,
) -> EngineStep:
    """One step. ``memory`` None: built from ``tables`` now (a scan; tests and offline runs). With a
    memory, nothing here iterates a table: only look-ups of keys. ``tables`` hold JSON values or
    their encoded bytes (``stored``)."""
    tables = readable(tables)
    mem = memory if memory is not None else EngineMemory.build(tables, params)
    out = EngineStep()
    meta = tables["meta"].get("wm")
    max_event = int(meta["max"]) if isinstance(meta, dict) else 0
    horizon = max_event - params.grace_s - SEEN_DAYS * DAY
    seen_tab = tables["seen"]
    new_keys: dict[int, list[str]] = {}  # sampled hour -> the result keys this step adds
    fresh: list[Screened] = []
    old: list[Screened] = []
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
        h = hour_start(r.sampled_at)
        if mem.seen.seen(h, rk, r.result_id):
            out.duplicates += 1
            continue
        new_keys.setdefault(h, []).append(rk)
        fresh.append(r)
    out.fresh = len(fresh)
    new_max = max([max_event, *(r.sampled_at for r in fresh)])
    watermark = new_max - params.grace_s
    out.watermark = watermark
    seq = int(meta.get("n", 0)) if isinstance(meta, dict) else 0
    if new_keys:
        seq += 1
        while any(f"{h}:d{seq}" in seen_tab for h in new_keys):  # never overwrite a chunk (or an old shard)
            seq += 1
        out.updates["seen"].update({f"{h}:d{seq}": keys for h, keys in new_keys.items()})
    # expire de-duplication hours once per hour of watermark
    last_prune = int(meta.get("pruned", 0)) if isinstance(meta, dict) else 0
    pruned = last_prune
    if hour_start(watermark) > last_prune:
        limit = watermark - SEEN_DAYS * DAY - HOUR
        for h in [h for h in mem.seen.chunks if h < limit]:
            for k in mem.seen.chunks[h]:
                out.updates["seen"][k] = None
        pruned = hour_start(watermark)
    if new_max != max_event or pruned != last_prune or new_keys:
        out.updates["meta"]["wm"] = {"max": new_max, "pruned": pruned, "n": seq}
    if not fresh and not old:
        return out
    everything = fresh + old
    for name, recs in (
        ("surge", fresh),
        ("cluster", everything),
        ("unconfirmed", everything),
        ("device", fresh),
        ("gap", fresh),
        ("offender", everything),
    ):
        mod = DETECTORS[name]
        state = tables[name]
        due = mem.schedule.due(name, watermark)
        kept = mem.detectors.get(name)
        if kept is None:
            s = mod.step(state, recs, watermark, params, due=due)
        else:
            s = mod.step(state, recs, watermark, params, due=due, memory=kept)
        out.updates[name].update(s.updates)
        out.alerts.extend(s.alerts)
        if isinstance(s, offender.OffenderStep):
            out.redlist.extend(s.redlist)
        out.due[name] = due
        out.wake[name] = _complete_wake(mod, state, due, s.updates, s.wake, params)
    return out


def _complete_wake(
    mod: ModuleType, state: Mapping[str, JSON], due: Collection[str], updates: Mapping[str, JSON],
    wake: Mapping[str, int | None], params: EarlyParams,
) -> dict[str, int | None]:
    """``wake`` plus, for a due or written key the detector left out of it, ``wake_of`` of the value
    it holds after the step: the schedule then always equals ``Schedule.rebuild`` of the tables (as
    after a restart), whatever a detector returns."""
    out = dict(wake)
    for keys in (due, updates):
        for k in keys:
            if k in out:
                continue
            v = updates[k] if k in updates else state.get(k)
            out[k] = None if v is None else mod.wake_of(k, v, params)
    return out


def encode(value: JSON) -> bytes:
    """A table key or value as the agent's tables store it in their changelog: compact JSON, the
    same bytes as Faust's json codec (orjson; int dict keys written as strings)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def stored(value: JSON) -> bytes:
    """What a table holds for ``value``: ``encode(value)`` in a bytes object of its own size (the
    object orjson returns keeps its whole output buffer, about 4 KiB, however short the JSON: held
    in a table, 200,000 small values took 800 MB instead of 23)."""
    return bytes(memoryview(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)))


def upgrade(tables: Mapping[str, Mapping[str, JSON]]) -> dict[str, dict[str, JSON]]:
    """The writes that bring stored state to this version's layout (``meta["layout"] == {"v": 2}``),
    empty when it is there already. Scans the tables: run once, at the first batch after recovery.

    - ``{"shards": n}`` (the sharded layout): every shard of the ``V1_SHARDED`` tables is unfolded
      into per-key entries and deleted; every value of every detector table goes through its
      module's ``from_v1`` (when it has one; None drops the key).
    - no layout but detector state (a version before the shards): the values go through ``from_v1``.
    - nothing stored: the layout is recorded.

    The layout is recorded with the same writes; an upgrade cut short by a crash runs again at the
    next start: the shards still stored are unfolded again from their old values; a table that was
    never sharded (gap, or every table of a version before the shards) goes through ``from_v1``
    again, which therefore must take a value already in the new form back unchanged.
    """
    tables = readable(tables)
    rec = tables["meta"].get("layout")
    if isinstance(rec, dict) and rec.get("v") == LAYOUT:
        return {}
    writes: dict[str, dict[str, JSON]] = {t: {} for t in TABLES}
    shards = int(rec["shards"]) if isinstance(rec, dict) and isinstance(rec.get("shards"), int) else 0
    for name, mod in DETECTORS.items():
        convert = getattr(mod, "from_v1", None)
        w = writes[name]
        if shards and name in V1_SHARDED:
            # the shard ids only (keys already unfolded by an upgrade cut short stay as they are);
            # entries first, then the shard deletes: the changelog keeps that order, so a shard is
            # gone only once its entries are written
            held = [(sid, tables[name].get(sid)) for sid in map(str, range(shards))]
            for _, shard in held:
                if isinstance(shard, dict):
                    for k, v in shard.items():
                        nv = convert(k, v) if convert is not None else v
                        if nv is not None:
                            w[k] = nv
            for sid, shard in held:
                if shard is not None and sid not in w:  # (a detector key equal to a shard id keeps its entry)
                    w[sid] = None
        elif convert is not None:
            for k, v in tables[name].items():
                nv = convert(k, v)
                if nv != v:
                    w[k] = nv
    writes["meta"]["layout"] = {"v": LAYOUT}
    return {t: w for t, w in writes.items() if w}


def apply_stored(tables: dict[str, dict[str, JSON]], updates: Mapping[str, Mapping[str, JSON]]) -> None:
    """Apply an ``EngineStep.updates`` to dict tables in place as the agent writes its tables: each
    value encoded (``stored``)."""
    _apply(tables, updates, stored)


def apply_all(tables: dict[str, dict[str, JSON]], updates: Mapping[str, Mapping[str, JSON]]) -> None:
    """Apply an ``EngineStep.updates`` to plain dict tables in place, values as they are (tests,
    offline simulation)."""
    _apply(tables, updates, None)


def _apply(tables: dict[str, dict[str, JSON]], updates: Mapping[str, Mapping[str, JSON]],
           hold: Callable[[JSON], JSON] | None) -> None:
    """Write ``updates`` (None = delete) into ``tables``, each value through ``hold`` when given."""
    for name, ups in updates.items():
        t = tables.setdefault(name, {})
        for k, v in ups.items():
            if v is None:
                t.pop(k, None)
            else:
                t[k] = v if hold is None else hold(v)


def empty_tables() -> dict[str, dict[str, JSON]]:
    return {t: {} for t in TABLES}
