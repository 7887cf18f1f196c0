"""A synthetic national key space for the early-warning soak (issue 21): screened records built
directly (no JSON parsing, no screening), day after day, in the order the early-warning agent sees
them.

Pure and seeded: the same ``SoakConfig`` gives the same records. The key space (defaults) is
200,000 vendors at 19,700 market sites and 300 testing centres (20,000 sites), 50,000 devices
(47,000 quick-test devices at the markets, 3,000 lab instruments at the centres), 500 commodities
with 40 suppliers each (20,000 suppliers), 2,900 districts and 300 origins. Each simulated day
brings ``per_day`` results (plus the lab confirmations of earlier quick positives, about 0.5 %):

* quick tests (88 %) with ~1.5 % positives; lab results (12 %) with ~2.5 % exceeds and ~0.5 %
  banned, some no_limit / inconclusive / unclassified;
* ~60 % of quick positives get a lab result whose ``confirms`` is their result id, sampled with
  them (same sample id) and arriving 4-36 hours later (exceeds or banned about half the time);
* repeat-offender vendors (0.5 %, positive 25 % of the time, sampled three times as often), hot
  vendors (0.1 %, together ~10 % of the volume), supplier clusters (a few a day: one supplier's
  commodity non-compliant at several sites within hours, one a week large), devices that fall
  silent for the rest of a day and devices that drift (15 % positives for a day), resends (0.3 %:
  the same device and result id again minutes later);
* event times in market hours (local, Asia/Shanghai); a record arrives 5-50 minutes after it was
  sampled (within the default 1 h grace), confirmations hours later; records are listed in
  arrival order, so event times are slightly out of order.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from agents.screened import Screened

MINUTE: Final = 60
HOUR: Final = 3600
DAY: Final = 86400
START: Final = int(datetime.fromisoformat("2026-10-01T00:00:00+08:00").timestamp())

QUICK_METHODS: Final = (("enzyme_inhibition", 0.70), ("colloidal_gold", 0.20), ("xrf", 0.10))
QUICK_ANALYTES: Final = {
    "enzyme_inhibition": ("ache_inhibition",),
    "colloidal_gold": ("carbofuran", "omethoate", "clenbuterol", "chlorpyrifos", "malachite_green"),
    "xrf": ("lead", "cadmium"),
}
LAB_METHODS: Final = ("lc_msms", "gc_ms", "gc_msms", "icp_ms", "aas", "afs")
LAB_ANALYTES: Final = ("carbofuran", "omethoate", "chlorpyrifos", "phorate", "lead", "cadmium", "mercury",
                       "arsenic", "procymidone", "imidacloprid")
MARKET_TYPES: Final = (("farmers_market", 0.55), ("supermarket", 0.25), ("wholesale_market", 0.12),
                       ("ecommerce_warehouse", 0.08))


@dataclass(frozen=True)
class SoakConfig:
    seed: int = 21
    days: int = 30
    per_day: int = 50_000
    vendors: int = 200_000
    devices: int = 50_000
    sites: int = 20_000
    commodities: int = 500
    districts: int = 2_900
    suppliers: int = 20_000
    origins: int = 300
    labs: int = 300  # of the sites, testing centres
    lab_devices: int = 3_000  # of the devices, lab instruments
    start: int = START  # local midnight of the first day (epoch seconds)
    lab_share: float = 0.12
    quick_positive: float = 0.015
    offender_share: float = 0.005
    offender_positive: float = 0.25
    hot_vendors: int = 200
    hot_volume: float = 0.10
    confirm_share: float = 0.6
    clusters_per_day: int = 3
    silent_per_day: int = 20
    drift_per_day: int = 10
    resend_share: float = 0.003


@dataclass
class KeySpace:
    """Every id of the synthetic country and how they hang together (index-aligned lists)."""

    districts: list[str]
    sites: list[str]  # labs first (``labs`` of them), then markets
    site_type: list[str]
    site_district: list[int]
    devices: list[str]  # market devices first, then lab devices
    device_site: list[int]
    device_method: list[str]  # quick method of a market device, "" for a lab instrument
    site_devices: list[list[int]]
    vendors: list[str]
    vendor_site: list[int]
    commodities: list[str]
    suppliers: list[str]
    commodity_suppliers: list[list[int]]
    origins: list[str]
    offenders: frozenset[int]
    hot: frozenset[int]
    vendor_cum: list[float] = field(repr=False)  # cumulative sampling weights of the vendors
    commodity_cum: list[float] = field(repr=False)  # cumulative popularity of the commodities
    labs: int = 0


def key_space(cfg: SoakConfig) -> KeySpace:
    rng = random.Random(f"soak-keys:{cfg.seed}")
    markets = cfg.sites - cfg.labs
    districts = [f"D{i:04d}" for i in range(cfg.districts)]
    sites = [f"tc-{i:05d}" for i in range(cfg.labs)] + [f"m-{i:05d}" for i in range(markets)]
    site_type = ["testing_centre"] * cfg.labs + rng.choices([t for t, _ in MARKET_TYPES],
                                                             [w for _, w in MARKET_TYPES], k=markets)
    site_district = [i % cfg.districts for i in range(cfg.labs)] + [rng.randrange(cfg.districts)
                                                                     for _ in range(markets)]
    quick_devices = cfg.devices - cfg.lab_devices
    devices = [f"qd-{i:05d}" for i in range(quick_devices)] + [f"lab-{i:04d}" for i in range(cfg.lab_devices)]
    device_site = ([cfg.labs + i % markets for i in range(quick_devices)]
                   + [i % cfg.labs for i in range(cfg.lab_devices)])
    device_method = (rng.choices([m for m, _ in QUICK_METHODS], [w for _, w in QUICK_METHODS], k=quick_devices)
                     + [""] * cfg.lab_devices)
    site_devices: list[list[int]] = [[] for _ in sites]
    for d, s in enumerate(device_site):
        site_devices[s].append(d)
    vendors = [f"v-{i:06d}" for i in range(cfg.vendors)]
    vendor_site = [cfg.labs + i % markets for i in range(cfg.vendors)]
    ids = list(range(cfg.vendors))
    rng.shuffle(ids)
    n_off = int(cfg.vendors * cfg.offender_share)
    offenders = frozenset(ids[:n_off])
    hot = frozenset(ids[n_off:n_off + cfg.hot_vendors])
    # hot vendors together take ``hot_volume`` of the results, offenders are sampled 3x as often
    others = cfg.vendors - cfg.hot_vendors
    hot_w = cfg.hot_volume * (others + 2 * n_off) / max(1e-9, (1 - cfg.hot_volume) * max(1, cfg.hot_vendors))
    vendor_w = [hot_w if v in hot else 3.0 if v in offenders else 1.0 for v in range(cfg.vendors)]
    commodities = [f"c{i:03d}" for i in range(cfg.commodities)]
    commodity_w = [1.0 / (i + 1) ** 0.9 for i in range(cfg.commodities)]  # a few staples, a long tail
    suppliers = [f"sup-{i:05d}" for i in range(cfg.suppliers)]
    commodity_suppliers: list[list[int]] = [[] for _ in commodities]
    for s in range(cfg.suppliers):
        commodity_suppliers[s % cfg.commodities].append(s)
    origins = [f"{110000 + 100 * i}" for i in range(cfg.origins)]
    return KeySpace(
        districts=districts, sites=sites, site_type=site_type, site_district=site_district, devices=devices,
        device_site=device_site, device_method=device_method, site_devices=site_devices, vendors=vendors,
        vendor_site=vendor_site, commodities=commodities, suppliers=suppliers,
        commodity_suppliers=commodity_suppliers, origins=origins, offenders=offenders, hot=hot,
        vendor_cum=list(itertools.accumulate(vendor_w)), commodity_cum=list(itertools.accumulate(commodity_w)),
        labs=cfg.labs,
    )


def _quick_verdict(rng: random.Random, p_pos: float) -> tuple[str, str | None]:
    u = rng.random()
    if u < p_pos:
        return "positive", "quick_cutoff"
    if u < p_pos + 0.03:
        return "watch", "quick_cutoff"
    if u < p_pos + 0.032:
        return "no_limit", None
    if u < p_pos + 0.033:
        return "unclassified", "unknown_food"
    return "compliant", "quick_cutoff"


def _lab_verdict(rng: random.Random) -> tuple[str, str | None]:
    u = rng.random()
    if u < 0.025:
        return "exceeds", "mrl"
    if u < 0.030:
        return "banned", "ban"
    if u < 0.070:
        return "watch", "mrl"
    if u < 0.100:
        return "no_limit", None
    if u < 0.105:
        return "inconclusive", "mrl"
    if u < 0.107:
        return "unclassified", "unknown_analyte"
    return "compliant", "mrl"


class SoakStream:
    """The records day by day (``days()``), generated in sequence from one seeded generator."""

    def __init__(self, cfg: SoakConfig, keys: KeySpace | None = None) -> None:
        self.cfg = cfg
        self.keys = keys or key_space(cfg)
        self.rng = random.Random(f"soak-days:{cfg.seed}")
        self._later: list[tuple[int, int, Screened]] = []  # (arrival, seq, record) of later days
        self._seq = itertools.count()
        self._markets = range(cfg.labs, cfg.sites)
        self.injected: dict[str, int] = {"clusters": 0, "silent": 0, "drift": 0, "resends": 0, "confirmations": 0}

    def days(self) -> Iterator[tuple[int, list[Screened]]]:
        for day in range(self.cfg.days):
            yield day, self.day(day)

    # -- one day ----------------------------------------------------------------------------------
    def day(self, day: int) -> list[Screened]:
        cfg, k, rng = self.cfg, self.keys, self.rng
        d0 = cfg.start + day * DAY
        out: list[tuple[int, int, Screened]] = []
        silent = self._silent_devices(d0)
        drifting = {rng.randrange(len(k.devices) - cfg.lab_devices) for _ in range(cfg.drift_per_day)}
        self.injected["silent"] += len(silent)
        self.injected["drift"] += len(drifting)
        n_cluster = self._clusters(day, d0, out)
        n = max(0, cfg.per_day - n_cluster)
        vendors = rng.choices(range(cfg.vendors), cum_weights=k.vendor_cum, k=n)
        commodities = rng.choices(range(cfg.commodities), cum_weights=k.commodity_cum, k=n)
        for i in range(n):
            v, c = vendors[i], commodities[i]
            # sampled in market hours, busiest in the morning
            t = d0 + int(rng.triangular(5 * HOUR, 19 * HOUR, 8 * HOUR))
            rid = f"r{day:02d}-{i:06d}"
            if rng.random() < cfg.lab_share:
                rec = self._lab(rid, t, v, c)
            else:
                rec = self._quick(rid, t, v, c, silent, drifting)
            self._emit(rec, out)
        heapq.heapify(self._later)
        while self._later and self._later[0][0] < d0 + DAY:
            out.append(heapq.heappop(self._later))
        out.sort(key=lambda x: (x[0], x[1]))
        return [r for _, _, r in out]

    def _emit(self, rec: Screened, out: list[tuple[int, int, Screened]]) -> None:
        """``rec`` arrives 0-20 minutes after it was tested; a resend minutes later; a quick positive's
        confirmation (a lab result sampled with it) hours later."""
        rng, cfg = self.rng, self.cfg
        arrival = rec.tested_at + rng.randrange(0, 20 * MINUTE)
        out.append((arrival, next(self._seq), rec))
        if rng.random() < cfg.resend_share:
            out.append((arrival + rng.randrange(MINUTE, 10 * MINUTE), next(self._seq), rec))
            self.injected["resends"] += 1
        if rec.quick and rec.verdict == "positive" and rng.random() < cfg.confirm_share:
            conf = self._confirmation(rec)
            self._later.append((conf.tested_at + rng.randrange(0, 20 * MINUTE), next(self._seq), conf))
            self.injected["confirmations"] += 1

    def _quick(self, rid: str, t: int, v: int, c: int, silent: dict[int, int], drifting: set[int],
               verdict: tuple[str, str | None] | None = None, supplier: int | None = None) -> Screened:
        k, rng, cfg = self.keys, self.rng, self.cfg
        site = k.vendor_site[v]
        devs = k.site_devices[site]
        dev = devs[rng.randrange(len(devs))]
        if dev in silent and t >= silent[dev] and len(devs) > 1:
            dev = rng.choice([d for d in devs if d != dev])
        method = k.device_method[dev]
        analytes = QUICK_ANALYTES[method]
        if verdict is None:
            p = cfg.offender_positive if v in k.offenders else cfg.quick_positive
            if dev in drifting:
                p = max(p, 0.15)
            verdict = _quick_verdict(rng, p)
        sup, origin = self._source(c, supplier)
        return Screened(
            rid, f"s-{rid}", t, t + rng.randrange(5 * MINUTE, 30 * MINUTE), k.devices[dev], k.sites[site],
            k.site_type[site], k.districts[k.site_district[site]], k.vendors[v], sup, origin, k.commodities[c],
            analytes[rng.randrange(len(analytes))], method, True, verdict[0], None,
            float(rng.randrange(5, 95)) if method == "enzyme_inhibition" else None, None, None, verdict[1],
        )

    def _lab(self, rid: str, t: int, v: int, c: int) -> Screened:
        k, rng = self.keys, self.rng
        lab = k.site_district[k.vendor_site[v]] % k.labs  # the centre serving the vendor's district
        devs = k.site_devices[lab]
        dev = devs[rng.randrange(len(devs))]
        verdict, rule = _lab_verdict(rng)
        sup, origin = self._source(c, None)
        value = round(rng.uniform(0.001, 0.5), 4)
        return Screened(
            rid, f"s-{rid}", t, t + rng.randrange(5 * MINUTE, 30 * MINUTE), k.devices[dev], k.sites[lab],
            "testing_centre", k.districts[k.site_district[lab]], k.vendors[v], sup, origin, k.commodities[c],
            LAB_ANALYTES[rng.randrange(len(LAB_ANALYTES))], LAB_METHODS[rng.randrange(len(LAB_METHODS))], False,
            verdict, value, None, round(value / 0.05, 3), None, rule,
        )

    def _confirmation(self, quick: Screened) -> Screened:
        """The lab result of a quick positive's sample: same sample and event time, tested hours later."""
        k, rng = self.keys, self.rng
        lab = int(quick.district[1:]) % k.labs
        devs = k.site_devices[lab]
        dev = devs[rng.randrange(len(devs))]
        u = rng.random()
        verdict, rule = ("exceeds", "mrl") if u < 0.45 else ("banned", "ban") if u < 0.55 else ("compliant", "mrl")
        value = round(rng.uniform(0.001, 0.5), 4)
        return Screened(
            f"{quick.result_id}-c", quick.sample_id, quick.sampled_at,
            quick.sampled_at + rng.randrange(4 * HOUR, 36 * HOUR), k.devices[dev], k.sites[lab], "testing_centre",
            k.districts[k.site_district[lab]], quick.vendor_id, quick.supplier_id, quick.origin, quick.commodity,
            "carbofuran", "lc_msms", False, verdict, value, None, round(value / 0.05, 3), quick.result_id, rule,
        )

    def _source(self, c: int, supplier: int | None) -> tuple[str | None, str | None]:
        k, rng = self.keys, self.rng
        if supplier is not None:
            return k.suppliers[supplier], None
        u = rng.random()
        if u < 0.75:
            sups = k.commodity_suppliers[c]
            return k.suppliers[sups[rng.randrange(len(sups))]], None
        if u < 0.95:
            return None, k.origins[rng.randrange(len(k.origins))]
        return None, None

    def _silent_devices(self, d0: int) -> dict[int, int]:
        """Devices at sites with peers that fall silent from a time of the day (device -> from)."""
        k, rng = self.keys, self.rng
        out: dict[int, int] = {}
        while len(out) < self.cfg.silent_per_day:
            site = rng.choice(self._markets)
            if len(k.site_devices[site]) > 1:
                out[rng.choice(k.site_devices[site])] = d0 + rng.randrange(9 * HOUR, 14 * HOUR)
        return out

    def _clusters(self, day: int, d0: int, out: list[tuple[int, int, Screened]]) -> int:
        """A supplier's lot of one commodity turns up non-compliant at several sites within hours (one
        a week large, so that its alert keeps growing)."""
        k, rng, cfg = self.keys, self.rng, self.cfg
        n = 0
        for j in range(cfg.clusters_per_day):
            c = bisect.bisect(k.commodity_cum, rng.random() * k.commodity_cum[-1])
            c = min(c, cfg.commodities - 1)
            sup = rng.choice(k.commodity_suppliers[c])
            large = j == 0 and day % 7 == 3
            places = rng.randint(20, 40) if large else rng.randint(3, 12)
            results = rng.randint(150, 300) if large else rng.randint(places, 4 * places)
            vendors = [rng.randrange(cfg.vendors) for _ in range(places)]
            start = d0 + rng.randrange(6 * HOUR, 12 * HOUR)
            for i in range(results):
                v = vendors[i % places]
                t = start + rng.randrange(0, 6 * HOUR)
                verdict = ("positive", "quick_cutoff") if rng.random() < 0.8 else ("compliant", "quick_cutoff")
                rec = self._quick(f"x{day:02d}-{j}-{i:04d}", t, v, c, {}, set(), verdict, sup)
                self._emit(rec, out)
            n += results
            self.injected["clusters"] += 1
        return n


def chunks(records: Sequence[Screened], size: int) -> Iterator[Sequence[Screened]]:
    for i in range(0, len(records), size):
        yield records[i:i + size]
