"""A simulated fleet of quick-test devices and lab instruments in Guangzhou.

Pure generation: no Kafka, no clock reads, no I/O. A :class:`Fleet` is built from a seed and a start
time and hands out wire-format v1 results (``schemas/``, issue 3) in event-time order, one batch per
call of :meth:`Fleet.next_batch`. The shell (``pipeline/simulator/publish.py``) maps real time to event
time and publishes the batches.

What the fleet looks like (everything derived from the seed, so a seed always gives the same fleet):

* Guangzhou's 11 districts; farmers' markets (most sites, with stalls), supermarkets, fresh-food
  e-commerce warehouses, two wholesale markets and three testing centres (the labs).
* Quick tests: enzyme inhibition on vegetables (``ache_inhibition`` in %, positive at >= 50, a watch
  band of 40-50), colloidal-gold strips for single pesticides (qualitative) and XRF for heavy metals
  (mg/kg). About 0.1-0.2% of quick tests are positive (docs/domain.md §3: 0.03-0.3%). A market
  analyser's tests include (``ANIMAL_QUICK_SHARE``) strips and kits on meat, fish, shrimp, poultry,
  eggs and dried goods: beta-agonists (瘦肉精), malachite green, AOZ, enrofloxacin, formaldehyde, SO2,
  read positive / negative (``catalogue.ANIMAL_QUICK``).
* Lab results (LC-MS/MS, GC-MS/MS, ICP-MS, AAS, AFS): one line per analyte of a routine sample, most
  not detected (value 0.0 with ``lod`` set), a long right tail, 1-3% of lines non-compliant against
  the limits and bans of the screening reference in force at the fleet's start (``limits.py``). One
  testing centre's MS instruments report in ug/kg. Animal products also get LC-MS/MS panels of
  veterinary drugs and banned compounds (``catalogue.VET_PANELS``).
* About 70% of quick-test positives are followed, 2-10 simulated hours later, by a lab result on the
  same sample with ``confirms`` set (tag ``"confirmation"``); the rest are never confirmed.
* A share ``invalid_fraction`` of messages is deliberately malformed (tag ``"invalid"``).
* Incidents (``incidents=True``), all starting in the first simulated hour, see :meth:`Fleet.incidents`:
  ``incident:cowpea_carbofuran`` (one Hainan supplier's cowpea lot with carbofuran in seven markets
  in seven districts, confirmed by LC-MS/MS within the hour), ``incident:faulty_device`` (an enzyme
  reader whose readings drift upwards for three hours) and ``incident:repeat_offender`` (one stall
  with a non-compliant result every day for six days) and ``incident:clenbuterol_pork`` (one pig
  supplier's pork with clenbuterol in three markets in three districts, strip positives confirmed by
  LC-MS/MS).

The volume follows market hours (most results 05:00-11:00 local time, few at night);
``rate_per_sim_hour`` is the mean over a whole day, so the 06:00-07:00 hour carries about 2.7 times
as many results and the night hours a tenth.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from datetime import datetime
from typing import Any

import orjson

from pipeline.simulator.catalogue import (
    ANIMAL_QUICK,
    ANIMAL_QUICK_SHARE,
    CATEGORY,
    CONFIRM_DELAY_S,
    CONFIRM_SHARE,
    ENZYME_COMMODITIES,
    ENZYME_DETECTABLE,
    ENZYME_FALSE_POSITIVE_PRONE,
    ENZYME_SHARE,
    GOLD_P_INVALID,
    GOLD_P_POSITIVE,
    GOLD_PAIRS,
    HOURLY_WEIGHTS,
    KIT_METHOD,
    LAB_ANIMAL,
    LAB_COMMODITIES,
    LAB_METAL_P_DETECT,
    LAB_METAL_P_EXCEED,
    LAB_P_BANNED_DETECT,
    LAB_P_BANNED_TRACE,
    LAB_P_DETECT,
    LAB_P_EXCEED,
    LAB_VEG_METAL_SHARE,
    LAB_VET_P_BANNED_DETECT,
    LAB_VET_P_BANNED_TRACE,
    LAB_VET_P_DETECT,
    LAB_VET_P_EXCEED,
    LAB_VET_SHARE,
    LC_ANALYTES,
    METAL_LOD_LOQ,
    METAL_PANELS,
    METALS,
    P_LAB_SAMPLE,
    PESTICIDE_PANELS,
    QUICK_PESTICIDE,
    QUICK_XRF,
    VEGETABLES,
    VET_DRUG_LOD_LOQ,
    VET_LOD_LOQ,
    VET_PANELS,
    XRF_LOD,
    XRF_P_DETECT,
    XRF_P_EXCEED,
    XRF_PAIRS,
    ZH_NAME,
)
from pipeline.simulator.incidents import Incidents
from pipeline.simulator.limits import SimLimits
from pipeline.simulator.model import (
    CST,
    HOUR,
    LOCAL_OFFSET_S,
    MIN,
    TAG_CONFIRMATION,
    TAG_FAULTY_DEVICE,
    TAG_INVALID,
    DeviceInfo,
    FleetConfig,
    IncidentInfo,
    SimMessage,
)
from pipeline.simulator.readings import (
    corrupt,
    cumulative,
    drifted_inhibition,
    dt,
    inhibition,
    iso,
    pesticide_lod_loq,
    quantity,
    sig,
)
from pipeline.simulator.world import Device, Sample, Site, Supplier, World
from schemas.reference import default_reference

Item = tuple[int, int, SimMessage]

VET_ANALYTES = frozenset(a for panel in VET_PANELS.values() for a in panel)
"""Veterinary drugs and banned compounds: run on LC-MS/MS at their own LOD and LOQ."""
UNCONFIRMABLE = frozenset({"formaldehyde", "sulfur_dioxide"})
"""Kit analytes with no lab method in the wire format: their positives are not sent to a lab."""


class Fleet:
    """The simulated devices. Deterministic for a seed, whatever the sequence of ``until`` values."""

    def __init__(self, config: FleetConfig) -> None:
        self._cfg = config
        seed = config.seed
        self._rng = random.Random(f"foodrisk-fleet:{seed}:traffic")  # noqa: S311 - simulation, not security
        world = World(random.Random(f"foodrisk-fleet:{seed}:world"))  # noqa: S311 - same
        self.world = world
        self._invalid = config.invalid_fraction
        self._limits = SimLimits(default_reference(), config.start)  # the reference as of the start
        self.start_ts = math.ceil(config.start.timestamp())
        self._n = 0  # creation counter: breaks event-time ties deterministically
        self._pending: list[Item] = []  # future messages (confirmations, incidents), a heap
        self._incidents: list[IncidentInfo] = []
        self.faulty: tuple[Device, int, int] | None = None

        quick = [d for d in world.devices if d.kind in (QUICK_PESTICIDE, QUICK_XRF)]
        self._quick = quick
        self._quick_cum = cumulative([d.weight for d in quick])
        self.centres = world.centres
        self._lab_device: dict[tuple[str, str], Device] = {}
        for device in world.devices:
            if device.kind.startswith("lab_"):
                self._lab_device[(device.site.id, device.info.methods[0])] = device
        samplers = [s for s in world.sites if s.type != "testing_centre"]
        self._lab_sites = samplers
        self._lab_sites_cum = cumulative([s.weight for s in samplers])

        self._enz_commodities = [c for c, _ in ENZYME_COMMODITIES]
        self._enz_cum = cumulative([w for _, w in ENZYME_COMMODITIES])
        self._gold = [(c, a) for c, a, _ in GOLD_PAIRS]
        self._gold_cum = cumulative([w for _, _, w in GOLD_PAIRS])
        self._xrf = [(c, a) for c, a, _ in XRF_PAIRS]
        self._xrf_cum = cumulative([w for _, _, w in XRF_PAIRS])
        self._animal = [(c, a, p) for c, a, _, p in ANIMAL_QUICK]
        self._animal_cum = cumulative([w for _, _, w, _ in ANIMAL_QUICK])
        lab_mix = LAB_COMMODITIES + LAB_ANIMAL
        self._lab_commodities = [c for c, _ in lab_mix]
        self._lab_cum = cumulative([w for _, w in lab_mix])

        # arrivals per second, by local hour, so that results (not arrivals) match the configured rate
        lines = (1.0 - P_LAB_SAMPLE) + P_LAB_SAMPLE * self._mean_lab_lines()
        mean_weight = sum(HOURLY_WEIGHTS) / len(HOURLY_WEIGHTS)
        per_s = config.rate_per_sim_hour / HOUR / lines
        self._hourly_rate = [per_s * w / mean_weight for w in HOURLY_WEIGHTS]

        if config.incidents:
            Incidents(self, random.Random(f"foodrisk-fleet:{seed}:incidents")).inject()  # noqa: S311 - same
        self._next_arrival = self._draw_next(float(self.start_ts))

    # ---- public ------------------------------------------------------------------------------

    @property
    def config(self) -> FleetConfig:
        return self._cfg

    def devices(self) -> list[DeviceInfo]:
        """Every device: quick-test devices in markets, lab instruments in testing centres."""
        return [d.info for d in self.world.devices]

    def incidents(self) -> list[IncidentInfo]:
        """The injected incidents (empty with ``incidents=False``)."""
        return list(self._incidents)

    def record_incident(self, info: IncidentInfo) -> None:
        """Note an injected incident (called by :class:`~pipeline.simulator.incidents.Incidents`)."""
        self._incidents.append(info)

    def next_batch(self, until: datetime) -> list[SimMessage]:
        """Every message not handed out yet whose event time is before ``until``, in event-time order."""
        if until.tzinfo is None or until.utcoffset() is None:
            raise ValueError("until must be timezone-aware")
        bound = math.ceil(until.timestamp())  # event times are whole seconds
        out: list[Item] = []
        while self._next_arrival < bound:
            self._arrival(int(self._next_arrival), out)
            self._next_arrival = self._draw_next(self._next_arrival)
        pending = self._pending
        while pending and pending[0][0] < bound:
            out.append(heapq.heappop(pending))
        out.sort()
        return [item[2] for item in out]

    # ---- arrivals ----------------------------------------------------------------------------

    def _draw_next(self, after: float) -> float:
        """The next arrival of a Poisson process whose rate is constant within each hour."""
        rng = self._rng
        rates = self._hourly_rate
        t = after
        while True:
            hour_start = (int(t) // HOUR) * HOUR
            seg_end = hour_start + HOUR
            rate = rates[((hour_start + LOCAL_OFFSET_S) // HOUR) % 24]
            t_next = t + rng.expovariate(rate)
            if t_next < seg_end:
                return t_next
            t = float(seg_end)

    def _mean_lab_lines(self) -> float:
        lab_mix = LAB_COMMODITIES + LAB_ANIMAL
        total = sum(w for _, w in lab_mix)
        mean = 0.0
        for commodity, weight in lab_mix:
            expected = 0.0
            for panel, share in self._panels(commodity):
                expected += share * sum(min(len(panel), k) for k in range(2, 6)) / 4
            mean += weight / total * expected
        return mean

    @staticmethod
    def _panels(commodity: str) -> list[tuple[tuple[str, ...], float]]:
        if commodity in VEGETABLES:
            return [
                (PESTICIDE_PANELS[commodity], 1 - LAB_VEG_METAL_SHARE),
                (METAL_PANELS["veg"], LAB_VEG_METAL_SHARE),
            ]
        if commodity in PESTICIDE_PANELS:
            return [(PESTICIDE_PANELS[commodity], 1.0)]
        if commodity in VET_PANELS and commodity in METAL_PANELS:
            return [(VET_PANELS[commodity], LAB_VET_SHARE), (METAL_PANELS[commodity], 1 - LAB_VET_SHARE)]
        if commodity in VET_PANELS:
            return [(VET_PANELS[commodity], 1.0)]
        return [(METAL_PANELS[commodity], 1.0)]

    def _arrival(self, ts: int, out: list[Item]) -> None:
        if self._rng.random() < P_LAB_SAMPLE:
            self._lab_sample(ts, out)
        else:
            self._quick_test(ts, out)

    def _emit(self, out: list[Item], ts: int, device: Device, value: bytes, tag: str | None) -> None:
        n = self._n = self._n + 1
        out.append((ts, n, SimMessage(device.key, value, datetime.fromtimestamp(ts, CST), tag)))

    def schedule(self, ts: int, device: Device, wire: dict[str, Any], tag: str | None) -> None:
        self._n += 1
        msg = SimMessage(device.key, orjson.dumps(wire), dt(ts), tag)
        heapq.heappush(self._pending, (ts, self._n, msg))

    def draw_sample(
        self,
        rng: random.Random,
        site: Site,
        commodity: str,
        vendor_id: str | None = None,
        supplier: Supplier | None = None,
    ) -> Sample:
        site.sample_seq += 1
        if vendor_id is None:
            stalls = site.stalls.get(CATEGORY[commodity])
            vendor_id = stalls[int(rng.random() * len(stalls))] if stalls else None
        if supplier is None:
            suppliers = site.suppliers[commodity]
            supplier = suppliers[int(rng.random() * len(suppliers))]
        return Sample(f"{site.id}-SMP{site.sample_seq:07d}", vendor_id, supplier, commodity)

    def make_wire(
        self, device: Device, sample: Sample, analyte: str, method: str, sampled: int, tested: int
    ) -> dict[str, Any]:
        device.seq += 1
        commodity = sample.commodity
        if device.zh:
            commodity = ZH_NAME.get(commodity, commodity)
        wire: dict[str, Any] = {
            "result_id": f"{device.id}-{device.seq:08d}",
            "sample_id": sample.sample_id,
            "device_id": device.id,
            "site": device.site.wire,
            "supplier_id": sample.supplier.id,
            "origin": sample.supplier.origin,
            "commodity": commodity,
            "analyte": analyte,
            "method": method,
            "sampled_at": iso(sampled),
            "tested_at": iso(tested),
        }
        if sample.vendor_id is not None:
            wire["vendor_id"] = sample.vendor_id
        return wire

    def _finish(
        self, rng: random.Random, out: list[Item], ts: int, device: Device, wire: dict[str, Any], tag: str | None
    ) -> bool:
        """Emit ``wire`` (or, for the invalid share, a corrupted form of it). True if emitted valid."""
        if rng.random() < self._invalid:
            self._emit(out, ts, device, corrupt(rng, wire, ts), TAG_INVALID)
            return False
        self._emit(out, ts, device, orjson.dumps(wire), tag)
        return True

    def _quick_test(self, ts: int, out: list[Item]) -> None:
        rng = self._rng
        device = self._quick[bisect_right(self._quick_cum, rng.random() * self._quick_cum[-1])]
        sampled = ts - 3 * MIN - int(rng.random() * 17 * MIN)  # a quick test takes 3-20 minutes
        tag: str | None = None
        confirmable = True
        if device.kind == QUICK_XRF:
            commodity, analyte = self._xrf[bisect_right(self._xrf_cum, rng.random() * self._xrf_cum[-1])]
            sample = self.draw_sample(rng, device.site, commodity)
            wire = self.make_wire(device, sample, analyte, "xrf", sampled, ts)
            limit = self._limits.limit_mg_kg(analyte, commodity) or 1.0
            lod = XRF_LOD[analyte]
            p_detect = 0.6 if commodity == "rice" and analyte == "cadmium" else XRF_P_DETECT
            value = quantity(
                rng, limit=limit, lod=lod, loq=None, p_exceed=XRF_P_EXCEED, p_detect=p_detect, banned=False
            )
            wire["value"] = value
            wire["unit"] = "mg/kg"
            wire["lod"] = lod
            positive = value > limit
        elif rng.random() < ANIMAL_QUICK_SHARE:
            # a strip or kit on meat, fish, eggs or dried goods, read positive / negative
            pick = bisect_right(self._animal_cum, rng.random() * self._animal_cum[-1])
            commodity, analyte, p_positive = self._animal[pick]
            sample = self.draw_sample(rng, device.site, commodity)
            wire = self.make_wire(device, sample, analyte, KIT_METHOD, sampled, ts)
            u = rng.random()
            qualitative = (
                "positive" if u < p_positive else "invalid" if u < p_positive + GOLD_P_INVALID else "negative"
            )
            wire["qualitative"] = qualitative
            # a lab confirms what it has a method for (LC-MS/MS); formaldehyde and SO2 kits are
            # followed up on site (the wire format has no method for their lab tests)
            positive = qualitative == "positive"
            confirmable = analyte not in UNCONFIRMABLE
        elif rng.random() < ENZYME_SHARE:
            analyte = "ache_inhibition"
            commodity = self._enz_commodities[bisect_right(self._enz_cum, rng.random() * self._enz_cum[-1])]
            sample = self.draw_sample(rng, device.site, commodity)
            wire = self.make_wire(device, sample, analyte, "enzyme_inhibition", sampled, ts)
            faulty = self.faulty
            if faulty is not None and device is faulty[0] and faulty[1] <= ts < faulty[2]:
                value = drifted_inhibition(rng, ts - faulty[1])
                tag = TAG_FAULTY_DEVICE
            else:
                value = inhibition(rng, commodity)
            wire["value"] = value
            wire["unit"] = "%"
            positive = value >= 50.0
        else:
            commodity, analyte = self._gold[bisect_right(self._gold_cum, rng.random() * self._gold_cum[-1])]
            sample = self.draw_sample(rng, device.site, commodity)
            wire = self.make_wire(device, sample, analyte, "colloidal_gold", sampled, ts)
            u = rng.random()
            qualitative = (
                "positive"
                if u < GOLD_P_POSITIVE
                else "invalid"
                if u < GOLD_P_POSITIVE + GOLD_P_INVALID
                else "negative"
            )
            wire["qualitative"] = qualitative
            positive = qualitative == "positive"
        if self._finish(rng, out, ts, device, wire, tag) and positive and confirmable and rng.random() < CONFIRM_SHARE:
            delay = rng.randint(*CONFIRM_DELAY_S)
            p_confirmed = 0.0 if tag == TAG_FAULTY_DEVICE else None
            self.confirmation(rng, wire, sample, sampled, ts + delay, tag or TAG_CONFIRMATION, p_confirmed)

    def centre_near(self, rng: random.Random, district: str) -> Site:
        for centre in self.centres:
            if centre.district == district:
                return centre
        return rng.choice(self.centres)

    def instrument(self, rng: random.Random, centre: Site, analyte: str) -> Device:
        if analyte not in METALS:
            method = "lc_msms" if analyte in LC_ANALYTES or analyte in VET_ANALYTES else "gc_msms"
        elif analyte in ("lead", "cadmium") and (centre.id, "aas") in self._lab_device and rng.random() < 0.3:
            method = "aas"
        elif analyte in ("mercury", "arsenic") and (centre.id, "afs") in self._lab_device:
            method = "afs"
        else:
            method = "icp_ms"
        return self._lab_device[(centre.id, method)]

    def lab_wire(
        self,
        device: Device,
        sample: Sample,
        analyte: str,
        sampled: int,
        tested: int,
        value: float,
        lod: float,
        loq: float,
    ) -> dict[str, Any]:
        wire = self.make_wire(device, sample, analyte, device.info.methods[0], sampled, tested)
        if device.ugkg:
            wire["value"] = sig(value * 1000.0)
            wire["unit"] = "ug/kg"
            wire["lod"] = sig(lod * 1000.0)
            wire["loq"] = sig(loq * 1000.0)
        else:
            wire["value"] = value
            wire["unit"] = "mg/kg"
            wire["lod"] = lod
            wire["loq"] = loq
        return wire

    def _lod_loq(self, analyte: str, commodity: str, method: str) -> tuple[float, float, float]:
        limit = self._limits.limit_mg_kg(analyte, commodity) or 1.0
        if analyte in METALS:
            lod, loq = METAL_LOD_LOQ[(analyte, method)]
        elif analyte in VET_ANALYTES:
            lod, loq = VET_LOD_LOQ if self._limits.banned(analyte, commodity) else VET_DRUG_LOD_LOQ
        else:
            lod, loq = pesticide_lod_loq(limit)
        return limit, lod, loq

    def _lab_sample(self, ts: int, out: list[Item]) -> None:
        rng = self._rng
        site = self._lab_sites[bisect_right(self._lab_sites_cum, rng.random() * self._lab_sites_cum[-1])]
        commodity = self._lab_commodities[bisect_right(self._lab_cum, rng.random() * self._lab_cum[-1])]
        panels = self._panels(commodity)
        panel = panels[0][0] if len(panels) == 1 or rng.random() < panels[0][1] else panels[1][0]
        analytes = rng.sample(panel, min(len(panel), rng.randint(2, 5)))
        centre = rng.choice(self.centres)
        sample = self.draw_sample(rng, site, commodity)
        sampled = ts - rng.randint(3 * HOUR, 30 * HOUR)
        for analyte in analytes:
            device = self.instrument(rng, centre, analyte)
            limit, lod, loq = self._lod_loq(analyte, commodity, device.info.methods[0])
            if analyte in METALS:
                p_exceed, p_detect, banned = LAB_METAL_P_EXCEED, LAB_METAL_P_DETECT, False
            elif analyte in VET_ANALYTES and self._limits.banned(analyte, commodity):
                p_exceed, p_detect, banned = LAB_VET_P_BANNED_DETECT, LAB_VET_P_BANNED_TRACE, True
            elif analyte in VET_ANALYTES:
                p_exceed, p_detect, banned = LAB_VET_P_EXCEED, LAB_VET_P_DETECT, False
            elif self._limits.banned(analyte, commodity):
                p_exceed, p_detect, banned = LAB_P_BANNED_DETECT, LAB_P_BANNED_TRACE, True
            else:
                p_exceed, p_detect, banned = LAB_P_EXCEED, LAB_P_DETECT, False
            value = quantity(rng, limit=limit, lod=lod, loq=loq, p_exceed=p_exceed, p_detect=p_detect, banned=banned)
            wire = self.lab_wire(device, sample, analyte, sampled, ts, value, lod, loq)
            self._finish(rng, out, ts, device, wire, None)

    def confirmation(
        self,
        rng: random.Random,
        positive: dict[str, Any],
        sample: Sample,
        sampled: int,
        tested: int,
        tag: str,
        p_confirmed: float | None = None,
        value_mg_kg: float | None = None,
        centre: Site | None = None,
        analyte: str | None = None,
    ) -> dict[str, Any]:
        """Schedule the lab result that follows up the quick-test ``positive`` (same sample)."""
        commodity = sample.commodity
        method = positive["method"]
        if method == "enzyme_inhibition":
            if analyte is None:
                panel = PESTICIDE_PANELS.get(commodity, ())
                analyte = rng.choice([a for a in ENZYME_DETECTABLE if a in panel] or ["omethoate"])
            if p_confirmed is None:
                p_confirmed = 0.15 if commodity in ENZYME_FALSE_POSITIVE_PRONE else 0.4
        else:
            analyte = analyte or positive["analyte"]
            if p_confirmed is None:
                p_confirmed = 0.5 if method == "colloidal_gold" else 0.6
        if centre is None:
            centre = self.centre_near(rng, positive["site"]["district"])
        device = self.instrument(rng, centre, analyte)
        limit, lod, loq = self._lod_loq(analyte, commodity, device.info.methods[0])
        banned = self._limits.banned(analyte, commodity)
        if value_mg_kg is None:
            confirmed = rng.random() < p_confirmed
            value_mg_kg = quantity(
                rng,
                limit=limit,
                lod=lod,
                loq=loq,
                p_exceed=1.0 if confirmed else 0.0,
                p_detect=0.0 if confirmed else 0.25,
                banned=banned,
            )
        wire = self.lab_wire(device, sample, analyte, sampled, tested, value_mg_kg, lod, loq)
        wire["confirms"] = positive["result_id"]
        self.schedule(tested, device, wire, tag)
        return wire
