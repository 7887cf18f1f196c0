"""The injected incidents (``FleetConfig.incidents``), all starting in the first simulated hour: a
cowpea lot with carbofuran in seven markets, an enzyme reader that drifts, a stall with a
non-compliant result every day, and one pig supplier's pork with clenbuterol (瘦肉精) in three
markets. They go into the fleet's pending queue with their own RNG, so the
ordinary traffic is the same with incidents on or off.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from pipeline.simulator.catalogue import (
    CONFIRM_DELAY_S,
    CONFIRM_SHARE,
    ENZYME_COMMODITIES,
    KIT_METHOD,
    QUICK_PESTICIDE,
)
from pipeline.simulator.model import (
    DAY,
    HOUR,
    MIN,
    TAG_CLENBUTEROL_PORK,
    TAG_COWPEA_CARBOFURAN,
    TAG_FAULTY_DEVICE,
    TAG_REPEAT_OFFENDER,
    IncidentInfo,
)
from pipeline.simulator.readings import drifted_inhibition, dt
from pipeline.simulator.world import Device, Sample, Site, Supplier, World


class FleetPort(Protocol):
    """What the incidents use of the fleet they are injected into (``Fleet`` has it; naming the
    protocol here, not importing ``Fleet``, keeps the imports one way: fleet -> incidents)."""

    start_ts: int
    world: World
    centres: list[Site]
    faulty: tuple[Device, int, int] | None

    def record_incident(self, info: IncidentInfo) -> None: ...
    def schedule(self, ts: int, device: Device, wire: dict[str, Any], tag: str | None) -> None: ...
    def draw_sample(self, rng: random.Random, site: Site, commodity: str, vendor_id: str | None = None,
                    supplier: Supplier | None = None) -> Sample: ...
    def make_wire(self, device: Device, sample: Sample, analyte: str, method: str, sampled: int,
                  tested: int) -> dict[str, Any]: ...
    def centre_near(self, rng: random.Random, district: str) -> Site: ...
    def instrument(self, rng: random.Random, centre: Site, analyte: str) -> Device: ...
    def lab_wire(self, device: Device, sample: Sample, analyte: str, sampled: int, tested: int, value: float,
                 lod: float, loq: float) -> dict[str, Any]: ...
    def confirmation(self, rng: random.Random, positive: dict[str, Any], sample: Sample, sampled: int, tested: int,
                     tag: str, p_confirmed: float | None = None, value_mg_kg: float | None = None,
                     centre: Site | None = None, analyte: str | None = None) -> dict[str, Any]: ...

class Incidents:
    """Builds the injected incidents into the fleet's pending queue (own RNG, so traffic is unchanged)."""

    def __init__(self, fleet: FleetPort, rng: random.Random) -> None:
        self._fleet = fleet
        self._rng = rng
        self._start = fleet.start_ts
        world = fleet.world
        self._markets = [s for s in world.sites if s.type == "farmers_market"]
        self._pesticide: dict[str, list[Device]] = {}
        for device in world.devices:
            if device.kind == QUICK_PESTICIDE:
                self._pesticide.setdefault(device.site.id, []).append(device)
        self._suppliers = world.suppliers
        self._used: set[str] = set()

    def inject(self) -> None:
        self._cowpea_carbofuran()
        self._faulty_device()
        self._repeat_offender()
        self._clenbuterol_pork()

    # a tiny tracker of what each incident emitted
    def _info(
        self,
        tag: str,
        description: str,
        times: list[int],
        sites: list[Site],
        *,
        supplier: Supplier | None = None,
        device: Device | None = None,
        vendor_id: str | None = None,
        starts: int | None = None,
    ) -> None:
        districts = tuple(dict.fromkeys(s.district for s in sites))
        info = IncidentInfo(
            tag=tag,
            description=description,
            starts_at=dt(min(times) if starts is None else starts),
            ends_at=dt(max(times)),
            site_ids=tuple(s.id for s in sites),
            districts=districts,
            supplier_id=supplier.id if supplier else None,
            device_id=device.id if device else None,
            vendor_id=vendor_id,
            messages=len(times),
        )
        self._fleet.record_incident(info)

    def _quick(
        self,
        device: Device,
        sample: Sample,
        analyte: str,
        method: str,
        sampled: int,
        tested: int,
        tag: str,
        result: float | str,
    ) -> dict[str, Any]:
        fleet = self._fleet
        wire = fleet.make_wire(device, sample, analyte, method, sampled, tested)
        if isinstance(result, str):
            wire["qualitative"] = result
        else:
            wire["value"] = result
            wire["unit"] = "%"
        fleet.schedule(tested, device, wire, tag)
        return wire

    def _cowpea_carbofuran(self) -> None:
        """(a) One Hainan supplier's cowpea lot with carbofuran, sold in seven markets in seven districts."""
        rng, fleet, start = self._rng, self._fleet, self._start
        tag = TAG_COWPEA_CARBOFURAN
        supplier = rng.choice([s for s in self._suppliers if "cowpea" in s.commodities and s.origin == "460000"])
        by_district: dict[str, list[Site]] = {}
        for site in self._markets:
            by_district.setdefault(site.district, []).append(site)
        districts = rng.sample(sorted(by_district), 7)
        markets = [rng.choice(by_district[d]) for d in districts]
        times: list[int] = []
        centres = fleet.centres
        n_positive = 0
        for i, market in enumerate(markets):
            self._used.add(market.id)
            if supplier not in market.suppliers["cowpea"]:
                market.suppliers["cowpea"].append(supplier)  # the supplier now sells there too
                supplier.sites.add(market.id)
            wave2 = i >= 5
            t = start + (140 * MIN + (i - 5) * 15 * MIN if wave2 else 5 * MIN + i * 6 * MIN)
            device = rng.choice(self._pesticide[market.id])
            stalls = rng.sample(market.stalls["veg"], 2)
            tests: list[tuple[str, str, float | str, str]] = [
                ("ache_inhibition", "enzyme_inhibition", round(rng.uniform(62.0, 93.0), 1), stalls[0]),
                ("carbofuran", "colloidal_gold", "positive", stalls[1]),
            ]
            if i == 2:  # a reading in the watch band (enzyme tests miss some: docs/domain.md §3)
                tests.append(("ache_inhibition", "enzyme_inhibition", round(rng.uniform(41.0, 48.0), 1), stalls[0]))
            for analyte, method, result, stall in tests:
                tested = t + rng.randint(0, 6 * MIN)
                sampled = tested - rng.randint(8 * MIN, 15 * MIN)
                sample = fleet.draw_sample(rng, market, "cowpea", vendor_id=stall, supplier=supplier)
                wire = self._quick(device, sample, analyte, method, sampled, tested, tag, result)
                times.append(tested)
                if result in ("positive",) or (isinstance(result, float) and result >= 50.0):
                    n_positive += 1
                    if i == 4 and method == "enzyme_inhibition":
                        continue  # never confirmed: for the unconfirmed-positive detector
                    lab_t = tested + rng.randint(25 * MIN, 50 * MIN)
                    value = round(rng.uniform(0.05, 0.4), 3)
                    fleet.confirmation(
                        rng,
                        wire,
                        sample,
                        sampled,
                        lab_t,
                        tag,
                        value_mg_kg=value,
                        centre=centres[n_positive % 2],
                        analyte="carbofuran",
                    )
                    times.append(lab_t)
        self._info(
            tag,
            f"cowpea from {supplier.id} (origin {supplier.origin}) carrying carbofuran 0.05-0.4 mg/kg, "
            f"quick-test positives in {len(markets)} markets, confirmed by LC-MS/MS",
            times,
            markets,
            supplier=supplier,
        )

    def _faulty_device(self) -> None:
        """(b) An enzyme reader whose readings drift upwards for three hours (its peers stay normal)."""
        rng, fleet, start = self._rng, self._fleet, self._start
        tag = TAG_FAULTY_DEVICE
        candidates = [s for s in self._markets if len(self._pesticide[s.id]) >= 2 and s.id not in self._used]
        site = rng.choice(candidates)
        self._used.add(site.id)
        device = self._pesticide[site.id][0]
        w0, w1 = start + 15 * MIN, start + 3 * HOUR
        fleet.faulty = (device, w0, w1)  # baseline readings on it drift too
        times: list[int] = []
        t = w0 + rng.randint(MIN, 5 * MIN)
        commodities = [c for c, _ in ENZYME_COMMODITIES]
        weights = [w for _, w in ENZYME_COMMODITIES]
        while t < w1:
            commodity = rng.choices(commodities, weights=weights)[0]
            sample = fleet.draw_sample(rng, site, commodity)
            sampled = t - rng.randint(5 * MIN, 15 * MIN)
            value = drifted_inhibition(rng, t - w0)
            wire = self._quick(device, sample, "ache_inhibition", "enzyme_inhibition", sampled, t, tag, value)
            times.append(t)
            if value >= 50.0 and rng.random() < CONFIRM_SHARE:
                lab_t = t + rng.randint(*CONFIRM_DELAY_S)
                fleet.confirmation(rng, wire, sample, sampled, lab_t, tag, p_confirmed=0.0)
                times.append(lab_t)
            t += rng.randint(150, 330)
        self._info(
            tag,
            f"enzyme reader {device.id} drifts upwards from +15 min for 2 h 45 min "
            "(positives from about +40 min; lab follow-ups find nothing)",
            times,
            [site],
            device=device,
            starts=w0,
        )

    def _repeat_offender(self) -> None:
        """(c) One stall with a non-compliant leek result every day for six days."""
        rng, fleet, start = self._rng, self._fleet, self._start
        tag = TAG_REPEAT_OFFENDER
        site = rng.choice([s for s in self._markets if s.id not in self._used])
        self._used.add(site.id)
        stall = rng.choice(site.stalls["veg"])
        supplier = site.suppliers["leek"][0]
        device = rng.choice(self._pesticide[site.id])
        centre = fleet.centre_near(rng, site.district)
        times: list[int] = []
        for day in range(6):
            t = start + day * DAY + 30 * MIN + rng.randint(0, 20 * MIN)
            sample = fleet.draw_sample(rng, site, "leek", vendor_id=stall)
            sampled = t - rng.randint(8 * MIN, 15 * MIN)
            if day % 2 == 0:  # a phorate strip positive, confirmed by GC-MS/MS (banned pesticide)
                wire = self._quick(device, sample, "phorate", "colloidal_gold", sampled, t, tag, "positive")
                lab_t = t + (rng.randint(40 * MIN, 55 * MIN) if day == 0 else rng.randint(3 * HOUR, 6 * HOUR))
                value = round(rng.uniform(0.02, 0.09), 3)
                fleet.confirmation(rng, wire, sample, sampled, lab_t, tag, value_mg_kg=value, centre=centre)
                times += [t, lab_t]
            else:  # a routine lab sample of the stall's leek with procymidone over its 0.2 mg/kg MRL
                lab_device = fleet.instrument(rng, centre, "procymidone")
                lab_t = t + rng.randint(4 * HOUR, 6 * HOUR)
                value = round(rng.uniform(0.3, 0.9), 3)
                wire = fleet.lab_wire(lab_device, sample, "procymidone", sampled, lab_t, value, 0.003, 0.01)
                fleet.schedule(lab_t, lab_device, wire, tag)
                times.append(lab_t)
        self._info(
            tag,
            f"stall {stall} sells non-compliant leek every day for six days "
            "(phorate strip positives confirmed by GC-MS/MS; procymidone over its MRL)",
            times,
            [site],
            supplier=supplier,
            vendor_id=stall,
        )

    def _clenbuterol_pork(self) -> None:
        """(d) 瘦肉精: one pig supplier's pork with clenbuterol, sold in three markets in three districts;
        colloidal-gold strip positives confirmed by LC-MS/MS (a compound banned in food animals)."""
        rng, fleet, start = self._rng, self._fleet, self._start
        tag = TAG_CLENBUTEROL_PORK
        supplier = rng.choice([s for s in self._suppliers if "pork" in s.commodities])
        by_district: dict[str, list[Site]] = {}
        for site in self._markets:
            if site.id not in self._used:
                by_district.setdefault(site.district, []).append(site)
        districts = rng.sample(sorted(by_district), 3)
        markets = [rng.choice(by_district[d]) for d in districts]
        times: list[int] = []
        for i, market in enumerate(markets):
            self._used.add(market.id)
            if supplier not in market.suppliers["pork"]:
                market.suppliers["pork"].append(supplier)  # the supplier now sells there too
                supplier.sites.add(market.id)
            stall = rng.choice(market.stalls["meat"])
            device = rng.choice(self._pesticide[market.id])
            centre = fleet.centre_near(rng, market.district)
            # two carcasses' cuts tested at each market, 20-40 min apart; all but the last confirmed
            for j in range(2):
                tested = start + 12 * MIN + i * 9 * MIN + j * rng.randint(20 * MIN, 40 * MIN)
                sampled = tested - rng.randint(6 * MIN, 12 * MIN)
                sample = fleet.draw_sample(rng, market, "pork", vendor_id=stall, supplier=supplier)
                wire = self._quick(device, sample, "clenbuterol", KIT_METHOD, sampled, tested, tag, "positive")
                times.append(tested)
                if i == 2 and j == 1:
                    continue  # sent to the lab later: for the unconfirmed-positive detector
                lab_t = tested + rng.randint(25 * MIN, 45 * MIN)
                value = round(rng.uniform(0.002, 0.03), 4)  # 2-30 ug/kg, as found in 瘦肉精 cases
                fleet.confirmation(rng, wire, sample, sampled, lab_t, tag, value_mg_kg=value, centre=centre)
                times.append(lab_t)
        self._info(
            tag,
            f"pork from pig supplier {supplier.id} (origin {supplier.origin}) carrying clenbuterol (瘦肉精) "
            f"2-30 ug/kg, strip positives in {len(markets)} markets in {len(districts)} districts, "
            "confirmed by LC-MS/MS",
            times,
            markets,
            supplier=supplier,
        )
